"""The central store's confirmed point of each site's journal feed (`smdrd.store.confirm`, kept by
`smdrd.store.postgres.central.CentralWriter`) and the site's rewind to it (`smdrd.mqtt.Confirmation`).

Whatever order, repeats and gaps the entries arrive in, the point is the end of the longest run of the site's
journal that the central store holds from its start; a gap filled later moves it on. The site goes back to the
point only once it stood still behind acknowledged entries for ``confirm_timeout``, and backs off while it does
not pass the point it went back to."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import aiomqtt
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smdrd import central, mqtt
from smdrd.mqtt import Confirmation, Publisher
from smdrd.mqtt_payloads import confirmed_filter, confirmed_message, confirmed_topic, read_confirmed_message
from smdrd.store.confirm import advance
from smdrd.store.postgres.central import CentralWriter
from smdrd.testing import Broker, PostgresServer, write_entries
from tests.conftest import EMPTY_DATABASE
from tests.test_alerts_daemon import require_broker
from tests.test_central import central_settings, collecting, publishing, site_entries, until

# --- the point, as a pure function -----------------------------------------------------------------------


def journal(gaps: list[int]) -> list[int]:
    """Journal positions with holes in the numbering (ids a site never had: the chain, not the numbers, counts)."""
    out, at = [], 0
    for g in gaps:
        at += 1 + g
        out.append(at)
    return out


def prefix(positions: list[int], held: set[int], start: int = 0) -> int:
    """The end of the longest run of ``positions`` after ``start``, all in ``held`` (``start``: none)."""
    point = start
    for p in positions:
        if p <= start:
            continue
        if p not in held:
            break
        point = p
    return point


class Model:
    """The writer's bookkeeping without PostgreSQL: the point, and the links above it."""

    def __init__(self) -> None:
        self.point = 0
        self.links: dict[int, int] = {}

    def store(self, batch: list[tuple[int, int]]) -> int:
        for position, prev in batch:
            if position > self.point:
                self.links[position] = min(prev, self.links.get(position, prev))
        self.point = advance(self.point, sorted(self.links.items()))
        self.links = {p: v for p, v in self.links.items() if p > self.point}
        return self.point


SENDS = st.lists(st.integers(0, 3), min_size=1, max_size=40).flatmap(
    lambda gaps: st.tuples(st.just(gaps), st.lists(st.lists(st.integers(0, len(gaps) - 1), max_size=15),
                                                   min_size=1, max_size=8)))


@given(SENDS)
def test_the_point_is_the_longest_run_held_from_the_start_whatever_the_order(
        sends: tuple[list[int], list[list[int]]]) -> None:
    gaps, batches = sends
    positions = journal(gaps)
    links = dict(zip(positions, [0, *positions[:-1]], strict=True))  # each entry's prev: the one read before it
    model, held = Model(), set()
    for batch in batches:
        point = model.store([(positions[i], links[positions[i]]) for i in batch])
        held |= {positions[i] for i in batch}
        assert point == prefix(positions, held)
    # the gaps filled later (the site sent again from the point): the point reaches the end
    rest = [(p, links[p]) for p in positions if p not in held]
    assert model.store(rest) == positions[-1]
    assert model.links == {}


@given(st.lists(st.integers(0, 3), min_size=2, max_size=30), st.data())
def test_a_resend_from_the_point_links_on_even_from_inside_a_window(gaps: list[int], data: st.DataObject) -> None:
    """A rewound cursor sends the entry after the point with the point as its prev (not the prev it had first)."""
    positions = journal(gaps)
    lost = data.draw(st.integers(0, len(positions) - 1))
    model = Model()
    first = [(p, prev) for p, prev in zip(positions, [0, *positions[:-1]], strict=True) if p != positions[lost]]
    assert model.store(first) == (positions[lost - 1] if lost else 0)
    point = model.point
    again = [p for p in positions if p > point]
    assert model.store(list(zip(again, [point, *again[:-1]], strict=True))) == positions[-1]


def test_advance_stops_at_a_gap_and_skips_what_it_passed() -> None:
    assert advance(0, [(1, 0), (2, 1), (4, 3)]) == 2
    assert advance(2, [(1, 0), (5, 2), (7, 5)]) == 7
    assert advance(3, []) == 3


# --- the point, in PostgreSQL ------------------------------------------------------------------------------


def entry(site: str, position: int, prev: int | None) -> dict[str, Any]:
    e: dict[str, Any] = {"v": 1, "site": site, "id": position, "source": "pbx", "peer": "10.0.0.9",
                         "received_at": 1_770_000_000_000_000 + position, "format": "avaya-ipo",
                         "raw": f"{site} {position}".encode(), "status": "error", "error": "bad", "calls": []}
    if prev is not None:
        e["prev"] = prev
    return e


async def store_all(url: str, batches: list[list[dict[str, Any]]]) -> list[dict[str, int]]:
    writer = CentralWriter(url)
    await writer.open()
    try:
        return [dict((await writer.store(b)).confirmed_by) for b in batches]
    finally:
        await writer.close()


async def points(url: str) -> dict[str, int]:
    writer = CentralWriter(url)
    await writer.open()
    try:
        return await writer.confirmed()
    finally:
        await writer.close()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(SENDS)
def test_postgresql_keeps_the_point_of_each_site_in_the_batches_transaction(
        postgres: PostgresServer, sends: tuple[list[int], list[list[int]]]) -> None:
    url = postgres.url("smdrd_test")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(EMPTY_DATABASE)
    gaps, batches = sends
    positions = journal(gaps)
    prevs = dict(zip(positions, [0, *positions[:-1]], strict=True))
    held: set[int] = set()
    expected = []
    start: int | None = None  # a site's point starts at the lowest prev of its first batch
    for batch in batches:
        if start is None and batch:
            start = min(prevs[positions[i]] for i in batch)
        held |= {positions[i] for i in batch}
        expected.append(prefix(positions, held, start or 0))
    got = asyncio.run(store_all(url, [[entry(s, positions[i], prevs[positions[i]]) for i in b for s in ("a", "b")]
                                      for b in batches]))
    seen, point = [], 0
    for g in got:  # a batch with no entry of a site says nothing of its point
        assert g.get("a") == g.get("b")
        point = g.get("a", point)
        seen.append(point)
    assert seen == expected
    rest = [entry("a", p, prevs[p]) for p in positions if p not in held]
    asyncio.run(store_all(url, [rest]))
    assert asyncio.run(points(url)).get("a") == positions[-1]
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM site_links l JOIN sites s ON s.id = l.site_id "
                            "WHERE s.name = 'a'").fetchone() == (0,)


def test_entries_without_prev_are_stored_and_unlinked_and_an_upgraded_site_starts_where_it_links(
        pg_url: str) -> None:
    """An old site's payloads (no ``prev``) are stored as ever and give no point; once it upgrades, its point
    starts at the first ``prev`` it sends (what it published before is not the point's to vouch for). A new
    site's first entry has ``prev`` 0: its point starts there, and a gap after it is waited for."""
    got = asyncio.run(store_all(pg_url, [[entry("old", p, None) for p in (1, 2, 3)],
                                         [entry("old", 5, 3), entry("old", 6, 5)],
                                         [entry("new", 1, 0), entry("new", 3, 2)], [entry("new", 2, 1)]]))
    assert got == [{}, {"old": 6}, {"new": 1}, {"new": 3}]
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM lines").fetchone() == (8,)


@pytest.mark.parametrize("history", ["pruned", "fresh-store"])
def test_a_site_without_lines_here_is_not_sent_back_to_the_start(pg_url: str, history: str) -> None:
    """A quiet site whose lines the central retention pruned (it published before its payloads carried
    ``prev``), or a site new to a fresh central store, starts its point at the first ``prev`` it sends: not
    at 0, which would make it send its whole journal again (the pruned lines stored, and their calls added to
    the rollups, a second time)."""
    if history == "pruned":
        asyncio.run(store_all(pg_url, [[entry("quiet", p, None) for p in (1, 2, 3)]]))
        with psycopg.connect(pg_url) as conn:
            conn.execute("DELETE FROM lines")
    got = asyncio.run(store_all(pg_url, [[entry("quiet", 501, 500), entry("quiet", 502, 501)],
                                         [entry("quiet", 504, 503)]]))
    assert got == [{"quiet": 502}, {"quiet": 502}]  # the gap after 502 waits; nothing before 500 is asked for
    assert asyncio.run(points(pg_url)) == {"quiet": 502}


def test_an_entry_refused_for_its_values_is_passed_by_the_point(pg_url: str) -> None:
    async def run() -> dict[str, int]:
        writer = CentralWriter(pg_url)
        await writer.open()
        try:
            await writer.store([entry("s", 1, 0), entry("s", 3, 2)])
            return dict((await writer.store([], passed=[entry("s", 2, 1)])).confirmed_by)
        finally:
            await writer.close()

    assert asyncio.run(run()) == {"s": 3}


# --- the site's side ---------------------------------------------------------------------------------------


def say(c: Confirmation, point: int, cursor: int | None, now: float, collector: str = "central") -> None:
    """``collector`` says ``point`` now (its clock and the site's agree: ``now`` is both)."""
    c.confirmed(collector, point, now, cursor, now=now, wall=now)


def test_the_site_rewinds_after_the_timeout_then_backs_off_until_the_point_passes() -> None:
    c = Confirmation(10.0, longest=60.0)
    assert c.due(50, 0.0, 0.0) is None  # no point known: never
    c.acked(50, 0.0)
    say(c, 20, 50, 1.0)
    assert c.due(50, 10.0, 10.0) is None  # not for the timeout yet
    assert c.due(50, 11.0, 11.0) == 20
    c.rewound(20, 11.0)
    assert c.due(20, 12.0, 12.0) is None  # at the point: nothing to send again
    c.acked(50, 12.0)  # sent again; the point still does not move (the central store away)
    say(c, 20, 50, 13.0)
    assert c.due(50, 21.5, 21.5) is None  # the delay after a rewind
    assert c.due(50, 22.0, 22.0) == 20
    c.rewound(20, 22.0)
    c.acked(50, 22.5)
    assert c.delay == 20.0
    assert c.due(50, 41.0, 41.0) is None
    assert c.due(50, 42.0, 42.0) == 20
    for at in (42.0, 82.0, 142.0, 202.0):
        c.rewound(20, at)
        c.acked(50, at)
    assert c.delay == 60.0  # at most ``longest``
    say(c, 30, 50, 203.0)  # it passed the rewind point: back to the plain timeout, from now
    assert c.delay == 10.0 and c.rewound_to is None
    assert c.due(50, 212.0, 212.0) is None
    assert c.due(50, 213.0, 213.0) == 30


def test_the_site_does_not_rewind_while_the_point_moves_or_is_ahead() -> None:
    c = Confirmation(5.0)
    say(c, 10, 20, 0.0)
    say(c, 15, 25, 4.0)  # moved: counts from now
    assert c.due(25, 8.0, 8.0) is None
    say(c, 25, 25, 8.5)
    assert c.since is None and c.due(25, 100.0, 100.0) is None
    say(c, 40, 30, 101.0)  # a point ahead of the cursor (a restored site journal): no rewind
    assert c.due(30, 500.0, 500.0) is None
    # a restarted daemon: the retained point arrives behind its cursor; it waits the timeout from then
    fresh = Confirmation(5.0)
    say(fresh, 10, 20, 1000.0)
    assert fresh.due(20, 1004.0, 1004.0) is None
    assert fresh.due(20, 1005.0, 1005.0) == 10


#: a collector's point: (point, seconds since it arrived, the site's clock minus the collector's ``at``), away
#: from the freshness window's edge (600 s) by more than the test's 10 s
HEARD = st.tuples(st.integers(0, 100), st.one_of(st.floats(0, 580), st.floats(620, 5000)),
                  st.one_of(st.floats(-580, 580), st.floats(620, 5000), st.floats(-5000, -620)))


@given(st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), HEARD, max_size=4), st.integers(0, 120))
def test_the_site_goes_back_only_to_the_lowest_fresh_point(heard: dict[str, tuple[int, float, float]],
                                                           cursor: int) -> None:
    """Whatever collectors said, when and with whatever clock: the site follows the lowest point of those said
    within the freshness window (of its clock, and of their arrival), and never goes back to a stale one's."""
    now, wall = 10_000.0, 1_770_000_000.0
    c = Confirmation(10.0, fresh=600.0)
    for name, (point, age, skew) in heard.items():
        c.confirmed(name, point, wall - skew, cursor, now=now - age, wall=wall - age)
    fresh = [point for point, age, skew in heard.values() if age <= 600 and abs(skew) <= 600]
    expected = min(fresh) if fresh else None
    assert c.current(now, wall) == expected
    c.settle(cursor, now, wall)
    assert c.due(cursor, now + 10, wall + 10) == (expected if expected is not None and cursor > expected else None)


def test_a_collector_that_stops_saying_its_point_stops_sending_the_site_back() -> None:
    """Two collectors (two stores): the site goes back to the lower point, each store getting what it lacks;
    once the lower one's collector stops saying it (stopped for good, replaced), it goes stale and the site
    follows the other; a cleared topic (an empty retained payload) forgets a collector at once."""
    c = Confirmation(10.0, longest=20.0, fresh=60.0)
    c.acked(50, 0.0)
    say(c, 20, 50, 0.0, "old")
    say(c, 40, 50, 0.0, "new")
    assert c.point == 20
    assert c.due(50, 10.0, 10.0) == 20
    c.rewound(20, 10.0)
    c.acked(50, 10.0)
    for t in range(15, 61, 15):  # only the new one's heartbeats, its point unmoved
        say(c, 40, 50, float(t), "new")
    assert c.point == 20 and c.due(50, 30.0, 30.0) == 20
    c.rewound(20, 30.0)
    c.acked(50, 30.0)
    say(c, 40, 50, 75.0, "new")
    assert c.point == 40  # the old one's 20 stale: the new one's point counts
    assert c.rewound_to is None  # and it passed the rewind point
    assert c.due(50, 84.0, 84.0) is None and c.due(50, 85.0, 85.0) == 40
    c.gone("new", 50, 86.0, 86.0)
    assert c.current(86.0, 86.0) is None and c.due(50, 1000.0, 1000.0) is None
    # the old one's retained point heard again (a reconnection) says nothing: it was said long ago
    c.confirmed("old", 20, 0.0, 50, now=1001.0, wall=1001.0)
    assert c.current(1001.0, 1001.0) is None and c.due(50, 2000.0, 2000.0) is None
    # a collector whose clock is ahead of the site's by more than the window counts no more than a stale one
    c.confirmed("ahead", 5, 3000.0, 50, now=2001.0, wall=2001.0)
    assert c.current(2001.0, 2001.0) is None


def test_each_collector_says_the_point_on_its_own_topic() -> None:
    assert confirmed_topic("smdrd", "hq", "smdrd-central") == "smdrd/hq/confirmed/smdrd-central"
    assert confirmed_topic("smdrd", "hq", "dc/1+#") == "smdrd/hq/confirmed/dc_1__"
    assert confirmed_filter("smdrd", "hq") == "smdrd/hq/confirmed/+"


def test_the_confirmed_payload_round_trips_and_refuses_others() -> None:
    assert read_confirmed_message(confirmed_message("hq", 42, 1_770_000_000.5)) == (42, 1_770_000_000.5)
    for bad in (b"{}", b'{"v": 1, "confirmed": -1, "at": 1}', b'{"v": 1, "confirmed": "3", "at": 1}', b"[]",
                b'{"v": 1, "confirmed": 3}', b'{"v": 1, "confirmed": 3, "at": "now"}'):
        with pytest.raises(ValueError):
            read_confirmed_message(bad)


# --- a real broker that acknowledged entries and forgot them -----------------------------------------------


def central_lines(url: str, site: str) -> list[tuple[int, bytes]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT l.site_line, l.raw FROM lines l JOIN sites s ON s.id = l.site_id "
                            "WHERE s.name = %s ORDER BY l.site_line, l.id", (site,)).fetchall()
    return [(int(i), bytes(raw)) for i, raw in rows]


@pytest.mark.parametrize("site_restarted", [False, True], ids=["site-running", "site-restarted"])
async def test_entries_a_killed_broker_acknowledged_and_forgot_are_sent_again_and_stored_once(
        tmp_path: Path, pg_url: str, site_restarted: bool) -> None:
    """The collector is away (its session queues at the broker); the site publishes 15 entries, each acknowledged
    by the broker; the broker, without persistence, is SIGKILLed and started again: the queue, the session and
    the retained point are gone, and the site's cursor is past them. The collector comes back and says its point
    (10): the site goes back to it after ``confirm_timeout`` and sends the 15 again; each is stored once. The
    same when the site's publisher was restarted meanwhile, with nothing new to send (its saved cursor ahead of
    the point it hears at its start)."""
    broker = Broker(tmp_path / "broker", binary=require_broker())
    broker.start()
    db = tmp_path / "site.db"
    entries = site_entries(3, 25)
    try:
        await write_entries(db, entries[:10], site="lost")
        collector = collecting(central_settings(pg_url, broker, "confirm-central"))
        await collector.__aenter__()  # first: its session queues what the site publishes
        async with publishing(db, broker, "lost") as pub:
            try:
                assert await until(lambda: pub.confirmation.point == 10, 30), pub.confirmation.point
            finally:
                await collector.__aexit__(None, None, None)
            await write_entries(db, entries[10:], site="lost")
            pub.wake(entries=True)
            assert await until(lambda: pub.journal_cursor == 25, 30)  # acknowledged, the cursor saved past them
            assert pub.stats.entries_published == 25
            broker.stop()  # SIGKILL: what it acknowledged and queued for the collector is gone
            broker.start()
            if not site_restarted:
                await stored_again(pg_url, broker, pub)
        if site_restarted:
            async with publishing(db, broker, "lost") as pub:
                await stored_again(pg_url, broker, pub)
        stored = central_lines(pg_url, "lost")
        assert [i for i, _ in stored] == list(range(1, 26))  # each once
        assert [raw for _, raw in stored] == [e.raw for e in entries]
    finally:
        broker.stop()


async def stored_again(pg_url: str, broker: Broker, pub: Publisher) -> None:
    """The collector back: the site's 15 lost entries are sent again, once, and stored."""
    async with collecting(central_settings(pg_url, broker, "confirm-central")):
        assert await until(lambda: len(central_lines(pg_url, "lost")) == 25, 60), \
            f"stored {len(central_lines(pg_url, 'lost'))} of 25; {pub.stats}"
        assert await until(lambda: pub.confirmation.point == 25, 30)
    assert pub.stats.journal_rewinds == 1
    assert pub.stats.entries_resent == 15


async def retained(broker: Broker, topic_filter: str) -> dict[str, bytes]:
    """The retained messages under ``topic_filter`` at ``broker``, by topic."""
    out: dict[str, bytes] = {}
    async with aiomqtt.Client(broker.host, broker.port) as client:
        await client.subscribe(topic_filter, qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                async for message in client.messages:
                    out[message.topic.value] = bytes(message.payload)
    return out


async def test_a_stopped_collectors_retained_point_goes_stale_and_sends_the_site_back_no_more(
        tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A running collector says its point every heartbeat: it stays fresh at the site past the freshness
    window. Stopped (cleanly: its retained point stays, it may come back) with entries beyond the point, it goes
    stale after the window: the site, which went back to it at most while it was fresh, goes back no more (it
    did once an hour for ever). An empty retained payload on its topic forgets it at once."""
    monkeypatch.setattr(central, "CONFIRM_HEARTBEAT", 0.5)
    monkeypatch.setattr(mqtt, "CONFIRM_FRESH", 3.0)
    broker = Broker(tmp_path / "broker", binary=require_broker())
    broker.start()
    db = tmp_path / "site.db"
    entries = site_entries(3, 25)
    try:
        await write_entries(db, entries[:10], site="quiet")
        collector = collecting(central_settings(pg_url, broker, "old-central"))
        await collector.__aenter__()  # first: its session takes what the site publishes
        async with publishing(db, broker, "quiet") as pub:
            try:
                assert await until(lambda: pub.confirmation.point == 10, 30), pub.confirmation.point
                await asyncio.sleep(5.0)  # past the freshness window: the heartbeats keep it
                assert pub.confirmation.point == 10
            finally:
                await collector.__aexit__(None, None, None)
            topic = confirmed_topic("smdrd", "quiet", "old-central")
            assert read_confirmed_message((await retained(broker, "smdrd/quiet/confirmed/+"))[topic])[0] == 10
            await write_entries(db, entries[10:], site="quiet")
            pub.wake(entries=True)
            assert await until(lambda: pub.journal_cursor == 25, 30)
            assert await until(lambda: pub.confirmation.point is None, 10)  # stale
            rewinds = pub.stats.journal_rewinds
            assert rewinds <= 2  # while it was fresh (confirm_timeout 2 s)
            await asyncio.sleep(9.0)  # the backoff would have gone back twice more (after 4 s, 8 s)
            assert pub.stats.journal_rewinds == rewinds
            assert pub.journal_cursor == 25
            assert "old-central" in pub.confirmation.heard
            async with aiomqtt.Client(broker.host, broker.port) as client:  # mosquitto_pub -r -n -t <topic>
                await client.publish(topic, b"", qos=1, retain=True)
            assert await until(lambda: "old-central" not in pub.confirmation.heard, 10)
    finally:
        broker.stop()
