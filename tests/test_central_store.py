"""The central writer (`smdrd.store.postgres.central.CentralWriter`) on a real PostgreSQL: whatever mix of new
entries, entries repeated inside one batch and entries stored by an earlier batch it is given, each entry is one
line, each call one call, and every rollup holds exactly the sums of the calls stored, site by site."""

from __future__ import annotations

import asyncio
import copy
import tempfile
from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smdrd.journal import ERROR, PARSED, JournalEntry, RatedCall
from smdrd.mqtt_payloads import encode, journal_message, read_journal_message
from smdrd.rating.tariff import Rating
from smdrd.record import CallRecord, Direction
from smdrd.store import open_store
from smdrd.store.postgres.central import CentralWriter
from smdrd.store.rollups import ROLLUPS
from smdrd.testing import PostgresServer, write_entries
from tests.conftest import EMPTY_DATABASE

TZ = ZoneInfo("Europe/London")
DAY = datetime(2026, 3, 2, 9, 0, tzinfo=TZ)
SITES = ("north", "south")
#: entries per site in the pool the batches draw from
PER_SITE = 12


def site_entries(site: int) -> list[JournalEntry]:
    """Site ``site``'s journal: extensions 201 to 203 at both sites, every fourth line an error, every fifth call
    a second leg (a transfer: counted by duration and cost, not as a call), costs differing by site."""
    out = []
    for i in range(PER_SITE):
        raw = f"{site} line {i}".encode()
        if i % 4 == 3:
            out.append(JournalEntry("pbx", "10.0.0.9", 1_770_000_000_000_000 + i, "avaya-ipo", raw, ERROR, "bad"))
            continue
        record = CallRecord(format="avaya-ipo", start=DAY + timedelta(minutes=7 * i), duration=30 + i,
                            direction=Direction.OUTBOUND, extension=str(201 + i % 3), number=f"0207946{i:04d}",
                            answered=True, leg=1 if i % 5 == 4 else 0)
        rating = Rating(f"+44207946{i:04d}", "national", "uk", "020", Decimal("0.07") * (i + 1) + site,
                        "GBP", "GB")
        out.append(JournalEntry("pbx", "10.0.0.9", 1_770_000_000_000_000 + i, "avaya-ipo", raw, PARSED, None,
                                (RatedCall(f"avaya-ipo:{raw.hex()}", record, rating),)))
    return out


async def published(folder: Path) -> list[bytes]:
    """Every entry of both sites as its publisher sends it (read from its SQLite journal, encoded)."""
    out = []
    for k, name in enumerate(SITES):
        await write_entries(folder / f"{name}.db", site_entries(k), site=name)
        feed = open_store(folder / f"{name}.db").call_feed()
        await feed.open()
        out += [encode(journal_message(name, e.fields)) for e in await feed.entries(0, 100)]
        await feed.close()
    return out


@pytest.fixture(scope="module")
def pool() -> list[bytes]:
    with tempfile.TemporaryDirectory() as folder:
        return asyncio.run(published(Path(folder)))


async def store_batches(url: str, batches: list[list[dict[str, Any]]], *, calls_days: int = 0) -> Counter[str]:
    """Each batch through one writer (of a store keeping details ``calls_days``), in turn; its counts summed."""
    totals: Counter[str] = Counter()
    writer = CentralWriter(url, calls_days=calls_days)
    await writer.open()
    try:
        for batch in batches:
            result = await writer.store(batch)
            totals.update(lines=result.lines, calls=result.calls, known=result.known)
    finally:
        await writer.close()
    return totals


def sums(conn: psycopg.Connection[Any], table: str) -> dict[str, tuple[int, int, int]]:
    """Site name -> (calls, duration, cost_micros) as ``table`` (a rollup, or ``calls`` summed as they do)."""
    calls = "count(*) FILTER (WHERE leg = 0)" if table == "calls" else "sum(calls)"
    cost = "coalesce(sum(cost_micros), 0)"
    rows = conn.execute(f"SELECT s.name, {calls}, sum(duration), {cost} FROM {table} t JOIN sites s "
                        f"ON s.id = t.site_id GROUP BY s.name").fetchall()
    return {str(r[0]): (int(r[1]), int(r[2]), int(r[3])) for r in rows}


# Batches as indices into the pool: repeats inside a batch and across batches are what is tested.
BATCHES = st.lists(st.lists(st.integers(0, 2 * PER_SITE - 1), min_size=1, max_size=30), min_size=1, max_size=5)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=BATCHES)
def test_entries_repeated_inside_a_batch_and_across_batches_are_stored_once_with_exact_rollups(
        postgres: PostgresServer, pool: list[bytes], batches: list[list[int]]) -> None:
    url = postgres.url("smdrd_test")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(EMPTY_DATABASE)
    # Each delivery decoded anew, as the collector does for every message (a re-delivery is a new payload).
    totals = asyncio.run(store_batches(url, [[read_journal_message(pool[i]) for i in b] for b in batches]))

    distinct = {i for b in batches for i in b}
    expected: dict[str, tuple[int, int, int]] = {}
    expected_calls = 0
    for i in distinct:
        entry = read_journal_message(pool[i])
        for c in entry["calls"]:
            expected_calls += 1
            n, talk, micros = expected.get(entry["site"], (0, 0, 0))
            expected[entry["site"]] = (n + (c["leg"] == 0), talk + c["duration"],
                                       micros + int(Decimal(c["cost"]) * 1_000_000))
    assert totals == Counter(lines=len(distinct), calls=expected_calls,
                             known=sum(map(len, batches)) - len(distinct))
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT (site_id, site_line)) FROM lines").fetchone()
        assert row == (len(distinct), len(distinct))
        row = conn.execute("SELECT count(*) FROM calls").fetchone()
        assert row == (expected_calls,)
        # Every call under its own site (extension 201 of north is not extension 201 of south).
        assert sums(conn, "calls") == expected
        for rollup in ROLLUPS:
            assert sums(conn, rollup.table) == expected, rollup.table


def revision_of(message: dict[str, Any], r: int) -> dict[str, Any]:
    """Entry ``message`` as its site publishes it after its ``r``-th re-rate or reparse (0: as first published):
    revision 1 re-rates its calls (other costs); revision 2 re-rates them into another class, and a reparse
    leaves every third line without its calls (an error now)."""
    if r == 0:
        return message
    m = copy.deepcopy(message)
    m["revision"] = r
    for c in m["calls"]:
        c["cost"] = str(Decimal(c["cost"]) * (r + 1) + Decimal("0.01") * r)
        if r == 2:
            c["call_class"] = "mobile"
    if r == 2 and m["id"] % 3 == 0:
        m["calls"], m["status"], m["error"] = [], ERROR, "reparsed: no such field"
    return m


# Deliveries as (index into the pool, revision): any order, repeats, old revisions after new ones.
REVISED_BATCHES = st.lists(st.lists(st.tuples(st.integers(0, 2 * PER_SITE - 1), st.integers(0, 2)),
                                    min_size=1, max_size=30), min_size=1, max_size=5)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=REVISED_BATCHES)
def test_revisions_in_any_order_leave_each_line_at_its_highest_revision_with_exact_rollups(
        postgres: PostgresServer, pool: list[bytes], batches: list[list[tuple[int, int]]]) -> None:
    """A site's rerate or reparse publishes the entries it changed again, with a revision: whatever order the
    original and its revisions arrive in, and however often, each line ends as its highest revision delivered,
    and every rollup holds the sums of exactly those calls (no key left at zero)."""
    url = postgres.url("smdrd_test")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(EMPTY_DATABASE)
    totals = asyncio.run(store_batches(url, [[revision_of(read_journal_message(pool[i]), r) for i, r in b]
                                             for b in batches]))

    highest: dict[int, int] = {}
    for b in batches:
        for i, r in b:
            highest[i] = max(highest.get(i, 0), r)
    expected: dict[str, tuple[int, int, int]] = {}
    expected_lines = set()
    for i, r in highest.items():
        entry = revision_of(read_journal_message(pool[i]), r)
        expected_lines.add((entry["site"], entry["id"], entry["status"], r))
        for c in entry["calls"]:
            n, talk, micros = expected.get(entry["site"], (0, 0, 0))
            expected[entry["site"]] = (n + (c["leg"] == 0), talk + c["duration"],
                                       micros + int(Decimal(c["cost"]) * 1_000_000))
    assert totals["lines"] == len(highest)
    with psycopg.connect(url) as conn:
        lines = conn.execute("SELECT s.name, l.site_line, l.status, l.revision FROM lines l JOIN sites s "
                             "ON s.id = l.site_id").fetchall()
        assert {(str(a), int(b), str(c), int(d)) for a, b, c, d in lines} == expected_lines
        assert len(lines) == len(expected_lines)
        assert sums(conn, "calls") == {k: v for k, v in expected.items() if v != (0, 0, 0)}
        for rollup in ROLLUPS:
            assert sums(conn, rollup.table) == sums(conn, "calls"), rollup.table
            zero = conn.execute(f"SELECT count(*) FROM {rollup.table} WHERE calls = 0 AND duration = 0 "
                                f"AND cost_micros = 0").fetchone()
            assert zero == (0,), rollup.table
        classes = conn.execute("SELECT DISTINCT call_class FROM rollup_daily").fetchall()
        assert {c for (c,) in classes} == {c for (c,) in conn.execute("SELECT DISTINCT call_class FROM calls")}


def test_a_call_a_reparse_moved_to_another_line_is_kept_whatever_the_batches(
        postgres: PostgresServer, pool: list[bytes]) -> None:
    """A reparse at the site moves call c from line B to line A (a PBX's re-sent buffer: the same bytes twice):
    the site records A's revision before B's, and the collector may take them in separate batches. A's revision
    takes c from B (one call, counted once), and B's, without c, leaves it on A."""
    url = postgres.url("smdrd_test")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(EMPTY_DATABASE)
    a, b = read_journal_message(pool[0]), read_journal_message(pool[1])
    assert a["calls"] and b["calls"] and a["site"] == b["site"]
    moved = b["calls"][0]
    a1 = copy.deepcopy(a)
    a1["revision"], a1["calls"] = 1, [*a["calls"], moved]
    b2 = copy.deepcopy(b)
    b2["revision"], b2["calls"] = 2, []
    for batches in ([[a, b], [a1], [b2]], [[a, b], [b2], [a1]], [[a, b, a1, b2]]):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(EMPTY_DATABASE)
        asyncio.run(store_batches(url, batches))
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM calls WHERE uid = %s", (moved["uid"],)).fetchone() == (1,)
            cost = sum(int(Decimal(c["cost"]) * 1_000_000) for c in a1["calls"])
            assert sums(conn, "calls")[a["site"]][2] == cost
            for rollup in ROLLUPS:
                assert sums(conn, rollup.table) == sums(conn, "calls"), (batches, rollup.table)


def test_a_revision_older_than_the_stores_call_retention_is_not_applied(
        postgres: PostgresServer, pool: list[bytes]) -> None:
    """The central store's retention deleted a line's calls (their figures stay in the rollups); the site, which
    keeps its details longer, re-rates that old range: the revision is not applied (there is nothing to take
    away), so the rollups count the call once, at the figures first published."""
    from smdrd.store.postgres.retention import PgRetention

    url = postgres.url("smdrd_test")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(EMPTY_DATABASE)
    a = read_journal_message(pool[0])
    asyncio.run(store_batches(url, [[a]]))
    with psycopg.connect(url) as conn:
        before = sums(conn, "rollup_daily")
    retention = PgRetention(url)
    try:
        assert retention.prune_calls_batch(2**40, 1000) == len(a["calls"])
    finally:
        retention.close()
    a1 = copy.deepcopy(a)
    a1["revision"] = 1
    for c in a1["calls"]:
        c["cost"] = str(Decimal(c["cost"]) * 2)
    totals = asyncio.run(store_batches(url, [[a1]], calls_days=30))  # the line is months older than that
    assert totals["known"] == 1
    with psycopg.connect(url) as conn:
        assert sums(conn, "rollup_daily") == before
        assert conn.execute("SELECT revision FROM lines").fetchall() == [(0,)]
