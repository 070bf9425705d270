"""Sites publish their journals, a central collector stores them: real Mosquitto brokers, real PostgreSQL.

A site's publisher (``[mqtt] publish_journal``) sends every journal entry at least once, in order, from a cursor
saved after the broker's acknowledgement; ``smdrd central`` stores what arrives in PostgreSQL idempotently, with
each call's site in its identity. One broker pair and one PostgreSQL serve the whole module.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from smdrd.central import Collector
from smdrd.config import MqttConfig, Settings
from smdrd.journal import ERROR, PARSED, JournalEntry, RatedCall
from smdrd.mqtt import JOURNAL_FEED, Publisher
from smdrd.rating.tariff import Rating
from smdrd.record import CallRecord, Direction
from smdrd.store import open_store
from smdrd.testing import Broker, Subscriber, config_toml, write_entries
from tests.test_alerts_daemon import require_broker

TZ = ZoneInfo("Europe/London")
DAY = datetime(2026, 3, 2, 9, 0, tzinfo=TZ)


BRIDGE = Path(__file__).resolve().parent.parent / "config" / "mosquitto" / "bridge.conf"
CENTRAL = BRIDGE.parent / "central.conf"


class ConfiguredBroker(Broker):
    """A test `Broker` with a shipped configuration file appended (the bridge, the central broker's)."""

    def __init__(self, directory: Path, extra: str, **options: Any) -> None:
        super().__init__(directory, **options)
        self.extra = extra

    def _write_config(self) -> None:
        super()._write_config()
        # The shipped settings after the test's: a shipped one the test's file also sets wins (max_queued...).
        self.config_path.write_text(self.config_path.read_text() + self.extra)


@pytest.fixture(scope="module")
def central_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """The central broker, with config/mosquitto/central.conf (less persistence: the test's broker has none)."""
    extra = "\n".join(line for line in CENTRAL.read_text().splitlines() if not line.startswith("persistence"))
    b = ConfiguredBroker(tmp_path_factory.mktemp("central-broker"), extra + "\n", binary=require_broker())
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def site_broker(tmp_path_factory: pytest.TempPathFactory, central_broker: Broker) -> Iterator[Broker]:
    """The sites' broker, bridged to the central one by config/mosquitto/bridge.conf (the test's port)."""
    bridge = BRIDGE.read_text().replace("central.example.com:1883", f"{central_broker.host}:{central_broker.port}")
    assert f"{central_broker.port}" in bridge
    b = ConfiguredBroker(tmp_path_factory.mktemp("site-broker"), bridge, binary=require_broker())
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
                        reconnect_min=0.1, reconnect_max=0.5, window=16, confirm_timeout=2)
    publisher = Publisher(config, outbox, feed=feed, site=site)
    task = asyncio.create_task(publisher.run())
    try:
        yield publisher
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await feed.close()
        await outbox.close()


async def rewind(db: Path) -> None:
    """The site's journal feed cursor back at the beginning: its publisher sends the whole journal again."""
    feed = open_store(db).call_feed()
    await feed.open()
    try:
        await feed.save(JOURNAL_FEED, 0)
    finally:
        await feed.close()


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


@pytest.fixture
def central_url(pg_url: str) -> Iterator[str]:
    """`pg_url`, and the sites this test's entries added gone afterwards (the emptied database keeps only the
    local site: other tests count the sites)."""
    yield pg_url
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("TRUNCATE lines, calls, site_confirmed, site_links RESTART IDENTITY CASCADE")
        conn.execute("DELETE FROM sites WHERE id <> 1")


def central_settings(url: str, broker: Broker, client_id: str = "test-central") -> Settings:
    """A collector's settings; its ``client_id`` is a persistent session at the broker, which queues what the
    sites publish while it is away (a test that counts what it stores takes its own)."""
    return Settings.model_validate({
        "database": {"url": url},
        "mqtt": {"host": broker.host, "port": broker.port, "reconnect_min": 0.1, "reconnect_max": 0.5},
        "central": {"client_id": client_id},
    })


@asynccontextmanager
async def collecting(settings: Settings, *, subscribed: bool = True) -> AsyncIterator[Collector]:
    """A collector running in this process (``subscribed``: once it has subscribed)."""
    collector = Collector(settings)
    task = asyncio.create_task(collector.run())
    try:
        if subscribed:
            assert await until(lambda: collector.subscription.connected), "the collector did not subscribe"
        yield collector
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def stored(url: str) -> tuple[int, int]:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT (SELECT count(*) FROM lines), (SELECT count(*) FROM calls)").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


KINDS = ("extensions", "calls", "trunks", "destinations", "days")


async def test_three_sites_through_a_bridge_add_up_in_the_central_store_and_a_replay_adds_nothing(
        tmp_path: Path, site_broker: Broker, central_broker: Broker, central_url: str) -> None:
    pg_url = central_url
    """Three sites with the same extensions (and half their lines byte for byte the same) publish through the
    shipped bridge; the central store's report of each site equals that site's own, call for call and to the
    cent, and its totals are the three sites' sums. A site that publishes its whole journal again (its cursor
    reset) adds no line and no call. Each site hears the collector's confirmed point back through the bridge."""
    names = ("north", "south", "west")
    dbs = {name: tmp_path / f"{name}.db" for name in names}
    for k, name in enumerate(names, 1):
        await write_entries(dbs[name], site_entries(k, 40), site=name)
    async with collecting(central_settings(pg_url, central_broker)) as collector:
        for name in names:
            async with publishing(dbs[name], site_broker, name) as pub:
                assert await until(lambda: pub.stats.entries_published == 40)
                # the collector's confirmed point comes back in through the bridge (its `confirmed/+ in` line)
                assert await until(lambda: pub.confirmation.point == 40, 30), pub.confirmation.heard
        assert await until(lambda: collector.stats.lines == 120), collector.stats
        assert stored(pg_url) == (120, 96)  # every fifth line of each site is an error: 32 calls a site
        for kind in KINDS:
            totals = [report(dbs[name], kind)["totals"] for name in names]
            for name in names:
                assert report(pg_url, kind, sites=(name,)) == report(dbs[name], kind), (kind, name)
            central = report(pg_url, kind)["totals"]
            if isinstance(central, dict):
                for key in ("calls", "duration", "cost"):
                    if key in central:
                        assert central[key] == sum(t[key] for t in totals), (kind, key)  # type: ignore[index]
        await rewind(dbs["south"])  # a replay
        async with publishing(dbs["south"], site_broker, "south") as pub:
            assert await until(lambda: pub.stats.entries_published == 40)
        assert await until(lambda: collector.stats.known == 40), collector.stats
        assert stored(pg_url) == (120, 96)
        assert collector.stats.lines == 120 and collector.stats.rejected == 0


class CentralProcess:
    """``smdrd central`` as systemd runs it: its own process, a configuration file, its log in a file."""

    def __init__(self, folder: Path, url: str, broker: Broker) -> None:
        self.config = folder / "central.toml"
        self.config.write_text(config_toml({
            "database": {"url": url},
            "mqtt": {"host": broker.host, "port": broker.port, "reconnect_min": 0.1, "reconnect_max": 0.5},
            "central": {"client_id": "test-central-process", "batch": 20},
            "logging": {"format": "json"},
        }))
        self.log = folder / "central.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "smdrd", "central", "--config", str(self.config)],
                                            stdout=log, stderr=log)

    def subscriptions(self) -> int:
        return self.log.read_text(errors="replace").count("mqtt.subscribed") if self.log.exists() else 0

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


async def test_a_collector_killed_mid_stream_loses_nothing_and_doubles_nothing(
        tmp_path: Path, site_broker: Broker, central_broker: Broker, central_url: str) -> None:
    pg_url = central_url
    """`smdrd central` SIGKILLed while three sites publish (entries committed to PostgreSQL but not yet
    acknowledged, others queued at the broker), then started again: every entry is stored exactly once, line by
    line, and every call with it."""
    names = ("east", "mid", "far")
    dbs = {name: tmp_path / f"{name}.db" for name in names}
    for k, name in enumerate(names, 4):
        await write_entries(dbs[name], site_entries(k, 150), site=name)
    central = CentralProcess(tmp_path, pg_url, central_broker)
    central.start()
    try:
        assert await until(lambda: central.subscriptions() == 1, 30), central.log.read_text()
        async with publishing(dbs["east"], site_broker, "east") as a, publishing(dbs["mid"], site_broker, "mid") as b:
            assert await until(lambda: stored(pg_url)[0] >= 60, 30)
            central.kill()  # far has not published yet: this is mid-stream whatever the machine's speed
            async with publishing(dbs["far"], site_broker, "far") as c:
                assert await until(lambda: all(p.stats.entries_published == 150 for p in (a, b, c)), 30)
        central.start()
        assert await until(lambda: stored(pg_url)[0] == 450, 60), (stored(pg_url), central.log.read_text()[-2000:])
        await asyncio.sleep(0.5)  # anything delivered twice has been stored (or not) by now
    finally:
        central.kill()
    assert stored(pg_url) == (450, 360)
    import psycopg

    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT s.name, l.site_line, l.raw, l.status, count(c.id) FROM lines l "
                            "JOIN sites s ON s.id = l.site_id LEFT JOIN calls c ON c.line_id = l.id "
                            "GROUP BY s.name, l.site_line, l.raw, l.status ORDER BY s.name, l.site_line").fetchall()
    want = sorted((name, i + 1, e.raw, e.status, len(e.calls))
                  for k, name in enumerate(names, 4) for i, e in enumerate(site_entries(k, 150)))
    assert [(n, int(line), bytes(raw), status, int(calls)) for n, line, raw, status, calls in rows] == want


SITE_CONFIG = """
[site]
name = "{name}"
timezone = "Europe/London"
country = "GB"
[database]
path = "{db}"
[tariff]
currency = "GBP"
decks = ["rates.csv"]
"""

#: an IP Office site's outbound calls: a German number twice, a French one (the same bytes at every site)
SITE_LINES = [
    "2026/03/02 10:00:00,00:02:00,0,214,O,900491701234567,900491701234567,,0,1000001,0,E214,A,T9001,L,0,0",
    "2026/03/02 11:00:00,00:01:30,0,215,O,900491701234568,900491701234568,,0,1000002,0,E215,B,T9001,L,0,0",
    "2026/03/03 09:00:00,00:01:00,0,214,O,90033612345678,90033612345678,,0,1000003,0,E214,A,T9001,L,0,0",
]


def site_config(folder: Path, name: str, rate_de: str) -> Path:
    """Site ``name``'s configuration in ``folder`` (its journal ``calls.db``), German calls at ``rate_de``."""
    folder.mkdir(exist_ok=True)
    (folder / "rates.csv").write_text(f"name,prefix,rate\nGermany,49,{rate_de}\nFrance,33,0.20\n")
    path = folder / "smdrd.toml"
    path.write_text(SITE_CONFIG.format(name=name, db=folder / "calls.db"))
    return path


def revision_cursor(db: Path) -> bool:
    """Whether the site's revision feed has started (its rerates and reparses are recorded from then on)."""
    import sqlite3

    from smdrd.store.api import REVISION_FEED

    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT 1 FROM feed_cursors WHERE name = ?", (REVISION_FEED,)).fetchone() is not None
    finally:
        conn.close()


async def test_a_sites_rerate_and_reparse_reach_the_central_store(
        tmp_path: Path, site_broker: Broker, central_broker: Broker, central_url: str) -> None:
    """A site re-rates its calls after a tariff change, another reparses its journal: each publishes the entries
    it changed again, and the central store's reports of each site equal that site's own again, to the cent
    (the rollups moved, nothing added twice). The commands run as a user runs them (in a thread here: they
    start event loops of their own)."""
    from smdrd.cli import main

    names = ("north", "south")
    configs = {name: site_config(tmp_path / name, name, "0.05") for name in names}
    dbs = {name: tmp_path / name / "calls.db" for name in names}
    log = tmp_path / "smdr.log"
    log.write_text("\r\n".join(SITE_LINES) + "\r\n")
    for name in names:
        assert await asyncio.to_thread(main, ["import", "-q", "--format", "avaya-ipo", "--config",
                                              str(configs[name]), str(log)]) == 0

    def same(kind: str) -> bool:
        return all(report(central_url, kind, sites=(n,)) == report(dbs[n], kind) for n in names)

    async with (collecting(central_settings(central_url, central_broker, "test-central-revisions")) as collector,
                publishing(dbs["north"], site_broker, "north"), publishing(dbs["south"], site_broker, "south")):
        assert await until(lambda: collector.stats.lines == 6), collector.stats
        assert await until(lambda: all(revision_cursor(dbs[n]) for n in names))
        before = report(central_url, "extensions", sites=("south",))["totals"]
        assert all(same(kind) for kind in KINDS)

        site_config(tmp_path / "south", "south", "0.07")  # the tariff changes at south: it re-rates
        assert await asyncio.to_thread(main, ["rerate", "--config", str(configs["south"])]) == 0
        assert await until(lambda: collector.stats.revised == 2, 20), collector.stats  # the German calls
        after = report(central_url, "extensions", sites=("south",))["totals"]
        assert after != before and after == report(dbs["south"], "extensions")["totals"]
        assert all(same(kind) for kind in KINDS)

        site_config(tmp_path / "north", "north", "0.09")  # north reparses its journal (rated anew too)
        assert await asyncio.to_thread(main, ["reparse", "--config", str(configs["north"])]) == 0
        assert await until(lambda: collector.stats.revised == 4, 20), collector.stats  # the German calls' lines
        assert all(same(kind) for kind in KINDS)
        assert report(central_url, "extensions", sites=("north",)) != report(central_url, "extensions",
                                                                             sites=("south",))
    assert stored(central_url) == (6, 6)
    assert collector.stats.lines == 6 and collector.stats.calls == 6 and collector.stats.rejected == 0
