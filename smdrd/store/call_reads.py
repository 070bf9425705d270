"""The console's call reads of both stores (`smdrd.store.api.CallReader`): search, one call, its legs, its lines,
in SQL with ``?`` placeholders (`smdrd.store.sqlite.calls` runs it as it is, `smdrd.store.postgres.calls` through
its adapter, each saying "contains" and its TEMP schema its own way).

Every read is bounded and indexed: a search is a range of ``calls_start_numbers`` (the calls' start and numbers,
so a search by part of a number reads a narrow index, not whole rows; ``calls_extension`` when an extension is
given), read in the sort's order after a keyset cursor and cut at one page, so a page costs the
same on the last page as on the first and nothing holds more than a page in memory. A call's legs come from
``calls_key`` and ``calls_line``, its lines by primary key. A manager's departments are a TEMP table of
``(extension, first day, last day)`` spans, as the reports' department filter (`planner.select_intervals`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from smdrd.privacy import hide_codes
from smdrd.store.api import CallQuery, StoredCall, StoredLine
from smdrd.store.mapping import CALL_FIELDS, LINE_FIELDS, stored_call, stored_line
from smdrd.store.planner import ReadConnection, select_intervals

__all__ = ["CONTAINS", "CallReads", "search_sql"]

#: a call's columns, then its site's name (`stored_call`).
_COLUMNS = ", ".join(f"c.{name}" for name in CALL_FIELDS) + ", (SELECT s.name FROM sites s WHERE s.id = c.site_id)"
_LINES = f"SELECT {', '.join(LINE_FIELDS)} FROM lines"
#: the SQL of each sort's value (`StoredCall.sort_value` gives the same in Python, for the cursor).
_SORT_SQL = {"start": "c.start_utc", "duration": "c.duration", "cost": "coalesce(c.cost_micros, 0)"}


#: true when the parameter is part of ``{haystack}``, in SQLite.
CONTAINS = "instr({haystack}, ?) > 0"


def search_sql(q: CallQuery, *, contains: str = CONTAINS, temp: str = "temp.") -> tuple[str, list[object]]:
    """The SQL and parameters of one page of ``q`` (public for the query-plan test and the benchmark).
    `smdrd.store.postgres.calls` runs the same search with its own ``contains`` test and TEMP schema."""
    where = ["c.start_utc >= ? AND c.start_utc < ?"]
    params: list[object] = [q.lo, q.hi]
    for column, value in (("extension", q.extension), ("account", q.account), ("call_id", q.call_id),
                          ("direction", q.direction)):
        if value:
            where.append(f"c.{column} = ?")
            params.append(value)
    if q.site:
        where.append("c.site_id = (SELECT id FROM sites WHERE name = ?)")
        params.append(q.site)
    if q.number:
        number, e164 = (contains.format(haystack=h) for h in ("c.number", "coalesce(c.e164, '')"))
        where.append(f"({number} OR {e164})")
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
        where.append(f"EXISTS (SELECT 1 FROM {temp}report_selection s WHERE s.extension = c.extension "
                     "AND substr(c.start, 1, 10) BETWEEN s.first AND s.last "
                     "AND (s.site IS NULL OR s.site = (SELECT name FROM sites WHERE id = c.site_id)))")
    value = _SORT_SQL.get(q.sort, _SORT_SQL["start"])
    order = "DESC" if q.descending else "ASC"
    if q.after is not None:
        where.append(f"({value}, c.id) {'<' if q.descending else '>'} (?, ?)")
        params.extend(q.after)
    sql = (f"SELECT {_COLUMNS} FROM calls c WHERE {' AND '.join(where)} "
           f"ORDER BY {value} {order}, c.id {order} LIMIT ?")
    params.append(max(1, q.limit))
    return sql, params


class CallReads:
    """`smdrd.store.api.CallReader` over a connection that takes ``?`` placeholders: a SQLite connection, or the
    PostgreSQL store's adapter (`smdrd.store.postgres.calls`), which names its own `contains` test and TEMP
    schema. Used from one thread at a time; the subclass closes the connection."""

    #: true when the parameter is part of ``{haystack}`` (`search_sql`).
    contains = CONTAINS
    #: the schema of the connection's TEMP tables, as a prefix.
    temp = "temp."

    def __init__(self, reads: ReadConnection) -> None:
        self.reads = reads

    def _one(self, sql: str, params: Sequence[object]) -> Any:
        return self.reads.execute(sql, params).fetchone()

    def search(self, q: CallQuery) -> list[StoredCall]:
        if q.scope is not None:
            if not q.scope:
                return []
            select_intervals(self.reads, q.scope)
        sql, params = search_sql(q, contains=self.contains, temp=self.temp)
        return [stored_call(row) for row in self.reads.execute(sql, params)]

    def call(self, call_id: int) -> StoredCall | None:
        row = self._one(f"SELECT {_COLUMNS} FROM calls c WHERE c.id = ?", (call_id,))
        return None if row is None else stored_call(row)

    def legs(self, call: StoredCall, limit: int = 100) -> list[StoredCall]:
        rows = self.reads.execute(
            f"SELECT {_COLUMNS} FROM calls c WHERE c.id IN (SELECT id FROM calls WHERE call_key = ? "
            f"UNION SELECT id FROM calls WHERE line_id = ?) ORDER BY c.start_utc, c.leg, c.id LIMIT ?",
            (call.call_key, call.line_id, limit))
        return [stored_call(row) for row in rows]

    def lines(self, ids: Sequence[int]) -> list[StoredLine]:
        wanted = sorted(set(ids))[:100]
        if not wanted:
            return []
        marks = ", ".join("?" * len(wanted))
        lines = [stored_line(r) for r in self.reads.execute(f"{_LINES} WHERE id IN ({marks}) ORDER BY id", wanted)]
        # An authorisation code is a credential: it leaves the store in no call, and in no line either.
        codes: dict[int, list[str]] = {}
        for line_id, code in self.reads.execute(
                f"SELECT line_id, auth_code FROM calls WHERE line_id IN ({marks}) AND auth_code <> ''", wanted):
            codes.setdefault(int(line_id), []).append(code)
        return [replace(line, raw=hide_codes(line.raw, codes[line.id])) if line.id in codes else line
                for line in lines]

    def peer_statuses(self, peer: str, since: int) -> dict[str, int]:
        rows = self.reads.execute("SELECT status, count(*) FROM lines WHERE received_at >= ? AND peer = ? "
                                  "GROUP BY status", (since, peer))
        return {status: int(n) for status, n in rows}

    def peer_errors(self, peer: str, since: int, limit: int) -> list[tuple[int, StoredLine]]:
        # A file's n-th line is its n-th journalled line that is not a `flushed` marker (as `smdrd import`
        # numbers them); the lines are read from the receive-time index, from the upload's start.
        rows = self.reads.execute(
            f"SELECT n, {', '.join(LINE_FIELDS)} FROM (SELECT row_number() OVER (ORDER BY id) AS n, * FROM lines "
            "WHERE received_at >= ? AND peer = ? AND status <> 'flushed') AS f WHERE status = 'error' "
            "ORDER BY id LIMIT ?", (since, peer, limit))
        return [(int(r[0]), stored_line(r[1:])) for r in rows]
