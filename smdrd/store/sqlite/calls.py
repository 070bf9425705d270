"""The console's call reads in SQLite (`smdrd.store.api.CallReader`): search, one call, its legs, its lines.

Every read is bounded and indexed: a search is a range of ``calls_start_numbers`` (the calls' start and numbers,
so a search by part of a number reads a narrow index, not whole rows; ``calls_extension`` when an extension is
given), read in the sort's order after a keyset cursor and cut at one page, so a page costs the
same on the last page as on the first and nothing holds more than a page in memory. A call's legs come from
``calls_key`` and ``calls_line``, its lines by primary key. A manager's departments are a TEMP table of
``(extension, first day, last day)`` spans, as the reports' department filter (`reports.select_intervals`).
Read-only: the connection cannot change the journal.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from smdrd.store.api import CallQuery, StoredCall, StoredLine
from smdrd.store.sqlite.reports import connect_readonly, select_intervals

__all__ = ["SqliteCalls"]

_COLUMNS = ("c.id, c.line_id, c.source, c.format, c.call_key, c.leg, c.start, c.start_utc, c.duration, c.ring, "
            "c.direction, c.extension, c.number, c.trunk, c.account, c.call_id, c.answered, c.transfer, c.extra, "
            "c.e164, c.region, c.call_class, c.rule, c.prefix, c.cost_micros, c.currency, c.tariff_version")
#: the SQL of each sort's value (`StoredCall.sort_value` gives the same in Python, for the cursor).
_SORT_SQL = {"start": "c.start_utc", "duration": "c.duration", "cost": "coalesce(c.cost_micros, 0)"}


def _call(row: Sequence[Any]) -> StoredCall:
    try:
        extra = json.loads(row[18]) if row[18] else {}
    except ValueError:
        extra = {}
    return StoredCall(
        id=int(row[0]), line_id=int(row[1]), source=row[2], format=row[3], call_key=row[4], leg=int(row[5]),
        start=row[6], start_utc=int(row[7]), duration=int(row[8]), ring=None if row[9] is None else int(row[9]),
        direction=row[10], extension=row[11], number=row[12], trunk=row[13], account=row[14], call_id=row[15],
        answered=bool(row[16]), transfer=row[17], extra=extra if isinstance(extra, dict) else {}, e164=row[19],
        region=row[20] or "", call_class=row[21], rule=row[22], prefix=row[23],
        cost_micros=None if row[24] is None else int(row[24]), currency=row[25], tariff_version=row[26])


def search_sql(q: CallQuery) -> tuple[str, list[object]]:
    """The SQL and parameters of one page of ``q`` (public for the query-plan test and the benchmark)."""
    where = ["c.start_utc >= ? AND c.start_utc < ?"]
    params: list[object] = [q.lo, q.hi]
    for column, value in (("extension", q.extension), ("account", q.account), ("call_id", q.call_id),
                          ("direction", q.direction)):
        if value:
            where.append(f"c.{column} = ?")
            params.append(value)
    if q.number:
        where.append("(instr(c.number, ?) > 0 OR instr(coalesce(c.e164, ''), ?) > 0)")
        params.extend((q.number, q.number))
    if q.classes:
        where.append(f"coalesce(c.call_class, '') IN ({', '.join('?' * len(q.classes))})")
        params.extend(q.classes)
    if q.cost_min is not None:
        where.append("coalesce(c.cost_micros, 0) >= ?")
        params.append(q.cost_min)
    if q.cost_max is not None:
        where.append("coalesce(c.cost_micros, 0) <= ?")
        params.append(q.cost_max)
    if q.scope is not None:
        where.append("EXISTS (SELECT 1 FROM temp.report_selection s WHERE s.extension = c.extension "
                     "AND substr(c.start, 1, 10) BETWEEN s.first AND s.last)")
    value = _SORT_SQL.get(q.sort, _SORT_SQL["start"])
    order = "DESC" if q.descending else "ASC"
    if q.after is not None:
        where.append(f"({value}, c.id) {'<' if q.descending else '>'} (?, ?)")
        params.extend(q.after)
    sql = (f"SELECT {_COLUMNS} FROM calls c WHERE {' AND '.join(where)} "
           f"ORDER BY {value} {order}, c.id {order} LIMIT ?")
    params.append(max(1, q.limit))
    return sql, params


class SqliteCalls:
    """`smdrd.store.api.CallReader` on one read-only connection (used from one thread at a time)."""

    def __init__(self, path: str | Path) -> None:
        self.conn = connect_readonly(path)

    def search(self, q: CallQuery) -> list[StoredCall]:
        if q.scope is not None:
            if not q.scope:
                return []
            select_intervals(self.conn, q.scope)
        sql, params = search_sql(q)
        return [_call(row) for row in self.conn.execute(sql, params)]

    def call(self, call_id: int) -> StoredCall | None:
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM calls c WHERE c.id = ?", (call_id,)).fetchone()
        return None if row is None else _call(row)

    def legs(self, call: StoredCall, limit: int = 100) -> list[StoredCall]:
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM calls c WHERE c.id IN (SELECT id FROM calls WHERE call_key = ? "
            f"UNION SELECT id FROM calls WHERE line_id = ?) ORDER BY c.start_utc, c.leg, c.id LIMIT ?",
            (call.call_key, call.line_id, limit))
        return [_call(row) for row in rows]

    def lines(self, ids: Sequence[int]) -> list[StoredLine]:
        wanted = sorted(set(ids))[:100]
        if not wanted:
            return []
        rows = self.conn.execute(
            "SELECT id, source, peer, received_at, format, raw, status, error FROM lines "
            f"WHERE id IN ({', '.join('?' * len(wanted))}) ORDER BY id", wanted)
        return [StoredLine(int(r[0]), r[1], r[2], int(r[3]), r[4], bytes(r[5]), r[6], r[7]) for r in rows]

    def peer_statuses(self, peer: str, since: int) -> dict[str, int]:
        rows = self.conn.execute("SELECT status, count(*) FROM lines WHERE received_at >= ? AND peer = ? "
                                 "GROUP BY status", (since, peer))
        return {status: int(n) for status, n in rows}

    def peer_errors(self, peer: str, since: int, limit: int) -> list[tuple[int, StoredLine]]:
        # A file's n-th line is its n-th journalled line that is not a `flushed` marker (as `smdrd import`
        # numbers them); the lines are read from the receive-time index, from the upload's start.
        rows = self.conn.execute(
            "SELECT n, id, source, peer, received_at, format, raw, status, error FROM (SELECT row_number() OVER "
            "(ORDER BY id) AS n, * FROM lines WHERE received_at >= ? AND peer = ? AND status <> 'flushed') "
            "WHERE status = 'error' ORDER BY id LIMIT ?", (since, peer, limit))
        return [(int(r[0]), StoredLine(int(r[1]), r[2], r[3], int(r[4]), r[5], bytes(r[6]), r[7], r[8]))
                for r in rows]

    def close(self) -> None:
        self.conn.close()
