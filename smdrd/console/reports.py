"""The console's reports page (``/reports``): every report kind of the JSON API, rendered on the server.

A GET form whose filters live in the URL (a view is bookmarkable and works without JavaScript): the kind, a
period or the days, the department, extension, trunk, direction, classes and the kind's own options, read by
the API's own parser (`smdrd.reports.queries.parse_query`), so the page and ``/api/reports/<kind>`` accept and
refuse the same things; each mistake is named beside its field (400), never a 500. The table is the reports'
own (`smdrd.reports.render.table_view`: durations h:mm:ss, money with its currency, names beside extensions, a
totals row), sorted by a column through links, with download links to the CSV, XLSX and PDF exports of the same
query; the days and departments kinds draw their cost as bars (inline SVG, `chart`: no script). A manager sees
only their departments (`smdrd.reports.http.scoped`), numbers are masked as the reader may see them
([privacy]), and the report runs in the reports' own threads under their ``max_reports`` bound
(`smdrd.reports.http.ReportService.report`), never on the event loop. Every value is escaped by the template.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp import web

from smdrd.http import principal_of, requires
from smdrd.privacy import hidden_digits
from smdrd.rating.classes import CALL_CLASSES
from smdrd.reports.departments import extension_sort_key
from smdrd.reports.export import FILE_FORMATS, header_lines
from smdrd.reports.http import REPORT_READERS, ReportService, scoped, visible_departments
from smdrd.reports.queries import DETAIL_KINDS, DIRECTIONS, KINDS, LISTING_KINDS, TITLES, Query, Report, parse_query
from smdrd.reports.render import table_view
from smdrd.reports.schedules import PERIODS, period_of

if TYPE_CHECKING:
    from smdrd.console import Console

__all__ = ["PAGE_SIZE", "Chart", "ReportForm", "ReportPage", "chart", "parse_form", "register", "sorted_report"]

#: the query parameters the form sends, as `parse_query` reads them (``class`` may repeat).
API_KEYS = ("kind", "from", "to", "department", "extension", "trunk", "direction", "class", "by_class", "top", "by",
            "page", "page_size", "site")
#: the page's own parameters: a period instead of the days, and the column sorted by.
PAGE_KEYS = ("period", "sort", "order")
#: call details shown per page by default.
PAGE_SIZE = 100
#: what the period menu calls each period (`smdrd.reports.schedules.period_of`).
PERIOD_NAMES = {"month_to_date": "This month so far", "last_month": "Last month", "last_week": "Last week",
                "yesterday": "Yesterday"}
#: the fields of a problem that `parse_query` names, by its message's first word.
_FIELDS = {"kind", "from", "to", "department", "extension", "trunk", "direction", "class", "by", "top", "page",
           "page_size", "site"}


@dataclasses.dataclass
class ReportForm:
    """A report as asked for in the URL: the values as typed (echoed in the form), the classes chosen, the
    problems by field, and the `Query` made of it."""

    values: dict[str, str]
    classes: tuple[str, ...] = ()
    errors: dict[str, str] = dataclasses.field(default_factory=dict)
    query: Query | None = None
    token: str = ""

    def params(self, *, api: bool = False, **changes: str | None) -> list[tuple[str, str]]:
        """This report's parameters, changed by ``changes`` (``None`` drops one); ``api``: the JSON API's
        (the period as its days, no page or sort)."""
        q = self.query
        values = dict(self.values)
        if api:
            values = {k: v for k, v in values.items()
                      if k not in ("kind", "period", "sort", "order", "page", "page_size")}
            if q is not None:
                values.update({"from": q.first.isoformat(), "to": q.last.isoformat()})
        params = [(k, v) for k, v in values.items() if v and k not in changes]
        params += [("class", c) for c in self.classes if "class" not in changes]
        params += [(k, v) for k, v in changes.items() if v]
        if self.token:  # a page opened with the shared token's ?token= keeps it in its links, as before
            params.append(("token", self.token))
        return params

    def url(self, path: str, *, api: bool = False, **changes: str | None) -> str:
        params = self.params(api=api, **changes)
        return f"{path}?{urlencode(params)}" if params else path


def _field_of(message: str) -> str:
    head = message.split(":", 1)[0].split(" ", 1)[0].split("/", 1)[0]
    return head if head in _FIELDS else "kind"


def parse_form(query: Any, today: date, ctx: Any, *, token: str = "", sites: Sequence[str] = (),
               listed: Sequence[str] | None = None) -> ReportForm:
    """The `ReportForm` of a URL query (a ``MultiDict``): each field checked by `parse_query`, every problem
    named beside its field (the parser stops at the first, so each is looked for with the ones before left
    out); ``sites``: the store's site names, when it holds several (a site not among them is named wrong);
    ``listed``: the departments a mistake may name (`parse_query`)."""
    values = {name: query.get(name, "").strip()[:200] for name in (*API_KEYS, *PAGE_KEYS) if name != "class"}
    form = ReportForm(values, token=token[:200])
    if values["site"] and len(sites) > 1 and values["site"] not in sites:
        form.errors["site"] = f"unknown site {values['site'][:40]!r} (known: {', '.join(sites)})"
        values["site"] = ""
    form.classes = tuple(dict.fromkeys(c.strip()[:40] for c in query.getall("class", [])[:20] if c.strip()))
    period = values["period"]
    if period and period not in PERIODS:
        form.errors["period"] = f"expected one of {', '.join(PERIODS)} or empty for the days below"
    elif period:
        first, last = period_of(period, today)
        values["from"], values["to"] = first.isoformat(), last.isoformat()
    if values["order"] and values["order"] not in ("asc", "desc"):
        form.errors["order"] = f"expected asc or desc, got {values['order'][:20]!r}"
    params: dict[str, list[str]] = {k: [v] for k, v in values.items() if v and k in API_KEYS}
    if form.classes:
        params["class"] = list(form.classes)
    if values["kind"] in LISTING_KINDS and "page_size" not in params:
        params["page_size"] = [str(PAGE_SIZE)]
    for _ in range(len(_FIELDS) + 1):
        try:
            form.query = parse_query(params, ctx, today=today, bounded=True, listed=listed)
            break
        except ValueError as exc:
            name = _field_of(str(exc))
            form.errors.setdefault(name, str(exc).removeprefix(f"{name}:").strip())
            if name not in params:
                break
            del params[name]
    if form.errors:
        form.query = None
    return form


def _sort_key(kind: str, key: str) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    def numeric(row: Mapping[str, Any]) -> tuple[Any, ...]:
        value = row.get(key)
        return (value is None, Decimal(0) if value is None else Decimal(value))

    def text(row: Mapping[str, Any]) -> tuple[Any, ...]:
        value = "" if row.get(key) is None else str(row.get(key))
        return (value == "", extension_sort_key(value), value.casefold())

    return numeric if kind in ("int", "seconds", "average", "minutes", "money") else text


def sorted_report(report: Report, key: str, descending: bool) -> Report:
    """``report`` with its rows (each section's, for the details kinds) ordered by column ``key`` (numbers as
    numbers, extensions in numeric order; empty cells last either way)."""
    column = next((c for c in report.columns if c.key == key), None)
    if column is None:
        return report
    by = _sort_key(column.kind, key)

    def ordered(rows: Any) -> list[dict[str, Any]]:
        rows = list(rows)
        filled = [r for r in rows if r.get(key) not in (None, "")]
        empty = [r for r in rows if r.get(key) in (None, "")]
        return sorted(filled, key=by, reverse=descending) + empty

    sections = None
    if report.sections is not None:
        sections = [dataclasses.replace(s, rows=ordered(s.rows)) for s in report.sections]
    return dataclasses.replace(report, rows=ordered(report.rows), sections=sections)


@dataclasses.dataclass(frozen=True, slots=True)
class Bar:
    """One bar of a `Chart`: its label, its value as shown, and where it is drawn (SVG user units)."""

    label: str
    text: str
    x: float
    y: float
    width: float
    height: float


@dataclasses.dataclass(frozen=True, slots=True)
class Chart:
    """Cost as bars: per day (upright, the first and last day named) or per department (across, each named)."""

    title: str
    width: int
    height: int
    across: bool
    bars: list[Bar]


#: the chart's size in SVG units (it scales to the page's width), a department bar's height and label room.
CHART_WIDTH, DAYS_HEIGHT, BAR, LABELS = 720, 200, 22, 160


def chart(report: Report) -> Chart | None:
    """The cost of a days report per day, or of a departments report per top department (those whose parent
    is not shown); None for any other report, or one by class."""
    if report.meta.get("by_class") or report.kind not in ("days", "departments"):
        return None
    currency = str(report.meta.get("currency") or "")
    if report.kind == "days":
        rows = report.rows
        label = "day"
    else:
        shown = {r["department"] for r in report.rows}
        rows = [r for r in report.rows if not r.get("parent") or r["parent"] not in shown]
        label = "department"
    if not rows:
        return None
    top = max((Decimal(r["cost"]) for r in rows), default=Decimal(0)) or Decimal(1)
    bars: list[Bar] = []
    if report.kind == "days":
        step = CHART_WIDTH / len(rows)
        for i, r in enumerate(rows):
            height = float(Decimal(r["cost"]) / top * (DAYS_HEIGHT - 20))
            bars.append(Bar(str(r[label]), f"{r['cost']} {currency}, {r['calls']} calls", round(i * step, 2),
                            round(DAYS_HEIGHT - 20 - height, 2), round(max(step - 1, 1), 2), round(height, 2)))
        return Chart("Cost per day", CHART_WIDTH, DAYS_HEIGHT, False, bars)
    room = CHART_WIDTH - LABELS - 120
    for i, r in enumerate(rows):
        width = float(Decimal(r["cost"]) / top * room)
        bars.append(Bar(str(r[label]), f"{r['cost']} {currency}", LABELS, i * (BAR + 6) + 4, round(max(width, 1), 2),
                        BAR))
    return Chart("Cost per department", CHART_WIDTH, len(rows) * (BAR + 6) + 8, True, bars)


class ReportPage:
    """The reports page of one console, on the daemon's `ReportService`."""

    def __init__(self, console: Console, service: ReportService) -> None:
        self.console = console
        self.service = service

    @requires(*REPORT_READERS)
    async def page(self, request: web.Request) -> web.StreamResponse:
        principal = principal_of(request)
        service = self.service
        ctx = service.context
        today = datetime.fromtimestamp(self.console.clock(), ctx.timezone).date()
        token = request.query.get("token", "") if principal is not None and principal.via == "service" else ""
        sites = await service.site_names()
        form = parse_form(request.query, today, ctx, token=token, sites=sites,
                          listed=[n for n, _ in visible_departments(principal, ctx)])
        status, report, busy = 200, None, False
        if form.query is not None:
            allowed = scoped(form.query, principal, ctx)
            if allowed is None:
                form.errors["department"] = "you see only the departments assigned to you"
                form.query, status = None, 403
            else:
                query = dataclasses.replace(allowed, mask_digits=hidden_digits(principal, service.privacy))
                report = await service.report(query, ctx)
                busy = report is None
                status = 503 if busy else 200
        if form.errors and status == 200:
            status = 400
        drawn = chart(report) if report is not None else None  # in the report's own order (days in order)
        sort, descending = form.values["sort"], form.values["order"] == "desc"
        if report is not None and sort:
            if any(c.key == sort for c in report.columns):
                report = sorted_report(report, sort, descending)
            else:
                form.errors["sort"] = "no such column in this report: its own order is shown"
        kind = form.query.kind if form.query is not None else (form.values["kind"] or "extensions")
        response = self.console.render(
            request, "reports.html", status=status, title=TITLES.get(kind, "Reports"), form=form,
            kinds=[(k, TITLES[k]) for k in KINDS], kind=kind, periods=[(p, PERIOD_NAMES[p]) for p in PERIODS],
            departments=visible_departments(principal, ctx), directions=DIRECTIONS, classes=CALL_CLASSES,
            sites=[(name, name) for name in sites] if len(sites) > 1 else [],
            report=report, view=table_view(report) if report is not None else None,
            chart=drawn,
            header=header_lines(report) if report is not None else [], busy=busy,
            listing=kind in LISTING_KINDS, details=kind in DETAIL_KINDS,
            sort=sort, descending=descending, sort_url=self._sort_url(form),
            downloads=[(fmt.upper(), form.url(f"/api/reports/{kind}", api=True, format=fmt))
                       for fmt in FILE_FORMATS] if form.query is not None else [],
            page_url=lambda page: form.url("/reports", page=str(page)), timezone=str(ctx.timezone))
        if busy:
            response.headers["Retry-After"] = "2"
        return response

    @staticmethod
    def _sort_url(form: ReportForm) -> Callable[[str], str]:
        current, descending = form.values["sort"], form.values["order"] == "desc"

        def url(key: str) -> str:
            order = "desc" if key == current and not descending else "asc"
            return form.url("/reports", sort=key, order=order)

        return url


def register(console: Console) -> ReportPage | None:
    """Add ``/reports`` to ``console``'s server (nothing when the daemon runs without its reports)."""
    daemon = console.daemon
    service = daemon.features.reports if daemon is not None else None
    if service is None:
        return None
    page = ReportPage(console, service)
    console.server.app.router.add_get("/reports", page.page)
    return page
