"""The call feed of the SQLite store: stored calls come back after a cursor exactly as the feed publishes them.

What `SqliteCallFeed` reads from the ``calls`` table must equal `RatedCall.to_json` of the call that was stored
(the call feed used to publish from memory; it now publishes from the journal, so the two must never drift), in
commit order, without the authorisation code; the cursor is saved per feed and survives reopening.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smdrd.journal import PARSED, JournalEntry, RatedCall
from smdrd.rating.tariff import Rating
from smdrd.record import CallRecord, Direction
from smdrd.store import open_store
from smdrd.store.sqlite.writer import JournalWriter
from smdrd.testing import call_records

ratings = st.one_of(st.none(), st.builds(
    Rating, e164=st.from_regex(r"\+[1-9][0-9]{6,12}", fullmatch=True), call_class=st.sampled_from(
        ["local", "national", "international", "mobile", "premium"]), rule=st.text(max_size=8),
    prefix=st.text("0123456789", max_size=4),
    cost=st.decimals(min_value=0, max_value=10_000, places=4).map(Decimal), currency=st.sampled_from(["EUR", "GBP"])))
records = call_records("avaya-ipo").map(lambda r: dataclasses.replace(r, auth_code="4321", account="77"))


async def _store(db: Path, calls: list[tuple[CallRecord, Rating | None]]) -> list[RatedCall]:
    writer = JournalWriter(db, commit_interval=0.001)
    await writer.open()
    task = asyncio.create_task(writer.run())
    stored = [RatedCall(f"t:{i:06d}", record, rating) for i, (record, rating) in enumerate(calls)]
    for i, call in enumerate(stored):
        writer.submit(JournalEntry("pbx", "p", 1, "avaya-ipo", f"line {i}".encode(), PARSED, None, (call,), ()))
    await writer.close()
    await task
    return stored


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=st.lists(st.tuples(records, ratings), min_size=1, max_size=12), window=st.integers(1, 5))
def test_the_feed_gives_each_stored_call_as_to_json_in_order_from_the_cursor(
        tmp_path_factory: object, calls: list[tuple[CallRecord, Rating | None]], window: int) -> None:
    db = Path(str(tmp_path_factory.mktemp("feed"))) / "j.db"  # type: ignore[attr-defined]

    async def scenario() -> None:
        feed = open_store(db).call_feed()
        await feed.open()
        try:
            start = await feed.start("test")  # a new feed starts at the end: nothing stored yet
            assert start == 0
            stored = await _store(db, calls)
            got, position = [], start
            while batch := await feed.after(position, window):
                assert len(batch) <= window
                got += batch
                position = batch[-1].position
            assert [c.fields for c in got] == [c.to_json("pbx") for c in stored]
            assert all("auth_code" not in c.fields for c in got)
            await feed.save("test", got[len(got) // 2].position)
        finally:
            await feed.close()
        again = open_store(db).call_feed()
        await again.open()
        try:
            assert await again.start("test") == got[len(got) // 2].position  # saved across a reopen
            assert await again.start("other") == got[-1].position  # another new feed starts at the end
        finally:
            await again.close()

    asyncio.run(scenario())


async def test_a_cursor_beyond_the_last_call_starts_again_from_the_beginning(tmp_path: Path) -> None:
    """Retention deleted every call, and SQLite numbers new calls from 1 again: a saved cursor past the end
    would skip them all, so it starts from the beginning instead."""
    db = tmp_path / "j.db"
    record = CallRecord(format="avaya-ipo", start=datetime(2026, 1, 5, 9), duration=60,
                        direction=Direction.OUTBOUND, extension="201", number="0123456789")
    await _store(db, [(record, None)] * 3)
    feed = open_store(db).call_feed()
    await feed.open()
    try:
        await feed.save("test", 3)
        conn = sqlite3.connect(db)
        conn.execute("DELETE FROM calls")
        conn.commit()
        conn.close()
        await _store(db, [(dataclasses.replace(record, extension="202"), None)])
        assert await feed.start("test") == 0
        assert [c.fields["extension"] for c in await feed.after(0, 10)] == ["202"]
    finally:
        await feed.close()


async def test_last_gives_the_newest_call_of_a_direction(tmp_path: Path) -> None:
    """The retained "last outbound call" topic reads the newest outbound call, not an inbound one after it."""
    db = tmp_path / "j.db"
    out = CallRecord(format="avaya-ipo", start=datetime(2026, 1, 5, 9), duration=60,
                     direction=Direction.OUTBOUND, extension="201", number="0123456789")
    stored = await _store(db, [(out, None), (dataclasses.replace(out, extension="202"), None),
                               (dataclasses.replace(out, direction=Direction.INBOUND, extension="203"), None)])
    feed = open_store(db).call_feed()
    await feed.open()
    try:
        last = await feed.last("outbound")
        assert last is not None and last.fields == stored[1].to_json("pbx")
        assert await feed.last("internal") is None
    finally:
        await feed.close()
