"""The report planner of both stores: which rollup serves which part of a range (the monthly grain for whole
months, the daily one at the ends), day by day only for the extensions that change department inside it, and
the call details by ``start_utc``; every query a range read on a primary key or an index, never a scan of every
call. The SQL is written once, with ``?`` placeholders; a `Dialect` names the few phrases an engine says
differently (`smdrd.store.sqlite.reports` runs it on SQLite as it is, `smdrd.store.postgres.reports` through an
adapter). One planner keeps the two stores' figures identical. Nothing here knows about departments beyond the one
hint ``volatile`` gives, and nothing writes to the database but the connection's own TEMP tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from smdrd.store.api import (
    CALL_DETAIL,
    LOCAL_SITE,
    ROLLUP_TABLES,
    SITE,
    ExtensionSpec,
    Filters,
    Interval,
    utc_bounds,
)
from smdrd.store.rollups import DAYS_TABLE, ROLLUPS, coarser_of

__all__ = ["SQLITE", "Dialect", "ExtensionTotals", "ReadConnection", "call_totals", "daily_rows", "extension_totals",
           "hourly_rows", "iter_call_rows", "range_currencies", "range_extensions", "range_site_extensions",
           "select_intervals", "whole_months"]


class _Rows(Protocol):
    def fetchone(self) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...


class ReadConnection(Protocol):
    """What the reads below need of a connection: `sqlite3.Connection`, or another engine's behind an adapter
    that takes ``?`` placeholders and names its `Dialect` in a ``dialect`` attribute (the PostgreSQL store)."""

    def execute(self, sql: str, parameters: Any = ..., /) -> _Rows: ...

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> object: ...


@dataclass(frozen=True, slots=True)
class Dialect:
    """The few pieces of the report SQL that another engine says differently; the rest is the same text."""

    #: true for an all-digit extension between the two parameters (a department's numeric range).
    numeric_between: str = ("(extension <> '' AND extension NOT GLOB '*[^0-9]*' "
                            "AND CAST(extension AS INTEGER) BETWEEN ? AND ?)")
    #: a CTE ``span(d)``: every ISO day from the first parameter to the second.
    day_span: str = "WITH RECURSIVE span(d) AS (SELECT ? UNION ALL SELECT date(d, '+1 day') FROM span WHERE d < ?) "
    #: the join of `day_span` to the daily rollup (SQLite's CROSS JOIN keeps the span outermost).
    span_join: str = "CROSS JOIN"
    #: the schema of a connection's TEMP tables, as a prefix.
    temp: str = "temp."
    #: the index hint of the later legs' count (`_totals_from_rollups`).
    later_legs: str = "INDEXED BY calls_later_legs "
    #: the index of the department selection (`select_intervals`).
    selection_index: str = "CREATE INDEX IF NOT EXISTS temp.report_selection_ext ON report_selection (extension)"
    #: a rollup row belongs to one of the named sites (``{names}``: their placeholders). A SQLite journal holds
    #: its own site's calls only, and its rollups have no site: the test is whether that site is named.
    rollup_site: str = f"(SELECT name FROM sites WHERE id = {LOCAL_SITE}) IN ({{names}})"
    #: a rollup row's site id (the `SITE` grouping column reads its name from ``sites``).
    rollup_site_id: str = str(LOCAL_SITE)


SQLITE = Dialect()


def _dialect(conn: ReadConnection) -> Dialect:
    dialect = getattr(conn, "dialect", SQLITE)
    return dialect if isinstance(dialect, Dialect) else SQLITE


def _in(column: str, values: Sequence[str], where: list[str], params: list[object]) -> None:
    if values:
        where.append(f"{column} IN ({', '.join('?' * len(values))})")
        params.extend(values)


def _conditions(f: Filters, *, extension_col: bool = True,
                dialect: Dialect = SQLITE) -> tuple[list[str], list[object]]:
    """The filters of ``f`` other than its days, on a rollup's columns."""
    where: list[str] = []
    params: list[object] = []
    if f.sites:
        where.append(dialect.rollup_site.format(names=", ".join("?" * len(f.sites))))
        params.extend(f.sites)
    if extension_col:
        _in("extension", f.extensions, where, params)
    _in("trunk", f.trunks, where, params)
    _in("direction", f.directions, where, params)
    _in("call_class", f.classes, where, params)
    return where, params


def _where(f: Filters, *, extension_col: bool = True,
           dialect: Dialect = SQLITE) -> tuple[list[str], list[object]]:
    where, params = _conditions(f, extension_col=extension_col, dialect=dialect)
    return ["day BETWEEN ? AND ?", *where], [f.first.isoformat(), f.last.isoformat(), *params]


def _picked(group: Sequence[str], dialect: Dialect) -> tuple[str, str]:
    """The grouping columns as a rollup's SELECT picks them and as the query around it names them (`SITE`: the
    row's site id, made a name by `_site_names`)."""
    inner = "".join(f", {dialect.rollup_site_id} AS site" if g == SITE else f", {g}" for g in group)
    return inner, "".join(", " + g for g in group)


def _site_names(conn: ReadConnection, rows: Iterable[Any], position: int | None) -> Iterator[tuple[object, ...]]:
    """``rows`` with the site id at ``position`` replaced by the site's name (unchanged when ``None``)."""
    if position is None:
        yield from rows
        return
    names = {int(i): str(n) for i, n in conn.execute("SELECT id, name FROM sites")}
    for r in rows:
        row = list(r)
        row[position] = names.get(int(row[position]), "")
        yield tuple(row)


def _volatile_test(volatile: Sequence[ExtensionSpec], params: list[object], dialect: Dialect = SQLITE) -> str | None:
    """SQL true for the extensions whose department changes inside the range (``None``: there are none)."""
    if not volatile:
        return None
    tests: list[str] = []
    exact = sorted({m.spec for m in volatile if m.lo is None})
    if exact:
        tests.append(f"extension IN ({', '.join('?' * len(exact))})")
        params.extend(exact)
    for m in volatile:
        if m.lo is not None:
            tests.append(dialect.numeric_between)
            params.extend((m.lo, m.hi))
    return f"({' OR '.join(tests)})"


def _day_key(volatile: Sequence[ExtensionSpec], params: list[object], dialect: Dialect = SQLITE) -> str:
    """The SQL for the grouping day: the real day only for extensions whose department changes inside the
    range, ``''`` for the rest, so a year's report groups a few hundred rows instead of one per extension-day."""
    test = _volatile_test(volatile, params, dialect)
    return "''" if test is None else f"CASE WHEN {test} THEN day ELSE '' END"


def whole_months(first: date, last: date) -> tuple[str, str, list[tuple[str, str]]] | None:
    """The whole months inside ``first`` to ``last`` (both included) as ``(first month, last month, the days
    before and after them)``, each ``YYYY-MM`` or ``YYYY-MM-DD``; ``None`` when no month is whole."""
    start = first if first.day == 1 else (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    after = last + timedelta(days=1)
    end = last if after.day == 1 else last.replace(day=1) - timedelta(days=1)
    if start > end:
        return None
    edges = []
    if first < start:
        edges.append((first.isoformat(), (start - timedelta(days=1)).isoformat()))
    if end < last:
        edges.append(((end + timedelta(days=1)).isoformat(), last.isoformat()))
    return start.isoformat()[:7], end.isoformat()[:7], edges


#: the key of `DAYS_TABLE`: what a report reading it may group or filter by.
_DAYS_KEY = next(r.key for r in ROLLUPS if r.table == DAYS_TABLE)


def _split(f: Filters, table: str, *, by_day: bool = False
           ) -> tuple[str, str | None, tuple[str, str, list[tuple[str, str]]] | None]:
    """Which rollups serve a range: ``(daily table, its monthly table, whole_months)``, the last two ``None``
    when the daily rollup alone serves it (no whole month, or days wanted)."""
    monthly = coarser_of().get(table)
    span = None if by_day or monthly is None else whole_months(f.first, f.last)
    return table, (monthly if span is not None else None), span


def daily_rows(
    conn: ReadConnection,
    f: Filters,
    *,
    group: Sequence[str] = (),
    volatile: Sequence[ExtensionSpec] = (),
    by_day: bool = False,
    table: str = "rollup_daily",
    per_extension: bool = True,
) -> Iterator[tuple[object, ...]]:
    """Rows ``(day, extension, *group, calls, duration, cost_micros)`` summed over the range.

    ``day`` is ``''`` unless ``by_day`` is set or the extension's department changes inside the range
    (``volatile``: the memberships with a boundary inside it); then it is the site-local ISO day.

    Whole months of the range are read from the monthly rollup (a year is about twelve rows per key, not 365),
    the days before and after them from the daily one; extensions in ``volatile`` from the daily one, day by
    day (their department is decided per day). ``per_extension=False`` with ``by_day`` and no extension
    filter reads `DAYS_TABLE`, with ``''`` for the extension.
    """
    allowed = (*ROLLUP_TABLES[table], SITE)
    for col in group:
        if col not in allowed:
            raise ValueError(f"{table} has no column {col!r}")
    dialect = _dialect(conn)
    inner, picked = _picked(group, dialect)
    site_at = 2 + list(group).index(SITE) if SITE in group else None
    rows = _daily_rows(conn, f, group=group, inner=inner, picked=picked, volatile=volatile, by_day=by_day,
                       table=table, per_extension=per_extension)
    yield from _site_names(conn, rows, site_at)


def _daily_rows(conn: ReadConnection, f: Filters, *, group: Sequence[str], inner: str, picked: str,
                volatile: Sequence[ExtensionSpec], by_day: bool, table: str,
                per_extension: bool) -> Iterator[tuple[object, ...]]:
    figures = "calls, duration, cost_micros"
    dialect = _dialect(conn)
    cols = ", ".join(("dk", "extension", *group))
    if (by_day and not per_extension and not volatile and not f.extensions and table == "rollup_daily"
            and set(group) - {SITE} <= set(_DAYS_KEY)):
        days_where, days_params = _where(f, dialect=_dialect(conn))
        yield from conn.execute(
            f"SELECT day AS dk, '' AS extension{inner}, sum(calls), sum(duration), sum(cost_micros) "
            f"FROM {DAYS_TABLE} WHERE {' AND '.join(days_where)} GROUP BY dk{picked}", days_params)
        return
    daily, monthly, span = _split(f, table, by_day=by_day)
    if monthly is None or span is None:
        params: list[object] = []
        day = "day" if by_day else _day_key(volatile, params, dialect)
        where, where_params = _where(f, dialect=_dialect(conn))
        params.extend(where_params)
        sql = (f"SELECT {day} AS dk, extension{inner}, sum(calls), sum(duration), sum(cost_micros) "
               f"FROM {daily} WHERE {' AND '.join(where)} GROUP BY {cols}")
        yield from conn.execute(sql, params)
        return
    first_month, last_month, edges = span
    where, where_params = _conditions(f, dialect=_dialect(conn))
    # Each part appends its parameters in the order its text uses them.
    parts: list[str] = []
    params = []
    for lo, hi in edges:  # the days before and after the whole months
        day = _day_key(volatile, params, dialect)
        params.extend((lo, hi, *where_params))
        parts.append(f"SELECT {day} AS dk, extension{inner}, {figures} FROM {daily} "
                     f"WHERE {' AND '.join(['day BETWEEN ? AND ?', *where])}")
    params.extend((first_month, last_month, *where_params))  # the whole months...
    test = _volatile_test(volatile, params, dialect)
    parts.append(f"SELECT '' AS dk, extension{inner}, {figures} FROM {monthly} "
                 f"WHERE {' AND '.join(['month BETWEEN ? AND ?', *where, *([f'NOT {test}'] if test else [])])}")
    cte = ""
    if test is not None:  # ...but day by day for the extensions that change department
        # One seek of the (day, extension) key per day and extension, not a read of every extension's days.
        cte = dialect.day_span
        next_month = (date.fromisoformat(f"{last_month}-01").replace(day=28) + timedelta(days=4)).replace(day=1)
        params = [f"{first_month}-01", (next_month - timedelta(days=1)).isoformat(), *params, *where_params]
        parts.append(f"SELECT day AS dk, extension{inner}, {figures} "
                     f"FROM span {dialect.span_join} {daily} ON day = span.d "
                     f"WHERE {' AND '.join([*where, _volatile_test(volatile, params, dialect) or 'true'])}")
    sql = (f"{cte}SELECT dk, extension{picked}, sum(calls), sum(duration), sum(cost_micros) "
           f"FROM ({' UNION ALL '.join(parts)}) AS u GROUP BY {cols}")
    yield from conn.execute(sql, params)


def hourly_rows(conn: ReadConnection, f: Filters) -> Iterator[tuple[object, ...]]:
    """Rows ``(trunk, hour, calls)`` over the range: for each trunk's busiest hour of the day (whole months from
    the monthly rollup)."""
    daily, monthly, span = _split(f, "rollup_hourly")
    if monthly is None or span is None:
        where, params = _where(f, extension_col=False, dialect=_dialect(conn))
        sql = (f"SELECT trunk, hour, sum(calls) FROM {daily} WHERE {' AND '.join(where)} "
               "GROUP BY trunk, hour")
        yield from conn.execute(sql, params)
        return
    first_month, last_month, edges = span
    where, where_params = _conditions(f, extension_col=False, dialect=_dialect(conn))
    parts: list[str] = []
    all_params: list[object] = []
    for lo, hi in edges:
        parts.append(f"SELECT trunk, hour, calls FROM {daily} "
                     f"WHERE {' AND '.join(['day BETWEEN ? AND ?', *where])}")
        all_params.extend((lo, hi, *where_params))
    parts.append(f"SELECT trunk, hour, calls FROM {monthly} "
                 f"WHERE {' AND '.join(['month BETWEEN ? AND ?', *where])}")
    all_params.extend((first_month, last_month, *where_params))
    yield from conn.execute(f"SELECT trunk, hour, sum(calls) FROM ({' UNION ALL '.join(parts)}) AS u "
                            "GROUP BY trunk, hour", all_params)


def range_currencies(conn: ReadConnection, f: Filters) -> list[str]:
    """The currencies the costs of ``f``'s days were priced in, unrated calls ('') left out: more than one when
    the tariff's currency changed inside them, or sites price in their own (read from the small days rollup:
    its days, sites, trunks, directions and classes, not its extensions)."""
    dialect = _dialect(conn)
    where, params = _where(f, extension_col=False, dialect=dialect)
    return sorted(str(r[0]) for r in conn.execute(
        f"SELECT DISTINCT currency FROM {DAYS_TABLE} WHERE {' AND '.join(where)} AND currency <> ''", params))


def range_extensions(conn: ReadConnection, f: Filters) -> list[str]:
    """The extensions with traffic in the range (for a department filter on call details)."""
    return [str(r[0]) for r in _range_extensions(conn, f, by_site=False)]


def range_site_extensions(conn: ReadConnection, f: Filters) -> list[tuple[str, str]]:
    """``(site name, extension)`` with traffic in the range, at each site."""
    return [(str(r[1]), str(r[0])) for r in _site_names(conn, _range_extensions(conn, f, by_site=True), 1)]


def _range_extensions(conn: ReadConnection, f: Filters, *, by_site: bool) -> Iterator[tuple[object, ...]]:
    dialect = _dialect(conn)
    what = f"extension, {dialect.rollup_site_id} AS site" if by_site else "extension"
    outer = "extension, site" if by_site else "extension"
    daily, monthly, span = _split(f, "rollup_daily")
    if monthly is None or span is None:
        where, params = _where(f, dialect=dialect)
        yield from conn.execute(f"SELECT DISTINCT {what} FROM {daily} WHERE {' AND '.join(where)}", params)
        return
    first_month, last_month, edges = span
    where, where_params = _conditions(f, dialect=dialect)
    parts: list[str] = []
    all_params: list[object] = []
    for lo, hi in edges:
        parts.append(f"SELECT {what} FROM {daily} WHERE {' AND '.join(['day BETWEEN ? AND ?', *where])}")
        all_params.extend((lo, hi, *where_params))
    parts.append(f"SELECT {what} FROM {monthly} WHERE {' AND '.join(['month BETWEEN ? AND ?', *where])}")
    all_params.extend((first_month, last_month, *where_params))
    yield from conn.execute(f"SELECT DISTINCT {outer} FROM ({' UNION ALL '.join(parts)}) AS u", all_params)


def _call_where(f: Filters, tz: ZoneInfo, selected: bool, dialect: Dialect = SQLITE) -> tuple[str, list[object]]:
    lo, hi = utc_bounds(f.first, f.last, tz)
    where = ["c.start_utc >= ? AND c.start_utc < ?"]
    params: list[object] = [lo, hi]
    _in("c.extension", f.extensions, where, params)
    _in("c.trunk", f.trunks, where, params)
    _in("c.direction", f.directions, where, params)
    _in("coalesce(c.call_class, '')", f.classes, where, params)
    if f.sites:
        where.append(f"c.site_id IN (SELECT id FROM sites WHERE name IN ({', '.join('?' * len(f.sites))}))")
        params.extend(f.sites)
    if selected:
        where.append(f"EXISTS (SELECT 1 FROM {dialect.temp}report_selection s WHERE s.extension = c.extension "
                     "AND substr(c.start, 1, 10) BETWEEN s.first AND s.last "
                     "AND (s.site IS NULL OR s.site = (SELECT name FROM sites WHERE id = c.site_id)))")
    return " AND ".join(where), params


def select_intervals(conn: ReadConnection, intervals: Sequence[Interval]) -> None:
    """Load ``(extension, first_day, last_day)``, or the same at one site (its name fourth), into this
    connection's TEMP selection (a department filter)."""
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS report_selection "
                 "(extension TEXT, first TEXT, last TEXT, site TEXT)")
    dialect = _dialect(conn)
    conn.execute(f"DELETE FROM {dialect.temp}report_selection")
    conn.executemany(f"INSERT INTO {dialect.temp}report_selection VALUES (?, ?, ?, ?)",
                     [(i[0], i[1], i[2], i[3] if len(i) > 3 else None) for i in intervals])
    conn.execute(dialect.selection_index)


def iter_call_rows(conn: ReadConnection, f: Filters, tz: ZoneInfo, *, selected: bool, limit: int = 0,
                   offset: int = 0) -> Iterator[tuple[object, ...]]:
    """Call details (every leg), oldest first, in `CALL_DETAIL` order, read as they are consumed (``limit`` 0:
    every one; a whole range in bounded memory)."""
    where, params = _call_where(f, tz, selected, _dialect(conn))
    cols = ", ".join(f"c.{c}" for c in CALL_DETAIL)
    sql = (f"SELECT {cols}, (SELECT name FROM sites WHERE id = c.site_id) FROM calls c WHERE {where} "
           "ORDER BY c.start_utc, c.id")
    if limit > 0:
        sql += " LIMIT ? OFFSET ?"
        params.extend((limit, offset))
    return iter(conn.execute(sql, params))


def call_totals(conn: ReadConnection, f: Filters, tz: ZoneInfo, *, selected: bool) -> tuple[int, int, int, int]:
    """``(legs, calls, duration, cost_micros)`` over every matching call detail, not only one page.

    From the rollups when they say the same as the details (`_totals_from_rollups`); else from the details.
    """
    if not selected:
        quick = _totals_from_rollups(conn, f, tz)
        if quick is not None:
            return quick
    where, params = _call_where(f, tz, selected, _dialect(conn))
    row = conn.execute(f"SELECT count(*), coalesce(sum(CASE WHEN c.leg = 0 THEN 1 ELSE 0 END), 0), "
                       f"coalesce(sum(c.duration), 0), coalesce(sum(c.cost_micros), 0) FROM calls c WHERE {where}",
                       params).fetchone()
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


def _rollups_agree(conn: ReadConnection, f: Filters) -> bool:
    """Whether the rollups say the same as the call details over ``f``'s range. Not when there are no calls, or
    when the details may lack calls the rollups count, because retention (which never touches a rollup) deleted
    them: the range starts on or before the last day retention pruned (``retention_horizon``, recorded by
    retention), or before the oldest stored call's day while the rollups go back further (calls deleted by other
    means than retention, oldest first). The horizon is what holds after a saved log brings back calls older than
    the pruned days: the oldest stored call is then older than the calls that are missing."""
    oldest = conn.execute("SELECT start FROM calls ORDER BY start_utc LIMIT 1").fetchone()
    if oldest is None:
        return False
    first = f.first.isoformat()
    horizon = conn.execute("SELECT pruned_through FROM retention_horizon").fetchone()
    if horizon is not None and first <= str(horizon[0]):
        return False
    first_rolled = conn.execute(f"SELECT min(day) FROM {DAYS_TABLE}").fetchone()[0]
    return not (first_rolled is not None and first_rolled < str(oldest[0])[:10] and first < str(oldest[0])[:10])


def _totals_from_rollups(conn: ReadConnection, f: Filters, tz: ZoneInfo) -> tuple[int, int, int, int] | None:
    """The call listing's totals without reading its calls: calls, duration and cost from the rollups (whole
    months from the monthly grain), plus the later legs of transfers through their own small index
    (``calls_later_legs``). ``None`` when the rollups may not say the same as the details (`_rollups_agree`)."""
    if not _rollups_agree(conn, f):
        return None
    calls = duration = cost = 0
    for *_, n, seconds, micros in daily_rows(conn, f):
        calls, duration, cost = calls + int(str(n)), duration + int(str(seconds)), cost + int(str(micros))
    dialect = _dialect(conn)
    where, params = _call_where(f, tz, False, dialect)
    later = conn.execute(f"SELECT count(*) FROM calls c {dialect.later_legs}WHERE c.leg > 0 AND {where}",
                         params).fetchone()[0]
    return calls + int(later), calls, duration, cost


#: a row of `extension_totals`: site ('' unless by site), extension, day ('' unless day by day), legs, calls,
#: duration, cost_micros.
ExtensionTotals = tuple[str, str, str, int, int, int, int]


def extension_totals(conn: ReadConnection, f: Filters, tz: ZoneInfo, *, volatile: Sequence[ExtensionSpec] = (),
                     by_site: bool = False) -> list[ExtensionTotals]:
    """`call_totals` of every extension at once, in one grouped read: rows ``(site, extension, day, legs, calls,
    duration, cost_micros)``, ``day`` being ``''`` unless the extension is one of ``volatile`` (its department
    changes inside the range): then a row per site-local day, so the caller can split it at the change; ``site``
    is the name of the calls' site with ``by_site`` (a row per site and extension), else ``''``.

    From the rollups when they say the same as the details (`_rollups_agree`; whole months from the monthly
    grain, as `daily_rows` reads them), with the later legs of transfers counted through their own index;
    else one grouped read of the call details. Either way the figures are `call_totals`' for each extension
    (and, day by day, for each `select_intervals` selection of its days)."""
    dialect = _dialect(conn)
    params: list[object] = []
    test = _volatile_test(volatile, params, dialect)
    day = "''" if test is None else f"CASE WHEN {test} THEN substr(c.start, 1, 10) ELSE '' END"
    site = "c.site_id" if by_site else "0"
    where, where_params = _call_where(f, tz, False, dialect)
    params.extend(where_params)
    named = 0 if by_site else None
    if not _rollups_agree(conn, f):
        rows = _site_names(conn, conn.execute(
            f"SELECT {site} AS sk, c.extension, {day} AS dk, count(*), "
            "coalesce(sum(CASE WHEN c.leg = 0 THEN 1 ELSE 0 END), 0), coalesce(sum(c.duration), 0), "
            f"coalesce(sum(c.cost_micros), 0) FROM calls c WHERE {where} GROUP BY sk, c.extension, dk", params), named)
        return [("" if named is None else str(s), str(e), str(d), int(str(n)), int(str(c)), int(str(t)), int(str(m)))
                for s, e, d, n, c, t, m in rows]
    sums: dict[tuple[str, str, str], list[int]] = {}
    for row in daily_rows(conn, f, group=(SITE,) if by_site else (), volatile=volatile):
        dk, ext, calls, duration, cost = row[0], row[1], row[-3], row[-2], row[-1]
        figures = sums.setdefault((str(row[2]) if by_site else "", str(ext), str(dk)), [0, 0, 0, 0])
        figures[0] += int(str(calls))
        figures[1] += int(str(calls))
        figures[2] += int(str(duration))
        figures[3] += int(str(cost))
    for s, ext, dk, later in _site_names(conn, conn.execute(
            f"SELECT {site} AS sk, c.extension, {day} AS dk, count(*) FROM calls c {dialect.later_legs}"
            f"WHERE c.leg > 0 AND {where} GROUP BY sk, c.extension, dk", params), named):
        sums.setdefault(("" if named is None else str(s), str(ext), str(dk)), [0, 0, 0, 0])[0] += int(str(later))
    return [(s, ext, dk, n, c, t, m) for (s, ext, dk), (n, c, t, m) in sums.items()]
