"""The directory in the console: extensions (search, names, their department, edit a name, move to another
department from a date), departments (the tree with parents and monthly budgets; add, rename, delete), CSV
import and export; as pages (``/directory/...``) and as a JSON API (``/api/directory/...``, docs/api.md).

Admins change; managers see only their departments (and those under them) and the extensions in them today;
viewers and the service token read. With ``[directory] source = "files"`` departments and memberships are the
configuration's: the pages show them read-only, with a notice; names are in the database either way, so an
admin edits them in both. Every change is checked as the configuration is (`smdrd.directory`), written with
its audit entry (who, from where, the before and the after), and swapped into the running daemon at once
(`Daemon.use_directory`): reports, budget alerts, metrics and the managers' scoping follow. A mistake is
answered beside its field (the page again with ``400``, or ``{"errors": {field: message}}``), never a 500.
The store runs on the console's database thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlencode

from aiohttp import web

from smdrd.console.streamed import UploadProblem, read_csv_body, read_csv_upload
from smdrd.csvsafe import BOM
from smdrd.directory import (
    DATABASE,
    Change,
    DirectoryError,
    add_department,
    delete_department,
    edit_department,
    export_csv,
    move_extension,
    read_csv,
    replace_all,
    site_name,
    with_snapshot,
)
from smdrd.http import ADMIN, READERS, Principal, csrf_in_stream, principal_of, requires
from smdrd.reports.departments import Directory
from smdrd.reports.queries import EARLIEST_DAY, LATEST_DAY
from smdrd.store import open_store
from smdrd.store.api import Actor, DirectoryConflict, DirectoryExtension, DirectorySnapshot, DirectoryStore
from smdrd.store.mapping import MAX_NAME_CHARS

if TYPE_CHECKING:
    from smdrd.config import Settings
    from smdrd.console import Console

__all__ = ["DIRECTORY_READERS", "DirectoryPages", "register"]

#: who may read the directory: `READERS`, and managers (their departments only).
DIRECTORY_READERS = READERS | {"manager"}
#: extensions per page.
PAGE_SIZE = 100
#: the most extensions a manager's page is filtered from (their departments' extensions today).
MAX_SCOPED = 20_000
#: the longest extension number (as a directory file or a department's ``extensions`` may give one).
MAX_NUMBER = 64
#: what a page says after a change that sent the browser on (a fixed text per key: nothing from the URL shown).
DONE = {"named": "Name saved.", "moved": "Extension moved.", "added": "Department added.",
        "changed": "Department saved.", "deleted": "Department deleted.", "imported": "Directory imported."}
FILES_NOTICE = ("The departments come from the configuration file ([directory] source = \"files\"): they are "
                "shown here read-only. Edit [[departments]] and reload the daemon, or set [directory] source = "
                "\"database\" to edit them here.")

T = TypeVar("T")


@dataclass(slots=True)
class Outcome:
    """What a change came to: the problems by field (none: done), with a status."""

    errors: dict[str, str] = field(default_factory=dict)
    status: int = 200


class DirectoryPages:
    """The directory pages and API of one console; every change goes through `change`."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._store: DirectoryStore | None = None

    # ---- plumbing ----

    async def _db(self, fn: Callable[[DirectoryStore], T]) -> T:
        def call() -> T:
            if self._store is None:
                self._store = open_store(self.console.path).directory()
            return fn(self._store)

        return await asyncio.get_running_loop().run_in_executor(self.console._db, call)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    @property
    def editable(self) -> bool:
        """Departments and memberships are edited here (``[directory] source = "database"``)."""
        return self._settings().directory.source == DATABASE

    def _settings(self) -> Settings:
        daemon = self.console.daemon
        return daemon.settings if daemon is not None else self.console.settings

    def _lookup(self) -> Directory:
        """The departments in force (the reports' own lookup, which follows every swap and reload)."""
        daemon = self.console.daemon
        reports = daemon.features.reports if daemon is not None else None
        if reports is not None:
            return reports.context.directory
        return Directory.from_config(self._settings().departments)

    def _today(self) -> date:
        return datetime.fromtimestamp(self.console.now(), self._settings().site.tz).date()

    def _scope(self, principal: Principal | None, lookup: Directory) -> set[str] | None:
        from smdrd.console.calls import scope_departments

        return scope_departments(principal, lookup)

    def _actor(self, request: web.Request) -> Actor:
        principal = principal_of(request)
        assert principal is not None
        return Actor(principal.name, self.console._address(request))

    async def _posted(self, request: web.Request) -> Mapping[str, str]:
        return (await self.console._form(request)).fields

    # ---- the changes ----

    async def change(self, request: web.Request, make: Callable[[DirectorySnapshot], Change]) -> Outcome:
        """Make a change of the departments or memberships on the stored directory, write it over the version
        it was made on, and swap it into the daemon."""
        if not self.editable:
            return Outcome({"source": FILES_NOTICE}, 409)
        actor, now = self._actor(request), self.console.now()

        def write(store: DirectoryStore) -> DirectorySnapshot:
            snapshot = store.snapshot()
            make(snapshot).write(store, snapshot, at=now, actor=actor)
            return store.snapshot()

        try:
            fresh = await self._db(write)
        except DirectoryError as exc:
            return Outcome({exc.field or "directory": exc.message}, 400)
        except DirectoryConflict as exc:
            return Outcome({"directory": str(exc)}, 409)
        daemon = self.console.daemon
        if daemon is not None:
            daemon.use_directory(with_snapshot(daemon.settings, fresh), fresh.version)
        return Outcome()

    async def rename(self, request: web.Request, number: str, name: str, site: str = "") -> Outcome:
        """Name ``number`` at the site named ``site`` (``""``: the site-less name, shown at every site that has
        none of its own)."""
        if not number or len(number) > 64:
            return Outcome({"extension": "no such extension"}, 404)
        if len(name) > MAX_NAME_CHARS:
            return Outcome({"name": f"at most {MAX_NAME_CHARS} characters"}, 400)
        try:
            site = site_name(site)
        except DirectoryError as exc:
            return Outcome({exc.field: exc.message}, 400)
        actor, now = self._actor(request), self.console.now()
        await self._db(lambda s: s.set_name(number, name, at=now, actor=actor, site=site))
        return Outcome()

    def _move(self, number: str, department: str, valid_from: str,
              site: str = "") -> Callable[[DirectorySnapshot], Change]:
        try:
            day = date.fromisoformat(valid_from.strip())
        except ValueError:
            raise DirectoryError("valid_from", "expected a date such as 2026-03-16") from None
        if not EARLIEST_DAY <= day <= LATEST_DAY:  # no call is stored outside them
            raise DirectoryError("valid_from", f"expected a date from {EARLIEST_DAY} to {LATEST_DAY}")
        site = site_name(site)
        return lambda snap: move_extension(snap, number, department, day, site)

    async def move(self, request: web.Request, number: str, department: str, valid_from: str,
                   site: str = "") -> Outcome:
        """Move ``number`` (of the site named ``site``; ``""``: of every site) to ``department`` from
        ``valid_from``."""
        try:
            make = self._move(number, department, valid_from, site)
        except DirectoryError as exc:
            return Outcome({exc.field: exc.message}, 400)
        return await self.change(request, make)

    # ---- reads ----

    async def extensions(self, principal: Principal | None, search: str, page: int) -> tuple[
            list[dict[str, Any]], int]:
        """A page of extensions (number, name, where the name came from, department today; and, where
        memberships name sites, its department today at each of them), and how many."""
        lookup, today = self._lookup(), self._today().isoformat()
        wanted = self._scope(principal, lookup)
        if wanted is None:
            rows, total = await self._db(lambda s: s.extensions(search, limit=PAGE_SIZE,
                                                                offset=(page - 1) * PAGE_SIZE))
            return [_extension(e, lookup, today) for e in rows], total
        every, _ = await self._db(lambda s: s.extensions(search, limit=MAX_SCOPED))
        mine = [row for e in every
                if {(row := _extension(e, lookup, today))["department"], *row.get("sites", {}).values()} & wanted]
        return mine[(page - 1) * PAGE_SIZE:page * PAGE_SIZE], len(mine)

    async def departments(self, principal: Principal | None) -> list[dict[str, Any]]:
        """Every department (a manager's: theirs and those under them), parents first, with its depth, budget
        and memberships."""
        lookup = self._lookup()
        wanted = self._scope(principal, lookup)
        settings = self._settings()
        out = []
        for name in lookup.tree_order():
            if wanted is not None and name not in wanted:
                continue
            members = [{"extension": m.spec, "valid_from": _iso(m.first), "valid_until": _iso(m.last),
                        **({"site": m.site} if m.site else {})} for m in lookup.memberships if m.department == name]
            budget = lookup.budgets.get(name)
            out.append({"name": name, "parent": lookup.parents.get(name), "depth": lookup.depth(name),
                        "budget": None if budget is None else str(budget), "currency": settings.tariff.currency,
                        "budget_text": _money(budget, settings.tariff.decimals, settings.tariff.currency),
                        "memberships": members})
        return out

    # ---- pages ----

    def _render(self, request: web.Request, template: str, *, status: int = 200, **values: Any) -> web.Response:
        principal = principal_of(request)
        return self.console.render(
            request, template, status=status, csrf=principal.csrf if principal is not None else "",
            admin=principal is not None and principal.role == "admin", editable=self.editable,
            files_notice=FILES_NOTICE, done=DONE.get(request.query.get("done", ""), ""), **values)

    async def _extensions_page(self, request: web.Request, *, status: int = 200,
                               errors: Mapping[str, str] | None = None, failed: str = "",
                               form: Mapping[str, str] | None = None) -> web.StreamResponse:
        principal = principal_of(request)
        search = request.query.get("q", "")[:100]
        raw = request.query.get("page", "1")
        page = int(raw) if raw.isascii() and raw.isdigit() and 0 < len(raw) < 7 and int(raw) > 0 else 1
        rows, total = await self.extensions(principal, search, page)
        pages = max(1, -(-total // PAGE_SIZE))

        def link(n: int) -> str:
            return "/directory/extensions?" + urlencode({"q": search, "page": n})

        return self._render(request, "directory_extensions.html", status=status, title="Extensions", rows=rows,
                            total=total, search=search, page=page, pages=pages,
                            show_sites=bool((form or {}).get("site")) or await self._several_sites(rows),
                            previous=link(page - 1) if page > 1 else "", next=link(page + 1) if page < pages else "",
                            departments=self._lookup().tree_order(), today=self._today().isoformat(),
                            errors=errors or {}, failed=failed, form=form or {}, quote=quote)

    async def _several_sites(self, rows: list[dict[str, Any]]) -> bool:
        """Whether the Move form asks for a site: memberships or names already name one, or the store holds
        the calls of more than one site (a central store). A single box's page keeps its plain form."""
        if self._lookup().sited or any(r.get("name_site") for r in rows):
            return True

        def count() -> int:
            reader = open_store(self.console.path).reports()
            try:
                return len(reader.sites())
            finally:
                reader.close()

        return await asyncio.get_running_loop().run_in_executor(self.console._db, count) > 1

    @requires(*DIRECTORY_READERS)
    async def extensions_page(self, request: web.Request) -> web.StreamResponse:
        return await self._extensions_page(request)

    def _number(self, request: web.Request) -> str:
        return request.match_info["number"]

    @staticmethod
    def _bad_number(number: str) -> Outcome | None:
        """An extension number no PBX gives (longer than the 64 characters a stored one may have): refused
        whole. Cut to 64, it named, and changed, another extension."""
        if len(number) > MAX_NUMBER:
            return Outcome({"extension": f"an extension has at most {MAX_NUMBER} characters, got {len(number)}"},
                           400)
        return None

    def _back(self, fields: Mapping[str, str], done: str, number: str) -> web.HTTPSeeOther:
        query = {"done": done}
        if fields.get("q"):
            query["q"] = fields["q"][:100]
        return web.HTTPSeeOther(f"/directory/extensions?{urlencode(query)}#ext-{quote(number, safe='')}")

    @requires(*ADMIN)
    async def name_form(self, request: web.Request) -> web.StreamResponse:
        number, fields = self._number(request), await self._posted(request)
        site = fields.get("name_site", "")
        outcome = self._bad_number(number) or await self.rename(request, number, fields.get("name", ""), site)
        if outcome.errors:
            # The row of the name the form was for; a site refused is shown on the number's first row.
            errors = {"name_site" if k == "site" else k: v for k, v in outcome.errors.items()}
            return await self._extensions_page(request, status=outcome.status, errors=errors, form=fields,
                                               failed=number if "name_site" in errors else _key(number, site.strip()))
        raise self._back(fields, "named", _key(number, site.strip()))

    @requires(*ADMIN)
    async def move_form(self, request: web.Request) -> web.StreamResponse:
        number, fields = self._number(request), await self._posted(request)
        outcome = self._bad_number(number) or await self.move(
            request, number, fields.get("department", ""), fields.get("valid_from", ""), fields.get("site", ""))
        if outcome.errors:
            return await self._extensions_page(request, status=outcome.status, errors=outcome.errors,
                                               failed=number, form=fields)
        raise self._back(fields, "moved", number)

    async def _departments_page(self, request: web.Request, *, status: int = 200,
                                errors: Mapping[str, str] | None = None, failed: str = "",
                                form: Mapping[str, str] | None = None) -> web.StreamResponse:
        principal = principal_of(request)
        departments = await self.departments(principal)
        return self._render(request, "directory_departments.html", status=status, title="Departments",
                            departments=departments, names=[d["name"] for d in departments],
                            errors=errors or {}, failed=failed, form=form or {}, quote=quote,
                            source=self._settings().directory.source,
                            max_mb=self._settings().http.max_upload_mb,
                            export=principal is not None and principal.role != "manager")

    @requires(*DIRECTORY_READERS)
    async def departments_page(self, request: web.Request) -> web.StreamResponse:
        return await self._departments_page(request)

    async def _department_result(self, request: web.Request, outcome: Outcome, fields: Mapping[str, str],
                                 failed: str, done: str) -> web.StreamResponse:
        if outcome.errors:
            return await self._departments_page(request, status=outcome.status, errors=outcome.errors,
                                                failed=failed, form=fields)
        raise web.HTTPSeeOther(f"/directory/departments?done={done}")

    @requires(*ADMIN)
    async def add_form(self, request: web.Request) -> web.StreamResponse:
        fields = await self._posted(request)
        outcome = await self.change(request, lambda snap: add_department(
            snap, fields.get("name", ""), fields.get("parent", ""), fields.get("budget", "")))
        return await self._department_result(request, outcome, fields, "", "added")

    @requires(*ADMIN)
    async def edit_form(self, request: web.Request) -> web.StreamResponse:
        name, fields = request.match_info["name"][:200], await self._posted(request)
        outcome = await self.change(request, lambda snap: edit_department(
            snap, name, new_name=fields.get("name", ""), parent=fields.get("parent", ""),
            budget=fields.get("budget", "")))
        return await self._department_result(request, outcome, fields, name, "changed")

    @requires(*ADMIN)
    async def delete_form(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"][:200]
        await self._posted(request)
        outcome = await self.change(request, lambda snap: delete_department(snap, name))
        return await self._department_result(request, outcome, {}, name, "deleted")

    async def _import(self, request: web.Request, text: str, source: str) -> Outcome:
        try:
            departments, memberships, names = read_csv(text.splitlines(keepends=True), source)
        except DirectoryError as exc:
            return Outcome({"file": str(exc)}, 400)

        def make(snap: DirectorySnapshot) -> Change:
            return replace_all(snap, departments, memberships, names, source=source)

        outcome = await self.change(request, make)
        if "file" not in outcome.errors and outcome.errors:
            outcome.errors = {"file": next(iter(outcome.errors.values()))}
        return outcome

    @csrf_in_stream
    @requires(*ADMIN)
    async def import_form(self, request: web.Request) -> web.StreamResponse:
        """A directory CSV sent with the page's form, up to ``[http] max_upload_mb`` (read as it arrives, the
        form's CSRF token first)."""
        async def page(problem: UploadProblem) -> web.StreamResponse:
            return await self._departments_page(request, status=problem.status, errors={"file": str(problem)},
                                                failed="import")

        sent = await read_csv_upload(request, "file", self._settings().http.max_upload_mb * 1024 * 1024, page)
        if isinstance(sent, web.StreamResponse):
            return sent
        outcome = await self._import(request, sent.text, sent.filename[:100] or "upload.csv")
        return await self._department_result(request, outcome, {}, "import", "imported")

    @requires(*READERS)
    async def export(self, request: web.Request) -> web.StreamResponse:
        snapshot, names = await self._db(lambda s: (s.snapshot(), s.names()))
        if not self.editable:  # the files' departments, as they are in force
            snapshot = _snapshot_of(self._lookup())
        body = BOM + "".join(export_csv(snapshot, names))  # a download for a spreadsheet: Excel reads it as UTF-8
        return web.Response(text=body, content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": 'attachment; filename="directory.csv"'})

    # ---- the JSON API ----

    @staticmethod
    def _json(outcome: Outcome, ok: Any = None) -> web.Response:
        if outcome.errors:
            return web.json_response({"errors": outcome.errors}, status=outcome.status)
        return web.json_response(ok if ok is not None else {"ok": True}, status=outcome.status)

    @requires(*DIRECTORY_READERS)
    async def api_extensions(self, request: web.Request) -> web.StreamResponse:
        raw = request.query.get("page", "1")
        page = int(raw) if raw.isascii() and raw.isdigit() and 0 < len(raw) < 7 and int(raw) > 0 else 1
        rows, total = await self.extensions(principal_of(request), request.query.get("q", "")[:100], page)
        return web.json_response({"extensions": rows, "total": total, "page": page, "page_size": PAGE_SIZE,
                                  "source": self._settings().directory.source})

    @requires(*ADMIN)
    async def api_extension(self, request: web.Request) -> web.StreamResponse:
        """``{"name": ...}`` and/or ``{"department": ..., "valid_from": ...}`` (a move)."""
        number, body = self._number(request), await _body(request)
        if (bad_number := self._bad_number(number)) is not None:
            return self._json(bad_number)
        unknown = sorted(set(body) - {"name", "department", "valid_from", "site"})
        if unknown:
            return self._json(Outcome({unknown[0][:40]: "unknown field; expected name, department, valid_from, "
                                                        "site"}, 400))
        bad = [k for k, v in body.items() if not isinstance(v, str)]
        if bad:
            return self._json(Outcome({bad[0]: "expected a string"}, 400))
        outcome = Outcome()
        site = body.get("site", "")
        if "department" in body or "valid_from" in body or ("site" in body and "name" not in body):
            outcome = await self.move(request, number, body.get("department", ""), body.get("valid_from", ""), site)
        if not outcome.errors and "name" in body:  # the name at ``site`` (none: the site-less one)
            outcome = await self.rename(request, number, body["name"], site)
        if outcome.errors:
            return self._json(outcome)
        rows, _ = await self.extensions(None, number, 1)
        found = next((r for r in rows if r["number"] == number and r.get("name_site", "") == site.strip()),
                     next((r for r in rows if r["number"] == number), {"number": number}))
        return web.json_response(found)

    @requires(*DIRECTORY_READERS)
    async def api_departments(self, request: web.Request) -> web.StreamResponse:
        version = await self._db(lambda s: s.version())
        return web.json_response({"source": self._settings().directory.source, "version": version,
                                  "departments": await self.departments(principal_of(request))})

    async def _department_body(self, request: web.Request) -> dict[str, str]:
        body = await _body(request)
        unknown = sorted(set(body) - {"name", "parent", "budget"})
        if unknown:
            raise _bad({unknown[0][:40]: "unknown field; expected name, parent, budget"})
        out: dict[str, str] = {}
        for key, value in body.items():
            if value is None:
                out[key] = ""
            elif isinstance(value, str) or (key == "budget" and isinstance(value, int) and not isinstance(value, bool)):
                out[key] = str(value)
            else:
                raise _bad({key: "expected a string" + (" (a decimal such as \"250.00\")" if key == "budget" else "")})
        return out

    @requires(*ADMIN)
    async def api_add(self, request: web.Request) -> web.StreamResponse:
        f = await self._department_body(request)
        outcome = await self.change(request, lambda snap: add_department(snap, f.get("name", ""),
                                                                         f.get("parent", ""), f.get("budget", "")))
        outcome.status = outcome.status if outcome.errors else 201
        return self._json(outcome, {"name": " ".join(f.get("name", "").split())})

    @requires(*ADMIN)
    async def api_edit(self, request: web.Request) -> web.StreamResponse:
        name, f = request.match_info["name"][:200], await self._department_body(request)
        current = next((d for d in await self.departments(None) if d["name"] == name), None)
        if current is None:
            return self._json(Outcome({"name": "no such department"}, 404))
        outcome = await self.change(request, lambda snap: edit_department(
            snap, name, new_name=f.get("name", name), parent=f.get("parent", current["parent"] or ""),
            budget=f.get("budget", current["budget"] or "")))
        return self._json(outcome, {"name": " ".join(f.get("name", name).split())})

    @requires(*ADMIN)
    async def api_delete(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"][:200]
        outcome = await self.change(request, lambda snap: delete_department(snap, name))
        if outcome.errors.get("department", "").startswith("there is no department"):
            outcome.status = 404
        return self._json(outcome) if outcome.errors else web.Response(status=204)

    @requires(*ADMIN)
    async def api_import(self, request: web.Request) -> web.StreamResponse:
        try:
            text = await read_csv_body(request, "file", self._settings().http.max_upload_mb * 1024 * 1024)
        except UploadProblem as exc:
            response = self._json(Outcome({"file": str(exc)}, exc.status))
            if exc.status == 413:
                response.force_close()  # the rest of the body is not read
            return response
        return self._json(await self._import(request, text, "request"))


def _extension(e: DirectoryExtension, lookup: Directory, today: str) -> dict[str, Any]:
    """An extension as the page and the API show it: its department today (at a site no membership names), and,
    when memberships name sites, under ``sites`` its department today at each site one covering it names."""
    row: dict[str, Any] = {"number": e.number, "name": e.name, "name_source": e.name_source,
                           "department": lookup.department(e.number, today)}
    if e.site:  # a site's own name (a number has a row per site that names it)
        row["name_site"] = e.site
    if lookup.sited:
        row["sites"] = {site: lookup.department(e.number, today, site) for site in lookup.sites(e.number)}
    return row


def _key(number: str, site: str) -> str:
    """An extensions page row's key: the number, then ``@site`` for a site's own name (a number has a row per
    site that names it)."""
    return f"{number}@{site}" if site else number


def _money(amount: Decimal | None, decimals: int, currency: str) -> str:
    """A budget as a person reads it: ``250.50 USD`` (the tariff's decimals, or the amount's own when it has
    more); ``""`` for none."""
    if amount is None:
        return ""
    places = -int(amount.as_tuple().exponent)
    shown = amount if places > decimals else amount.quantize(Decimal(1).scaleb(-decimals))
    return f"{shown} {currency}"


def _iso(day: str) -> str | None:
    return day if day and day != "9999-12-31" else None


def _snapshot_of(lookup: Directory) -> DirectorySnapshot:
    from smdrd.store.api import DirectoryDepartment, DirectoryMembership

    return DirectorySnapshot(
        tuple(DirectoryDepartment(n, lookup.parents.get(n), lookup.budgets.get(n)) for n in lookup.names),
        tuple(DirectoryMembership(m.department, m.spec, date.fromisoformat(m.first) if m.first else None,
                                  None if m.last == "9999-12-31" else date.fromisoformat(m.last), m.site)
              for m in lookup.memberships), 0)


def _bad(errors: dict[str, str]) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=json.dumps({"errors": errors}), content_type="application/json")


async def _body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object (as the users API reads it; ``400`` when it is not one)."""
    from smdrd.console.users import UserAdmin

    return await UserAdmin._body(request)


def register(console: Console) -> DirectoryPages:
    """Add the directory pages and API to ``console``'s server. An extension may hold a slash (``SIP/alice``):
    its routes take the rest of the path."""
    pages = DirectoryPages(console)
    router = console.server.app.router
    router.add_get("/directory/extensions", pages.extensions_page)
    router.add_post("/directory/extensions/{number:.+}/name", pages.name_form)
    router.add_post("/directory/extensions/{number:.+}/move", pages.move_form)
    router.add_get("/directory/departments", pages.departments_page)
    router.add_post("/directory/departments", pages.add_form)
    router.add_post("/directory/departments/{name}", pages.edit_form)
    router.add_post("/directory/departments/{name}/delete", pages.delete_form)
    router.add_post("/directory/import", pages.import_form)
    router.add_get("/directory/export.csv", pages.export)
    router.add_get("/api/directory/extensions", pages.api_extensions)
    router.add_put("/api/directory/extensions/{number:.+}", pages.api_extension)
    router.add_get("/api/directory/departments", pages.api_departments)
    router.add_post("/api/directory/departments", pages.api_add)
    router.add_put("/api/directory/departments/{name}", pages.api_edit)
    router.add_delete("/api/directory/departments/{name}", pages.api_delete)
    router.add_get("/api/directory/export", pages.export)
    router.add_post("/api/directory/import", pages.api_import)
    daemon = console.daemon
    if daemon is not None:
        async def closing() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                try:
                    console._db.submit(pages.close)
                except RuntimeError:  # the console's thread has stopped already: nothing runs on the store
                    pages.close()

        daemon.add_task("console-directory", closing)
    return pages
