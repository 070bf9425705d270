"""Re-rate and reparse on a central PostgreSQL store (`smdrd.store.postgres.rebuild`): only the store's own site
(`LOCAL_SITE`) is touched, the other sites' calls, lines and rollups stay as they published them, and every
rollup, at every grain and for every site, still says what the calls say; and any re-rate and reparse leave a
SQLite file and a PostgreSQL database given the same calls with the same rollups, row for row."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smdrd.journal import ERROR, FLUSHED, PARSED, JournalEntry
from smdrd.rating import Rating
from smdrd.store import open_store
from smdrd.store.api import RatingUpdate
from smdrd.store.postgres.schema import LOCAL_SITE, measure_sql
from smdrd.store.rollups import DIMENSIONS, MEASURES, ROLLUPS
from smdrd.testing import write_entries
from tests.conftest import EMPTY_DATABASE
from tests.test_console_sites import SITES, publish_into, today_entries
from tests.test_reports import CALLS, record, write_calls

WHOLE = (0, 2**40)  # every call (UTC seconds)


def read(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return sorted(conn.execute(sql).fetchall())


def rollups_equal_the_calls(url: str) -> None:
    """Each rollup's rows (all zero: none) equal the calls grouped by its key and site."""
    for r in ROLLUPS:
        keys = ", ".join(DIMENSIONS[k].expr.format(r="calls") for k in r.key)
        sums = ", ".join(f"sum({measure_sql(m.name, 'calls')})::bigint" for m in MEASURES)
        fresh = read(url, f"SELECT {keys}, site_id, {sums} FROM calls GROUP BY {keys}, site_id")
        stored = read(url, f"SELECT {', '.join(r.key)}, site_id, {', '.join(m.name for m in MEASURES)} "
                           f"FROM {r.table}")
        assert stored == fresh, r.table


def other_sites(url: str) -> dict[str, list[tuple[Any, ...]]]:
    out = {"calls": read(url, f"SELECT * FROM calls WHERE site_id <> {LOCAL_SITE}"),
           "lines": read(url, f"SELECT * FROM lines WHERE site_id <> {LOCAL_SITE}")}
    for r in ROLLUPS:
        out[r.table] = read(url, f"SELECT * FROM {r.table} WHERE site_id <> {LOCAL_SITE}")
    return out


async def test_rerate_and_reparse_on_a_central_store_touch_its_own_site_only(pg_url: str, tmp_path: Path) -> None:
    await publish_into(pg_url, tmp_path)  # three sites' calls of today, published
    own = today_entries(9, 4)  # and the box's own, the same extension, written by its journal writer
    own[3] = dataclasses.replace(own[3], status=ERROR, error="bad date", calls=())
    await write_entries(pg_url, own)
    rollups_equal_the_calls(pg_url)
    before = other_sites(pg_url)
    assert len(before["calls"]) == sum(SITES.values())

    store = open_store(pg_url).rebuild()
    try:
        ratings = list(store.ratings(*WHOLE))
        assert len(ratings) == 3  # the box's own calls only
        updates = [RatingUpdate(r.call_id, (*r.rating[:1], "international", "intl", "+48", (r.rating[4] or 0) * 3 + 1,
                                            "EUR", "DE", "7")) for r in ratings[:2]]
        updates.append(RatingUpdate(ratings[2].call_id, (*ratings[2].rating[:7], "7"), figures=False))
        store.update_ratings(updates)
        rollups_equal_the_calls(pg_url)
        assert read(pg_url, f"SELECT call_class, cost_micros, currency, tariff_version FROM calls "
                            f"WHERE site_id = {LOCAL_SITE}") == [
            ("international", 3_000_001, "EUR", "7"), ("international", 6_000_001, "EUR", "7"),
            ("national", 3_000_000, "PLN", "7")]

        batches = list(store.lines(*WHOLE, None))
        lines = [line for batch in batches for line in batch]
        assert [line.status for line in lines] == [PARSED, PARSED, PARSED, ERROR]
        assert store.calls_received(*WHOLE) == 3
        # Reparsed: the error line now gives its call (at 4.00), the first line's call is dropped, the second and
        # third give theirs again, and a flushed marker of the last line.
        fixed = {line.line_id: e for line, e in zip(lines, [*own[:3], today_entries(9, 4)[3]], strict=True)}
        first, second, third, fourth = (line.line_id for line in lines)
        result = store.replace([(first, dataclasses.replace(own[0], calls=())), (second, fixed[second]),
                                (third, fixed[third]), (fourth, fixed[fourth])])
        assert result.removed == 3 and result.statuses == {first: PARSED, second: PARSED, third: PARSED,
                                                           fourth: PARSED}
        rollups_equal_the_calls(pg_url)
        # Again: nothing doubled; the same calls, figures and rollups.
        calls = read(pg_url, "SELECT uid, cost_micros, tariff_version FROM calls")
        again = store.replace([(second, fixed[second]), (third, fixed[third]), (fourth, fixed[fourth])])
        assert again.removed == 3 and set(again.statuses.values()) == {PARSED}
        assert read(pg_url, "SELECT uid, cost_micros, tariff_version FROM calls") == calls
        rollups_equal_the_calls(pg_url)
        assert store.calls_received(*WHOLE) == 3
        # The records parsers held at the end (`keep_lines`): added to their line, whose status stays; a call
        # stored already is not added again.
        tail = store.replace([(fourth, fixed[fourth]), (third, None)], keep_lines=True)
        assert tail.removed == 0 and tail.statuses == {third: FLUSHED}
        assert read(pg_url, "SELECT uid, cost_micros, tariff_version FROM calls") == calls
        rollups_equal_the_calls(pg_url)
        assert read(pg_url, f"SELECT sum(cost_micros) FROM calls WHERE site_id = {LOCAL_SITE}") == [
            (Decimal(9_000_000),)]  # 2.00 + 3.00 + 4.00: rated as the entries were
    finally:
        store.close()
    assert other_sites(pg_url) == before


#: new ratings a re-rate or a reparse may give a call: classes, costs (0 included), destinations, currencies.
RATINGS = st.tuples(st.sampled_from(["+48221234567", "+442071234567", "+12125551234", None]),
                    st.sampled_from(["national", "international", "mobile", None]),
                    st.integers(0, 5_000_000), st.sampled_from(["EUR", "PLN"]))


def rating_of(new: tuple[str | None, str | None, int, str]) -> Rating | None:
    e164, call_class, micros, currency = new
    if call_class is None:
        return None
    region = {"+48": "PL", "+44": "GB", "+12": "US"}.get((e164 or "")[:3], "")
    return Rating(e164 or "", call_class, "rule", (e164 or "")[:3], Decimal(micros) / 1_000_000, currency, region)


def rollup_rows(db: Path | str) -> dict[str, list[tuple[Any, ...]]]:
    conn: Any = psycopg.connect(db) if isinstance(db, str) else sqlite3.connect(db)
    try:
        return {r.table: sorted(conn.execute(f"SELECT {', '.join(r.key)}, calls, duration, cost_micros "
                                             f"FROM {r.table}").fetchall()) for r in ROLLUPS}
    finally:
        conn.close()


def rebuild_both(stores: list[Path | str], rerated: dict[int, tuple[str | None, str | None, int, str]],
                 reparsed: dict[int, tuple[str | None, str | None, int, str] | None]) -> None:
    """The same re-rate (call n: its new rating) and reparse (line n: its call rated anew, or no call) on each
    store."""
    for db in stores:
        store = open_store(db).rebuild()
        try:
            ratings = list(store.ratings(*WHOLE))
            updates = []
            for n, new in rerated.items():
                e164, call_class, micros, currency = new
                old = ratings[n % len(ratings)]
                region = rating_of(new).region if call_class else ""  # type: ignore[union-attr]
                updates.append(RatingUpdate(old.call_id, (e164, call_class, "rule", (e164 or "")[:3], micros,
                                                          currency, region, "9")))
            store.update_ratings(list({u.call_id: u for u in updates}.values()))
            lines = [line for batch in store.lines(*WHOLE, None) for line in batch]
            entries: dict[int, JournalEntry] = {}
            for n, again in reparsed.items():
                line = lines[n % len(lines)]
                call = record(CALLS[line.line_id - 1])
                calls = () if again is None else (dataclasses.replace(call, rating=rating_of(again)),)
                entries[line.line_id] = JournalEntry("pbx", "", 0, "test", line.raw, PARSED, None, calls)
            store.replace(sorted(entries.items()))
        finally:
            store.close()


@settings(max_examples=12, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rerated=st.dictionaries(st.integers(0, 20), RATINGS, max_size=8),
       reparsed=st.dictionaries(st.integers(0, 20), st.none() | RATINGS, max_size=6))
def test_any_re_rate_and_reparse_leave_both_stores_with_the_same_rollups(
        pg_url: str, rerated: dict[int, tuple[str | None, str | None, int, str]],
        reparsed: dict[int, tuple[str | None, str | None, int, str] | None]) -> None:
    with tempfile.TemporaryDirectory() as folder, psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(EMPTY_DATABASE)
        stores: list[Path | str] = [Path(folder) / "calls.db", pg_url]
        for db in stores:
            asyncio.run(write_calls(db, CALLS))
        rebuild_both(stores, rerated, reparsed)
        assert rollup_rows(stores[0]) == rollup_rows(stores[1])
        rollups_equal_the_calls(pg_url)


async def test_a_reparsed_line_whose_call_postgresql_refuses_becomes_an_error_and_the_others_are_stored(
        pg_url: str) -> None:
    """PostgreSQL refuses a NUL in text: that line is an ``error`` saying so, the batch's other lines get their
    calls, and the rollups count exactly those."""
    await write_calls(pg_url, CALLS[:3])
    store = open_store(pg_url).rebuild()
    try:
        lines = [line for batch in store.lines(*WHOLE, None) for line in batch]
        calls = [record(c) for c in CALLS[:3]]
        bad = dataclasses.replace(calls[1], record=dataclasses.replace(calls[1].record, extension="2\x0001"))
        result = store.replace([(line.line_id, JournalEntry("pbx", "", 0, "test", line.raw, PARSED, None, (call,)))
                                for line, call in zip(lines, [calls[0], bad, calls[2]], strict=True)])
        assert result.removed == 3
        assert result.statuses == {lines[0].line_id: PARSED, lines[1].line_id: ERROR, lines[2].line_id: PARSED}
    finally:
        store.close()
    why = "could not store what was parsed from this line: %"
    assert read(pg_url, f"SELECT status, coalesce(error, '') LIKE '{why}' FROM lines") == [
        ("error", True), ("parsed", False), ("parsed", False)]
    assert len(read(pg_url, "SELECT id FROM calls")) == 2
    rollups_equal_the_calls(pg_url)
