"""bench/pg.py's fast load (`smdrd.store.postgres.bulk.fast_load`) leaves a store whose every report equals the one
the journal writer leaves for the same calls, and whose rollups equal a GROUP BY over the calls."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bench.reports import YEAR, call_rows, settings
from smdrd.journal import JournalEntry
from smdrd.reports.queries import KINDS, context_from, every_row, parse_query
from smdrd.store.postgres.bulk import check_rollups, count_rows, fast_load
from smdrd.store.postgres.connect import aconnect, connect
from smdrd.store.postgres.reports import PgReports
from smdrd.store.postgres.writer import store_batch
from smdrd.store.sqlite.rows import PreparedEntry
from smdrd.testing import PostgresServer

CALLS = 3000


@pytest.fixture
def two_databases(postgres: PostgresServer) -> Iterator[tuple[str, str]]:
    """Two empty databases of their own: one for the journal writer, one for the fast load."""
    names = ("smdrd_bench_writer", "smdrd_bench_fast")
    urls = tuple(postgres.create_database(name) for name in names)
    yield urls[0], urls[1]
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        for name in names:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def through_writer(url: str) -> None:
    conn = await aconnect(url)
    try:
        pending = [PreparedEntry(JournalEntry("bench", "", 1_700_000_000_000_000 + n, "bench", b"x", "parsed"), (row,))
                   for n, row in enumerate(call_rows(CALLS))]
        for i in range(0, len(pending), 1000):
            await store_batch(conn, pending[i:i + 1000])
    finally:
        await conn.close()


def reports(url: str) -> list[tuple[str, str, Any, Any]]:
    """Every report kind for June and for the year, whole (every section's every row, as an export reads it)."""
    ctx = context_from(settings(Path("unused.db")))
    out: list[tuple[str, str, Any, Any]] = []
    for kind in KINDS:
        for first, last in ((f"{YEAR}-06-01", f"{YEAR}-06-30"), (f"{YEAR}-01-01", f"{YEAR}-12-31")):
            reader = PgReports(url)
            try:
                rep = every_row(reader, parse_query({"kind": [kind], "from": [first], "to": [last]}, ctx), ctx)
                out.append((kind, first, rep.totals, [(s.name, s.key, list(s.rows), s.totals)
                                                      for s in rep.sections or ()]))
            finally:
                reader.close()
    return out


async def test_fast_load_reports_equal_the_journal_writers(two_databases: tuple[str, str]) -> None:
    writer_url, fast_url = two_databases
    await through_writer(writer_url)
    with connect(fast_url) as conn:
        assert fast_load(conn, call_rows(CALLS)) == CALLS
        fast_counts = count_rows(conn)
        checked = check_rollups(conn, (f"{YEAR}-03", f"{YEAR}-10"))
    with connect(writer_url) as conn:
        assert count_rows(conn) == fast_counts
        assert check_rollups(conn, (f"{YEAR}-03", f"{YEAR}-10")) == checked
    assert fast_counts[0] == CALLS
    assert all(compared > 0 and differ == 0 for compared, differ in checked.values()), checked
    expected = reports(writer_url)
    assert all(r[2] and r[2]["calls"] for r in expected), expected  # every report holds calls
    assert reports(fast_url) == expected


def test_check_rollups_finds_a_rollup_row_that_is_off(pg_url: str) -> None:
    with connect(pg_url) as conn:
        fast_load(conn, call_rows(500))
        assert all(d == 0 for _, d in check_rollups(conn, (f"{YEAR}-03",)).values())
        with conn.cursor() as cur:  # a test may poke the store's tables to make one figure wrong
            cur.execute("UPDATE rollup_daily SET duration = duration + 1 "
                        "WHERE ctid = (SELECT ctid FROM rollup_daily WHERE day LIKE '2026-03%' LIMIT 1)")
        found = check_rollups(conn, (f"{YEAR}-03",))
    assert found["rollup_daily"][1] == 2  # the row as it is and as the calls make it
    assert all(d == 0 for table, (_, d) in found.items() if table != "rollup_daily")


def test_fast_load_wants_an_empty_store(pg_url: str) -> None:
    with connect(pg_url) as conn:
        fast_load(conn, call_rows(10))
        with pytest.raises(ValueError, match="without calls"):
            fast_load(conn, call_rows(10))
