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


async def test_retention_and_reparse_never_hand_out_an_id_the_cursor_has_passed(tmp_path: Path) -> None:
    """SQLite numbers a new call after the highest id there is. Retention deleting the newest calls (an old log
    imported last), or a reparse deleting and rebuilding them, gave a later call an id at or below the saved
    cursor, and the feed never published it. Retention keeps the call with the highest id; a reparse numbers
    the calls it rebuilds above every id there was."""
    from smdrd.journal import ERROR
    from smdrd.store.api import Cutoffs

    db = tmp_path / "j.db"
    new = CallRecord(format="avaya-ipo", start=datetime(2026, 11, 29, 9), duration=60,
                     direction=Direction.OUTBOUND, extension="201", number="0123456789")
    old = [dataclasses.replace(new, start=datetime(2025, 1, 5, 9), extension=e) for e in ("202", "203")]
    await _store(db, [(new, None), (old[0], None), (old[1], None)])  # ids 1, 2, 3: the old log came last
    writer = JournalWriter(db, commit_interval=0.001)  # a line that did not parse (a parser fix comes later)
    await writer.open()
    task = asyncio.create_task(writer.run())
    writer.submit(JournalEntry("pbx", "p", 2, "avaya-ipo", b"garbled", ERROR, "bad field", (), ()))
    await writer.close()
    await task
    feed = open_store(db).call_feed()
    await feed.open()
    try:
        await feed.save("test", 3)  # all three published
        retention = open_store(db).retention()
        try:
            assert retention.prune(Cutoffs(int(datetime(2026, 1, 1).timestamp()), None), batch_rows=10).calls == 1
        finally:
            retention.close()
        later = dataclasses.replace(new, start=datetime(2026, 11, 29, 10), extension="204")
        await _store(db, [(later, None)])
        assert [c.fields["extension"] for c in await feed.after(3, 10)] == ["204"]
        await feed.save("test", 4)

        # A reparse (in line order) of the error line, which now parses, and of the newest call's line.
        conn = sqlite3.connect(db)
        (error_line,) = conn.execute("SELECT id FROM lines WHERE status = 'error'").fetchone()
        (newest_line,) = conn.execute("SELECT line_id FROM calls ORDER BY id DESC LIMIT 1").fetchone()
        conn.close()
        rebuild = open_store(db).rebuild()
        try:
            rebuild.replace([
                (error_line, JournalEntry("pbx", "p", 2, "avaya-ipo", b"garbled", PARSED, None, (
                    RatedCall("t:r2", dataclasses.replace(later, extension="205"), None),), ())),
                (newest_line, JournalEntry("pbx", "p", 1, "avaya-ipo", b"line", PARSED, None, (
                    RatedCall("t:r1", later, None),), ()))])
        finally:
            rebuild.close()
        assert [c.fields["extension"] for c in await feed.after(4, 10)] == ["205", "204"]
    finally:
        await feed.close()


async def test_pruning_delivered_alerts_keeps_the_newest_id_so_the_mail_cursor_sees_the_next(tmp_path: Path) -> None:
    """The e-mail digests read alerts after a cursor of outbox ids. Pruning every old delivered alert freed the
    newest id, the next alert took an id at or below the cursor and no digest ever carried it."""
    import time

    from smdrd.journal import Alert
    from smdrd.store.sqlite.schema import connect

    db = tmp_path / "j.db"
    connect(str(db)).close()
    long_ago = int((time.time() - 100 * 86400) * 1_000_000)
    outbox = open_store(db).outbox()
    await outbox.open()
    try:
        await outbox.insert([Alert(f"a{i}", "night_call", "warning", long_ago + i, "{}") for i in range(3)])
        await outbox.mark_delivered([p.row for p in await outbox.pending()])
        assert await outbox.prune(90) == 2  # the newest of the three stays
        await outbox.insert([Alert("new", "night_call", "warning", int(time.time() * 1_000_000), "{}")])
        assert [p.row for p in await outbox.pending()] == [4]
    finally:
        await outbox.close()


async def test_a_duplicate_line_reaches_the_entry_feed_without_its_bytes(tmp_path: Path) -> None:
    """The journal feed hid a line's authorisation code using its own calls' codes; a line stored as a
    duplicate (a PBX re-sending its buffer) has no calls of its own, so its code reached the central in clear.
    Its bytes are the first line's, which the central has (hidden): it goes without them."""
    from smdrd.journal import DUPLICATE

    db = tmp_path / "j.db"
    raw = b"2026/11/20 11:20:00,00:01:00,2,313,O,0012127820962,0012127820962,,0,1900011,0,E313,Eve,T9004,,1,777333"
    record = CallRecord(format="avaya-ipo", start=datetime(2026, 11, 20, 11, 20), duration=60,
                        direction=Direction.OUTBOUND, extension="313", number="0012127820962", auth_code="777333")
    writer = JournalWriter(db, commit_interval=0.001)
    await writer.open()
    task = asyncio.create_task(writer.run())
    for _ in range(2):  # the same line twice: the second is a duplicate
        writer.submit(JournalEntry("pbx", "p", 1, "avaya-ipo", raw, PARSED, None,
                                   (RatedCall("avaya-ipo:same", record, None),), ()))
    await writer.close()
    await task
    feed = open_store(db).call_feed()
    await feed.open()
    try:
        entries = await feed.entries(0, 10)
    finally:
        await feed.close()
    assert [e.fields["status"] for e in entries] == [PARSED, DUPLICATE]
    assert b"777333" not in entries[0].fields["raw"] and entries[0].fields["raw"].endswith(b"******")
    assert entries[1].fields["raw"] == b""
