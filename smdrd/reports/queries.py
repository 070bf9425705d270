"""The report builders: what each report kind shows, as small named functions over plain rows.

`run_report` is the one entry point (the CLI and the HTTP routes both call it): it reads rows through
a `smdrd.store.api.ReportReader`, attributes each to the department its extension was in on that day
(`smdrd.reports.departments`), and hands them to the builder of the kind. Builders do no I/O.

Money never goes through a float: costs are summed as integer micro-units (``cost_micros``) and turned into a
`Decimal` with the tariff's number of decimals only for display. A call counts once (its first leg,
``leg = 0``); its duration and cost are summed over every leg, so a transferred call is one call whose cost is
complete. Rows never carry HTML: escaping belongs to the renderers.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo

from smdrd.privacy import mask
from smdrd.rating.classes import CALL_CLASSES
from smdrd.record import EARLIEST_YEAR, LATEST_YEAR
from smdrd.reports.departments import UNASSIGNED, Directory, extension_sort_key, prorated_budget
from smdrd.store.api import SITE, ExtensionNames, Filters, Interval, ReportReader, name_at

if TYPE_CHECKING:
    from smdrd.config import Settings

__all__ = [
    "DETAIL_KINDS", "DIRECTIONS", "KINDS", "LISTING_KINDS", "MAX_PAGE_SIZE", "NO_NAMES", "NO_TRUNK", "Column",
    "Context", "Query", "Report", "Section", "Tally", "average", "context_from", "every_call", "every_row", "money",
    "other_currencies", "parse_query", "rounded", "run_report",
]

#: the details kinds (Yeastar's "Extension Call Accounting Details"): every call, a section per extension with
#: its subtotals, and a grand total.
DETAIL_KINDS = ("extension-details", "department-details")
KINDS = ("extensions", "departments", "calls", "destinations", "trunks", "days", *DETAIL_KINDS)
#: the kinds that list calls, a page at a time (``page``, ``page_size``), or every call in an export.
LISTING_KINDS = ("calls", *DETAIL_KINDS)
#: no extension has a name (the caller passes the directory's names, extension -> name).
NO_NAMES: Mapping[str, str] = MappingProxyType({})
DIRECTIONS = ("outbound", "inbound", "internal")
#: the longest range a report may cover (ten years): beyond it a typo such as 20260 is more likely than intent.
MAX_DAYS = 3660
#: the most call details one page holds (``page_size``). Over HTTP every page is bounded by it (``page_size=0``,
#: "every call", is the CLI's alone); every call of a range is `every_call`, streamed as CSV.
MAX_PAGE_SIZE = 1000
#: the days a report may name: no call is stored outside the years a parser accepts (`smdrd.record`).
EARLIEST_DAY = date(EARLIEST_YEAR, 1, 1)
LATEST_DAY = date(LATEST_YEAR, 12, 31)


@dataclass(frozen=True, slots=True)
class Column:
    """A report column: its JSON key, its heading, and how to show it (text, int, seconds, average, money,
    minutes)."""

    key: str
    title: str
    kind: str = "text"


@dataclass(frozen=True, slots=True)
class Section:
    """A part of a report with its own table and subtotals: a sheet in XLSX, a heading in PDF, a block ending in
    a subtotal line elsewhere. The details kinds have one per extension (``key``: its ``extension``, ``name`` and,
    for department details, ``department``). ``rows`` may be a one-pass iterator read from a cursor."""

    name: str
    rows: Iterable[dict[str, Any]]
    totals: dict[str, Any] | None
    key: Mapping[str, str] = field(default_factory=dict)
    #: the section's own columns (the summary of a details report), else the report's.
    columns: tuple[Column, ...] | None = None
    #: what its totals row is called: ``Total``, or ``Subtotal`` for a part of the report.
    total_label: str = "Total"


@dataclass(slots=True)
class Report:
    """A finished report: columns, rows (plain values: str, int, `Decimal`, None), totals and what it covers.

    ``sections``: for the details kinds, every extension's section with its subtotals; ``rows`` are then the
    page's calls, each naming its extension (an export reads every section's rows instead, see `every_row`)."""

    kind: str
    columns: tuple[Column, ...]
    rows: list[dict[str, Any]]
    totals: dict[str, Any] | None
    meta: dict[str, Any] = field(default_factory=dict)
    sections: list[Section] | None = None


@dataclass(frozen=True, slots=True)
class Query:
    """What to report: the kind, the site-local days (both included) and the filters (empty = any)."""

    kind: str
    first: date
    last: date
    departments: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()
    trunks: tuple[str, ...] = ()
    directions: tuple[str, ...] = ("outbound",)
    classes: tuple[str, ...] = ()
    by_class: bool = False
    page: int = 1
    page_size: int = 100
    top: int = 20
    by: Literal["cost", "count"] = "cost"
    #: how many last digits of each dialled number the reader may not see (`smdrd.privacy`; 0: none).
    mask_digits: int = 0
    #: the sites reported on, by name (a central store's; empty: every site).
    sites: tuple[str, ...] = ()
    #: the extensions report: a row per site and extension, each with its ``site`` (True), or a row per extension
    #: (False); None: as the store says, per site on a store of several sites unless filtered to one (201 of one
    #: site is not 201 of another). A caller that has read the store's sites already says which.
    by_site: bool | None = None

    def filters(self) -> Filters:
        return Filters(self.first, self.last, self.extensions, self.trunks, self.directions, self.classes,
                       self.sites)

    def describe(self) -> dict[str, Any]:
        """The filters as plain data, for a report's metadata (``site`` only when the report names sites)."""
        return {"department": list(self.departments), "extension": list(self.extensions),
                "trunk": list(self.trunks), "direction": list(self.directions), "class": list(self.classes),
                **({"site": list(self.sites)} if self.sites else {})}


@dataclass(frozen=True, slots=True)
class Context:
    """What reports need from the configuration."""

    directory: Directory
    timezone: ZoneInfo
    currency: str = "USD"
    decimals: int = 2


@dataclass(slots=True)
class Tally:
    """Calls, talk seconds and cost in micro-units: exact, and summable in any order."""

    calls: int = 0
    duration: int = 0
    cost_micros: int = 0

    def add(self, calls: int, duration: int, cost_micros: int) -> None:
        self.calls += calls
        self.duration += duration
        self.cost_micros += cost_micros

    def merge(self, other: Tally) -> None:
        self.add(other.calls, other.duration, other.cost_micros)


def money(micros: int, decimals: int) -> Decimal:
    """``micros`` millionths as a `Decimal` with ``decimals`` places (half-up; per-call costs are already
    rounded to the tariff's decimals, so sums of them are exact)."""
    return Decimal(micros).scaleb(-6).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)


def average(duration: int, calls: int) -> Decimal:
    """Seconds per call, unrounded (a `Decimal` quotient; 0 for no calls).

    Every output rounds it once, half up, to what it shows: one decimal in JSON and CSV (`rounded`), the second
    in h:mm:ss (`smdrd.reports.render.hms`) and in XLSX. Rounding here as well rounded twice: 6,087 s over 41
    calls (148.46 s) became 148.5, then 0:02:29 where 0:02:28 is right."""
    if not calls:
        return Decimal(0)
    return Decimal(duration) / Decimal(calls)


def rounded(value: int | Decimal, step: str = "0.1") -> Decimal:
    """``value`` rounded half up to ``step`` (``"0.1"``: an average as JSON and CSV give it; ``"1"``: the
    second)."""
    return Decimal(value).quantize(Decimal(step), rounding=ROUND_HALF_UP)


def minutes(duration: int) -> Decimal:
    return (Decimal(duration) / 60).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def figures(t: Tally, decimals: int) -> dict[str, Any]:
    """The four figures every accounting row has."""
    return {"calls": t.calls, "duration": t.duration, "average": average(t.duration, t.calls),
            "cost": money(t.cost_micros, decimals)}


FIGURE_COLUMNS = (Column("calls", "Calls", "int"), Column("duration", "Duration (s)", "seconds"),
                  Column("average", "Average (s)", "average"), Column("cost", "Cost", "money"))
CLASS_COLUMN = Column("call_class", "Class")
NAME_COLUMN = Column("name", "Name")


def site_names(q: Query, names: Mapping[str, str]) -> Mapping[str, str]:
    """``names`` as shown in the report ``q``: the one site's (`ExtensionNames.of_site`) when it reports on one
    site, so that its rows of no site (per extension, per day) name that site's extensions."""
    if len(q.sites) == 1 and isinstance(names, ExtensionNames):
        return names.of_site(q.sites[0])
    return names


def name_column(names: Mapping[str, str]) -> tuple[Column, ...]:
    """The name column, where the directory names extensions (none where it names none)."""
    return (NAME_COLUMN,) if names else ()

#: a rollup row attributed to a department: (department, extension, day ('' when not grouped by day), the
#: grouping values, calls, duration, cost_micros).
Attributed = tuple[str, str, str, tuple[Any, ...], int, int, int]


def attribute(rows: Iterable[tuple[Any, ...]], directory: Directory, first: str,
              wanted: set[str] | None, *, sited: bool = False, keep_site: bool = False) -> Iterator[Attributed]:
    """Give each ``(day, extension, *group, calls, duration, cost)`` row its department; keep the ``wanted``.
    ``sited``: the first of ``group`` is the row's site (`SITE`), which the department is resolved at (and which
    the attributed row no longer carries, unless ``keep_site``)."""
    department = directory.department
    for row in rows:
        day, extension = row[0], row[1]
        if sited:
            dep = department(extension, day or first, row[2])
            group = tuple(row[2 if keep_site else 3:-3])
        else:
            dep = department(extension, day or first)
            group = tuple(row[2:-3])
        if wanted is not None and dep not in wanted:
            continue
        yield dep, extension, day, group, int(row[-3]), int(row[-2]), int(row[-1])


def extensions_report(rows: Iterable[Attributed], *, by_class: bool, decimals: int,
                      names: Mapping[str, str] = NO_NAMES, by_site: bool = False) -> Report:
    """One row per extension with its name (and department, when it moved; and class, with ``by_class``), and a
    totals row. ``by_site``: the rows' group starts with their site (`attribute`'s ``keep_site``), and each
    site's extension has its own rows, with its ``site`` and its name there."""
    tallies: dict[tuple[str, str, str, str], Tally] = {}
    total = Tally()
    for dep, ext, _day, group, calls, duration, cost in rows:
        site, rest = (str(group[0]), group[1:]) if by_site else ("", group)
        key = (ext, site, dep, rest[0] if by_class else "")
        tallies.setdefault(key, Tally()).add(calls, duration, cost)
        total.add(calls, duration, cost)
    out = []
    for (ext, site, dep, cls), t in sorted(tallies.items(),
                                           key=lambda kv: (extension_sort_key(kv[0][0]), kv[0][1:])):
        row: dict[str, Any] = {"extension": ext, **({"site": site} if by_site else {}),
                               **({"name": name_at(names, site or None, ext)} if names else {}), "department": dep}
        if by_class:
            row["call_class"] = cls
        out.append({**row, **figures(t, decimals)})
    columns = (Column("extension", "Extension"), *((Column("site", "Site"),) if by_site else ()),
               *name_column(names), Column("department", "Department"),
               *((CLASS_COLUMN,) if by_class else ()), *FIGURE_COLUMNS)
    return Report("extensions", columns, out, figures(total, decimals))


def departments_report(rows: Iterable[Attributed], directory: Directory, *, shown: Sequence[str],
                       by_class: bool, decimals: int, budget_days: tuple[date, date]) -> Report:
    """One row per department in ``shown`` (parents before their children), each including its
    sub-departments; `UNASSIGNED` last when it had calls. Totals count every call once. The budget column is
    the monthly budget for the days of ``budget_days`` (`prorated_budget`), so it is headed "Period budget": a
    half month shows half the configured figure."""
    own: dict[tuple[str, str], Tally] = {}
    total = Tally()
    for dep, _ext, _day, group, calls, duration, cost in rows:
        own.setdefault((dep, group[0] if by_class else ""), Tally()).add(calls, duration, cost)
        total.add(calls, duration, cost)
    rolled: dict[tuple[str, str], Tally] = {}
    for (dep, cls), t in own.items():
        for name in directory.ancestors(dep):
            rolled.setdefault((name, cls), Tally()).merge(t)
    classes = sorted({cls for _, cls in rolled}, key=_class_order) if by_class else [""]
    out = []
    for name in shown:
        for cls in classes:
            found = rolled.get((name, cls))
            if found is None and (by_class or name == UNASSIGNED):
                continue  # configured departments show even when silent; class rows and Unassigned only with calls
            row: dict[str, Any] = {"department": name, "parent": directory.parents.get(name)}
            if by_class:
                row["call_class"] = cls
            row.update(figures(found or Tally(), decimals))
            budget = directory.budgets.get(name)
            if not by_class:
                row["budget"] = (None if budget is None else
                                 prorated_budget(budget, *budget_days).quantize(Decimal(1).scaleb(-decimals),
                                                                                rounding=ROUND_HALF_UP))
            out.append(row)
    columns = (Column("department", "Department"), Column("parent", "Parent"),
               *((CLASS_COLUMN,) if by_class else ()), *FIGURE_COLUMNS,
               *(() if by_class else (Column("budget", "Period budget", "money"),)))
    return Report("departments", columns, out, figures(total, decimals))


def _class_order(cls: str) -> tuple[int, str]:
    return (CALL_CLASSES.index(cls), cls) if cls in CALL_CLASSES else (len(CALL_CLASSES), cls)


def days_report(rows: Iterable[Attributed], *, first: date, last: date, decimals: int) -> Report:
    """One row per site-local day of the range (days without calls too, so a chart has no gaps)."""
    per_day: dict[str, Tally] = {}
    total = Tally()
    for _dep, _ext, day, _group, calls, duration, cost in rows:
        per_day.setdefault(day, Tally()).add(calls, duration, cost)
        total.add(calls, duration, cost)
    out = []
    current = first
    while current <= last:
        iso = current.isoformat()
        out.append({"day": iso, **figures(per_day.get(iso, Tally()), decimals)})
        current += timedelta(days=1)
    return Report("days", (Column("day", "Day"), *FIGURE_COLUMNS), out, figures(total, decimals))


def busiest_hours(rows: Iterable[tuple[Any, ...]]) -> tuple[dict[str, tuple[int, int]], tuple[int, int] | None]:
    """Each trunk's busiest hour of the day ``(hour, calls)``, and the busiest over all trunks (earliest on a tie)."""
    per_trunk: dict[str, dict[int, int]] = {}
    overall: dict[int, int] = {}
    for trunk, hour, calls in rows:
        per_trunk.setdefault(trunk, {})[int(hour)] = per_trunk.get(trunk, {}).get(int(hour), 0) + int(calls)
        overall[int(hour)] = overall.get(int(hour), 0) + int(calls)

    def top(hours: dict[int, int]) -> tuple[int, int] | None:
        busy = [(-calls, hour) for hour, calls in hours.items() if calls > 0]
        if not busy:
            return None
        calls, hour = min(busy)
        return hour, -calls

    tops = {t: h for t, hours in per_trunk.items() if (h := top(hours)) is not None}
    return tops, top(overall)


def _hour_label(h: tuple[int, int] | None) -> str | None:
    return None if h is None else f"{h[0]:02d}:00-{h[0] + 1:02d}:00"


#: the trunks report's row of the calls that used no trunk (internal calls, with ``direction=all``).
NO_TRUNK = "(no trunk)"


def trunks_report(rows: Iterable[Attributed], hours: tuple[dict[str, tuple[int, int]], tuple[int, int] | None]
                  | None, *, decimals: int) -> Report:
    """Calls, minutes and cost per trunk, and its busiest hour of the day (``None`` when not known)."""
    tallies: dict[str, Tally] = {}
    total = Tally()
    for _dep, _ext, _day, group, calls, duration, cost in rows:
        tallies.setdefault(group[0], Tally()).add(calls, duration, cost)
        total.add(calls, duration, cost)
    per_trunk, overall = hours if hours is not None else ({}, None)
    out = []
    for trunk, t in sorted(tallies.items()):
        h = per_trunk.get(trunk)
        out.append({"trunk": trunk or NO_TRUNK, "calls": t.calls, "duration": t.duration,
                    "minutes": minutes(t.duration), "cost": money(t.cost_micros, decimals),
                    "busiest_hour": _hour_label(h), "busiest_hour_calls": None if h is None else h[1]})
    totals = {"calls": total.calls, "duration": total.duration, "minutes": minutes(total.duration),
              "cost": money(total.cost_micros, decimals), "busiest_hour": _hour_label(overall),
              "busiest_hour_calls": None if overall is None else overall[1]}
    columns = (Column("trunk", "Trunk"), Column("calls", "Calls", "int"),
               Column("duration", "Duration (s)", "seconds"), Column("minutes", "Minutes", "minutes"),
               Column("cost", "Cost", "money"), Column("busiest_hour", "Busiest hour"),
               Column("busiest_hour_calls", "Calls in busiest hour", "int"))
    return Report("trunks", columns, out, totals)


def destinations_report(rows: Iterable[Attributed], *, top: int, by: str, decimals: int) -> Report:
    """The top ``top`` destinations (country and call class) by cost or by number of calls; totals cover all.

    ``rows`` are grouped by calling code, region and class: the country is the number's region (+1 809 is DO,
    +1 876 JM), stored with each call when it was rated, and the code is shown beside it."""
    tallies: dict[tuple[str, str, str], Tally] = {}
    total = Tally()
    for _dep, _ext, _day, group, calls, duration, cost in rows:
        tallies.setdefault((group[0], group[1], group[2]), Tally()).add(calls, duration, cost)
        total.add(calls, duration, cost)
    if by == "count":
        ranked = sorted(tallies.items(), key=lambda kv: (-kv[1].calls, -kv[1].cost_micros, kv[0]))
    else:
        ranked = sorted(tallies.items(), key=lambda kv: (-kv[1].cost_micros, -kv[1].calls, kv[0]))
    out = []
    for (code, region, cls), t in ranked[:top] if top > 0 else ranked:
        out.append({"country": region, "code": f"+{code}" if code else "", "call_class": cls,
                    **figures(t, decimals)})
    columns = (Column("country", "Country"), Column("code", "Code"), CLASS_COLUMN, *FIGURE_COLUMNS)
    report = Report("destinations", columns, out, figures(total, decimals))
    report.meta.update({"top": top, "by": by, "destinations": len(tallies)})
    return report


def call_detail(row: Sequence[Any], directory: Directory, decimals: int,
                names: Mapping[str, str] = NO_NAMES, *, mask_digits: int = 0) -> dict[str, Any]:
    """One call-detail row (`smdrd.store.api.CALL_DETAIL` order) as a report row (the number's last
    ``mask_digits`` digits hidden, `smdrd.privacy.mask`)."""
    start, ext, number, direction, cls, trunk, duration, cost, leg, _key, rule = row[:11]
    at = str(row[11] or "") if len(row) > 11 else ""
    site = at if directory.sited else ""
    number = mask(number, mask_digits) if mask_digits and number else number
    return {"start": start, "extension": ext, **({"name": name_at(names, at, ext)} if names else {}),
            "department": directory.department(ext, start[:10], site), "number": number, "direction": direction,
            "call_class": cls or "", "rule": rule or "", "trunk": trunk, "duration": duration,
            "cost": money(cost or 0, decimals), "leg": leg}


def listing_totals(legs: int, calls: int, duration: int, cost_micros: int, decimals: int) -> dict[str, Any]:
    """The totals of a listing of call legs: calls (first legs), legs, talk seconds, average and cost."""
    return {"calls": calls, "legs": legs, "duration": duration, "average": average(duration, calls),
            "cost": money(cost_micros, decimals)}


def _paged(report: Report, legs: int, page: int, page_size: int) -> Report:
    pages = max(1, math.ceil(legs / page_size)) if page_size > 0 else 1
    report.meta.update({"page": page, "page_size": page_size, "pages": pages, "rows_total": legs})
    return report


def calls_report(rows: Sequence[tuple[Any, ...]], totals: tuple[int, int, int, int], directory: Directory, *,
                 decimals: int, page: int, page_size: int, names: Mapping[str, str] = NO_NAMES,
                 mask_digits: int = 0) -> Report:
    """One page of call details, every leg (``leg`` > 0 is a later leg of a transferred call)."""
    out = [call_detail(row, directory, decimals, names, mask_digits=mask_digits) for row in rows]
    columns = (Column("start", "Time"), Column("extension", "Extension"), *name_column(names),
               Column("department", "Department"), Column("number", "Number"), Column("direction", "Direction"),
               CLASS_COLUMN, Column("trunk", "Trunk"), Column("duration", "Duration (s)", "seconds"),
               Column("cost", "Cost", "money"), Column("leg", "Leg", "int"))
    report = Report("calls", columns, out, listing_totals(*totals, decimals))
    return _paged(report, totals[0], page, page_size)


#: the columns of the details kinds (Yeastar's time, call to, talk duration and amount; with the call's
#: direction, class, the tariff rule that priced it and the trunk). Extension, name and department head each
#: section (and lead each CSV line).
DETAIL_COLUMNS = (Column("start", "Time"), Column("number", "Call to"), Column("direction", "Direction"),
                  CLASS_COLUMN, Column("rule", "Rule"), Column("trunk", "Trunk"),
                  Column("duration", "Talk duration (s)", "seconds"), Column("cost", "Amount", "money"))
#: what heads each section of a details report (the CSV's first columns).
SECTION_COLUMNS = (Column("extension", "Extension"), NAME_COLUMN, Column("department", "Department"))


@dataclass(frozen=True, slots=True)
class _Part:
    """One section of a details report, before its rows are read: an extension (in one department, for
    department details), the days it covers when that is not the whole range, and its totals."""

    extension: str
    department: str
    spans: tuple[Interval, ...] | None  # (extension, first, last) to select; None: the whole range
    totals: tuple[int, int, int, int]  # legs, calls, duration, cost_micros
    #: the site of the extension (`Directory.sited`: a section per site and extension); None: every site.
    site: str | None = None

    def filters(self, f: Filters) -> Filters:
        """``f`` narrowed to this section's extension (and site)."""
        if self.site is None:
            return dataclasses.replace(f, extensions=(self.extension,))
        return dataclasses.replace(f, extensions=(self.extension,), sites=(self.site,))

    @property
    def legs(self) -> int:
        return self.totals[0]


def _detail_parts(reader: ReportReader, q: Query, ctx: Context) -> list[_Part]:
    """The sections of a details report, in order (extensions in numeric order; for department details,
    departments in tree order first; a section per site and extension when the directory names sites, each
    site's extension resolved at its site), each with its totals: every extension's in one grouped read
    (`ReportReader.extension_totals`), day by day for the extensions whose department changes inside the range,
    whose days are then summed per department interval. A section covering only some of its extension's days
    (a move, or a department filter) names them (``spans``), for the read of its calls."""
    d = ctx.directory
    first, last = q.first.isoformat(), q.last.isoformat()
    wanted = _wanted(q, d)
    by_department = q.kind == "department-details"
    order = {name: i for i, name in enumerate(_shown_departments(q, d, wanted))}
    days: dict[tuple[str | None, str], list[tuple[str, tuple[int, int, int, int]]]] = {}
    for at, ext, day, *figures in reader.extension_totals(q.filters(), ctx.timezone,
                                                          volatile=d.volatile(first, last), by_site=d.sited):
        key = (at if d.sited else None, ext)
        days.setdefault(key, []).append((day, (figures[0], figures[1], figures[2], figures[3])))
    parts: list[_Part] = []
    for (site, ext), rows in days.items():
        spans = d.intervals(ext, first, last, site or "")
        groups: dict[str, list[Interval]] = {}
        for a, b, dep in spans:
            if wanted is None or dep in wanted:
                groups.setdefault(dep if by_department else "", []).append((ext, a, b))
        sums: dict[str, Tally] = {}
        legs: dict[str, int] = {}
        for day, (n, calls, duration, cost) in rows:
            when = day or first
            dep = next(dep for a, b, dep in spans if a <= when <= b)
            if wanted is None or dep in wanted:
                part = dep if by_department else ""
                sums.setdefault(part, Tally()).add(calls, duration, cost)
                legs[part] = legs.get(part, 0) + n
        for part, chosen in groups.items():
            t = sums.get(part)
            if t is not None and legs[part]:
                parts.append(_Part(ext, part, None if len(chosen) == len(spans) else tuple(chosen),
                                   (legs[part], t.calls, t.duration, t.cost_micros), site))
    parts.sort(key=lambda p: (order.get(p.department, len(order)), extension_sort_key(p.extension), p.site or ""))
    return parts


def _part_rows(reader: ReportReader, part: _Part, q: Query, ctx: Context, names: Mapping[str, str], *,
               limit: int = 0, offset: int = 0) -> Iterator[dict[str, Any]]:
    """The calls of one section, from a cursor opened on the first ``next`` and closed at the end."""
    if part.spans is not None:
        reader.select_intervals(part.spans)
    f = part.filters(q.filters())
    rows = reader.iter_call_rows(f, ctx.timezone, selected=part.spans is not None, limit=limit, offset=offset)
    try:
        for row in rows:
            yield call_detail(row, ctx.directory, ctx.decimals, names, mask_digits=q.mask_digits)
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()


def _section(part: _Part, q: Query, names: Mapping[str, str], decimals: int,
             rows: Iterable[dict[str, Any]]) -> Section:
    name = name_at(names, part.site, part.extension)
    label = f"{part.extension} {name}".strip()
    key = {"extension": part.extension, "name": name}
    if part.site is not None:
        label = f"{part.site or 'this site'} {label}"
        key["site"] = part.site
    if q.kind == "department-details":
        label = f"{part.department}: {label}"
        key["department"] = part.department
    return Section(label, rows, listing_totals(*part.totals, decimals), key, total_label="Subtotal")


def details_summary(report: Report) -> Section:
    """The first section of a details export: a row per section (extension, name, department, calls, legs,
    talk time, average, amount) and the grand total."""
    department = report.kind == "department-details"
    named = any(s.key.get("name") for s in report.sections or ())
    columns = (SECTION_COLUMNS[0], *((NAME_COLUMN,) if named else ()), *(SECTION_COLUMNS[2:] if department else ()),
               Column("calls", "Calls", "int"),
               Column("legs", "Legs", "int"), Column("duration", "Talk duration (s)", "seconds"),
               Column("average", "Average (s)", "average"), Column("cost", "Amount", "money"))
    rows = [{**s.key, **(s.totals or {})} for s in report.sections or ()]
    return Section("Summary", rows, report.totals, columns=columns)


def details_report(reader: ReportReader, q: Query, ctx: Context, names: Mapping[str, str] = NO_NAMES, *,
                   every: bool = False) -> Report:
    """A details report: a section per extension (per department and extension for department details) with
    its calls and subtotals, and a grand total (the sum of the sections, so it equals them to the micro-unit).

    ``every``: each section's rows are every call, read from a cursor as they are consumed (the sections must
    be read in order, one at a time; ``reader`` stays open meanwhile), and ``rows`` is empty. Otherwise ``rows``
    is the page ``q`` asks for, and each section holds its calls on that page."""
    parts = _detail_parts(reader, q, ctx)
    legs, calls, duration, cost = (sum(p.totals[i] for p in parts) for i in range(4))
    sections: list[Section] = []
    page: list[dict[str, Any]] = []
    skip = (q.page - 1) * q.page_size if q.page_size > 0 and not every else 0
    room = q.page_size if q.page_size > 0 and not every else legs
    for part in parts:
        rows: Iterable[dict[str, Any]]
        if every:
            rows = _part_rows(reader, part, q, ctx, names)
        elif skip >= part.legs or room <= 0:
            skip = max(0, skip - part.legs)
            rows = []
        else:
            rows = list(_part_rows(reader, part, q, ctx, names, limit=room, offset=skip))
            skip, room = 0, room - len(rows)
            page.extend(rows)
        sections.append(_section(part, q, names, ctx.decimals, rows))
    report = Report(q.kind, DETAIL_COLUMNS, page, listing_totals(legs, calls, duration, cost, ctx.decimals),
                    sections=sections)
    report.meta["sections"] = len(sections)
    return _with_meta(_paged(report, legs, 1 if every else q.page, 0 if every else q.page_size), q, ctx)


def context_from(settings: Settings, *, path: str | None = None) -> Context:
    """The report `Context` of a configuration.

    Raises:
        ConfigError: the departments contradict each other (see `Directory.from_config`).
    """
    return Context(Directory.from_config(settings.departments, path=path), settings.site.tz,
                   settings.tariff.currency, settings.tariff.decimals)


def _wanted(q: Query, directory: Directory) -> set[str] | None:
    if not q.departments:
        return None
    wanted: set[str] = set()
    for name in q.departments:
        wanted |= directory.subtree(name)
    return wanted


def _shown_departments(q: Query, directory: Directory, wanted: set[str] | None) -> list[str]:
    order = [*directory.tree_order(), UNASSIGNED]
    return order if wanted is None else [n for n in order if n in wanted]


def run_report(reader: ReportReader, q: Query, ctx: Context, names: Mapping[str, str] = NO_NAMES) -> Report:
    """Build the report ``q`` asks for from the store behind ``reader``; ``names`` (extension -> name, from the
    directory; a call's is its site's, `smdrd.store.api.ExtensionNames`) are shown beside the extensions.

    Costs priced in another currency than the configured one (the tariff's currency changed, or a site prices in
    its own) are summed with the rest: the report's note says so, and how to price them all alike."""
    report = _report(reader, q, ctx, names)
    if others := other_currencies(reader, q.filters(), ctx):
        note = (f"some costs of these days were priced in {', '.join(others)}, and are added here as if in "
                f"{ctx.currency} (a site that prices in its own currency, or a tariff whose currency changed: "
                f"smdrd rerate, where they were priced, prices those days again)")
        report.meta["note"] = "; ".join(filter(None, [report.meta.get("note"), note]))
    return report


def other_currencies(reader: ReportReader, f: Filters, ctx: Context) -> list[str]:
    """The currencies other than the configured one that costs of ``f``'s days were priced in (a site that
    prices in its own, a tariff whose currency changed): summed with the rest, which a report and the overview
    say."""
    return [c for c in reader.range_currencies(f) if c != ctx.currency]


def _report(reader: ReportReader, q: Query, ctx: Context, names: Mapping[str, str]) -> Report:
    names = site_names(q, names)
    d = ctx.directory
    f = q.filters()
    first, last = q.first.isoformat(), q.last.isoformat()
    wanted = _wanted(q, d)
    volatile = d.volatile(first, last)
    dec = ctx.decimals

    # Departments matter to the extensions and departments reports, and to any report filtered by department;
    # elsewhere the store may sum without extensions (and without days for the extensions that move).
    per_extension = wanted is not None or q.kind in ("extensions", "departments")

    # A directory whose memberships name sites resolves each row at its site: the rows are grouped by site too.
    # An extensions report over several sites (a central store's, not filtered to one) keeps each row's site:
    # extension 201 of one site and 201 of another are different phones.
    by_site = q.kind == "extensions" and (
        q.by_site if q.by_site is not None else len(q.sites) != 1 and len(reader.sites()) > 1)
    sited = (d.sited and per_extension) or by_site

    def attributed(group: Sequence[str] = (), *, by_day: bool = False,
                   table: str = "rollup_daily") -> Iterator[Attributed]:
        # Only extensions whose department changes inside the range are grouped per day (see `volatile`).
        rows = reader.daily_rows(f, group=(SITE, *group) if sited else group,
                                 volatile=volatile if per_extension else (), by_day=by_day, table=table,
                                 per_extension=per_extension)
        return attribute(rows, d, first, wanted, sited=sited, keep_site=by_site)

    if q.kind == "extensions":
        report = extensions_report(attributed(("call_class",) if q.by_class else ()), by_class=q.by_class,
                                   decimals=dec, names=names, by_site=by_site)
    elif q.kind == "departments":
        report = departments_report(attributed(("call_class",) if q.by_class else ()), d,
                                    shown=_shown_departments(q, d, wanted), by_class=q.by_class, decimals=dec,
                                    budget_days=(q.first, q.last))
    elif q.kind == "days":
        report = days_report(attributed(by_day=True), first=q.first, last=q.last, decimals=dec)
    elif q.kind == "trunks":
        hours = None
        if not q.departments and not q.extensions:
            hours = busiest_hours(reader.hourly_rows(f))
        report = trunks_report(attributed(("trunk",)), hours, decimals=dec)
        if hours is None:
            report.meta["note"] = "the busiest hour is not kept per extension, so it is left out when filtering " \
                                  "by department or extension"
    elif q.kind == "destinations":
        report = destinations_report(attributed(("country", "region", "call_class"), table="rollup_destinations"),
                                     top=q.top, by=q.by, decimals=dec)
    elif q.kind == "calls":
        selected = _select_calls(reader, q, d, wanted)
        offset = (q.page - 1) * q.page_size if q.page_size > 0 else 0
        rows = list(reader.iter_call_rows(f, ctx.timezone, selected=selected, limit=q.page_size, offset=offset))
        totals = reader.call_totals(f, ctx.timezone, selected=selected)
        report = calls_report(rows, totals, d, decimals=dec, page=q.page, page_size=q.page_size, names=names,
                              mask_digits=q.mask_digits)
    elif q.kind in DETAIL_KINDS:
        return details_report(reader, q, ctx, names)
    else:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {q.kind!r}")
    return _with_meta(report, q, ctx)


def _with_meta(report: Report, q: Query, ctx: Context) -> Report:
    report.meta = {"kind": q.kind, "from": q.first.isoformat(), "to": q.last.isoformat(),
                   "timezone": str(ctx.timezone), "currency": ctx.currency, "decimals": ctx.decimals,
                   "filters": q.describe(), "by_class": q.by_class, **report.meta}
    return report


def _select_calls(reader: ReportReader, q: Query, d: Directory, wanted: set[str] | None) -> bool:
    """Load the department filter of a calls query into ``reader``; True when there is one."""
    if wanted is None:
        return False
    first, last = q.first.isoformat(), q.last.isoformat()
    spans: list[Interval]
    if d.sited:
        spans = [(ext, a, b, site) for site, ext in reader.range_site_extensions(q.filters())
                 for a, b, dep in d.intervals(ext, first, last, site) if dep in wanted]
    else:
        spans = [(ext, a, b) for ext in reader.range_extensions(q.filters())
                 for a, b, dep in d.intervals(ext, first, last) if dep in wanted]
    reader.select_intervals(spans)
    return True


def every_call(reader: ReportReader, q: Query, ctx: Context,
               names: Mapping[str, str] = NO_NAMES) -> tuple[Report, Iterator[dict[str, Any]]]:
    """Every call detail of ``q`` (a ``calls`` query; its page and page size do not apply): the report's
    columns, totals and metadata with no rows, and the rows from a cursor, read as they are consumed, so a
    year's export holds one row at a time however many there are. ``reader`` must stay open while they are."""
    names = site_names(q, names)
    d = ctx.directory
    f = q.filters()
    selected = _select_calls(reader, q, d, _wanted(q, d))
    totals = reader.call_totals(f, ctx.timezone, selected=selected)
    report = calls_report([], totals, d, decimals=ctx.decimals, page=1, page_size=0, names=names)
    rows = (call_detail(row, d, ctx.decimals, names, mask_digits=q.mask_digits)
            for row in reader.iter_call_rows(f, ctx.timezone, selected=selected))
    return _with_meta(report, q, ctx), rows


def every_row(reader: ReportReader, q: Query, ctx: Context, names: Mapping[str, str] = NO_NAMES) -> Report:
    """The whole report ``q`` asks for, as an export writes it: ``sections`` hold every row (for the listing
    kinds, every call of the range, read from a cursor as consumed: the page does not apply, and ``reader``
    must stay open until the sections are read, in order). Every kind has at least one section."""
    names = site_names(q, names)
    if q.kind in DETAIL_KINDS:
        return details_report(reader, q, ctx, names, every=True)
    if q.kind == "calls":
        report, rows = every_call(reader, q, ctx, names)
    else:
        report = run_report(reader, q, ctx, names)
        rows = iter(report.rows)
    report.sections = [Section(TITLES.get(q.kind, q.kind), rows, report.totals)]
    return report


#: what each kind is called on a page, a sheet and a file.
TITLES = {"extensions": "Calls per extension", "departments": "Calls per department", "calls": "Call details",
          "destinations": "Calls per destination", "trunks": "Calls per trunk", "days": "Calls per day",
          "extension-details": "Extension call details", "department-details": "Department call details"}


# ---- parameters: one parser for the CLI and HTTP, so both accept and refuse the same things ----

def _values(params: Mapping[str, Sequence[str]], name: str) -> tuple[str, ...]:
    out: list[str] = []
    for value in params.get(name, ()):
        out.extend(v.strip() for v in value.split(",") if v.strip())
    return tuple(dict.fromkeys(out))


def _one(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = params.get(name)
    return values[-1].strip() if values and values[-1].strip() else None


def _day(value: str, name: str, *, end: bool) -> date:
    try:
        if len(value) == 7:  # a month, YYYY-MM: its first (from) or last (to) day
            month = datetime.strptime(value, "%Y-%m").date()
            day = month
            if end and month.year <= LATEST_YEAR:  # the month's last day: the day before the next month's first
                day = date(month.year + month.month // 12, month.month % 12 + 1, 1) - timedelta(days=1)
        else:
            day = date.fromisoformat(value)
    except (ValueError, OverflowError):
        raise ValueError(f"{name}: expected a date such as 2026-03-01 (or a month such as 2026-03), "
                         f"got {value[:40]!r}") from None
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        raise ValueError(f"{name}: expected a date from {EARLIEST_DAY} to {LATEST_DAY} (no call is stored "
                         f"outside them), got {value[:40]!r}")
    return day


def _int(params: Mapping[str, Sequence[str]], name: str, default: int, lo: int, hi: int) -> int:
    value = _one(params, name)
    if value is None:
        return default
    if not value.isascii() or not value.isdigit() or len(value) > 12 or not lo <= int(value) <= hi:
        raise ValueError(f"{name}: expected a whole number from {lo} to {hi}, got {value[:40]!r}")
    return int(value)


def _page_size(params: Mapping[str, Sequence[str]], bounded: bool) -> int:
    value = _one(params, "page_size")
    if bounded and value is not None and value.lstrip("-+").isdigit() and int(value) <= 0:
        raise ValueError(f"page_size: expected a whole number from 1 to {MAX_PAGE_SIZE}, got {value!r} (a page "
                         f"holds at most {MAX_PAGE_SIZE} calls; format=csv gives every call of the range)")
    return _int(params, "page_size", 100, 1 if bounded else 0, MAX_PAGE_SIZE)


def parse_query(params: Mapping[str, Sequence[str]], ctx: Context, *, today: date | None = None,
                bounded: bool = False, listed: Collection[str] | None = None) -> Query:
    """A `Query` from string parameters (the URL query, or the CLI's options).

    Keys: ``kind``, ``from``, ``to`` (dates or months, site-local, from `EARLIEST_DAY` to `LATEST_DAY`;
    default this month to date), ``department``, ``extension``, ``trunk``, ``direction`` (``all`` for every
    direction), ``class`` (repeated or comma-separated), ``site`` (a central store's site names), ``by_class``,
    ``page``, ``page_size`` (1 to
    `MAX_PAGE_SIZE`; 0, every call on one page, only without ``bounded``), ``top``, ``by``. ``bounded`` is
    for requests from the network (HTTP): every page is bounded there.

    ``listed``: the departments an unknown department's message may name (a manager's own); every one when
    ``None``.

    Raises:
        ValueError: naming the parameter and what was expected.
    """
    kind = _one(params, "kind") or "extensions"
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    today = today or datetime.now(ctx.timezone).date()
    raw_from, raw_to = _one(params, "from"), _one(params, "to")
    first = _day(raw_from, "from", end=False) if raw_from else today.replace(day=1)
    last = _day(raw_to, "to", end=True) if raw_to else today
    if last < first:
        raise ValueError(f"to ({last}) is before from ({first})")
    if (last - first).days >= MAX_DAYS:
        raise ValueError(f"from/to: a report covers at most {MAX_DAYS} days")
    departments = _values(params, "department")
    known = {*ctx.directory.names, UNASSIGNED}
    for name in departments:
        if name not in known:
            # A manager's mistake lists their own departments only: the others' names are not theirs to learn.
            shown = sorted(known if listed is None else known & set(listed))
            raise ValueError(f"department: unknown department {name!r} (known: {', '.join(shown) or 'none'})")
    directions = _values(params, "direction") or ("outbound",)
    if "all" in directions:
        directions = DIRECTIONS
    for value in directions:
        if value not in DIRECTIONS:
            raise ValueError(f"direction: expected {', '.join(DIRECTIONS)} or all, got {value!r}")
    classes = _values(params, "class")
    for value in classes:
        if value not in CALL_CLASSES:
            raise ValueError(f"class: expected one of {', '.join(CALL_CLASSES)}, got {value!r}")
    by = _one(params, "by") or "cost"
    if by not in ("cost", "count"):
        raise ValueError(f"by: expected cost or count, got {by!r}")
    by_class = (_one(params, "by_class") or "").lower() in ("1", "true", "yes", "on")
    return Query(kind, first, last, departments=departments, extensions=_values(params, "extension"),
              trunks=_values(params, "trunk"), directions=directions, classes=classes, by_class=by_class,
              page=_int(params, "page", 1, 1, 10_000_000), page_size=_page_size(params, bounded),
              top=_int(params, "top", 20, 0, 10_000), by="count" if by == "count" else "cost",
              sites=_values(params, "site"))
