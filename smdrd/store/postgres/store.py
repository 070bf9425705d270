"""`PgStore`: a PostgreSQL database behind `smdrd.store.api.Store`, and its smaller read parts (call export, the
journal's error lines, the call feed).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import psycopg

from smdrd.journal import MICROS
from smdrd.store.api import REVISION_FEED, ErrorLine, FeedCall, StoreUnavailable
from smdrd.store.feed import (
    ENTRIES,
    ENTRY_CALLS,
    FEED_AFTER,
    LAST_OF_DIRECTION,
    PRUNE_REVISIONS,
    REVISION_CALLS,
    REVISIONS,
    cursor_table,
    entries_of,
    feed_fields,
    revisions_of,
)
from smdrd.store.postgres.accounts import PgAccounts
from smdrd.store.postgres.alert_inbox import PgAlertInbox
from smdrd.store.postgres.calls import PgCalls
from smdrd.store.postgres.connect import AsyncPart, connect
from smdrd.store.postgres.directory import PgDirectory
from smdrd.store.postgres.mail import PgMail
from smdrd.store.postgres.outbox import PgOutbox
from smdrd.store.postgres.rebuild import PgRebuild
from smdrd.store.postgres.reports import PgReports
from smdrd.store.postgres.retention import PgRetention
from smdrd.store.postgres.schema import LOCAL_SITE
from smdrd.store.postgres.tariffs import PgTariffs

__all__ = ["PgCallExport", "PgCallFeed", "PgJournalErrors", "PgStore"]


class PgCallExport:
    """`smdrd.store.api.CallExport`: one repeatable-read transaction, rows streamed by a server-side cursor."""

    def __init__(self, url: str) -> None:
        self.conn = connect(url, autocommit=False)
        self.conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ

    def columns(self) -> list[str]:
        cur = self.conn.execute("SELECT column_name FROM information_schema.columns "
                                "WHERE table_name = 'calls' AND table_schema = current_schema() "
                                "ORDER BY ordinal_position")
        return [str(r[0]) for r in cur]

    def rows(self, start: int | None, end: int | None) -> Iterator[dict[str, Any]]:
        where, params = [], []
        if start is not None:
            where.append("start_utc >= %s")
            params.append(start)
        if end is not None:
            where.append("start_utc < %s")
            params.append(end)
        sql = "SELECT * FROM calls" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY start_utc, id"
        with self.conn.cursor("export") as cur:
            cur.itersize = 1000
            cur.execute(sql, params)
            names = [d.name for d in cur.description or ()]
            for values in cur:
                yield dict(zip(names, values, strict=True))

    def close(self) -> None:
        self.conn.rollback()
        self.conn.close()


class PgJournalErrors:
    """`smdrd.store.api.JournalErrors`: the ``error`` lines, in one read transaction."""

    def __init__(self, url: str) -> None:
        self.conn = connect(url, autocommit=False)

    def error_lines(self, lo: int, hi: int, source: str | None, limit: int) -> tuple[list[ErrorLine], int]:
        where = "status = 'error' AND received_at >= %s AND received_at < %s" + (" AND source = %s" if source else "")
        params: list[object] = [lo * 1_000_000, hi * 1_000_000] + ([source] if source else [])
        row = self.conn.execute(f"SELECT count(*) FROM lines WHERE {where}", params).fetchone()
        sql = (f"SELECT id, source, peer, received_at, format, raw, coalesce(error, '') FROM lines WHERE {where} "
               "ORDER BY id" + (" LIMIT %s" if limit else ""))
        rows = self.conn.execute(sql, [*params, limit] if limit else params)
        lines = [ErrorLine(i, s, p, r, f, bytes(raw), e) for i, s, p, r, f, raw, e in rows]
        return lines, int(row[0]) if row else 0

    def close(self) -> None:
        self.conn.rollback()
        self.conn.close()


_PLACE_CURSOR = ("INSERT INTO feed_cursors (name, position) SELECT %s, coalesce(max(id), 0) FROM {table} "
                 "ON CONFLICT (name) DO NOTHING")
_SAVE_CURSOR = ("INSERT INTO feed_cursors (name, position) VALUES (%s, %s) "
                "ON CONFLICT (name) DO UPDATE SET position = excluded.position")


def _pg(sql: str) -> str:
    """The feed's SQL (`smdrd.store.feed`) with PostgreSQL's placeholders."""
    return sql.replace("?", "%s")


class PgCallFeed(AsyncPart):
    """`smdrd.store.api.CallFeed`: calls in ``calls.id`` order (the writers take turns, so ids are committed in
    order) after a saved cursor."""

    async def _rows(self, sql: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
        try:
            cur = await self.conn.execute(sql, params)
            return await cur.fetchall()
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            raise StoreUnavailable(f"call feed: {exc}") from exc

    async def start(self, name: str) -> int:
        row = await self._rows("SELECT position FROM feed_cursors WHERE name = %s", (name,))
        end = int((await self._rows("SELECT coalesce(max(id), 0) FROM calls", ()))[0][0])
        if not row:
            await self.save(name, end)
            return end
        position = int(row[0][0])
        return 0 if position > end else position

    async def start_entries(self, name: str) -> int:
        row = await self._rows("SELECT position FROM feed_cursors WHERE name = %s", (name,))
        end = int((await self._rows("SELECT coalesce(max(id), 0) FROM lines", ()))[0][0])
        position = int(row[0][0]) if row else 0
        return 0 if position > end else position

    async def start_revisions(self, name: str) -> int:
        row = await self._rows("SELECT position FROM feed_cursors WHERE name = %s", (name,))
        if row:
            return int(row[0][0])
        end = int((await self._rows("SELECT coalesce(max(id), 0) FROM entry_revisions", ()))[0][0])
        await self.save(name, end)  # revisions are recorded from now on
        return end

    async def revisions(self, position: int, limit: int) -> list[FeedCall]:
        rows = await self._rows(_pg(REVISIONS), (position, limit))
        if not rows:
            return []
        calls = await self._rows(_pg(REVISION_CALLS), (position, rows[-1][0]))
        return revisions_of(rows, calls)

    async def entries(self, position: int, limit: int) -> list[FeedCall]:
        lines = await self._rows(_pg(ENTRIES), (position, limit))
        if not lines:
            return []
        calls = await self._rows(_pg(ENTRY_CALLS), (lines[0][0], lines[-1][0]))
        return entries_of(lines, calls)

    async def after(self, position: int, limit: int) -> list[FeedCall]:
        rows = await self._rows(_pg(FEED_AFTER), (position, limit))
        return [FeedCall(int(r[0]), feed_fields(tuple(r[1:]))) for r in rows]

    async def last(self, direction: str) -> FeedCall | None:
        rows = await self._rows(_pg(LAST_OF_DIRECTION), (direction,))
        return FeedCall(int(rows[0][0]), feed_fields(tuple(rows[0][1:]))) if rows else None

    async def save(self, name: str, position: int) -> None:
        await self._rows(_SAVE_CURSOR + " RETURNING position", (name, position))
        if name == REVISION_FEED:
            await self._rows(_pg(PRUNE_REVISIONS) + " RETURNING id", (position,))


class PgStore:
    """The PostgreSQL database at ``url`` (``postgresql://...``; created tables and all by whoever opens it)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def reports(self) -> PgReports:
        return PgReports(self.url)

    def outbox(self) -> PgOutbox:
        return PgOutbox(self.url)

    def export(self) -> PgCallExport:
        return PgCallExport(self.url)

    def retention(self) -> PgRetention:
        return PgRetention(self.url)

    def rebuild(self) -> PgRebuild:
        return PgRebuild(self.url)

    def call_feed(self) -> PgCallFeed:
        return PgCallFeed(self.url)

    def journal_errors(self) -> PgJournalErrors:
        return PgJournalErrors(self.url)

    def start_call_feed(self, name: str) -> int:
        table = cursor_table(name)
        with connect(self.url) as conn:
            conn.execute(_PLACE_CURSOR.format(table=table), (name,))
            row = conn.execute("SELECT position FROM feed_cursors WHERE name = %s", (name,)).fetchone()
        return int(row[0]) if row else 0

    def stop_call_feed(self, name: str) -> None:
        try:
            with connect(self.url) as conn, conn.transaction():
                conn.execute("DELETE FROM feed_cursors WHERE name = %s", (name,))
                if name == REVISION_FEED:
                    conn.execute("DELETE FROM entry_revisions")
        except psycopg.Error as exc:
            raise StoreUnavailable(f"call feed: {str(exc).strip()}") from exc

    def alert_inbox(self) -> PgAlertInbox:
        return PgAlertInbox(self.url)

    def calls(self) -> PgCalls:
        return PgCalls(self.url)

    def accounts(self) -> PgAccounts:
        return PgAccounts(self.url)

    def mail(self) -> PgMail:
        return PgMail(self.url)

    def directory(self) -> PgDirectory:
        return PgDirectory(self.url)

    def tariffs(self) -> PgTariffs:
        return PgTariffs(self.url)

    def spend_since(self, since_utc: int) -> list[tuple[str, str, Decimal]]:
        with connect(self.url) as conn:
            rows = conn.execute(
                "SELECT extension, substr(start, 1, 10), sum(cost_micros) FROM calls "
                "WHERE start_utc >= %s AND cost_micros > 0 GROUP BY extension, substr(start, 1, 10)",
                (since_utc,)).fetchall()
        return [(ext, day, Decimal(micros) / MICROS) for ext, day, micros in rows]

    def recent_call_uids(self, limit: int) -> list[str]:
        with connect(self.url) as conn:
            rows = conn.execute("SELECT uid FROM calls WHERE site_id = %s ORDER BY id DESC LIMIT %s",
                                (LOCAL_SITE, limit)).fetchall()
        return [str(uid) for (uid,) in reversed(rows)]


if TYPE_CHECKING:
    from smdrd.store import api

    def _is_a_store(store: PgStore) -> api.Store:
        return store  # mypy --strict checks here that every part matches its protocol in `smdrd.store.api`
