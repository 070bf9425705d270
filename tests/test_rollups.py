"""The rollups are defined once (`smdrd.store.sqlite.rollups`): the per-batch roll-up and the triggers keep the
daily and the monthly grain equal to a rebuild from the calls, whether calls are inserted (in batches whose keys
overlap), re-rated or unrolled by ``smdrd reparse``;
and a report range is split into the whole months the monthly grain serves and the days around them."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from datetime import date, datetime
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from smdrd.store.planner import whole_months
from smdrd.store.sqlite.bulk import BulkWriter, RowBatch
from smdrd.store.sqlite.rollups import ROLL_UP, ROLLUPS, backfill_sql
from smdrd.store.sqlite.rows import CALL_COLUMNS
from smdrd.store.sqlite.schema import UNROLL_ON_DELETE, connect
from smdrd.store.sqlite.writer import JournalWriter


def test_a_range_is_split_into_whole_months_and_the_days_around_them() -> None:
    assert whole_months(date(2026, 1, 1), date(2026, 12, 31)) == ("2026-01", "2026-12", [])
    assert whole_months(date(2026, 3, 15), date(2026, 10, 31)) == (
        "2026-04", "2026-10", [("2026-03-15", "2026-03-31")])
    assert whole_months(date(2026, 1, 31), date(2026, 4, 1)) == (
        "2026-02", "2026-03", [("2026-01-31", "2026-01-31"), ("2026-04-01", "2026-04-01")])
    assert whole_months(date(2024, 2, 1), date(2024, 2, 29)) == ("2024-02", "2024-02", [])
    assert whole_months(date(2026, 12, 2), date(2027, 1, 30)) is None
    assert whole_months(date(2026, 6, 1), date(2026, 6, 29)) is None


def _call(n: int, start: str, **kw: object) -> tuple[object, ...]:
    values: dict[str, object] = {
        "uid": f"t:{n}", "source": "s", "format": "t", "call_key": f"k{n}", "leg": 0, "start": start,
        "start_utc": 1_767_225_600 + n, "duration": 60 + n, "ring": 1, "direction": "outbound",
        "extension": f"2{n % 3:02d}", "number": "0123", "trunk": f"T{n % 2}", "account": "", "auth_code": "",
        "call_id": str(n), "answered": 1, "transfer": "", "extra": "{}", "e164": "+4420" if n % 2 else "+33",
        "call_class": "national", "rule": "r", "prefix": "44", "cost_micros": 1000 * n, "currency": "GBP",
        "region": "GB" if n % 2 else "FR", "tariff_version": None}
    values.update(kw)
    return (1, *(values[c] for c in CALL_COLUMNS))


def _rebuilt_equals_stored(conn: sqlite3.Connection) -> None:
    for rollup in ROLLUPS:
        stored = sorted(conn.execute(f"SELECT * FROM {rollup.table}").fetchall())
        conn.execute(f"CREATE TEMP TABLE fresh AS SELECT * FROM {rollup.table} WHERE 0")
        sql = backfill_sql(rollup).replace(f"INTO {rollup.table}", "INTO temp.fresh")
        if rollup.finer is not None:  # a monthly rollup straight from the calls, not from its daily one
            sql = backfill_sql(type(rollup)(rollup.table, rollup.key)).replace(
                f"INTO {rollup.table}", "INTO temp.fresh")
        conn.execute(sql)
        assert sorted(conn.execute("SELECT * FROM temp.fresh").fetchall()) == stored, rollup.table
        conn.execute("DROP TABLE temp.fresh")


def _insert_batch(conn: sqlite3.Connection, insert: str, rows: list[tuple[object, ...]]) -> None:
    """As a writer of calls does: its inserts, then `ROLL_UP` over the calls above the highest id before them."""
    before = conn.execute("SELECT coalesce(max(id), 0) FROM calls").fetchone()[0]
    conn.executemany(insert, rows)
    for statement in ROLL_UP:
        conn.execute(statement, (before,))


def test_inserts_rerates_and_reparse_deletes_keep_every_grain_exact(tmp_path: Path) -> None:
    """A report of a month must say what the calls say, after a re-rate or a reparse too."""
    conn = connect(str(tmp_path / "r.db"))
    conn.execute("INSERT INTO lines (id, source, peer, received_at, format, raw, status) "
                 "VALUES (1, 's', '', 0, 't', x'00', 'parsed')")
    cols = ", ".join(CALL_COLUMNS)
    insert = f"INSERT INTO calls (line_id, {cols}) VALUES (?, {', '.join('?' * len(CALL_COLUMNS))})"
    starts = ["2026-01-31T23:59:00+00:00", "2026-02-01T00:00:00+00:00", "2026-02-14T12:00:00+01:00",
              "2026-03-29T01:30:00+00:00", "2026-03-29T03:30:00+02:00", "2026-12-31T23:00:00+00:00"]
    calls = [_call(n, s) for n, s in enumerate(starts)]
    _insert_batch(conn, insert, calls[:3])
    _rebuilt_equals_stored(conn)
    # a second batch with keys the first one rolled up already (the same day, extension, trunk...)
    _insert_batch(conn, insert, [*calls[3:], _call(10, starts[2], leg=1, uid="t:10b"), _call(12, starts[0])])
    _rebuilt_equals_stored(conn)
    assert conn.execute("SELECT sum(calls) FROM rollup_daily").fetchone()[0] == len(starts) + 1
    conn.execute("UPDATE calls SET cost_micros = cost_micros * 2, call_class = 'international', "
                 "start = '2026-04-01T10:00:00+01:00', region = 'JE' WHERE id % 2 = 0")
    _rebuilt_equals_stored(conn)
    conn.execute(UNROLL_ON_DELETE)
    conn.execute("DELETE FROM calls WHERE id IN (1, 3)")
    _rebuilt_equals_stored(conn)
    conn.execute("DROP TRIGGER temp.calls_unroll")
    conn.execute("DELETE FROM calls")  # retention: the totals stay
    assert conn.execute("SELECT sum(calls) FROM rollup_monthly").fetchone()[0] == len(starts) + 1 - 2
    assert conn.execute("SELECT sum(calls) FROM rollup_daily").fetchone()[0] == len(starts) + 1 - 2
    conn.close()


# --- Batched imports through both writers, with calls that come again ---------------------------------------

_STARTS = st.builds(
    lambda day, minute, offset: f"2026-{1 + day // 28:02d}-{1 + day % 28:02d}T{minute // 60:02d}:{minute % 60:02d}:00"
                                f"{offset}",
    st.integers(0, 12 * 28 - 1), st.integers(0, 24 * 60 - 1), st.sampled_from(["+00:00", "+01:00", "-05:00"]))
#: what a rated call's e164 can be, and what the country CASE must cope with: short, odd, one- two- three-digit codes.
_E164 = st.one_of(st.none(), st.sampled_from(["", "+", "+1", "+18095551234", "+7", "+44", "+4420794", "+353",
                                              "+35312", "+2", "+21", "0123", "abc", "+é99"]),
                  st.from_regex(r"\+[0-9]{0,6}", fullmatch=True))
_CALL = st.fixed_dictionaries({
    "uid": st.sampled_from([f"u{n}" for n in range(12)]),  # few: the same call comes again (a re-sent line)
    "leg": st.sampled_from([0, 0, 1, 2]), "start": _STARTS, "duration": st.integers(0, 10_000),
    "direction": st.sampled_from(["outbound", "inbound", "internal"]), "extension": st.sampled_from(["201", "202"]),
    "trunk": st.sampled_from(["T1", "T2", ""]), "e164": _E164,
    "call_class": st.sampled_from([None, "national", "mobile"]), "cost_micros": st.one_of(
        st.none(), st.integers(-10**6, 10**9)), "currency": st.sampled_from([None, "GBP", "EUR"]),
    "region": st.sampled_from(["", "GB", "DO"])})


def _row(n: int, call: dict[str, object]) -> tuple[object, ...]:
    """A calls row as the writers bind it (without line_id), its identity from its uid and start."""
    start = datetime.fromisoformat(str(call["start"]))
    return _call(n, str(call["start"]), start_utc=int(start.timestamp()), call_key=f"k{call['uid']}",
                 **{k: v for k, v in call.items() if k != "start"})[1:]


def _batch(calls: list[dict[str, object]]) -> RowBatch:
    batch = RowBatch()
    for n, call in enumerate(calls):
        batch.lines.append(("s", "", n, "t", f"line {n}".encode(), "parsed", None))
        batch.calls.append((n, _row(n, call)))
    return batch


async def _commit_all(db: Path, batches: list[RowBatch]) -> None:
    """As ``smdrd import`` commits: each batch by the bulk writer, or (a call stored already) by the journal
    writer, entry by entry with its duplicate handling; after each batch, every grain equals its calls."""
    bulk = BulkWriter(db)
    bulk.open()
    writer = JournalWriter(db, commit_interval=0.001)
    await writer.open()
    task = asyncio.create_task(writer.run())
    check = sqlite3.connect(db, isolation_level=None)
    try:
        for batch in batches:
            if not bulk.commit(batch):
                for prepared in batch.entries():
                    writer.submit(prepared)
                await writer.flushed()
            _rebuilt_equals_stored(check)
    finally:
        check.close()
        bulk.close()
        await writer.close()
        await task


@st.composite
def _batches(draw: st.DrawFn) -> list[list[dict[str, object]]]:
    """Batches drawn from a few calls, so the same call comes again in its batch or a later one."""
    pool = draw(st.lists(_CALL, min_size=1, max_size=20))
    picks = st.lists(st.integers(0, len(pool) - 1), max_size=25)
    return [[pool[i] for i in batch] for batch in draw(st.lists(picks, min_size=1, max_size=6))]


@given(_batches())
@settings(max_examples=30, deadline=None)
def test_any_batched_import_with_re_sent_calls_leaves_every_rollup_equal_to_its_calls(
        batches: list[list[dict[str, object]]]) -> None:
    """Batches whose calls repeat (within a batch and across batches) go through both writers as ``smdrd import``
    sends them: the bulk one while every call is new, the journal writer (its duplicate handling) otherwise;
    after each batch every grain equals a GROUP BY over the stored calls, and each call is stored once."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "r.db"
        asyncio.run(_commit_all(db, [_batch(calls) for calls in batches]))
        conn = sqlite3.connect(db)
        calls = {(_row(0, c)[CALL_COLUMNS.index("start_utc")], c["uid"]) for b in batches for c in b}
        assert conn.execute("SELECT count(*) FROM calls").fetchone()[0] == len(calls)
        assert conn.execute("SELECT coalesce(sum(calls), 0) FROM rollup_monthly").fetchone()[0] == \
            conn.execute("SELECT count(*) FROM calls WHERE leg = 0").fetchone()[0]
        conn.close()
