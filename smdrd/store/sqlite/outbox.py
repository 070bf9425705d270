"""The alert outbox in SQLite (`smdrd.store.api.OutboxStore`): pending alerts out (oldest first), delivery
marks in.

Per-call alerts are inserted by the journal writer, in the transaction of their call (see `smdrd.alerts.engine`
and `smdrd.store.sqlite.writer`). This module owns a second, small connection for everything else: reading what
is pending, marking what the broker acknowledged, inserting the rare operational alerts, pruning old history.
It never marks an alert delivered on its own account: only `mark_delivered`, after the QoS-1 acknowledgement.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence

from smdrd.journal import Alert
from smdrd.store.api import PendingAlert, StoreUnavailable
from smdrd.store.sqlite.aio import AsyncPart
from smdrd.store.sqlite.rows import OUTBOX_INSERT, alert_row


class SqliteOutbox(AsyncPart):
    """``await open()``, then `pending` / `mark_delivered` / `insert`; ``await close()``.

    The database must be migrated already (the journal writer does it at start).
    """

    async def pending(self, limit: int = 100, after: int = 0) -> list[PendingAlert]:
        """Up to ``limit`` undelivered alerts with a row id above ``after``, oldest first."""
        async with self.db.execute(
            "SELECT id, alert_id, rule, payload FROM alert_outbox WHERE delivered_at IS NULL AND id > ? "
            "ORDER BY id LIMIT ?", (after, limit)) as cur:
            return [PendingAlert(*row) async for row in cur]

    async def count_pending(self) -> int:
        async with self.db.execute("SELECT count(*) FROM alert_outbox WHERE delivered_at IS NULL") as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def mark_delivered(self, rows: Sequence[int], at: float | None = None) -> None:
        """Mark these rows delivered (the broker acknowledged them)."""
        if not rows:
            return
        stamp = int((time.time() if at is None else at) * 1_000_000)
        try:
            await self.db.executemany("UPDATE alert_outbox SET delivered_at = ? WHERE id = ?",
                                      [(stamp, r) for r in rows])
        except sqlite3.Error as exc:  # nothing in these rows can be refused: the database is busy or gone
            raise StoreUnavailable(f"alert outbox: {exc}") from exc

    async def insert(self, alerts: Iterable[Alert]) -> int:
        """Insert alerts raised outside a call's transaction (operational alerts); returns how many were new."""
        batch = [alert_row(a) for a in alerts]
        if not batch:
            return 0
        db = self.db
        await db.execute("BEGIN IMMEDIATE")
        try:
            async with db.executemany(OUTBOX_INSERT, batch) as cur:
                added = cur.rowcount
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        return added

    async def prune(self, older_than_days: int) -> int:
        """Delete delivered alerts older than the retention; pending ones are never deleted, nor the newest row:
        SQLite numbers a new row after the highest id there is, and the e-mail digests read the outbox from a
        cursor of ids (`SqliteMail.alerts_after`), so an id must never be handed out again."""
        if older_than_days <= 0:
            return 0
        cutoff = int((time.time() - older_than_days * 86400) * 1_000_000)
        before = self.db.total_changes
        await self.db.execute("DELETE FROM alert_outbox WHERE delivered_at IS NOT NULL AND created_at < ? "
                              "AND id < (SELECT max(id) FROM alert_outbox)", (cutoff,))
        return self.db.total_changes - before

