"""Sites publish their journals, a central collector stores them: real Mosquitto brokers, real PostgreSQL.

A site's publisher (``[mqtt] publish_journal``) sends every journal entry at least once, in order, from a cursor
saved after the broker's acknowledgement; ``smdrd central`` stores what arrives in PostgreSQL idempotently, with
each call's site in its identity. One broker pair and one PostgreSQL serve the whole module.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from smdrd.config import MqttConfig
from smdrd.journal import ERROR, PARSED, JournalEntry, RatedCall
from smdrd.mqtt import JOURNAL_FEED, Publisher
from smdrd.rating.tariff import Rating
from smdrd.record import CallRecord, Direction
from smdrd.store import open_store
from smdrd.testing import Broker, Subscriber, write_entries
from tests.test_alerts_daemon import require_broker

TZ = ZoneInfo("Europe/London")
DAY = datetime(2026, 3, 2, 9, 0, tzinfo=TZ)


@pytest.fixture(scope="module")
def site_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = Broker(tmp_path_factory.mktemp("site-broker"), binary=require_broker())
    b.start()
    yield b
    b.stop()


def site_entries(site: int, n: int, *, first: int = 0) -> list[JournalEntry]:
    """``n`` journal entries of site ``site``: every fifth line an error, the others one rated call from
    extensions 201 to 204 (the same numbers at every site). The even lines are the same bytes (and so the same
    uid and start) at every site; the odd ones differ in cost from site to site."""
    out = []
    for i in range(first, first + n):
        raw = f"line {i} of {'any' if i % 2 == 0 else site}".encode()
        if i % 5 == 4:
            out.append(JournalEntry("pbx", "10.0.0.9", 1_770_000_000_000_000 + i, "avaya-ipo", raw, ERROR,
                                    "no such field"))
            continue
        record = CallRecord(format="avaya-ipo", start=DAY + timedelta(minutes=i), duration=60 + i,
                            direction=Direction.OUTBOUND, extension=str(201 + i % 4), number=f"0207946{i:04d}",
                            auth_code="4321", answered=True)
        cost = Decimal("0.10") * (i + 1) + (Decimal(0) if i % 2 == 0 else Decimal("0.01") * site)
        rating = Rating(f"+44207946{i:04d}", "national", "uk", "020", cost, "GBP", "GB")
        out.append(JournalEntry("pbx", "10.0.0.9", 1_770_000_000_000_000 + i, "avaya-ipo", raw, PARSED, None,
                                (RatedCall(f"avaya-ipo:{raw.hex()}", record, rating),)))
    return out


@asynccontextmanager
async def publishing(db: Path, broker: Broker, site: str) -> AsyncIterator[Publisher]:
    """A site's publisher (journal entries only) over its SQLite journal ``db``."""
    store = open_store(db)
    outbox, feed = store.outbox(), store.call_feed()
    await outbox.open()
    await feed.open()
    config = MqttConfig(enabled=True, host=broker.host, port=broker.port, publish_journal=True,
                        reconnect_min=0.1, reconnect_max=0.5, window=16)
    publisher = Publisher(config, outbox, feed=feed, site=site)
    task = asyncio.create_task(publisher.run())
    try:
        yield publisher
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await feed.close()
        await outbox.close()


async def until(condition: object, within: float = 15.0) -> bool:
    for _ in range(int(within / 0.05)):
        if condition():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_site_publishes_every_entry_once_in_order_and_resumes_from_its_saved_cursor(
        tmp_path: Path, site_broker: Broker) -> None:
    """Every line (errors too) reaches <prefix>/<site>/journal/<source> with its status and rated calls, in the
    journal's order, never with an authorisation code; a restarted publisher sends only what came after."""
    db = tmp_path / "a.db"
    entries = site_entries(1, 30)
    await write_entries(db, entries[:20])
    sub = Subscriber(site_broker.host, site_broker.port, ["smdrd/+/journal/+"])
    sub_task = asyncio.create_task(sub.run())
    try:
        await asyncio.wait_for(sub.subscribed.wait(), 10)
        async with publishing(db, site_broker, "hq") as pub:
            assert await until(lambda: pub.stats.entries_published == 20)
        await write_entries(db, entries[20:])
        async with publishing(db, site_broker, "hq") as pub:
            assert await until(lambda: pub.stats.entries_published == 10)
            await asyncio.sleep(0.3)  # a re-send of the first twenty would be counted by now
            assert pub.stats.entries_published == 10
        assert await sub.wait_until(lambda: len(sub.messages) >= 30)
    finally:
        sub_task.cancel()
        await asyncio.gather(sub_task, return_exceptions=True)
    assert {m.topic for m in sub.messages} == {"smdrd/hq/journal/pbx"}
    got = [json.loads(m.payload) for m in sub.messages]
    assert len(got) == 30
    assert [base64.b64decode(g["raw"]) for g in got] == [e.raw for e in entries]
    assert [g["status"] for g in got] == [e.status for e in entries]
    assert all(g["site"] == "hq" and g["v"] == 1 for g in got)
    assert [len(g["calls"]) for g in got] == [len(e.calls) for e in entries]
    assert Decimal(got[0]["calls"][0]["cost"]) == Decimal("0.10")
    assert "4321" not in "".join(m.payload.decode() for m in sub.messages)  # never an authorisation code
    feed = open_store(db).call_feed()
    await feed.open()
    try:
        assert await feed.start_entries(JOURNAL_FEED) == got[-1]["id"]  # saved after the acknowledgement
    finally:
        await feed.close()


def report(database: Path | str, kind: str, **filters: tuple[str, ...]) -> dict[str, object]:
    """The ``kind`` report of March 2026 (every direction), rows and totals as plain data."""
    from smdrd.config import Settings
    from smdrd.reports.queries import DIRECTIONS, Query, context_from, run_report

    ctx = context_from(Settings.model_validate({"site": {"timezone": "Europe/London", "country": "GB"},
                                                "tariff": {"currency": "GBP", "decimals": 2}}))
    reader = open_store(database).reports()
    try:
        r = run_report(reader, Query(kind, DAY.date().replace(day=1), DAY.date().replace(day=31),
                                     directions=DIRECTIONS, page_size=0, **filters), ctx)  # type: ignore[arg-type]
    finally:
        reader.close()
    return {"rows": r.rows, "totals": r.totals}


async def test_a_site_filter_on_a_sites_own_journal_is_its_name_or_nothing(tmp_path: Path) -> None:
    """A site's SQLite journal holds its own site: ``--site`` with its name changes nothing, another name
    leaves nothing (the same filter picks one site out of a central store)."""
    db = tmp_path / "a.db"
    await write_entries(db, site_entries(1, 12), site="hq")
    for kind in ("extensions", "calls", "trunks"):
        everything = report(db, kind)
        assert everything["rows"]
        assert report(db, kind, sites=("hq",)) == everything
        assert not report(db, kind, sites=("branch",))["rows"]
