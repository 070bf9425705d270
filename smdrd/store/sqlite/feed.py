"""The call feed in SQLite (`smdrd.store.api.CallFeed`): stored calls in ``calls.id`` order after a saved cursor.

Calls are read from the journal itself, not from a queue: a call committed while the broker is away, or while
the daemon is stopped, is still there when the publisher comes back, and the cursor (``feed_cursors``, saved
after the broker acknowledged everything up to it) says where to go on. So every call goes out at least once;
a crash between the acknowledgement and the save sends a few again, with the same ``uid`` for the subscriber to
de-duplicate on.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from decimal import Decimal
from typing import Any

from smdrd.journal import MICROS
from smdrd.store.api import FeedCall, StoreUnavailable
from smdrd.store.sqlite.aio import AsyncPart
from smdrd.store.sqlite.schema import connect

#: the columns a feed message is made of, in `smdrd.journal.RatedCall.to_json` order; never ``auth_code``.
_COLUMNS = ("uid", "source", "format", "call_key", "leg", "start", "start_utc", "duration", "ring", "direction",
            "extension", "number", "trunk", "account", "call_id", "answered", "transfer", "extra", "e164",
            "region", "call_class", "rule", "prefix", "cost_micros", "currency")
_SELECT = f"SELECT id, {', '.join(_COLUMNS)} FROM calls WHERE id > ? ORDER BY id LIMIT ?"


def feed_fields(row: tuple[Any, ...]) -> dict[str, Any]:
    """A ``calls`` row (`_COLUMNS` order) as the feed publishes it: what `RatedCall.to_json` gives for the call."""
    fields = dict(zip(_COLUMNS, row, strict=True))
    micros = fields.pop("cost_micros")
    fields["extra"] = json.loads(fields["extra"]) if fields["extra"] else {}
    fields["cost"] = None if micros is None else str(Decimal(micros) / MICROS)
    currency = fields.pop("currency")
    fields["currency"] = currency  # after cost, as `to_json` orders them
    return fields


def place_cursor(path: str, name: str) -> int:
    """Feed ``name``'s saved position; a new feed's cursor is placed at the journal's end now (blocking)."""
    try:
        conn = connect(path)
        try:
            conn.execute("INSERT INTO feed_cursors (name, position) SELECT ?, coalesce(max(id), 0) FROM calls "
                         "WHERE true ON CONFLICT (name) DO NOTHING", (name,))
            row = conn.execute("SELECT position FROM feed_cursors WHERE name = ?", (name,)).fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"call feed: {exc}") from exc
    return int(row[0])


class SqliteCallFeed(AsyncPart):
    """``await open()``; `start`, then `after` / `save` as the broker acknowledges; ``await close()``."""

    async def open(self) -> None:
        await asyncio.to_thread(lambda: connect(str(self.path)).close())  # created and migrated, if not yet
        await super().open()

    async def start(self, name: str) -> int:
        try:
            async with self.db.execute("SELECT position FROM feed_cursors WHERE name = ?", (name,)) as cur:
                row = await cur.fetchone()
            async with self.db.execute("SELECT coalesce(max(id), 0) FROM calls") as cur:
                last = await cur.fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"call feed: {exc}") from exc
        end = int(last[0]) if last else 0
        if row is None:
            # A new feed starts at the journal's end: turning it on does not replay years of calls.
            await self.save(name, end)
            return end
        position = int(row[0])
        # Every call after the cursor was deleted (retention emptied the table), so ids may start again lower.
        return 0 if position > end else position

    async def after(self, position: int, limit: int) -> list[FeedCall]:
        try:
            async with self.db.execute(_SELECT, (position, limit)) as cur:
                return [FeedCall(int(row[0]), feed_fields(tuple(row[1:]))) async for row in cur]
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"call feed: {exc}") from exc

    async def last(self, direction: str) -> FeedCall | None:
        # Newest first by id: the last call of a direction is among the newest rows on any real site.
        try:
            async with self.db.execute(f"SELECT id, {', '.join(_COLUMNS)} FROM calls WHERE direction = ? "
                                       "ORDER BY id DESC LIMIT 1", (direction,)) as cur:
                row = await cur.fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"call feed: {exc}") from exc
        return None if row is None else FeedCall(int(row[0]), feed_fields(tuple(row[1:])))

    async def save(self, name: str, position: int) -> None:
        try:
            await self.db.execute(
                "INSERT INTO feed_cursors (name, position) VALUES (?, ?) "
                "ON CONFLICT (name) DO UPDATE SET position = excluded.position", (name, position))
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"call feed: {exc}") from exc
