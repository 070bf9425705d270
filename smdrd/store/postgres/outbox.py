"""The alert outbox on PostgreSQL (`smdrd.store.api.OutboxStore`): what is pending, oldest first; delivery marks
only after the broker acknowledged; operational alerts; pruning delivered history. Per-call alerts are written
by the journal writer in their call's transaction (`smdrd.store.postgres.writer`)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import psycopg

from smdrd.journal import Alert
from smdrd.store.api import PendingAlert, StoreUnavailable
from smdrd.store.postgres.connect import AsyncPart
from smdrd.store.postgres.writer import OUTBOX_INSERT
from smdrd.store.rows import alert_row

__all__ = ["PgOutbox"]


class PgOutbox(AsyncPart):
    """``await open()``, then `pending` / `mark_delivered` / `insert`; ``await close()``."""

    async def pending(self, limit: int = 100, after: int = 0) -> list[PendingAlert]:
        """Up to ``limit`` undelivered alerts with a row id above ``after``, oldest first."""
        cur = await self.conn.execute(
            "SELECT id, alert_id, rule, payload FROM alert_outbox WHERE delivered_at IS NULL AND id > %s "
            "ORDER BY id LIMIT %s", (after, limit))
        return [PendingAlert(*row) for row in await cur.fetchall()]

    async def count_pending(self) -> int:
        cur = await self.conn.execute("SELECT count(*) FROM alert_outbox WHERE delivered_at IS NULL")
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def mark_delivered(self, rows: Sequence[int], at: float | None = None) -> None:
        """Mark these rows delivered (the broker acknowledged them)."""
        if not rows:
            return
        stamp = int((time.time() if at is None else at) * 1_000_000)
        try:
            await self.conn.execute("UPDATE alert_outbox SET delivered_at = %s WHERE id = ANY(%s)",
                                    (stamp, list(rows)))
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise StoreUnavailable(f"alert outbox: {exc}") from exc

    async def insert(self, alerts: Iterable[Alert]) -> int:
        """Insert alerts raised outside a call's transaction; returns how many were new."""
        batch = [alert_row(a) for a in alerts]
        if not batch:
            return 0
        added = 0
        async with self.conn.transaction(), self.conn.cursor() as cur:
            for row in batch:
                await cur.execute(OUTBOX_INSERT, row)
                added += cur.rowcount
        return added

    async def prune(self, older_than_days: int) -> int:
        """Delete delivered alerts older than the retention; pending ones are never deleted."""
        if older_than_days <= 0:
            return 0
        cutoff = int((time.time() - older_than_days * 86400) * 1_000_000)
        cur = await self.conn.execute(
            "DELETE FROM alert_outbox WHERE delivered_at IS NOT NULL AND created_at < %s", (cutoff,))
        return cur.rowcount
