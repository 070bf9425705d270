"""Loading many calls at once into an empty PostgreSQL store, for benchmarks (bench/pg.py ``--fast-load``): the
calls copied in (``COPY``) under one journal line, then every rollup filled by one ``INSERT ... SELECT ... GROUP
BY`` over all of them (`roll_up_sql`, the journal writer's own statements, with ``calls`` as the source), then
``ANALYZE``. The same tables and sums as the journal writer's, in a fraction of the time; the daemon never uses it.

`check_rollups` compares the rollups' rows of some months with a ``GROUP BY`` over those months' calls
(`group_sql`, the same definitions): what a fast load must leave, and what the journal writer keeps.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from smdrd.store.postgres.schema import LOCAL_SITE, group_sql, roll_up_sql
from smdrd.store.rollups import DIMENSIONS, MEASURES, ROLLUPS
from smdrd.store.rows import CALL_COLUMNS

__all__ = ["analyze", "check_rollups", "count_rows", "fast_load"]

_COPY_CALLS = f"COPY calls (line_id, {', '.join(CALL_COLUMNS)}) FROM STDIN"
_LINE = ("INSERT INTO lines (source, peer, received_at, format, raw, status) "
         "VALUES ('bench', '', 0, 'bench', '\\x00', 'parsed') RETURNING id")
#: a session's memory for one sort or hash: the rollups' GROUP BY of millions of calls in memory, not on disk.
_WORK_MEM = "SET work_mem = '256MB'"


def fast_load(conn: psycopg.Connection[Any], rows: Iterable[tuple[object, ...]]) -> int:
    """Copy the call ``rows`` (`CALL_COLUMNS` order) into the empty store of ``conn`` under one journal line, fill
    every rollup from them, and ``ANALYZE``: one transaction (an interrupted load leaves the store empty). Returns
    how many calls were copied."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT (SELECT count(*) FROM calls) + "
                    + " + ".join(f"(SELECT count(*) FROM {r.table})" for r in ROLLUPS))
        found = cur.fetchone()
        if found and found[0]:
            raise ValueError("fast_load needs a store without calls or rollup rows")
        cur.execute(_LINE)
        line = cur.fetchone()
        assert line is not None
        copied = 0
        with cur.copy(_COPY_CALLS) as copy:
            for row in rows:
                copy.write_row((line[0], *row))
                copied += 1
        cur.execute(_WORK_MEM)
        for statement in roll_up_sql("calls"):
            cur.execute(statement)
    analyze(conn)
    return copied


def analyze(conn: psycopg.Connection[Any], *, vacuum: bool = False) -> None:
    """Refresh the planner's statistics of every table (``vacuum``: ``VACUUM ANALYZE``; ``conn`` in autocommit)."""
    conn.execute("VACUUM ANALYZE" if vacuum else "ANALYZE")


def count_rows(conn: psycopg.Connection[Any]) -> tuple[int, dict[str, int]]:
    """How many calls the store holds, and how many rows each rollup."""
    def count(table: str) -> int:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(row[0]) if row else 0

    return count("calls"), {r.table: count(r.table) for r in ROLLUPS}


def check_rollups(conn: psycopg.Connection[Any], months: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Each rollup's rows of the site-local ``months`` (``YYYY-MM``) against a ``GROUP BY`` over those months'
    calls: per rollup, how many rows were compared and how many differ (in either; 0 when they are equal)."""
    out: dict[str, tuple[int, int]] = {}
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(_WORK_MEM)
        cur.execute("CREATE TEMP TABLE checked ON COMMIT DROP AS SELECT * FROM calls WITH NO DATA")
        for month in months:
            first = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
            after = (first + timedelta(days=32)).replace(day=1)
            # the month's calls by the index on start_utc (a day either side: any offset), then by local month
            cur.execute(f"INSERT INTO checked SELECT * FROM calls WHERE start_utc >= %s AND start_utc < %s "
                        f"AND {DIMENSIONS['month'].expr.format(r='calls')} = %s",
                        (int((first - timedelta(days=1)).timestamp()), int((after + timedelta(days=1)).timestamp()),
                         month))
        columns = ", ".join(m.name for m in MEASURES)
        for r in ROLLUPS:
            key = ", ".join((*r.key, "site_id"))
            grain = r.key[0]
            mine = (f"SELECT {key}, {columns} FROM {r.table} WHERE substr({grain}, 1, 7) = ANY(%s) "
                    f"AND site_id = {LOCAL_SITE}")
            cur.execute(f"WITH g AS ({group_sql('checked', r)}), m AS ({mine}) "
                        f"SELECT (SELECT count(*) FROM m), "
                        f"(SELECT count(*) FROM (SELECT * FROM g EXCEPT ALL SELECT * FROM m) a) + "
                        f"(SELECT count(*) FROM (SELECT * FROM m EXCEPT ALL SELECT * FROM g) b)", (list(months),))
            found = cur.fetchone()
            assert found is not None
            out[r.table] = (int(found[0]), int(found[1]))
    return out
