"""The console's alerts inbox: ``/alerts`` lists raised alerts by rule, severity, state and date; a person
acknowledges one (who and when are kept) or snoozes it until a time; resolved ones stay visible. Over a store
holding several sites' alerts (a central one, ``smdrd central``), a Site filter picks one site's (the ``site`` of
each alert's payload). The same as
JSON under ``/api/alerts``.

Alert state lives in the database (`smdrd.store.api.AlertInbox`), each change with its audit entry. Who may do
what is checked here, on the server: admins act on every alert; a manager sees and acts on the alerts of their
departments only (an alert without a department, such as a source that went down, is the site's, not theirs);
viewers and the service token read. Filters are in the URL; pages go back in time by row id (``before``).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

from aiohttp import web

from smdrd.console.calls import CALL_READERS, on_thread, parse_day, report_context, scope_departments
from smdrd.http import MAX_BODY, Principal, principal_of, requires
from smdrd.privacy import hidden_digits, masked_payload
from smdrd.reports.queries import Context
from smdrd.store import open_store
from smdrd.store.api import ALERT_STATES, Actor, AlertFilter, AlertInbox, InboxAlert, utc_bounds

if TYPE_CHECKING:
    from smdrd.console import Console

__all__ = ["ALERT_ACTORS", "MAX_SNOOZE_DAYS", "SEVERITIES", "SNOOZES", "AlertsInbox", "register"]

#: who may acknowledge and snooze: admins, and managers for their departments' alerts.
ALERT_ACTORS = frozenset({"admin", "manager"})
SEVERITIES = ("warning", "critical")
#: the snooze lengths the form offers, in minutes, with their names.
SNOOZES = {60: "1 hour", 240: "4 hours", 1440: "1 day", 10080: "1 week"}
#: the longest snooze.
MAX_SNOOZE_DAYS = 90
PAGE_SIZE = 50

T = TypeVar("T")


@dataclass
class InboxForm:
    """The inbox's filters as typed, the `AlertFilter` made of them, and the problems by field."""

    values: dict[str, str]
    states: tuple[str, ...] = ()
    errors: dict[str, str] = field(default_factory=dict)

    def url(self, path: str = "/alerts", **changes: str) -> str:
        params = [(k, v) for k, v in self.values.items() if v and k not in changes and k != "before"]
        params += [("state", s) for s in self.states]
        params += [(k, v) for k, v in changes.items() if v]
        return f"{path}?{urlencode(params)}" if params else path


def parse_filters(query: Any, ctx: Context, now: int, departments: set[str] | None) -> tuple[InboxForm,
                                                                                             AlertFilter | None]:
    """The inbox's filters from a URL query; every field checked, each problem named."""
    form = InboxForm({name: query.get(name, "").strip()[:64] for name in ("rule", "severity", "site", "from",
                                                                          "to", "before")})
    v, errors = form.values, form.errors
    states = tuple(dict.fromkeys(s.strip() for s in query.getall("state", [])[:8] if s.strip()))
    form.states = states if query.getall("state", []) else ("open",)
    for state in form.states:
        if state not in (*ALERT_STATES, "any"):
            errors["state"] = f"expected {', '.join(ALERT_STATES)} or any, got {state[:30]!r}"
    if v["severity"] and v["severity"] not in SEVERITIES:
        errors["severity"] = f"expected {' or '.join(SEVERITIES)}, got {v['severity'][:30]!r}"
    if any(ord(c) < 32 for c in v["rule"]):
        errors["rule"] = "expected a rule's name"
    if any(ord(c) < 32 for c in v["site"]):
        errors["site"] = "expected a site's name"
    days = [parse_day(v[name], name, errors) for name in ("from", "to")]
    if days[0] and days[1] and days[1] < days[0]:
        errors["to"] = f"{days[1]} is before from ({days[0]})"
    before = None
    if v["before"]:
        if v["before"].isascii() and v["before"].isdigit() and len(v["before"]) < 19:
            before = int(v["before"])
        else:
            errors["before"] = "not a page of this list: start again from the newest"
    if errors:
        return form, None
    lo = hi = None
    if days[0]:
        lo = utc_bounds(days[0], days[0], ctx.timezone)[0] * 1_000_000
    if days[1]:
        hi = utc_bounds(days[1], days[1], ctx.timezone)[1] * 1_000_000
    wanted = tuple(sorted(departments)) if departments is not None else None
    states = () if "any" in form.states else form.states
    return form, AlertFilter(now, rules=(v["rule"],) if v["rule"] else (), severities=(v["severity"],) if
                             v["severity"] else (), states=states, lo=lo, hi=hi, departments=wanted,
                             sites=(v["site"],) if v["site"] else (), before=before, limit=PAGE_SIZE)


def snooze_until(fields: dict[str, str], ctx: Context, now: int) -> tuple[int | None, str]:
    """The end of a snooze (UTC seconds) from a form or JSON: ``until`` (site-local ``2026-03-01T08:00``) or
    ``minutes``; else the problem."""
    until, minutes = fields.get("until", "").strip()[:40], fields.get("minutes", "").strip()[:12]
    if until:
        try:
            when = datetime.fromisoformat(until)
        except ValueError:
            return None, f"until: expected a date and time such as 2026-03-01T08:00, got {until!r}"
        end = int((when if when.tzinfo else when.replace(tzinfo=ctx.timezone)).timestamp())
    elif minutes.isascii() and minutes.isdigit():
        end = now + int(minutes) * 60
    elif minutes:
        return None, f"minutes: expected a whole number of minutes above 0, got {minutes!r}"
    else:
        return None, "until: choose how long, or a date and time"
    if end <= now:
        return None, "until: expected a time in the future"
    if end > now + MAX_SNOOZE_DAYS * 86400:
        return None, f"until: a snooze lasts at most {MAX_SNOOZE_DAYS} days"
    return end, ""


class AlertsInbox:
    """The inbox routes of one console."""

    def __init__(self, console: Console, context: Callable[[], Context]) -> None:
        self.console = console
        self.context = context
        self.path = console.path
        self.privacy = console.settings.privacy
        self._db = ThreadPoolExecutor(1, thread_name_prefix="smdrd-console-alerts")

    async def _inbox(self, fn: Callable[[AlertInbox], T]) -> T:
        return await on_thread(self._db, lambda: open_store(self.path).alert_inbox(), fn)

    def _when(self, ctx: Context, seconds: float | None) -> str:
        if seconds is None:
            return ""
        return datetime.fromtimestamp(seconds, ctx.timezone).strftime("%Y-%m-%d %H:%M")

    def _row(self, a: InboxAlert, ctx: Context, principal: Principal | None) -> dict[str, Any]:
        p = masked_payload(a.payload, hidden_digits(principal, self.privacy))
        return {"id": a.alert_id, "rule": a.rule, "severity": a.severity, "state": a.state,
                "reason": str(p.get("reason") or ""), "department": a.department, "site": p.get("site"),
                "extension": p.get("extension"),
                "number": p.get("number"), "source": p.get("source"), "facts": p.get("facts") or {},
                "call_uid": (p.get("call") or {}).get("uid") if isinstance(p.get("call"), dict) else None,
                "raised_at": self._when(ctx, a.created_at / 1_000_000),
                "acked_by": a.acked_by, "acked_at": self._when(ctx, a.acked_at),
                "snoozed_until": self._when(ctx, a.snoozed_until) if a.state == "snoozed" else "",
                "snoozed_by": a.snoozed_by if a.state == "snoozed" else None,
                "resolved_at": self._when(ctx, a.resolved_at / 1_000_000) if a.resolved_at else "",
                "can_act": principal is not None and principal.role in ALERT_ACTORS and a.state != "resolved"}

    async def _list(self, request: web.Request) -> tuple[InboxForm, list[InboxAlert], Context, list[str],
                                                         list[str]]:
        ctx = self.context()
        wanted = scope_departments(principal_of(request), ctx.directory)
        form, f = parse_filters(request.query, ctx, self.console.now(), wanted)

        def read(inbox: AlertInbox) -> tuple[list[InboxAlert], list[str], list[str]]:
            return ([] if f is None else inbox.alerts(f)), inbox.rules(), inbox.sites()

        alerts, rules, sites = await self._inbox(read)
        return form, alerts, ctx, rules, sites

    @requires(*CALL_READERS)
    async def page(self, request: web.Request, *, status: int = 200, problem: tuple[str, str] = ("", ""),
                   done: str = "") -> web.StreamResponse:
        form, alerts, ctx, rules, sites = await self._list(request)
        principal = principal_of(request)
        older = form.url(before=str(alerts[-1].row)) if len(alerts) == PAGE_SIZE else ""
        return self.console.render(
            request, "alerts_inbox.html", status=400 if form.errors else status, title="Alerts", form=form,
            alerts=[self._row(a, ctx, principal) for a in alerts], rules=rules, severities=SEVERITIES,
            sites=sites if len(sites) > 1 or form.values["site"] else [],
            states=ALERT_STATES, snoozes=SNOOZES, older_url=older, problem=problem, done=done,
            newest_url=form.url() if form.values["before"] else "", here=request.path_qs,
            csrf=principal.csrf if principal is not None else "", timezone=str(ctx.timezone))

    @requires(*CALL_READERS)
    async def api_list(self, request: web.Request) -> web.StreamResponse:
        form, alerts, ctx, _, _ = await self._list(request)
        if form.errors:
            return web.json_response({"error": "bad filter", "fields": form.errors}, status=400)
        principal = principal_of(request)
        hidden = hidden_digits(principal, self.privacy)
        rows = [{**self._row(a, ctx, principal), "payload": masked_payload(a.payload, hidden)} for a in alerts]
        before = str(alerts[-1].row) if len(alerts) == PAGE_SIZE else None
        return web.json_response({"alerts": rows, "next": before, "timezone": str(ctx.timezone)})

    # ---- acknowledge and snooze ----

    async def _act(self, request: web.Request, alert_id: str, action: str,
                   fields: dict[str, str]) -> tuple[int, str, InboxAlert | None]:
        """Do ``action`` (``ack`` or ``snooze``) on ``alert_id`` for the request's person: ``(status, problem,
        the alert after)``."""
        principal = principal_of(request)
        assert principal is not None
        ctx = self.context()
        wanted = scope_departments(principal, ctx.directory)
        now = self.console.now()
        until = 0
        if action == "snooze":
            end, problem = snooze_until(fields, ctx, now)
            if end is None:
                return 400, problem, None
            until = end
        actor = Actor(principal.name, (request.remote or "")[:64])

        def change(inbox: AlertInbox) -> tuple[int, str, InboxAlert | None]:
            found = inbox.alert(alert_id, now)
            if found is None or (wanted is not None and found.department not in wanted):
                return 404, "no such alert", None
            if found.state == "resolved":
                return 409, "this alert is resolved already", found
            changed = (inbox.acknowledge(alert_id, at=now, actor=actor) if action == "ack"
                       else inbox.snooze(alert_id, until, at=now, actor=actor))
            return 200, "", changed

        done = await self._inbox(change)
        if done[0] == 200:
            for listener in self.console.changed_listeners:  # the overview's open alerts
                listener()
        return done

    async def _form(self, request: web.Request) -> dict[str, str]:
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
        data = await request.post()
        return {k: v[:200] for k, v in data.items() if isinstance(v, str)}

    async def _form_action(self, request: web.Request, action: str) -> web.StreamResponse:
        from smdrd.console import safe_next

        fields = await self._form(request)
        alert_id = fields.get("id", "")
        status, problem, _ = await self._act(request, alert_id, action, fields)
        back = safe_next(fields.get("next", "/alerts"))
        if status != 200:
            return await self.page(request, status=status, problem=(alert_id, problem))
        raise web.HTTPSeeOther(back)

    @requires(*ALERT_ACTORS)
    async def acknowledge(self, request: web.Request) -> web.StreamResponse:
        return await self._form_action(request, "ack")

    @requires(*ALERT_ACTORS)
    async def snooze(self, request: web.Request) -> web.StreamResponse:
        return await self._form_action(request, "snooze")

    async def _api_action(self, request: web.Request, action: str) -> web.StreamResponse:
        fields: dict[str, str] = {}
        if request.can_read_body:
            if request.content_length is not None and request.content_length > MAX_BODY:
                return web.json_response({"error": "body too large"}, status=413)
            try:
                body = await request.json()
            except (ValueError, RecursionError):  # RecursionError: nested thousands deep
                return web.json_response({"error": "expected a JSON object"}, status=400)
            if not isinstance(body, dict):
                return web.json_response({"error": "expected a JSON object"}, status=400)
            fields = {k: str(v) for k, v in body.items() if isinstance(v, str | int) and not isinstance(v, bool)}
        status, problem, alert = await self._act(request, request.match_info["id"], action, fields)
        if status != 200 or alert is None:
            return web.json_response({"error": problem}, status=status)
        return web.json_response(self._row(alert, self.context(), principal_of(request)))

    @requires(*ALERT_ACTORS)
    async def api_acknowledge(self, request: web.Request) -> web.StreamResponse:
        return await self._api_action(request, "ack")

    @requires(*ALERT_ACTORS)
    async def api_snooze(self, request: web.Request) -> web.StreamResponse:
        return await self._api_action(request, "snooze")


def register(console: Console) -> AlertsInbox:
    """Add the inbox's routes to ``console``'s server."""
    inbox = AlertsInbox(console, report_context(console))
    router = console.server.app.router
    router.add_get("/alerts", inbox.page)
    router.add_post("/alerts/acknowledge", inbox.acknowledge)
    router.add_post("/alerts/snooze", inbox.snooze)
    router.add_get("/api/alerts", inbox.api_list)
    router.add_post("/api/alerts/{id}/acknowledge", inbox.api_acknowledge)
    router.add_post("/api/alerts/{id}/snooze", inbox.api_snooze)
    return inbox

