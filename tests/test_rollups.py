"""The rollups are defined once (`smdrd.store.sqlite.rollups`): the per-batch roll-up and the triggers keep the
daily and the monthly grain equal to a rebuild from the calls, whether calls are inserted (in batches whose keys
overlap), re-rated or unrolled by ``smdrd reparse``;
and a report range is split into the whole months the monthly grain serves and the days around them."""

from __future__ import annotations

import sqlite3
from datetime import date
from pathlib import Path

from smdrd.store.sqlite.reports import whole_months
from smdrd.store.sqlite.rollups import ROLL_UP, ROLLUPS, backfill_sql
from smdrd.store.sqlite.rows import CALL_COLUMNS
from smdrd.store.sqlite.schema import UNROLL_ON_DELETE, connect


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
