"""The console's overview (``/``): today and this month at a glance, kept current by server-sent events.

What it shows, for the signed-in person's scope (everything for an admin, a viewer or the service token; a
manager's departments and those under them): calls, talk time (h:mm:ss) and cost (with its currency) today and
this month, by call class; the top extensions and destinations of each period; each department's budget use
with its month-end forecast (`smdrd.reports.forecast`: spend so far over the working days left); the open alerts
(a manager's: those of their departments); each source's state as ``/healthz`` judges it; and on a store with
several named sites (a central one, ``smdrd central``), a table comparing the sites: each one's calls, talk time
and cost today and this month, and when its newest line was received (a site that stopped publishing shows);
there, each site's extension is a top extension of its own, shown with its site (201 of one site and 201 of
another are different phones).

Every figure comes from the report engine (`smdrd.reports.queries.run_report`, which reads the rollups through
`smdrd.store.api.ReportReader`), on this module's own thread, never on the event loop. Figures are computed per
scope, not per person, and at most once per `PUSH_INTERVAL` while calls are committed (and at least every
`MAX_AGE`, since the forecast moves with the clock): ten people polling the page, or a thousand calls a second,
cost one computation a second per scope. On a database where one computation takes longer than a fifth of that,
the interval grows with it (`COMPUTE_SHARE`), so the figures never take more than a fifth of the daemon's time.

Live updates: ``/overview/events`` is a ``text/event-stream``. It sends the figures (the same server-rendered,
escaped fragment the page holds) at once and after each change, and a comment every `HEARTBEAT` seconds. At most
`MAX_SUBSCRIBERS` streams are open at once (one more is answered 503), `MAX_PER_PERSON` of one person's (one
more is a 429: one person cannot take them all); each stream has a queue of `QUEUE_SIZE`
updates, and a client too slow to take them is dropped (its browser reconnects and starts afresh), never
buffered. A stream ends after `STREAM_SECONDS` (the browser reconnects, and its session is checked again) and
when the daemon stops. The page works without JavaScript (reload it); ``overview.js`` only swaps the fragment in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from importlib import resources
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from markupsafe import Markup

from smdrd.http import READERS, Principal, principal_of, public, requires
from smdrd.privacy import masked_payload
from smdrd.rating.classes import CALL_CLASSES
from smdrd.reports.departments import UNASSIGNED
from smdrd.reports.forecast import Forecast, WorkingCalendar, calendar_for, month_bounds, month_end_forecast
from smdrd.reports.http import scoped
from smdrd.reports.queries import DIRECTIONS, Context, Query, Report, Tally, money, other_currencies, run_report
from smdrd.reports.render import hms
from smdrd.store import open_store
from smdrd.store.api import SITE, AlertFilter, Filters, InboxAlert, SiteSeen, name_at

if TYPE_CHECKING:
    from smdrd.config import Settings
    from smdrd.console import Console
    from smdrd.core import Entry
    from smdrd.store.api import ReportReader

__all__ = ["HEARTBEAT", "MAX_SUBSCRIBERS", "OVERVIEW_READERS", "QUEUE_SIZE", "Overview", "register"]

log = structlog.get_logger(__name__)

#: who may read the overview: `READERS`, and managers (their departments only).
OVERVIEW_READERS = READERS | {"manager"}
#: seconds between two computations of one scope's figures while calls keep coming (updates are coalesced).
PUSH_INTERVAL = 1.0
#: figures older than this are computed again even without new calls (the forecast moves with the clock).
MAX_AGE = 60.0
#: the computations of the figures take at most 1 / this of the time: the interval between two of a scope grows
#: to this many times the last one's duration when that is longer than `PUSH_INTERVAL` (a big database).
COMPUTE_SHARE = 5.0
#: seconds between two heartbeats (an SSE comment) on an idle stream.
HEARTBEAT = 15.0
#: event streams open at once, at most, and for one person (their tabs: one person cannot take every stream);
#: and updates queued per stream before its client counts as too slow.
MAX_SUBSCRIBERS = 32
MAX_PER_PERSON = 8
QUEUE_SIZE = 4
#: a stream ends after this long; the browser reconnects (and its session is checked again).
STREAM_SECONDS = 300.0
#: the browser's wait before reconnecting a stream that ended, in milliseconds (the SSE ``retry`` field).
RETRY_MS = 3000
#: rows in each top-N table, days of open alerts looked at and how many are shown.
TOP = 5
ALERT_DAYS = 7
ALERTS_SHOWN = 10
#: a scope: ``None`` for every department, else a manager's departments (empty: none of theirs is known).
Scope = tuple[str, ...] | None

_CSP = ("default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
_STATIC = {"overview.js": "text/javascript", "overview.css": "text/css"}


# ---- the figures: plain data from the report engine ----

@dataclass(slots=True)
class _Sum:
    calls: int = 0
    duration: int = 0
    cost: Decimal = field(default_factory=Decimal)

    def add(self, row: dict[str, Any]) -> None:
        self.calls += int(row["calls"])
        self.duration += int(row["duration"])
        self.cost += row["cost"]


def _money(value: Decimal | None, ctx: Context) -> str:
    if value is None:
        return ""
    return f"{value.quantize(Decimal(1).scaleb(-ctx.decimals), rounding=ROUND_HALF_UP)} {ctx.currency}"


def _percent(part: Decimal, whole: Decimal) -> str:
    return f"{(part * 100 / whole).quantize(Decimal(1), rounding=ROUND_HALF_UP)} %" if whole else ""


def _class_key(name: str) -> tuple[int, str]:
    return (CALL_CLASSES.index(name), name) if name in CALL_CLASSES else (len(CALL_CLASSES), name)


def _shown(s: _Sum, ctx: Context) -> dict[str, Any]:
    return {"calls": s.calls, "talk": hms(s.duration), "cost": _money(s.cost, ctx)}


def site_rows(reader: ReportReader, ctx: Context, sites: Iterable[SiteSeen], today: date,
              departments: tuple[str, ...]) -> list[dict[str, Any]]:
    """Each site's calls, talk time and cost today and this month (every direction, the scope's departments,
    each site's extensions resolved at their site), and when its newest line was received (UTC), so a site that
    stopped publishing shows (display strings). One grouped read of the month's rollups, by day and site (and
    extension, for a manager's departments), for every site at once."""
    first, _ = month_bounds(today)
    d = ctx.directory
    wanted = set().union(*(d.subtree(x) for x in departments)) if departments else None
    today_iso = today.isoformat()
    tallies: dict[tuple[str, str], Tally] = {}
    for day, ext, site, calls, duration, cost in reader.daily_rows(
            Filters(first, today, directions=DIRECTIONS), group=(SITE,), by_day=True,
            per_extension=wanted is not None):
        if wanted is not None and d.department(str(ext), str(day), str(site)) not in wanted:
            continue
        for key in ("month", "today") if day == today_iso else ("month",):
            tallies.setdefault((str(site), key), Tally()).add(int(str(calls)), int(str(duration)), int(str(cost)))
    out = []
    for site in sites:
        row: dict[str, Any] = {"site": site.name, "last": "none" if site.last_line is None else
                               datetime.fromtimestamp(site.last_line / 1_000_000, UTC).strftime("%Y-%m-%d %H:%M")}
        for key in ("today", "month"):
            t = tallies.get((site.name, key), Tally())
            row[key] = _shown(_Sum(t.calls, t.duration, money(t.cost_micros, ctx.decimals)), ctx)
        out.append(row)
    return out


def period_figures(reader: ReportReader, ctx: Context, first: date, last: date, departments: tuple[str, ...],
                   *, by_site: bool = False) -> dict[str, Any]:
    """One period's figures: totals and per class (every direction), top extensions by cost, top outbound
    destinations by cost (display strings); and under ``"spend"`` each department's own cost (a `Decimal`, for
    `budget_rows`: the same rows, no second read). ``by_site`` (a store of several sites, as the Sites table
    shows): each site's extension is a top extension of its own, with its ``site``."""
    by_ext = run_report(reader, Query("extensions", first, last, departments=departments, directions=DIRECTIONS,
                                      by_class=True, by_site=by_site), ctx)
    total, classes, extensions = _Sum(), dict[str, _Sum](), dict[tuple[str, str, str], _Sum]()
    spend: dict[str, Decimal] = {}
    for row in by_ext.rows:
        total.add(row)
        spend[row["department"]] = spend.get(row["department"], Decimal(0)) + row["cost"]
        classes.setdefault(row["call_class"] or "unknown", _Sum()).add(row)
        extensions.setdefault((row["extension"], row.get("site", ""), row["department"]), _Sum()).add(row)
    top = sorted(extensions.items(), key=lambda kv: (-kv[1].cost, -kv[1].calls, kv[0]))[:TOP]
    dest: Report = run_report(reader, Query("destinations", first, last, departments=departments, top=TOP), ctx)

    def shown(s: _Sum) -> dict[str, Any]:
        return _shown(s, ctx)

    return {
        "total": shown(total),
        "classes": [{"name": name, **shown(s)}
                    for name, s in sorted(classes.items(), key=lambda kv: _class_key(kv[0]))],
        "extensions": [{"extension": ext, **({"site": site} if by_site else {}), "department": dep, **shown(s)}
                       for (ext, site, dep), s in top],
        "destinations": [{"country": r["country"] or "unknown", "code": r["code"], "call_class": r["call_class"],
                          "calls": r["calls"], "talk": hms(r["duration"]), "cost": _money(r["cost"], ctx)}
                         for r in dest.rows],
        "spend": spend,
    }


def class_rows(today: list[dict[str, Any]], month: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per class with traffic this month: its figures today (zero when none) and this month."""
    todays = {c["name"]: c for c in today}
    none = {"calls": 0, "talk": hms(0), "cost": ""}
    return [{"name": c["name"], "today": todays.get(c["name"], none), "month": c} for c in month]


def budget_state(spent: Decimal, budget: Decimal | None, forecast: Forecast, min_days: Decimal) -> str:
    """A department's budget in words (never only a colour): ``over budget``, ``forecast over budget``, ``on
    track``, or ``too early to forecast`` before ``min_days`` working days of the month (as the
    ``budget_forecast`` rule waits); ``''`` without a budget."""
    if budget is None:
        return ""
    if spent >= budget:
        return "over budget"
    if forecast.elapsed < min_days:
        return "too early to forecast"
    return "forecast over budget" if forecast.over(budget) else "on track"


def budget_rows(ctx: Context, now: datetime, departments: tuple[str, ...], spend: dict[str, Decimal],
                calendar: WorkingCalendar, *, min_days: Decimal) -> list[dict[str, Any]]:
    """Each department's spend this month (its own and its sub-departments', from ``spend``: each department's
    own), its monthly budget and the month-end forecast (display strings); every department of the scope
    (``departments``, or all), parents first; `UNASSIGNED` when it spent something."""
    d = ctx.directory
    rolled: dict[str, Decimal] = {}
    for name, cost in spend.items():
        for ancestor in d.ancestors(name):
            rolled[ancestor] = rolled.get(ancestor, Decimal(0)) + cost
    wanted = set().union(*(d.subtree(x) for x in departments)) if departments else None
    out = []
    for name in [*d.tree_order(), UNASSIGNED]:
        if (wanted is not None and name not in wanted) or (name == UNASSIGNED and name not in rolled):
            continue
        spent = rolled.get(name, Decimal(0))
        budget = d.budgets.get(name)
        forecast = month_end_forecast(spent, now, calendar)
        state = budget_state(spent, budget, forecast, min_days)
        shown = budget is not None and forecast.elapsed >= min_days
        out.append({"department": name, "parent": d.parents.get(name) or "", "spent": _money(spent, ctx),
                    "budget": _money(budget, ctx), "used": _percent(spent, budget) if budget else "",
                    "forecast": _money(forecast.projected, ctx) if shown else "",
                    "forecast_used": _percent(forecast.projected, budget) if shown and budget else "",
                    "state": state, "alarm": state in ("over budget", "forecast over budget"),
                    "elapsed": f"{forecast.elapsed.quantize(Decimal('0.1'))}", "days": forecast.working_days})
    return out


def alert_rows(alerts: Iterable[InboxAlert], tz: Any, hidden: int = 0) -> list[dict[str, Any]]:
    """The open alerts as the overview lists them (display strings), newest first; ``hidden`` last digits of
    the numbers in their reasons masked (the figures are cached per scope, not per role: with ``[privacy]`` on,
    everyone's overview masks them; the alerts inbox shows each role what it may see)."""
    out: list[dict[str, Any]] = []
    for alert in alerts:
        data = masked_payload(alert.payload, hidden)
        raised = datetime.fromtimestamp(alert.created_at / 1_000_000, tz).strftime("%Y-%m-%d %H:%M")
        out.append({"id": alert.alert_id, "rule": alert.rule, "severity": alert.severity,
                    "reason": str(data.get("reason") or ""), "department": alert.department or "",
                    "raised": raised})
    return out


# ---- the service ----

@dataclass(slots=True)
class _Cached:
    generation: int
    at: float  # loop time
    html: str
    stamp: str


@dataclass(eq=False, slots=True)
class _Subscriber:
    scope: Scope
    #: who opened it (how they were recognised, and their name): `MAX_PER_PERSON` applies to each user (empty
    #: for the shared token and a console without users).
    who: tuple[str, str] = ("", "")
    queue: asyncio.Queue[str | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))


class Overview:
    """The overview of one console: cached figures per scope, the event streams and their broadcaster."""

    def __init__(self, console: Console, context: Callable[[], Context], settings: Callable[[], Settings],
                 sources: Callable[[], list[dict[str, Any]]]) -> None:
        self.console = console
        self.context = context
        self.settings = settings
        self.sources = sources
        self.path = console.path
        self._db = ThreadPoolExecutor(1, thread_name_prefix="smdrd-console-overview")
        #: bumped by every commit: cached figures of an older generation are stale.
        self.generation = 0
        self._changed = asyncio.Event()
        self._cache: dict[Scope, _Cached] = {}
        self._locks: dict[Scope, asyncio.Lock] = {}
        self.subscribers: set[_Subscriber] = set()
        #: streams dropped because their client did not keep up, since start.
        self.dropped = 0
        self._closed = False
        #: the least time between two computations of one scope's figures (see `COMPUTE_SHARE`).
        self.interval = PUSH_INTERVAL

    # -- what changed --

    def committed(self, entries: list[Entry], seconds: float) -> None:
        """Commit listener: the figures are stale (computed again at most every `PUSH_INTERVAL`)."""
        if entries:
            self.changed()

    def changed(self) -> None:
        """The figures are stale: a commit, or a person's change (`Console.changed_listeners`)."""
        self.generation += 1
        self._changed.set()

    # -- figures --

    def scope_of(self, principal: Principal | None, ctx: Context) -> Scope:
        if principal is None or principal.role != "manager":
            return None
        first = datetime.now(ctx.timezone).date()
        allowed = scoped(Query("departments", first, first), principal, ctx)
        return () if allowed is None else allowed.departments

    def calendar(self) -> WorkingCalendar:
        settings = self.settings()
        hours = settings.alerts.business_hours
        return calendar_for(hours.days, hours.hours, [*hours.holidays, *settings.tariff.holidays])

    async def figures(self, scope: Scope, *, fresh: bool = False) -> _Cached:
        """The scope's rendered figures: from the cache while they are current (no commit since, or computed
        less than `PUSH_INTERVAL` ago; and less than `MAX_AGE` old), else computed once for every waiter."""
        loop = asyncio.get_running_loop()
        lock = self._locks.setdefault(scope, asyncio.Lock())
        async with lock:
            cached = self._cache.get(scope)
            now = loop.time()
            if cached is not None and now - cached.at < MAX_AGE and (
                    (cached.generation == self.generation and not fresh) or now - cached.at < self.interval):
                return cached
            generation = self.generation
            ctx, calendar, sources = self.context(), self.calendar(), self.sources()
            min_days = Decimal(str(self.settings().alerts.budget_forecast.min_working_days))
            at = datetime.fromtimestamp(self.console.clock(), ctx.timezone)
            started = loop.time()
            data = await loop.run_in_executor(self._db, self._compute, scope, ctx, calendar, min_days, at)
            self.interval = max(PUSH_INTERVAL, COMPUTE_SHARE * (loop.time() - started))
            html = self.console.templates.get_template("overview_figures.html").render(
                **data, sources=sources, scope=scope, currency=ctx.currency, timezone=str(ctx.timezone))
            cached = _Cached(generation, loop.time(), html, at.strftime("%H:%M:%S"))
            self._cache[scope] = cached
            return cached

    def _compute(self, scope: Scope, ctx: Context, calendar: WorkingCalendar, min_days: Decimal,
                 now: datetime) -> dict[str, Any]:
        if scope == ():
            return {"today": None, "month": None, "classes": [], "budgets": [], "alerts": [], "sites": [],
                    "currency_note": "", "updated": now}
        departments = scope or ()
        today = now.date()
        first, _ = month_bounds(today)
        reader = open_store(self.path).reports()
        try:
            seen = reader.sites()
            several = len(seen) > 1  # sites matter: the Sites table, and each site's extensions apart
            figures: dict[str, Any] = {
                "today": period_figures(reader, ctx, today, today, departments, by_site=several),
                "month": period_figures(reader, ctx, first, today, departments, by_site=several)}
            figures["sites"] = site_rows(reader, ctx, seen, today, departments) if several else []
            others = other_currencies(reader, Filters(first, today, directions=DIRECTIONS), ctx)
        finally:
            reader.close()
        # costs priced in another currency (a central store's sites price in their own) are summed as this one
        figures["currency_note"] = (
            f"Some costs this month were priced in {', '.join(others)}: they are added here as if in "
            f"{ctx.currency}." if others else "")
        figures["budgets"] = budget_rows(ctx, now, departments, figures["month"]["spend"], calendar,
                                         min_days=min_days)
        wanted: tuple[str, ...] | None = None  # a manager sees their departments' alerts, not operational ones
        if scope is not None:
            wanted = tuple(sorted(set().union(*(ctx.directory.subtree(d) for d in scope))))
        since = int((now - timedelta(days=ALERT_DAYS)).timestamp() * 1_000_000)
        inbox = open_store(self.path).alert_inbox()
        try:
            found = inbox.alerts(AlertFilter(int(now.timestamp()), states=("open",), lo=since, departments=wanted,
                                             limit=ALERTS_SHOWN))
        finally:
            inbox.close()
        figures["alerts"] = alert_rows(found, ctx.timezone, self.settings().privacy.mask_digits)
        tops = [e for period in ("today", "month") for e in figures[period]["extensions"]]
        directory = open_store(self.path).directory()
        try:
            names = directory.names({e["extension"] for e in tops})
        finally:
            directory.close()
        for e in tops:
            e["name"] = name_at(names, e.get("site"), e["extension"])  # a site's extension: its name there
        figures["updated"] = now
        figures["classes"] = class_rows(figures["today"]["classes"], figures["month"]["classes"])
        return figures

    # -- pages --

    @requires(*OVERVIEW_READERS)
    async def page(self, request: web.Request) -> web.StreamResponse:
        ctx = self.context()
        principal = principal_of(request)
        scope = self.scope_of(principal, ctx)
        cached = await self.figures(scope)
        response = self.console.render(request, "overview.html", title="Overview", figures=Markup(cached.html),
                                       stamp=cached.stamp, scope=scope)
        response.headers["Content-Security-Policy"] = _CSP
        return response

    @public
    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in _STATIC:
            raise web.HTTPNotFound()
        body = resources.files("smdrd.console").joinpath(f"static/{name}").read_bytes()
        return web.Response(body=body, content_type=_STATIC[name], charset="utf-8",
                            headers={"Cache-Control": "max-age=3600"})

    # -- live updates --

    @requires(*OVERVIEW_READERS)
    async def events(self, request: web.Request) -> web.StreamResponse:
        principal = principal_of(request)
        # A person is a user; the shared token (wallboards) and a console with no users are not one person each
        # and keep the whole site's bound only.
        person = principal is not None and principal.user_id is not None
        who = (principal.via, principal.name) if person and principal is not None else ("", "")
        if person and not self._closed and sum(s.who == who for s in self.subscribers) >= MAX_PER_PERSON:
            return web.Response(status=429, text=f"you have {MAX_PER_PERSON} live overviews open already; close "
                                                 "one, or reload the page later\n", headers={"Retry-After": "30"})
        if self._closed or len(self.subscribers) >= MAX_SUBSCRIBERS:
            return web.Response(status=503, text="too many live overviews open; reload the page later\n",
                                headers={"Retry-After": "30"})
        scope = self.scope_of(principal, self.context())
        sub = _Subscriber(scope, who=who)
        self.subscribers.add(sub)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                               "X-Accel-Buffering": "no"})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STREAM_SECONDS
        timeout = self.console.server.config.write_timeout
        try:
            first = await self.figures(scope)  # before the head: a failure here is still a clean error page
            await asyncio.wait_for(response.prepare(request), timeout)
            await asyncio.wait_for(response.write(f"retry: {RETRY_MS}\n".encode() + _event(first)), timeout)
            while (left := deadline - loop.time()) > 0:
                try:
                    item = await asyncio.wait_for(sub.queue.get(), min(HEARTBEAT, left))
                except TimeoutError:
                    await asyncio.wait_for(response.write(b": heartbeat\n\n"), timeout)
                    continue
                if item is None:  # the daemon stops, or this client was too slow
                    break
                await asyncio.wait_for(response.write(item.encode()), timeout)
        except (TimeoutError, ConnectionError):
            if request.transport is not None:
                request.transport.abort()  # a client that stopped reading: its stream is dropped, not held
        finally:
            self.subscribers.discard(sub)
        return response

    def _offer(self, sub: _Subscriber, item: str) -> None:
        try:
            sub.queue.put_nowait(item)
        except asyncio.QueueFull:  # too slow: drop the client, never buffer for it
            self._end(sub)
            self.dropped += 1
            log.info("overview.slow_client_dropped", queued=QUEUE_SIZE, dropped=self.dropped)

    def _end(self, sub: _Subscriber) -> None:
        self.subscribers.discard(sub)
        while not sub.queue.empty():
            sub.queue.get_nowait()
        sub.queue.put_nowait(None)

    async def run(self) -> None:
        """Push fresh figures to every stream after commits (coalesced), until the daemon stops."""
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), MAX_AGE)
                self._changed.clear()
                scopes = {s.scope for s in self.subscribers}
                for scope in scopes:
                    try:
                        cached = await self.figures(scope, fresh=True)
                    except Exception as exc:  # a locked database, a bug: the streams wait for the next change
                        log.error("overview.figures_failed", error=repr(exc))
                        continue
                    if cached.generation != self.generation:
                        # Computed before the last commit (within the interval, or while the commit landed):
                        # push it, and push again after the interval, or that commit would wait for MAX_AGE.
                        self._changed.set()
                    item = _event(cached).decode()
                    for sub in [s for s in self.subscribers if s.scope == scope]:
                        self._offer(sub, item)
                await asyncio.sleep(self.interval)  # commits meanwhile make one push, not one each
        finally:
            self.close()

    def close(self) -> None:
        """End every stream and stop the figures' thread (at the daemon's stop)."""
        self._closed = True
        for sub in list(self.subscribers):
            self._end(sub)
        self._db.shutdown(wait=False, cancel_futures=True)


def _event(cached: _Cached) -> bytes:
    data = json.dumps({"html": cached.html, "at": cached.stamp})
    return f"event: overview\ndata: {data}\n\n".encode()


def register(console: Console) -> Overview:
    """Serve the overview at ``/`` (and its event stream and script) on ``console``'s server."""
    from smdrd.reports.queries import context_from

    daemon = console.daemon
    reports = daemon.features.reports if daemon is not None else None
    fixed = context_from(console.settings) if reports is None else None

    def context() -> Context:
        return reports.context if reports is not None else fixed  # type: ignore[return-value]

    def settings() -> Settings:
        return daemon.settings if daemon is not None else console.settings

    def sources() -> list[dict[str, Any]]:
        health = daemon.features.health if daemon is not None else None
        if health is None:
            return []
        found = health.check(detail=False).detail.get("sources", {})
        return [{"name": name, **info} for name, info in sorted(found.items())]

    overview = Overview(console, context, settings, sources)
    router = console.server.app.router
    router.add_get("/", overview.page)
    router.add_get("/overview/events", overview.events)
    router.add_get("/console/static/overview/{name}", overview.static)
    console.changed_listeners.append(overview.changed)
    if daemon is not None:
        daemon.commit_listeners.append(overview.committed)
        daemon.add_task("console-overview", overview.run)
    return overview
