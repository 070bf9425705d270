"""The console's calls: a search (``/calls``, ``/api/calls``) and a page per call (``/calls/<id>``,
``/api/calls/<id>``) with its raw journal lines, its legs and how it was rated.

Filters live in the URL (a search is bookmarkable and works without JavaScript); a page is a keyset page of at
most `MAX_PAGE_SIZE` calls after a cursor (``after=<sort value>.<id>``), so the hundredth page costs what the
first does. The store reads are `smdrd.store.api.CallReader`'s, run on this module's own thread, never on the
event loop. A manager sees only the calls of extensions in their departments on the call's day (the reports'
directory decides, as it does for their reports); admins, viewers and the service token see every call.
A value a person typed wrong is named beside its field (400), never a 500. Someone whose numbers are masked
(``[privacy]``) finds calls by number on the digits they see alone (`seen_search`): a search for a whole number
answers the same whatever its hidden digits, so no answer confirms them (a note beside the field says so).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlencode

import structlog
from aiohttp import web

from smdrd.console.rates import version_text
from smdrd.http import READERS, Principal, principal_of, requires
from smdrd.journal import MICROS
from smdrd.privacy import hidden_digits, mask, mask_fields, mask_text, seen_match, visible_part
from smdrd.rating.classes import CALL_CLASSES
from smdrd.reports.departments import Directory
from smdrd.reports.queries import DIRECTIONS, EARLIEST_DAY, LATEST_DAY, Context
from smdrd.reports.render import hms
from smdrd.store import open_store
from smdrd.store.api import (
    CALL_SORTS,
    CallQuery,
    CallReader,
    Filters,
    Interval,
    StoredCall,
    StoredLine,
    name_at,
    utc_bounds,
)

if TYPE_CHECKING:
    from smdrd.console import Console

__all__ = ["CALL_READERS", "DEFAULT_DAYS", "MAX_DAYS", "MAX_PAGE_SIZE", "MAX_SCAN_DAYS", "CallPages", "SearchForm",
           "on_thread", "parse_day", "register", "report_context", "scope_departments", "seen_search"]

#: who may read calls: `READERS`, and managers for their own departments.
CALL_READERS = READERS | {"manager"}
#: the most calls one page shows, and the default.
MAX_PAGE_SIZE = 200
PAGE_SIZE = 50
#: the longest date range one search covers (a number or call id is looked for in every call of the range).
MAX_DAYS = 366
#: the longest range of a search by number, account code or call id without an extension: those are looked for
#: in every call of the range (0.3 s for a quarter of a million-call year on a busy two-core box; bench/calls.py).
MAX_SCAN_DAYS = 92
#: seconds the extensions' names are kept before they are read from the directory again.
NAMES_SECONDS = 60.0
#: the range searched when none is given: the last 30 days, today included.
DEFAULT_DAYS = 30
_NUMBER_JUNK = str.maketrans("", "", " -.()/")

T = TypeVar("T")
log = structlog.get_logger(__name__)


def money(micros: int | None, currency: str | None, decimals: int) -> str:
    """A cost as a person reads it: ``1.50 PLN``; ``''`` when the call was not rated."""
    if micros is None:
        return ""
    amount = (Decimal(micros) / MICROS).quantize(Decimal(1).scaleb(-decimals))
    return f"{amount} {currency}".strip() if currency else str(amount)


def scope_departments(principal: Principal | None, directory: Directory) -> set[str] | None:
    """The departments ``principal`` may see calls and alerts of: every one (``None``) for every role but
    ``manager``; for a manager, each assigned department and those under it (none when none is known)."""
    if principal is None or principal.role != "manager":
        return None
    wanted: set[str] = set()
    for name in principal.departments:
        if name in directory.names:
            wanted |= directory.subtree(name)
    return wanted


@dataclass
class SearchForm:
    """A call search as typed (`values`, echoed in the form), the `CallQuery` made of it, and the problems
    found, by field."""

    values: dict[str, str]
    classes: tuple[str, ...] = ()
    errors: dict[str, str] = field(default_factory=dict)
    #: what the search does with a field that the person should know (a masked number), by field.
    notes: dict[str, str] = field(default_factory=dict)
    first: date = EARLIEST_DAY
    last: date = EARLIEST_DAY
    query: CallQuery | None = None

    def url(self, path: str, **changes: str | None) -> str:
        """``path`` with this search's parameters, changed by ``changes`` (``None`` drops one)."""
        params: list[tuple[str, str]] = [(k, v) for k, v in self.values.items()
                                         if v and k not in changes and k != "after"]
        params += [("class", c) for c in self.classes if "class" not in changes]
        params += [(k, v) for k, v in changes.items() if v]
        return f"{path}?{urlencode(params)}" if params else path


def _one(query: Mapping[str, str], name: str, limit: int = 64) -> str:
    return query.get(name, "").strip()[:limit]


def parse_search(query: Any, ctx: Context, today: date, hidden: int = 0) -> SearchForm:
    """The `SearchForm` of a URL query (a ``MultiDict``): every field checked, each problem named; ``hidden``:
    the searcher may not see numbers' last ``hidden`` digits (a note beside the number says how it is looked
    for: by `seen_search`)."""
    names = ("from", "to", "number", "extension", "account", "call_id", "direction", "cost_min", "cost_max",
             "sort", "order", "page_size", "after", "site")
    form = SearchForm({name: _one(query, name) for name in names})
    v, errors = form.values, form.errors
    form.classes = tuple(dict.fromkeys(c.strip() for c in query.getall("class", [])[:20] if c.strip()))
    for cls in form.classes:
        if cls not in CALL_CLASSES and cls != "unrated":
            errors["class"] = f"expected one of {', '.join(CALL_CLASSES)}, got {cls[:40]!r}"
    form.last = parse_day(v["to"], "to", errors) or today
    form.first = parse_day(v["from"], "from", errors) or form.last - timedelta(days=DEFAULT_DAYS - 1)
    if "from" not in errors and "to" not in errors:
        if form.last < form.first:
            errors["to"] = f"{form.last} is before from ({form.first})"
        elif (form.last - form.first).days >= MAX_DAYS:
            errors["from"] = f"a search covers at most {MAX_DAYS} days; narrow the range"
    number = v["number"].translate(_NUMBER_JUNK)
    scanned = (number or v["account"] or v["call_id"]) and not v["extension"]
    if scanned and not errors.keys() & {"from", "to"} and (form.last - form.first).days >= MAX_SCAN_DAYS:
        errors["from"] = (f"a search by number, account code or call id covers at most {MAX_SCAN_DAYS} days "
                          f"(up to {MAX_DAYS} with an extension); narrow the range")
    if len(number) > 32 or any(ord(c) < 32 for c in number):
        errors["number"] = "expected at most 32 digits (or part of a number)"
    elif number and hidden:
        form.notes["number"] = _seen_note(number, hidden)
    for name in ("extension", "account", "call_id", "site"):
        if any(ord(c) < 32 for c in v[name]):
            errors[name] = "expected text without control characters"
    if v["direction"] and v["direction"] not in DIRECTIONS:
        errors["direction"] = f"expected {', '.join(DIRECTIONS)} or empty for any, got {v['direction']!r}"
    cost_min = _cost(v["cost_min"], "cost_min", errors)
    cost_max = _cost(v["cost_max"], "cost_max", errors)
    if cost_min is not None and cost_max is not None and cost_max < cost_min and "cost_max" not in errors:
        errors["cost_max"] = "expected at least the lowest cost"
    sort = v["sort"] or "start"
    if sort not in CALL_SORTS:
        errors["sort"] = f"expected one of {', '.join(CALL_SORTS)}, got {sort[:20]!r}"
    order = v["order"] or "desc"
    if order not in ("asc", "desc"):
        errors["order"] = f"expected asc or desc, got {order[:20]!r}"
    size = PAGE_SIZE
    if v["page_size"]:
        if not v["page_size"].isascii() or not v["page_size"].isdigit() or not 1 <= int(v["page_size"]) <= \
                MAX_PAGE_SIZE:
            errors["page_size"] = f"expected a whole number from 1 to {MAX_PAGE_SIZE}"
        else:
            size = int(v["page_size"])
    after = _cursor(v["after"], errors)
    if errors:
        return form
    lo, hi = utc_bounds(form.first, form.last, ctx.timezone)
    classes = tuple("" if c == "unrated" else c for c in form.classes)
    form.query = CallQuery(lo, hi, number=number, extension=v["extension"], account=v["account"],
                           call_id=v["call_id"], direction=v["direction"], classes=classes,
                           cost_min=cost_min, cost_max=cost_max, sort=sort, descending=order == "desc",
                           after=after, limit=size, site=v["site"])
    return form


def _seen_note(number: str, hidden: int) -> str:
    head = visible_part(number, hidden)
    said = f"the last {hidden} digits of every number are hidden from you, so only the digits you see are compared"
    if sum("0" <= c <= "9" for c in number) <= hidden:
        return f"{said}."
    return f"{said}: the last {hidden} you typed stand for any, this finds {head}{'*' * hidden}."


def seen_search(reader: CallReader, q: CallQuery, hidden: int) -> list[StoredCall]:
    """The page of ``q`` for someone who may not see numbers' last ``hidden`` digits: its number matched on what
    they see (`smdrd.privacy.seen_match`, on the number as dialled or in E.164), never on a hidden digit.

    The store is asked for the calls holding what the typed number shows (every call that matches holds it),
    a page after another from the keyset cursor, until ``q.limit`` calls match or none is left: at most the
    search's range of days, as a search by part of a number reads anyway."""
    term = q.number
    typed = sum("0" <= c <= "9" for c in term)
    wide = dataclasses.replace(q, number=visible_part(term, hidden) if typed > hidden else term,
                               limit=MAX_PAGE_SIZE)
    found: list[StoredCall] = []
    while len(found) < q.limit:
        page = reader.search(wide)
        found += [c for c in page if seen_match(c.number, term, hidden) or seen_match(c.e164, term, hidden)]
        if len(page) < wide.limit:
            break
        wide = dataclasses.replace(wide, after=(page[-1].sort_value(q.sort), page[-1].id))
    return found[:q.limit]


def parse_day(value: str, name: str, errors: dict[str, str]) -> date | None:
    """A site-local day typed in field ``name`` (``None`` when empty or wrong: the problem goes in ``errors``)."""
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        errors[name] = f"expected a date such as 2026-03-01, got {value[:40]!r}"
        return None
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        errors[name] = f"expected a date from {EARLIEST_DAY} to {LATEST_DAY}"
        return None
    return day


def _cost(value: str, name: str, errors: dict[str, str]) -> int | None:
    if not value:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        amount = Decimal(-1)
    if not amount.is_finite() or amount < 0 or amount > 10**9 or amount.as_tuple().exponent < -6:  # type: ignore[operator]
        errors[name] = f"expected an amount such as 1.50 (0 or more), got {value[:40]!r}"
        return None
    return int(amount * MICROS)


def _cursor(value: str, errors: dict[str, str]) -> tuple[int, int] | None:
    if not value:
        return None
    head, _, tail = value.partition(".")
    digits = head.removeprefix("-")
    if digits.isascii() and digits.isdigit() and tail.isascii() and tail.isdigit() and len(value) < 40:
        sort_value, call_id = int(head), int(tail)
        if -(1 << 63) <= sort_value < 1 << 63 and call_id < 1 << 63:  # what the store's integers hold
            return sort_value, call_id
    errors["after"] = "not a page of this search: start again from the first page"
    return None


class _Closing(Protocol):
    def close(self) -> None: ...


C = TypeVar("C", bound=_Closing)


async def on_thread(executor: ThreadPoolExecutor, opener: Callable[[], C], fn: Callable[[C], T]) -> T:
    """``fn(part)`` on ``executor``'s thread, ``part`` opened by ``opener`` there and closed after: a store
    read or change that never runs on the event loop."""
    def call() -> T:
        part = opener()
        try:
            return fn(part)
        finally:
            part.close()

    return await asyncio.get_running_loop().run_in_executor(executor, call)


class CallPages:
    """The call routes of one console: the report context (directory, timezone, currency) and a store
    thread."""

    def __init__(self, console: Console, context: Callable[[], Context]) -> None:
        self.console = console
        self.context = context
        self.privacy = console.settings.privacy
        #: extension -> name, from the directory (`_refresh_names`); a call's is its site's (`name_at`).
        self.names: Mapping[str, str] = {}
        self._names_at = -NAMES_SECONDS
        #: the store's named sites (`smdrd.store.api.ReportReader.sites`), read with the names: with two or
        #: more (a central store), the search offers a site filter and shows each call's site.
        self.sites: list[str] = []
        self.path = console.path
        self._db = ThreadPoolExecutor(1, thread_name_prefix="smdrd-console-calls")

    def close(self) -> None:
        self._db.shutdown(wait=False, cancel_futures=True)

    async def _read(self, fn: Callable[[CallReader], T]) -> T:
        def read(reader: CallReader) -> T:
            self._refresh_names()
            return fn(reader)

        return await on_thread(self._db, lambda: open_store(self.path).calls(), read)

    def _refresh_names(self) -> None:
        """Extensions' names (the directory), read again at most every `NAMES_SECONDS` (on the store thread)."""
        now = time.monotonic()
        if now - self._names_at < NAMES_SECONDS:
            return
        try:
            directory = open_store(self.path).directory()
            try:
                self.names = directory.names()
            finally:
                directory.close()
            reader = open_store(self.path).reports()
            try:
                self.sites = [site.name for site in reader.sites()]
            finally:
                reader.close()
        except Exception as exc:  # names are a help, never a reason to fail a search
            log.warning("console.names_unavailable", error=type(exc).__name__)
        self._names_at = now

    def _today(self, ctx: Context) -> date:
        return datetime.fromtimestamp(self.console.clock(), ctx.timezone).date()

    # ---- search ----

    async def _search(self, request: web.Request) -> tuple[SearchForm, list[StoredCall], Context]:
        ctx = self.context()
        hidden = self._hidden(request)
        form = parse_search(request.query, ctx, self._today(ctx), hidden)
        q = form.query
        if q is None:
            return form, [], ctx
        wanted = scope_departments(principal_of(request), ctx.directory)

        def search(reader: CallReader) -> list[StoredCall]:
            query = q
            if wanted is not None:
                spans = self._spans(ctx.directory, wanted, form.first, form.last)
                query = CallQuery(**{**_fields(q), "scope": tuple(spans)})
            if hidden and query.number:
                return seen_search(reader, query, hidden)
            return reader.search(query)

        return form, await self._read(search), ctx

    def _spans(self, directory: Directory, wanted: set[str], first_day: date, last_day: date) -> list[Interval]:
        """The ``(extension, first, last)`` spans of ``wanted``'s extensions with traffic in the range (with their
        site, when the directory's memberships name sites: each site's extension is resolved at its site)."""
        first, last = first_day.isoformat(), last_day.isoformat()
        f = Filters(first_day, last_day, directions=DIRECTIONS)
        reader = open_store(self.path).reports()
        try:
            if directory.sited:
                return [(ext, a, b, site) for site, ext in reader.range_site_extensions(f)
                        for a, b, dep in directory.intervals(ext, first, last, site) if dep in wanted]
            extensions = reader.range_extensions(f)
        finally:
            reader.close()
        return [(ext, a, b) for ext in extensions for a, b, dep in directory.intervals(ext, first, last)
                if dep in wanted]

    @requires(*CALL_READERS)
    async def page(self, request: web.Request) -> web.StreamResponse:
        form, calls, ctx = await self._search(request)
        q = form.query
        more = q is not None and len(calls) == q.limit
        after = f"{calls[-1].sort_value(q.sort)}.{calls[-1].id}" if more and q is not None else ""
        return self.console.render(
            request, "calls_search.html", status=400 if form.errors else 200, title="Calls", form=form,
            calls=[self._row(c, ctx, self._hidden(request)) for c in calls], classes=CALL_CLASSES,
            directions=DIRECTIONS,
            next_url=form.url("/calls", after=after) if after else "",
            first_url=form.url("/calls") if form.values["after"] else "", sort_url=self._sort_url(form),
            export_url=form.url("/api/calls"), max_page_size=MAX_PAGE_SIZE, timezone=str(ctx.timezone),
            sites=self.sites if len(self.sites) > 1 else [])

    @staticmethod
    def _sort_url(form: SearchForm) -> Callable[[str], str]:
        current = form.values["sort"] or "start"
        descending = (form.values["order"] or "desc") == "desc"

        def url(sort: str) -> str:
            order = "asc" if sort == current and descending else "desc"
            return form.url("/calls", sort=sort, order=order)

        return url

    def _hidden(self, request: web.Request) -> int:
        """How many last digits of each number the request's person may not see (``[privacy]``)."""
        return hidden_digits(principal_of(request), self.privacy)

    def _row(self, call: StoredCall, ctx: Context, hidden: int) -> dict[str, Any]:
        """A call as the table and the JSON show it (numbers masked by ``hidden`` digits)."""
        return {
            "id": call.id, "start": call.start, "site": call.site, "extension": call.extension,
            "name": name_at(self.names, call.site, call.extension),
            "department": ctx.directory.department(call.extension, call.start[:10], call.site),
            "number": mask(call.number, hidden), "e164": mask(call.e164, hidden) if call.e164 else call.e164,
            "direction": call.direction, "trunk": call.trunk,
            "account": call.account, "call_id": call.call_id, "leg": call.leg,
            "call_class": call.call_class or "", "duration": call.duration, "duration_text": hms(call.duration),
            "cost": None if call.cost_micros is None else str(money(call.cost_micros, None, ctx.decimals)),
            "currency": call.currency, "cost_text": money(call.cost_micros, call.currency, ctx.decimals),
        }

    @requires(*CALL_READERS)
    async def api_search(self, request: web.Request) -> web.StreamResponse:
        form, calls, ctx = await self._search(request)
        if form.errors:
            return web.json_response({"error": "bad search", "fields": form.errors}, status=400)
        q = form.query
        assert q is not None
        more = len(calls) == q.limit
        after = f"{calls[-1].sort_value(q.sort)}.{calls[-1].id}" if more else None
        hidden = self._hidden(request)
        rows = [{k: v for k, v in self._row(c, ctx, hidden).items() if not k.endswith("_text")} for c in calls]
        return web.json_response({"calls": rows, "from": form.first.isoformat(), "to": form.last.isoformat(),
                                  "timezone": str(ctx.timezone), "notes": form.notes, "next": after,
                                  "next_url": form.url("/api/calls", after=after) if after else None})

    # ---- one call ----

    async def _one(self, request: web.Request) -> tuple[StoredCall, list[StoredCall], list[StoredLine],
                                                        Context] | None:
        raw = request.match_info.get("id", "")
        if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
            return None
        ctx = self.context()
        wanted = scope_departments(principal_of(request), ctx.directory)

        def visible(call: StoredCall) -> bool:
            return wanted is None or ctx.directory.department(call.extension, call.start[:10], call.site) in wanted

        def read(reader: CallReader) -> tuple[StoredCall, list[StoredCall], list[StoredLine]] | None:
            call = reader.call(int(raw))
            if call is None or not visible(call):
                return None
            legs = [leg for leg in reader.legs(call) if visible(leg)]
            return call, legs, reader.lines([leg.line_id for leg in legs] or [call.line_id])

        found = await self._read(read)
        return None if found is None else (*found, ctx)

    @requires(*CALL_READERS)
    async def call_page(self, request: web.Request) -> web.StreamResponse:
        found = await self._one(request)
        if found is None:
            return self.console.render(request, "calls_missing.html", status=404, title="No such call")
        call, legs, lines, ctx = found
        hidden = self._hidden(request)
        tariff_text, tariff_link = version_text(call.tariff_version)
        return self.console.render(
            request, "calls_call.html", title=f"Call {call.id}", call=self._row(call, ctx, hidden), stored=call,
            transfer=mask_text(call.transfer, _numbers(legs), hidden), hidden=hidden,
            tariff_text=tariff_text, tariff_link=tariff_link,
            legs=[self._row(leg, ctx, hidden) for leg in legs],
            lines=[_line(line, legs, hidden, ctx) for line in lines],
            tester_url=_tester_url(call) if not hidden else "", timezone=str(ctx.timezone),
            several_sites=len(self.sites) > 1)

    @requires(*CALL_READERS)
    async def api_call(self, request: web.Request) -> web.StreamResponse:
        found = await self._one(request)
        if found is None:
            return web.json_response({"error": "no such call"}, status=404)
        call, legs, lines, ctx = found
        hidden = self._hidden(request)
        body = {k: v for k, v in self._row(call, ctx, hidden).items() if not k.endswith("_text")}
        numbers = _numbers(legs)
        # Free text may hold a number too (a caller id among the vendor fields, the number inside a call key):
        # masked as the raw line is.
        body.update({"ring": call.ring, "answered": call.answered,
                     "transfer": mask_text(call.transfer, numbers, hidden),
                     "extra": mask_fields(call.extra, numbers, hidden) if hidden else call.extra,
                     "source": call.source, "format": call.format,
                     "call_key": mask_text(call.call_key, numbers, hidden),
                     "rating": {"e164": body["e164"], "region": call.region, "call_class": call.call_class,
                                "rule": call.rule, "prefix": call.prefix,
                                "cost": body["cost"], "currency": call.currency,
                                "tariff_version": call.tariff_version},
                     "legs": [{k: v for k, v in self._row(leg, ctx, hidden).items() if not k.endswith("_text")}
                              for leg in legs],
                     "lines": [_line(line, legs, hidden, ctx) for line in lines],
                     "tester": _tester_url(call) if not hidden else None})
        return web.json_response(body)


def _fields(q: CallQuery) -> dict[str, Any]:
    return {name: getattr(q, name) for name in CallQuery.__dataclass_fields__}


def _numbers(calls: list[StoredCall]) -> list[str]:
    """The numbers of ``calls``, as dialled and in E.164: what is masked wherever it occurs in their text."""
    return [n for c in calls for n in (c.number, c.e164) if n]


def _line(line: StoredLine, calls: list[StoredCall], hidden: int, ctx: Context) -> dict[str, Any]:
    """A journal line as shown (its authorisation codes hidden by the store): with ``hidden`` digits masked in
    every number of ``calls`` found in it, and in every other run of digits long enough to be a number."""
    raw = mask_text(line.raw.decode("utf-8", errors="replace"), _numbers(calls), hidden)
    return {"id": line.id, "source": line.source, "peer": line.peer,
            "received_at": datetime.fromtimestamp(line.received_at / 1_000_000, ctx.timezone).isoformat(
                timespec="seconds"),
            "format": line.format, "raw": raw, "status": line.status,
            "error": line.error}


def _tester_url(call: StoredCall) -> str:
    """The number tester (``/rates/test``) filled in with this call, to see how it is rated today."""
    return "/rates/test?" + urlencode({"number": call.number, "duration": call.duration, "time": call.start[:19],
                                       "trunk": call.trunk})


def report_context(console: Console) -> Callable[[], Context]:
    """The reports' current context (departments follow reloads and console edits), or, for a console without
    the reports feature, one made from its settings."""
    from smdrd.reports.queries import context_from

    daemon = console.daemon
    reports = daemon.features.reports if daemon is not None else None
    if reports is not None:
        return lambda: reports.context
    fixed = context_from(console.settings)
    return lambda: fixed


def register(console: Console) -> CallPages:
    """Add the call routes to ``console``'s server."""
    pages = CallPages(console, report_context(console))
    router = console.server.app.router
    router.add_get("/calls", pages.page)
    router.add_get("/calls/{id}", pages.call_page)
    router.add_get("/api/calls", pages.api_search)
    router.add_get("/api/calls/{id}", pages.api_call)
    return pages
