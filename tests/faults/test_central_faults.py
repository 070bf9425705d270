"""Issue 17's fault drills for many sites into one PostgreSQL: brokers, PostgreSQL and site publishers fail while
sites publish, and the central store is compared line by line with each site's own journal.

Real components throughout: Mosquitto brokers (a central one, and site brokers bridged to it by the shipped
config/mosquitto/bridge.conf, each keeping a persistence file as a production broker does), the session's
PostgreSQL (tests/conftest.py), the collector (`smdrd.central.Collector`) and site publishers
(`smdrd.mqtt.Publisher` over a SQLite journal, as the site daemon runs it). The collector's SIGKILL is in
tests/test_central.py; the other drills are here. Sizes shrink under ``SMDRD_FAULTS_SHORT=1``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest

from smdrd.journal import DUPLICATE
from smdrd.mqtt import Publisher
from smdrd.testing import Broker, PostgresServer, free_port, write_entries
from tests.faults.conftest import compare_ledger, scaled
from tests.test_alerts_daemon import require_broker
from tests.test_central import (
    BRIDGE,
    CENTRAL,
    ConfiguredBroker,
    central_settings,
    collecting,
    publishing,
    site_entries,
    until,
)

#: the long form's broker outage is a minute, and its backlogs take minutes to drain on a loaded machine
pytestmark = [pytest.mark.faults, pytest.mark.timeout(scaled(900, 120))]


#: Mosquitto saves its persistence file after every change, not every second: a SIGKILL then forgets nothing it
#: acknowledged (docs/central.md). It rewrites the whole file per queued message: only the site broker drill has it.
SAVE_EVERY_CHANGE = "autosave_on_changes true\nautosave_interval 1\n"


@contextmanager
def saving_every_change(broker: ConfiguredBroker) -> Iterator[None]:
    """``broker`` restarted cleanly (SIGTERM: its sessions saved) to save after every change, and back after."""
    plain = broker.extra
    broker.stop(signal.SIGTERM)
    broker.extra = plain + SAVE_EVERY_CHANGE
    broker.start()
    try:
        yield
    finally:
        broker.stop(signal.SIGTERM)
        broker.extra = plain
        broker.start()


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConfiguredBroker]:
    """The central broker with config/mosquitto/central.conf and a persistence file (saved every second)."""
    extra = "\n".join(line for line in CENTRAL.read_text().splitlines() if not line.startswith("persistence"))
    b = ConfiguredBroker(tmp_path_factory.mktemp("central"), extra + "\n", persistence=True,
                         binary=require_broker())
    b.start()
    yield b
    b.stop()


def bridged(folder: Path, central: Broker, name: str, *, via: int | None = None) -> ConfiguredBroker:
    """A site's broker, persistent, bridged to ``central`` by config/mosquitto/bridge.conf (one connection name
    per site, as the file says); through the port ``via`` (a `Wan` link) if given."""
    bridge = (BRIDGE.read_text().replace("central.example.com:1883", f"{central.host}:{via or central.port}")
              .replace("smdrd-central-SITE", f"smdrd-central-{name}"))
    b = ConfiguredBroker(folder, bridge, persistence=True, binary=require_broker())
    b.start()
    return b


@pytest.fixture(scope="module")
def site_a(tmp_path_factory: pytest.TempPathFactory, central: Broker) -> Iterator[Broker]:
    b = bridged(tmp_path_factory.mktemp("site-a"), central, "a")
    yield b
    b.stop()


@pytest.fixture(scope="module")
def site_b(tmp_path_factory: pytest.TempPathFactory, central: Broker) -> Iterator[Broker]:
    b = bridged(tmp_path_factory.mktemp("site-b"), central, "b")
    yield b
    b.stop()


class Wan:
    """The WAN between a site's broker and the central one: a TCP relay on loopback that the test can cut (every
    connection through it dropped mid-stream, new ones refused) and restore, with both brokers running."""

    def __init__(self, central: Broker) -> None:
        self.central = central
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.links: set[asyncio.StreamWriter] = set()
        self.relayed = 0

    async def up(self) -> None:
        self.server = await asyncio.start_server(self._link, "127.0.0.1", self.port)

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        self.server = None
        for writer in list(self.links):
            writer.transport.abort()  # no goodbye: what was in flight is lost on the wire
        self.links.clear()

    async def _link(self, site_r: asyncio.StreamReader, site_w: asyncio.StreamWriter) -> None:
        central_r, central_w = await asyncio.open_connection(self.central.host, self.central.port)
        self.links |= {site_w, central_w}

        async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter, count: bool) -> None:
            with contextlib.suppress(OSError):
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
                    if count:
                        self.relayed += len(data)
            w.transport.abort()

        await asyncio.gather(pipe(site_r, central_w, True), pipe(central_r, site_w, False))
        self.links -= {site_w, central_w}


# --- the judge: a site's journal against the central store, line by line ---------------------------------------


def _row(line: int, raw: bytes, status: str, calls: int) -> bytes:
    return f"{line}|{status}|{calls}|".encode() + raw


def site_journal(db: Path) -> list[bytes]:
    """Every line of a site's SQLite journal with its id, status and number of calls, in journal order, as the
    central should hold it: a duplicate line is published without its bytes (the first line's, which may hold an
    authorisation code the duplicate cannot hide)."""
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT l.id, l.raw, l.status, (SELECT count(*) FROM calls c WHERE c.line_id = l.id) "
                            "FROM lines l ORDER BY l.id").fetchall()
    finally:
        conn.close()
    return [_row(int(i), b"" if status == DUPLICATE else bytes(raw), status, int(n)) for i, raw, status, n in rows]


def central_journal(url: str, site: str) -> list[bytes]:
    """What the central store holds for ``site``, the same way, by the line's id in the site's journal."""
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT l.site_line, l.raw, l.status, (SELECT count(*) FROM calls c "
                            "WHERE c.line_id = l.id) FROM lines l JOIN sites s ON s.id = l.site_id "
                            "WHERE s.name = %s ORDER BY l.site_line, l.id", (site,)).fetchall()
    return [_row(int(i), bytes(raw), status, int(n)) for i, raw, status, n in rows]


def central_count(url: str, site: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM lines l JOIN sites s ON s.id = l.site_id WHERE s.name = %s",
                           (site,)).fetchone()
    return int(row[0]) if row else 0


class Site:
    """A site's journal growing as calls end: ``write`` journals the next entries and wakes the publisher."""

    def __init__(self, folder: Path, name: str, number: int) -> None:
        self.name = name
        self.number = number
        self.db = folder / f"{name}.db"
        self.publisher: Publisher | None = None

    @property
    def written(self) -> int:
        """Lines in the site's journal (a write cancelled after its commit counts)."""
        if not self.db.exists():
            return 0
        conn = sqlite3.connect(self.db)
        try:
            return int(conn.execute("SELECT count(*) FROM lines").fetchone()[0])
        finally:
            conn.close()

    async def write(self, n: int) -> None:
        await write_entries(self.db, site_entries(self.number, n, first=self.written), site=self.name)
        if self.publisher is not None:
            self.publisher.wake(entries=True)

    async def produce(self, per_chunk: int, gap: float) -> None:
        """Live calls, ``per_chunk`` every ``gap`` seconds, until cancelled."""
        while True:
            await self.write(per_chunk)
            await asyncio.sleep(gap)

    @asynccontextmanager
    async def publishing(self, broker: Broker) -> AsyncIterator[Publisher]:
        async with publishing(self.db, broker, self.name) as pub:
            self.publisher = pub
            try:
                yield pub
            finally:
                self.publisher = None


@asynccontextmanager
async def producing(site: Site, per_chunk: int = 10, gap: float = 0.1) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(site.produce(per_chunk, gap))
    try:
        yield task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def all_stored(url: str, sites: list[Site], within: float = scaled(300, 30)) -> None:
    """Wait until PostgreSQL has as many lines of each site as it journalled, then compare them line by line
    (after the time is up, too: the difference says what is missing)."""
    if await until(lambda: all(central_count(url, s.name) >= s.written for s in sites), within):
        await asyncio.sleep(0.5)  # anything delivered twice has been stored (or not) by now
    for s in sites:
        journal = site_journal(s.db)
        assert len(journal) == s.written, s.name
        compare_ledger(journal, central_journal(url, s.name), f"site {s.name} into PostgreSQL")


# --- the drills ----------------------------------------------------------------------------------------------


async def test_the_central_broker_killed_for_a_while_loses_and_doubles_nothing(
        tmp_path: Path, central: ConfiguredBroker, site_a: Broker, pg_url: str) -> None:
    """Two sites publish live calls, one through its bridged broker, one directly; the central broker (saving
    every second, as the fixture's) is SIGKILLed, stays down (a minute; 10 s in the short form) while they keep
    journalling and publishing, and comes back from its persistence file. The bridge holds what its broker
    acknowledged, the collector's session is restored, and what the broker acknowledged after its last save
    (lost with it) is sent again by its site once the central store's confirmed point shows it missing: every
    entry of both sites is in PostgreSQL once."""
    north, south = Site(tmp_path, "k-north", 1), Site(tmp_path, "k-south", 2)
    down = scaled(60, 10)
    await broker_killed(central, site_a, pg_url, north, south, down=down)


async def broker_killed(central: Broker, site_a: Broker, pg_url: str, north: Site, south: Site, *,
                        down: int) -> None:
    async with collecting(central_settings(pg_url, central)) as collector, \
            north.publishing(site_a), south.publishing(central), \
            producing(north), producing(south, per_chunk=5):
        assert await until(lambda: central_count(pg_url, north.name) >= 50, 30)
        central.stop()  # SIGKILL
        before = north.written + south.written
        await asyncio.sleep(down)
        assert north.written + south.written > before, "the sites stopped journalling while the broker was down"
        central.start()
        await asyncio.sleep(2.0)  # live calls after the restart too
    async with collecting(central_settings(pg_url, central)), north.publishing(site_a) as pn, \
            south.publishing(central) as ps:
        await all_stored(pg_url, [north, south])
        print(f"rewinds: north {pn.stats.journal_rewinds} ({pn.stats.entries_resent} again), "
              f"south {ps.stats.journal_rewinds} ({ps.stats.entries_resent} again)")
    print(f"collector: {collector.stats}")


async def test_postgresql_restarted_mid_stream_loses_and_doubles_nothing(
        tmp_path: Path, central: Broker, site_a: Broker, postgres: PostgresServer, pg_url: str) -> None:
    """Two sites' backlogs stream into the collector; PostgreSQL is stopped (``pg_ctl stop -m fast``: the
    collector's connection is cut mid-batch) and started 2 s later, the sites journalling more calls
    meanwhile (on a fast machine the backlog alone could be stored before the stop took effect, and nothing
    would be retried). The collector retries the same batch, acknowledging nothing meanwhile: every entry is
    stored once."""
    n = scaled(3000, 1000)
    east, west = Site(tmp_path, "p-east", 3), Site(tmp_path, "p-west", 4)
    await east.write(n)
    await west.write(n)
    async with collecting(central_settings(pg_url, central)) as collector, \
            east.publishing(site_a), west.publishing(central):
        assert await until(lambda: central_count(pg_url, east.name) >= n // 10, 30)
        postgres.stop("fast")
        for _ in range(4):
            await east.write(25)
            await west.write(25)
            await asyncio.sleep(0.5)
        postgres.start()
        await all_stored(pg_url, [east, west])
    print(f"collector: {collector.stats}")
    assert collector.stats.retries >= 1, "the restart was not felt"


async def test_a_site_publisher_restarted_with_unpublished_entries_sends_each_once(
        tmp_path: Path, central: Broker, site_a: ConfiguredBroker, pg_url: str) -> None:
    """A site's broker is SIGKILLed while the site publishes its backlog (a window of entries in flight); the
    site keeps journalling calls its publisher cannot send; the site daemon is stopped, the broker comes back,
    the daemon starts again: it sends from its saved cursor (moved only past what the broker acknowledged), and
    every entry, those before the outage and those journalled during it, is in PostgreSQL once."""
    hq = Site(tmp_path, "r-hq", 5)
    n = scaled(3000, 1000)
    await hq.write(n)
    with saving_every_change(site_a):
        async with collecting(central_settings(pg_url, central)):
            async with hq.publishing(site_a) as pub:
                assert await until(lambda: pub.stats.entries_published >= 100, 30)
                site_a.stop()  # SIGKILL
                assert await until(lambda: not pub.connected, 10)
                published = pub.stats.entries_published
                await hq.write(scaled(2000, 300))
                await asyncio.sleep(0.5)  # the publisher keeps trying, in vain
                assert pub.stats.entries_published == published, "published into a dead broker"
            print(f"{published} of {n} entries published when the site's broker was killed")
            assert published < n, "the broker was not killed mid-stream"
            site_a.start()
            async with hq.publishing(site_a):
                await all_stored(pg_url, [hq])


async def test_a_site_cut_off_for_many_calls_catches_up_while_another_site_keeps_flowing(
        tmp_path: Path, central: Broker, site_a: Broker, site_b: Broker, pg_url: str) -> None:
    """Site "cut" loses its broker (so its link to the central one) for the length of 10,000 calls (1,000 in
    the short form), journalled meanwhile; site "live" keeps publishing through its own bridged broker. Its
    calls reach PostgreSQL during the cut-off (they never wait for the other site's backlog); when the link
    returns the backlog arrives whole, once, while the live calls go on."""
    cut, live = Site(tmp_path, "c-cut", 6), Site(tmp_path, "c-live", 7)
    n = scaled(10_000, 1_000)
    await cut.write(50)
    async with collecting(central_settings(pg_url, central)) as collector, \
            cut.publishing(site_b), live.publishing(site_a), producing(live):
        assert await until(lambda: central_count(pg_url, cut.name) == 50, 30)
        site_b.stop()  # SIGKILL: the site is cut off
        live_at_cut = live.written
        for _ in range(10):
            await cut.write(n // 10)  # the calls of the cut-off
        assert await until(lambda: central_count(pg_url, live.name) >= live_at_cut + 20, 30), \
            "the live site's calls did not arrive while the other site was cut off"
        during = central_count(pg_url, live.name) - live_at_cut
        assert central_count(pg_url, cut.name) == 50
        site_b.start()
        assert await until(lambda: central_count(pg_url, cut.name) >= cut.written, 60)
        live_at_end = live.written
    print(f"during the cut-off {during} live entries stored; {n} entries of backlog; collector: {collector.stats}")
    async with collecting(central_settings(pg_url, central)), live.publishing(site_a):
        await all_stored(pg_url, [cut, live])
    assert live.written == live_at_end


async def test_the_wan_cut_between_bridged_brokers_loses_and_doubles_nothing(
        tmp_path: Path, central: Broker, site_a: Broker, pg_url: str) -> None:
    """A site's broker reaches the central one over a WAN link that is cut mid-stream (connections dropped with
    entries in flight, new ones refused) while both brokers and the site's daemon keep running, for the length
    of 10,000 calls (1,000 in the short form); another site publishes live throughout. The site broker keeps
    acknowledging (the site's cursor moves on and nothing waits at the site's daemon), its bridge queues; when
    the link returns the bridge delivers the queue and re-sends what was in flight: every entry once."""
    wan = Wan(central)
    await wan.up()
    broker = bridged(tmp_path / "wan-site", central, "wan", via=wan.port)
    far, near = Site(tmp_path, "w-far", 8), Site(tmp_path, "w-near", 9)
    n = scaled(10_000, 1_000)
    try:
        async with collecting(central_settings(pg_url, central)) as collector, \
                far.publishing(broker) as pub, near.publishing(site_a), producing(far, per_chunk=5), \
                producing(near):
            assert await until(lambda: central_count(pg_url, far.name) >= 100, 30)
            await wan.cut()
            stored_at_cut, near_at_cut = central_count(pg_url, far.name), near.written
            for _ in range(10):
                await far.write(n // 10)  # the calls of the cut, beside the live ones
            assert await until(lambda: pub.stats.entries_published >= far.written, 60), \
                "the site's broker stopped acknowledging while the WAN was down"
            assert await until(lambda: central_count(pg_url, near.name) >= near_at_cut + 20, 30), \
                "the other site's calls did not arrive during the cut"
            behind = far.written - central_count(pg_url, far.name)
            assert behind >= n, f"the cut did not hold: {behind} entries behind"
            await wan.up()
            back = time.monotonic()
            assert await until(lambda: central_count(pg_url, far.name) >= far.written, scaled(300, 90)), \
                "the bridge did not deliver its queue after the link returned"
            caught_up = time.monotonic() - back
        print(f"{stored_at_cut} stored at the cut, {behind} behind at its end, caught up {caught_up:.1f} s after "
              f"the link returned; collector: {collector.stats}")
        # the entries journalled after the catch-up, before the producers stopped, are published now
        async with collecting(central_settings(pg_url, central)), far.publishing(broker), near.publishing(site_a):
            await all_stored(pg_url, [far, near])
    finally:
        broker.stop()
        if wan.server is not None:
            await wan.cut()
