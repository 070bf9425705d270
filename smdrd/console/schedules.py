"""Scheduled reports in the console (``/schedules``): the schedules of the configuration (read only) and those
made here, each one's deliveries (pending, sent, failed with the error), and forms to add, change and delete.

Admins see and change every schedule. A manager sees and changes only the schedules they made, and each covers
only their departments: the form offers those alone and the server refuses any other (and a schedule with no
department, which would cover the whole site). Viewers have no schedules. Ownership is by user name; removing
a user disowns their schedules in the store (`smdrd.store.api.removed_owner`), so a new user of the same name
is not handed them. A schedule is checked as the configuration's are (`smdrd.reports.schedules.ScheduleConfig`),
a mistake answered beside its field. Every change is written with its audit entry. The mail feature
(`smdrd.mail`) picks a new or changed schedule up within a second; its deliveries keep their key, so changing a
schedule never sends a period twice.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web
from pydantic import ValidationError

from smdrd.console import _when
from smdrd.console.reports import PERIOD_NAMES
from smdrd.http import MAX_BODY, Principal, principal_of, requires
from smdrd.mail import ALERTS_CURSOR, schedule_key
from smdrd.reports.queries import KINDS, TITLES
from smdrd.reports.schedules import PERIODS, REPORT_FORMATS, WEEKDAYS, ScheduleConfig
from smdrd.store.api import Actor, MailItem, MailStore, StoredSchedule

if TYPE_CHECKING:
    from smdrd.console import Console

__all__ = ["SchedulePages", "register"]

T = TypeVar("T")

DONE = {"added": "Schedule added.", "changed": "Schedule saved.", "removed": "Schedule deleted."}
#: deliveries listed at most.
DELIVERIES = 100
EDITORS = ("admin", "manager")


class SchedulePages:
    """The schedule pages of one console."""

    def __init__(self, console: Console) -> None:
        self.console = console

    async def _mail(self, fn: Callable[[MailStore], T]) -> T:
        return await self.console.mail(fn)

    @staticmethod
    def _principal(request: web.Request) -> Principal:
        principal = principal_of(request)
        assert principal is not None
        return principal

    @staticmethod
    def _mine(principal: Principal, stored: StoredSchedule) -> bool:
        return principal.role == "admin" or stored.owner == principal.name

    def _allowed_departments(self, principal: Principal) -> list[str]:
        known = list(self.console.departments())
        return known if principal.role == "admin" else [d for d in known if d in principal.departments]

    async def _page(self, request: web.Request, *, status: int = 200, errors: Mapping[str, str] | None = None,
                    form: Mapping[str, Any] | None = None, editing: StoredSchedule | None = None
                    ) -> web.StreamResponse:
        principal = self._principal(request)
        stored = [s for s in await self._mail(lambda m: m.schedules()) if self._mine(principal, s)]
        rows: list[dict[str, Any]] = []
        if principal.role == "admin":
            rows += [{"name": s.name, "source": "configuration", "spec": s, "id": None, "owner": ""}
                     for s in self.console.settings.reports.schedules]
        for s in stored:
            try:
                spec = ScheduleConfig.model_validate_json(s.spec)
            except ValidationError:
                continue
            rows.append({"name": s.name, "source": "console", "spec": spec, "id": s.id, "owner": s.owner})
        owners = [schedule_key("db", s.id) for s in stored]
        if principal.role == "admin":  # and the alert digests ([alerts.email])
            owners += [schedule_key("config", s.name) for s in self.console.settings.reports.schedules]
            owners.append(ALERTS_CURSOR)
        deliveries: list[MailItem] = await self._mail(lambda m: m.deliveries(owners, DELIVERIES))
        names = {schedule_key("db", s.id): s.name for s in stored}
        names.update({schedule_key("config", s.name): s.name for s in self.console.settings.reports.schedules})
        names[ALERTS_CURSOR] = "alert digest"
        if form is None and editing is not None:
            form = _form_of(ScheduleConfig.model_validate_json(editing.spec))
        done = DONE.get(request.query.get("done", ""), "")
        return self.console.render(
            request, "schedules.html", status=status, title="Scheduled reports", rows=rows, deliveries=deliveries,
            names=names, when=_when, errors=errors or {}, form=form or {}, editing=editing, done=done,
            csrf=principal.csrf, kinds=KINDS, periods=PERIODS, formats=REPORT_FORMATS, weekdays=WEEKDAYS,
            titles=TITLES, period_names=PERIOD_NAMES,
            known=self._allowed_departments(principal), smtp=self.console.settings.smtp.enabled)

    async def _stored_or_404(self, request: web.Request) -> StoredSchedule:
        raw = request.match_info["id"]
        if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
            raise web.HTTPNotFound(text="no such schedule\n")
        schedule_id = int(raw)
        stored = await self._mail(lambda m: m.schedule(schedule_id))
        if stored is None or not self._mine(self._principal(request), stored):
            raise web.HTTPNotFound(text="no such schedule\n")
        return stored

    @staticmethod
    async def _posted(request: web.Request) -> dict[str, Any]:
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
        data = await request.post()
        fields: dict[str, Any] = {k: v[:2000] for k, v in data.items() if isinstance(v, str)}
        for many in ("formats", "departments"):
            fields[many] = [v[:200] for v in data.getall(many, []) if isinstance(v, str)][:100]
        return fields

    def _check(self, principal: Principal, fields: Mapping[str, Any]) -> tuple[ScheduleConfig | None,
                                                                             dict[str, str]]:
        """The schedule a form describes, or the problems by field."""
        errors: dict[str, str] = {}
        allowed = self._allowed_departments(principal)
        departments = list(fields.get("departments", []))
        if any(d not in allowed for d in departments):
            errors["departments"] = "only these departments can be chosen: " + (", ".join(allowed) or "none")
        elif principal.role != "admin" and not departments:
            errors["departments"] = "choose at least one of your departments"
        filters: dict[str, list[str]] = {}
        if departments:
            filters["department"] = departments
        direction = str(fields.get("direction", "outbound"))
        if direction not in ("outbound", "inbound", "all"):
            errors["direction"] = "expected outbound, inbound or all"
        elif direction != "outbound":
            filters["direction"] = [direction]
        recipients = [a for a in re.split(r"[\s,;]+", str(fields.get("recipients", ""))) if a]
        data = {"name": fields.get("name", ""), "kind": fields.get("kind", ""), "period": fields.get("period", ""),
                "formats": fields.get("formats", []), "recipients": recipients, "when": fields.get("when", ""),
                "weekday": fields.get("weekday", "mon"), "at": fields.get("at", ""), "filters": filters}
        if str(fields.get("day", "1")).strip():
            data["day"] = str(fields.get("day", "1")).strip()
        try:
            schedule = ScheduleConfig.model_validate(data)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                key = str(err["loc"][0]) if err["loc"] else "name"
                errors.setdefault(key, str(err["msg"]).removeprefix("Value error, "))
            return None, errors
        return (None, errors) if errors else (schedule, {})

    async def _save(self, request: web.Request, editing: StoredSchedule | None) -> web.StreamResponse:
        principal = self._principal(request)
        fields = await self._posted(request)
        schedule, errors = self._check(principal, fields)
        if schedule is not None and any(schedule.name.casefold() == s.name.casefold()
                                        for s in self.console.settings.reports.schedules):
            errors = {"name": "the configuration has a schedule of that name"}
        if schedule is None or errors:
            return await self._page(request, status=400, errors=errors, form=fields, editing=editing)
        actor = Actor(principal.name, self.console._address(request))
        now, spec = self.console.now(), schedule.model_dump_json()
        owner = editing.owner if editing is not None else principal.name
        try:
            await self._mail(lambda m: m.save_schedule(editing.id if editing else None, schedule.name, owner, spec,
                                                       at=now, actor=actor))
        except ValueError as exc:
            return await self._page(request, status=409, errors={"name": str(exc)}, form=fields, editing=editing)
        raise web.HTTPSeeOther(f"/schedules?done={'changed' if editing else 'added'}")

    @requires(*EDITORS)
    async def list_page(self, request: web.Request) -> web.StreamResponse:
        return await self._page(request)

    @requires(*EDITORS)
    async def add_form(self, request: web.Request) -> web.StreamResponse:
        return await self._save(request, None)

    @requires(*EDITORS)
    async def edit_page(self, request: web.Request) -> web.StreamResponse:
        return await self._page(request, editing=await self._stored_or_404(request))

    @requires(*EDITORS)
    async def change_form(self, request: web.Request) -> web.StreamResponse:
        return await self._save(request, await self._stored_or_404(request))

    @requires(*EDITORS)
    async def delete_form(self, request: web.Request) -> web.StreamResponse:
        stored = await self._stored_or_404(request)
        await self._posted(request)
        principal = self._principal(request)
        actor, now = Actor(principal.name, self.console._address(request)), self.console.now()
        await self._mail(lambda m: m.delete_schedule(stored.id, at=now, actor=actor))
        raise web.HTTPSeeOther("/schedules?done=removed")


def _form_of(schedule: ScheduleConfig) -> dict[str, Any]:
    """A schedule as the form's fields."""
    data: dict[str, Any] = json.loads(schedule.model_dump_json())
    data["recipients"] = ", ".join(schedule.recipients)
    data["departments"] = schedule.filters.get("department", [])
    data["direction"] = (schedule.filters.get("direction") or ["outbound"])[0]
    return data


def register(console: Console) -> SchedulePages:
    """Add the schedule pages to ``console``'s server."""
    pages = SchedulePages(console)
    router = console.server.app.router
    router.add_get("/schedules", pages.list_page)
    router.add_post("/schedules", pages.add_form)
    router.add_get("/schedules/{id}", pages.edit_page)
    router.add_post("/schedules/{id}", pages.change_form)
    router.add_post("/schedules/{id}/delete", pages.delete_form)
    return pages
