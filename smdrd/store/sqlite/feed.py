"""The call feed in SQLite (`smdrd.store.api.CallFeed`): stored calls in ``calls.id`` order after a saved cursor.

Calls are read from the journal itself, not from a queue: a call committed while the broker is away, or while
the daemon is stopped, is still there when the publisher comes back, and the cursor (``feed_cursors``, saved
after the broker acknowledged everything up to it) says where to go on. So every call goes out at least once;
a crash between the acknowledgement and the save sends a few again, with the same ``uid`` for the subscriber to
de-duplicate on.

The same cursors serve the journal's entries (`entries`: each line with its calls, in ``lines.id`` order), which
a site publishes to a central collector (`smdrd.central`), and their revisions (`revisions`: a line whose calls
``smdrd rerate`` or ``smdrd reparse`` changed, as it is now, in ``entry_revisions.id`` order).
"""

from __future__ import annotations

import asyncio
import sqlite3

from smdrd.store.api import REVISION_FEED, FeedCall, StoreUnavailable
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
from smdrd.store.sqlite.aio import AsyncPart
from smdrd.store.sqlite.schema import connect


def place_cursor(path: str, name: str) -> int:
    """Feed ``name``'s saved position; a new feed's cursor is placed at the journal's end now (`REVISION_FEED`'s at
    the revisions' end) (blocking)."""
    table = cursor_table(name)
    try:
        conn = connect(path)
        try:
            conn.execute(f"INSERT INTO feed_cursors (name, position) SELECT ?, coalesce(max(id), 0) FROM {table} "
                         "WHERE true ON CONFLICT (name) DO NOTHING", (name,))
            row = conn.execute("SELECT position FROM feed_cursors WHERE name = ?", (name,)).fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"call feed: {exc}") from exc
    return int(row[0])


def drop_cursor(path: str, name: str) -> None:
    """Feed ``name``'s cursor gone, and with `REVISION_FEED`'s the revisions (blocking)."""
    try:
        conn = connect(path)
        try:
            with conn:
                conn.execute("DELETE FROM feed_cursors WHERE name = ?", (name,))
                if name == REVISION_FEED:
                    conn.execute("DELETE FROM entry_revisions")
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"call feed: {exc}") from exc


class SqliteCallFeed(AsyncPart):
    """``await open()``; `start`, then `after` / `save` as the broker acknowledges; ``await close()``."""

    async def open(self) -> None:
        await asyncio.to_thread(lambda: connect(str(self.path)).close())  # created and migrated, if not yet
        await super().open()

    async def _saved(self, name: str, table: str) -> tuple[int | None, int]:
        """Feed ``name``'s saved position (None: a new feed) and the highest id of ``table``."""
        try:
            async with self.db.execute("SELECT position FROM feed_cursors WHERE name = ?", (name,)) as cur:
                row = await cur.fetchone()
            async with self.db.execute(f"SELECT coalesce(max(id), 0) FROM {table}") as cur:
                last = await cur.fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"call feed: {exc}") from exc
        return (None if row is None else int(row[0])), (int(last[0]) if last else 0)

    async def start(self, name: str) -> int:
        position, end = await self._saved(name, "calls")
        if position is None:
            # A new feed starts at the journal's end: turning it on does not replay years of calls.
            await self.save(name, end)
            return end
        # Every call after the cursor was deleted (retention emptied the table), so ids may start again lower.
        return 0 if position > end else position

    async def start_entries(self, name: str) -> int:
        position, end = await self._saved(name, "lines")
        # A new feed starts at the beginning; a cursor past the last line: retention emptied the journal.
        return 0 if position is None or position > end else position

    async def start_revisions(self, name: str) -> int:
        position, end = await self._saved(name, "entry_revisions")
        if position is None:
            await self.save(name, end)  # revisions are recorded from now on
            return end
        return position

    async def revisions(self, position: int, limit: int) -> list[FeedCall]:
        try:
            async with self.db.execute(REVISIONS, (position, limit)) as cur:
                rows = [tuple(row) async for row in cur]
            if not rows:
                return []
            async with self.db.execute(REVISION_CALLS, (position, rows[-1][0])) as cur:
                calls = [tuple(row) async for row in cur]
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"revision feed: {exc}") from exc
        return revisions_of(rows, calls)

    async def entries(self, position: int, limit: int) -> list[FeedCall]:
        try:
            async with self.db.execute(ENTRIES, (position, limit)) as cur:
                lines = [tuple(row) async for row in cur]
            if not lines:
                return []
            async with self.db.execute(ENTRY_CALLS, (lines[0][0], lines[-1][0])) as cur:
                calls = [tuple(row) async for row in cur]
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"entry feed: {exc}") from exc
        return entries_of(lines, calls)

    async def after(self, position: int, limit: int) -> list[FeedCall]:
        try:
            async with self.db.execute(FEED_AFTER, (position, limit)) as cur:
                return [FeedCall(int(row[0]), feed_fields(tuple(row[1:]))) async for row in cur]
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"call feed: {exc}") from exc

    async def last(self, direction: str) -> FeedCall | None:
        try:
            async with self.db.execute(LAST_OF_DIRECTION, (direction,)) as cur:
                row = await cur.fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"call feed: {exc}") from exc
        return None if row is None else FeedCall(int(row[0]), feed_fields(tuple(row[1:])))

    async def save(self, name: str, position: int) -> None:
        try:
            await self.db.execute(
                "INSERT INTO feed_cursors (name, position) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET position = excluded.position", (name, position))
            if name == REVISION_FEED:
                await self.db.execute(PRUNE_REVISIONS, (position,))
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"call feed: {exc}") from exc
