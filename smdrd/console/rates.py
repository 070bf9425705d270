"""Rates in the console: the rate rules (list, add, edit, delete, reorder, matching mode), CSV deck import and
export, the version history and the number tester; as pages (``/rates``...) and as a JSON API (``/api/tariff``...).

Who may do what: every signed-in user (and the service token, through the API) may read the rules, the history
and the tester; only an admin changes anything, and only when ``[tariff] source = "database"``: with ``"files"``
the pages are read-only and say so (the files are the source of truth), and the API answers 409.

A change is made on the version the page (or the API client) read: the form carries that version, and a change
made since by someone else is refused (`TariffConflict`) rather than silently overwritten. A change is validated
with the configuration's own schema (the field it is about is named beside it), compiled, saved as a new
version with its audit entry (before and after), then swapped into the running daemon and its pipeline worker
(`Daemon.use_tariff`); a tariff that does not compile is never saved.

The tester's URL is stable (``/rates/test?number=&duration=&time=&trunk=``): other pages link to it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

import structlog
from aiohttp import web
from pydantic import ValidationError

from smdrd.config import validation_problems
from smdrd.console import _when
from smdrd.console.streamed import UploadProblem, read_csv_body, read_csv_upload
from smdrd.errors import SmdrdError
from smdrd.http import ADMIN, MAX_BODY, SERVICE, USERS, csrf_in_stream, principal_of, requires
from smdrd.rating.classes import CALL_CLASSES
from smdrd.rating.config import TariffConfig, TariffRuleConfig
from smdrd.rating.explain import Explanation, explain
from smdrd.rating.rules import TariffSourceError
from smdrd.rating.tariff import FILES_LABEL
from smdrd.reports.queries import EARLIEST_DAY, LATEST_DAY
from smdrd.reports.render import hms
from smdrd.store import open_store
from smdrd.store.api import Actor, TariffConflict, TariffStore, TariffVersion, TariffVersionInfo, utc_bounds
from smdrd.tariffs import (
    DATABASE,
    RerateSummary,
    document,
    file_rules,
    read_csv,
    rerate,
    rule_json,
    tariff_config,
    write_csv,
)

if TYPE_CHECKING:
    from smdrd.config import Settings
    from smdrd.console import Console
    from smdrd.rating.tariff import Rater

__all__ = ["READ", "RateAdmin", "parse_duration", "register", "rule_problems", "version_text"]

T = TypeVar("T")

#: who may read the rules, the history and the tester (the tariff is no department's secret).
READ = frozenset(USERS | {SERVICE})
#: rules shown per page of the list.
PAGE = 100
#: rules in one answer of ``GET /api/tariff`` at most.
API_PAGE = 1000
#: the most days one re-rate from the console covers.
MAX_RERATE_DAYS = 400
#: the longest call the tester prices.
MAX_DURATION = 7 * 24 * 3600
#: form fields of a rule, in the order the page shows them.
RULE_FIELDS = ("name", "prefixes", "number_length", "rate", "billing_unit", "initial_time", "initial_cost",
               "call_class", "connection_fee", "minimum_charge", "charge_unanswered", "band", "valid_from",
               "valid_until", "trunks", "directions")
DONE = {"added": "Rule added.", "saved": "Rule saved.", "deleted": "Rule deleted.", "moved": "Rule moved.",
        "mode": "Matching mode saved.", "imported": "Deck imported.", "rerated": "Calls re-rated."}
_SPLIT = re.compile(r"[\s,;]+")
_DURATION = re.compile(r"^(?:(\d{1,3}):)?(\d{1,2}):(\d{2})$")

log = structlog.get_logger(__name__)


def parse_duration(text: str) -> int:
    """``125``, ``2:05`` or ``0:02:05`` to seconds.

    Raises:
        ValueError: naming what was expected.
    """
    text = text.strip()
    if text.isascii() and text.isdigit():
        seconds = int(text)
    else:
        m = _DURATION.match(text) if text.isascii() else None
        if m is None or int(m.group(3)) > 59 or (m.group(1) is not None and int(m.group(2)) > 59):
            raise ValueError(f"expected seconds (125) or h:mm:ss (0:02:05), got {text[:40]!r}")
        seconds = int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + int(m.group(3))
    if seconds > MAX_DURATION:
        raise ValueError(f"at most {MAX_DURATION // 86400} days")
    return seconds


def version_text(label: str | None) -> tuple[str, str]:
    """How a person reads the tariff that priced a call (`smdrd.rating.Rating.tariff_version` ``label``), and
    the link to it in the rates page's history (``""``: none)."""
    if not label:
        return "unknown version", ""
    if label.startswith(FILES_LABEL):
        return f"the tariff from the files (digest {label[len(FILES_LABEL):]})", "/rates"
    if label.isascii() and label.isdigit():
        return f"version {label}", f"/rates#version-{label}"
    return label, ""


def rule_problems(data: Mapping[str, Any], bands: Mapping[str, Any]) -> tuple[TariffRuleConfig | None, dict[str, str]]:
    """A rule from JSON-like ``data`` (as ``[[tariff.rules]]`` writes it), or the problems by field."""
    unknown = sorted(set(data) - set(RULE_FIELDS))
    if unknown:
        return None, {str(unknown[0])[:40]: f"unknown field; expected some of {', '.join(RULE_FIELDS)}"}
    try:
        rule = TariffRuleConfig.model_validate(dict(data))
    except ValidationError as exc:
        errors: dict[str, str] = {}
        for err in exc.errors():
            key = str(err["loc"][0]) if err["loc"] else "rule"
            errors.setdefault(key, str(err["msg"]).removeprefix("Value error, "))
        return None, errors
    if rule.band is not None and rule.band not in bands:
        known = ", ".join(sorted(bands)) or "none defined"
        return None, {"band": f"unknown band {rule.band!r} (known: {known})"}
    if rule.valid_from and rule.valid_until and rule.valid_until < rule.valid_from:
        return None, {"valid_until": "must not be before valid from"}
    return rule, {}


def _form_rule(fields: Mapping[str, str], directions: list[str]) -> dict[str, Any]:
    """A rule form's text fields as the JSON the schema reads (blank means the default)."""
    data: dict[str, Any] = {}
    for key in RULE_FIELDS:
        value = fields.get(key, "").strip()
        if key in ("prefixes", "trunks"):
            data[key] = [p for p in _SPLIT.split(value) if p]
        elif key == "directions":
            data[key] = directions
        elif key == "charge_unanswered":
            data[key] = value in ("on", "yes", "true", "1")
        elif value:
            data[key] = value
    return data


def _form_view(rule: TariffRuleConfig | None) -> dict[str, str]:
    """A rule as its form's fields show it."""
    if rule is None:
        return {"billing_unit": "60", "initial_time": "0", "directions": "outbound"}
    data = rule.model_dump(mode="json")
    view = {k: ("" if v is None else str(v)) for k, v in data.items()}
    view.update(prefixes=" ".join(rule.prefixes), trunks=" ".join(rule.trunks), directions=" ".join(rule.directions),
                number_length=str(rule.number_length or ""), charge_unanswered="on" if rule.charge_unanswered else "")
    return view


@dataclass(slots=True)
class Outcome:
    """What a change came to: the new version, or the problems by field, with a status."""

    version: TariffVersionInfo | None = None
    errors: dict[str, str] = field(default_factory=dict)
    status: int = 200


@dataclass(frozen=True, slots=True)
class _State:
    """The tariff in force, as the console sees it."""

    database: bool
    version: TariffVersion | None
    tariff: TariffConfig

    @property
    def number(self) -> int:
        return self.version.info.version if self.version is not None else 0

    @property
    def rules(self) -> list[TariffRuleConfig]:
        return list(self.tariff.rules)


class RateAdmin:
    """The rate pages and API of one console."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._tariffs: TariffStore | None = None
        self._raters: dict[int, Rater] = {}
        self._rerating = asyncio.Lock()
        self._state: tuple[tuple[object, ...], _State] | None = None

    # ---- plumbing ----

    def close(self) -> None:
        """Close the tariff store's connection (on the console's store thread, as `Console.close` calls it)."""
        if self._tariffs is not None:
            self._tariffs.close()
            self._tariffs = None

    def settings(self) -> Settings:
        daemon = self.console.daemon
        return daemon.settings if daemon is not None else self.console.settings

    async def _db(self, fn: Callable[[TariffStore], T]) -> T:
        def call() -> T:
            if self._tariffs is None:
                self._tariffs = open_store(self.console.path).tariffs()
            return fn(self._tariffs)

        return await asyncio.get_running_loop().run_in_executor(self.console._db, call)

    @staticmethod
    def _key(number: int, base: TariffConfig) -> tuple[object, ...]:
        return (number, base.currency, base.decimals, base.split, tuple(base.holidays), base.unknown_numbers)

    async def state(self) -> _State:
        """The latest saved version (or the files' tariff), kept while no other is saved: a page reads only the
        latest version's number, and a tariff of 100,000 rules is loaded and checked once, off the event loop."""
        settings = self.settings()
        if settings.tariff.source != DATABASE:  # the inline rules and the decks' (read once per tariff)
            key: tuple[object, ...] = ("files", id(settings.tariff))
            if self._state is None or self._state[0] != key:
                base = self.console.daemon.base_dir if self.console.daemon is not None else None
                try:
                    rules = await asyncio.to_thread(file_rules, settings.tariff, base)
                except SmdrdError as exc:  # a deck changed since the daemon read it: show what can be read
                    log.warning("rates.deck_unreadable", error=str(exc))
                    rules = list(settings.tariff.rules)
                shown = settings.tariff.model_copy(update={"rules": rules, "decks": []})
                self._state = (key, _State(False, None, shown))
            return self._state[1]
        latest = await self._db(lambda t: t.versions(1))
        key = self._key(latest[0].version if latest else 0, settings.tariff)
        if self._state is not None and self._state[0] == key:
            return self._state[1]
        version = await self._db(lambda t: t.current())
        tariff = await asyncio.to_thread(tariff_config, settings.tariff, version.document if version else None)
        state = _State(True, version, tariff)
        self._state = (self._key(state.number, settings.tariff), state)
        return state

    async def rater(self) -> Rater:
        """The rater of the tariff in force (the daemon's own settings), compiled off the event loop, kept."""
        from smdrd.rating.tariff import Rater

        settings = self.settings()
        key = id(settings.tariff)
        rater = self._raters.get(key)
        if rater is None:
            daemon = self.console.daemon
            base, version = (daemon.base_dir, daemon.tariff_version) if daemon is not None else (None, None)
            rater = await asyncio.to_thread(Rater.from_config, settings.site, settings.tariff, base_dir=base,
                                            version=version)
            self._raters = {key: rater}  # one kept: the tariff in force
        return rater

    def _actor(self, request: web.Request) -> Actor:
        principal = principal_of(request)
        assert principal is not None
        return Actor(principal.name, self.console._address(request))

    # ---- the changes (pages and API share them) ----

    async def _save(self, request: web.Request, state: _State, expected: int | None, rules: list[TariffRuleConfig],
                    mode: str, *, action: str, target: str, before: dict[str, Any] | None,
                    after: dict[str, Any] | None, note: str = "") -> Outcome:
        if expected is not None and expected != state.number:
            return Outcome(errors={"version": f"the tariff was changed (now version {state.number}) since you read "
                                              f"version {expected}; reload the page and make the change again"},
                           status=409)
        from smdrd.rating.deck import MAX_RULES
        from smdrd.rating.tariff import Rater

        if len(rules) > MAX_RULES:  # an append past what one deck may hold
            return Outcome(errors={"deck": f"the tariff would hold {len(rules):,} rules; at most {MAX_RULES:,}"},
                           status=400)
        doc = document(mode, dict(state.tariff.bands), rules)
        settings = self.settings()

        def compile_it() -> tuple[TariffConfig, Rater]:
            new = tariff_config(settings.tariff, doc)
            return new, Rater.from_config(settings.site, new)

        try:
            new, rater = await asyncio.to_thread(compile_it)
        except ValidationError as exc:  # a rule that validates alone but not in the whole
            key, problem = validation_problems(exc)[0]
            return Outcome(errors={"rule": f"{key}: {problem}"[:300]}, status=400)
        except SmdrdError as exc:
            return Outcome(errors={"rule": str(exc)[:300]}, status=400)
        actor, now = self._actor(request), self.console.now()
        try:
            info = await self._db(lambda t: t.save(doc, expected=state.number, at=now, actor=actor, note=note,
                                                   action=action, target=target[:200], before=before, after=after))
        except TariffConflict as exc:
            return Outcome(errors={"version": str(exc)}, status=409)
        self._state = (self._key(info.version, settings.tariff), _State(True, TariffVersion(info, doc), new))
        rater = rater.labelled(info.version)  # its ratings name the version it was saved as
        daemon = self.console.daemon
        if daemon is not None:
            await daemon.use_tariff(daemon.settings.model_copy(update={"tariff": new}), rater, version=info.version)
            self._raters = {id(daemon.settings.tariff): rater}
        return Outcome(info, status=200)

    async def editable(self, position: int | None = None) -> tuple[_State, Outcome | None]:
        """The tariff in force, and the refusal to change it: it comes from the files, or it has no rule at
        ``position`` (1 is the first)."""
        state = await self.state()
        if not state.database:
            return state, Outcome(errors={"source": "the tariff comes from the files ([tariff] source = \"files\"): "
                                                    "edit them, or set source = \"database\" to edit it here"},
                                  status=409)
        if position is not None and not 1 <= position <= len(state.tariff.rules):
            return state, Outcome(errors={"position": "no such rule"}, status=404)
        return state, None

    async def add(self, request: web.Request, data: Mapping[str, Any], expected: int | None,
                  position: int | None = None) -> Outcome:
        state, refused = await self.editable()
        if refused:
            return refused
        rule, errors = rule_problems(data, state.tariff.bands)
        if rule is None:
            return Outcome(errors=errors, status=400)
        rules = state.rules
        at = len(rules) if position is None else max(0, min(len(rules), position - 1))
        rules.insert(at, rule)
        return await self._save(request, state, expected, rules, state.tariff.mode, action="tariff.rule.add",
                                target=rule.name or rule.prefixes[0], before=None,
                                after={"position": at + 1, "rule": rule_json(rule)})

    async def edit(self, request: web.Request, position: int, data: Mapping[str, Any],
                   expected: int | None) -> Outcome:
        state, refused = await self.editable(position)
        if refused:
            return refused
        rules = state.rules
        rule, errors = rule_problems(data, state.tariff.bands)
        if rule is None:
            return Outcome(errors=errors, status=400)
        old = rules[position - 1]
        rules[position - 1] = rule
        return await self._save(request, state, expected, rules, state.tariff.mode, action="tariff.rule.edit",
                                target=rule.name or rule.prefixes[0],
                                before={"position": position, "rule": rule_json(old)},
                                after={"position": position, "rule": rule_json(rule)})

    async def delete(self, request: web.Request, position: int, expected: int | None) -> Outcome:
        state, refused = await self.editable(position)
        if refused:
            return refused
        rules = state.rules
        old = rules.pop(position - 1)
        return await self._save(request, state, expected, rules, state.tariff.mode, action="tariff.rule.delete",
                                target=old.name or old.prefixes[0],
                                before={"position": position, "rule": rule_json(old)}, after=None)

    async def move(self, request: web.Request, position: int, to: int, expected: int | None) -> Outcome:
        state, refused = await self.editable(position)
        if refused:
            return refused
        rules = state.rules
        if not 1 <= to <= len(rules):
            return Outcome(errors={"to": f"expected a position from 1 to {len(rules)}"}, status=400)
        rule = rules.pop(position - 1)
        rules.insert(to - 1, rule)
        return await self._save(request, state, expected, rules, state.tariff.mode, action="tariff.rule.move",
                                target=rule.name or rule.prefixes[0], before={"position": position},
                                after={"position": to})

    async def set_mode(self, request: web.Request, mode: str, expected: int | None) -> Outcome:
        if mode not in ("longest-prefix", "first-match"):
            return Outcome(errors={"mode": "expected longest-prefix or first-match"}, status=400)
        state, refused = await self.editable()
        if refused:
            return refused
        return await self._save(request, state, expected, state.rules, mode, action="tariff.mode", target="mode",
                                before={"mode": state.tariff.mode}, after={"mode": mode})

    async def import_deck(self, request: web.Request, text: str, name: str, *, append: bool,
                          expected: int | None) -> Outcome:
        state, refused = await self.editable()
        if refused:
            return refused
        try:
            rules = await asyncio.to_thread(read_csv, text, name, dict(state.tariff.bands))
        except TariffSourceError as exc:
            return Outcome(errors={"deck": str(exc)[:500]}, status=400)
        kept = state.rules if append else []
        return await self._save(request, state, expected, kept + rules, state.tariff.mode, action="tariff.import",
                                target=name, before={"rules": len(state.rules)},
                                after={"rules": len(kept) + len(rules), "imported": len(rules),
                                       "replaced": not append})

    async def test(self, query: Mapping[str, str]) -> tuple[Explanation | None, dict[str, str], dict[str, str]]:
        """The tester: the query's values, the answer (None until a number is given, or on a mistake), the
        problems by field."""
        values = {k: query.get(k, "")[:64].strip() for k in ("number", "duration", "time", "trunk", "direction")}
        values["direction"] = values["direction"] or "outbound"
        errors: dict[str, str] = {}
        if not values["number"]:
            return None, values, errors
        try:
            duration = parse_duration(values["duration"] or "60")
        except ValueError as exc:
            errors["duration"] = str(exc)
        settings = self.settings()
        tz = settings.site.tz
        try:
            start = datetime.fromisoformat(values["time"]) if values["time"] else datetime.now(tz)
            start = start.replace(tzinfo=None) if start.tzinfo is None else start
        except ValueError:
            errors["time"] = f"expected a date and time such as 2026-03-02T10:00, got {values['time'][:40]!r}"
        if values["direction"] not in ("outbound", "inbound"):
            errors["direction"] = "expected outbound or inbound"
        if any(ord(c) < 32 for c in values["number"]):
            errors["number"] = "expected a number as the PBX writes it"
        if errors:
            return None, values, errors
        rater = await self.rater()
        return explain(rater, values["number"], start, duration, direction=values["direction"],
                       trunk=values["trunk"]), values, errors

    async def rerate(self, first: date, last: date, *, apply: bool) -> RerateSummary:
        """Re-rate the calls of ``first`` to ``last`` (site days, included) with the tariff in force, or say
        what that would change (``apply`` false). One at a time; on its own connection, off the event loop."""
        rater = await self.rater()
        lo, hi = utc_bounds(first, last, self.settings().site.tz)

        def run() -> RerateSummary:
            store = open_store(self.console.path).rebuild()
            try:
                return rerate(store, rater, lo, hi, apply=apply)
            finally:
                store.close()

        async with self._rerating:
            return await asyncio.to_thread(run)

    @staticmethod
    def period(query: Mapping[str, str]) -> tuple[date | None, date | None, dict[str, str]]:
        """The re-rate form's days, or the problems by field."""
        errors: dict[str, str] = {}
        days: list[date | None] = []
        for key in ("from", "to"):
            raw = query.get(key, "")[:20]
            try:
                day = date.fromisoformat(raw) if raw else None
            except ValueError:
                day = None
                errors[key] = f"expected a date such as 2026-03-02, got {raw!r}"
            if day is not None and not EARLIEST_DAY <= day <= LATEST_DAY:  # no call is stored outside them
                day = None
                errors[key] = f"expected a date from {EARLIEST_DAY} to {LATEST_DAY}, got {raw!r}"
            days.append(day)
        first, last = days
        if first and last and last < first:
            errors["to"] = "must not be before the first day"
        elif first and last and (last - first).days > MAX_RERATE_DAYS:
            errors["to"] = f"at most {MAX_RERATE_DAYS} days at a time (smdrd rerate for longer periods)"
        elif (first is None) != (last is None) and not errors:
            errors["from" if first is None else "to"] = "give both days"
        return first, last, errors

    # ---- pages ----

    async def _page(self, request: web.Request, *, status: int = 200, errors: Mapping[str, str] | None = None,
                    form: Mapping[str, str] | None = None, editing: int | None = None) -> web.StreamResponse:
        principal = principal_of(request)
        assert principal is not None
        state = await self.state()
        history = await self._db(lambda t: t.versions(50)) if state.database else []
        raw = request.query.get("page", "1")
        page = int(raw) if raw.isascii() and raw.isdigit() and 0 < len(raw) < 7 else 1
        rules = state.rules
        pages = max(1, -(-len(rules) // PAGE))
        page = min(page, pages)
        first = (page - 1) * PAGE
        can_edit = state.database and principal.role == "admin" and principal.via == "session"
        editing_rule = rules[editing - 1] if editing is not None and 1 <= editing <= len(rules) else None
        return self.console.render(
            request, "rates.html", status=status, title="Rates", state=state, rules=rules[first:first + PAGE],
            first=first, page=page, pages=pages, total=len(rules), history=history, when=_when, can_edit=can_edit,
            errors=errors or {}, form=form if form is not None else _form_view(editing_rule), editing=editing,
            classes=CALL_CLASSES, bands=sorted(state.tariff.bands), csrf=principal.csrf,
            max_mb=self.settings().http.max_upload_mb,
            done=DONE.get(request.query.get("done", ""), ""), currency=state.tariff.currency)

    @requires(*READ)
    async def list_page(self, request: web.Request) -> web.StreamResponse:
        return await self._page(request)

    @requires(*READ)
    async def edit_page(self, request: web.Request) -> web.StreamResponse:
        return await self._page(request, editing=self._position(request))

    @staticmethod
    def _position(request: web.Request) -> int:
        raw = request.match_info["position"]
        if not (raw.isascii() and raw.isdigit() and len(raw) < 8):
            raise web.HTTPNotFound(text="no such rule\n")
        return int(raw)

    @staticmethod
    async def _posted(request: web.Request) -> tuple[dict[str, str], list[str]]:
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
        data = await request.post()
        fields = {k: v[:2000] for k, v in data.items() if isinstance(v, str)}
        directions = [v for v in data.getall("directions", []) if isinstance(v, str)][:4]
        return fields, directions

    @staticmethod
    def _expected(fields: Mapping[str, str]) -> int | None:
        raw = fields.get("version", "")
        return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 12 else None

    async def _after(self, request: web.Request, outcome: Outcome, done: str, *, form: Mapping[str, str] | None = None,
                     editing: int | None = None, anchor: str = "") -> web.StreamResponse:
        if outcome.errors:
            return await self._page(request, status=outcome.status, errors=outcome.errors, form=form, editing=editing)
        raise web.HTTPSeeOther(f"/rates?{urlencode({'done': done})}{anchor}")

    @requires(*ADMIN)
    async def add_form(self, request: web.Request) -> web.StreamResponse:
        fields, directions = await self._posted(request)
        data = _form_rule(fields, directions)
        raw = fields.get("position", "").strip()
        position = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 8 else None
        outcome = await self.add(request, data, self._expected(fields), position)
        form = {**{k: fields.get(k, "") for k in RULE_FIELDS}, "directions": " ".join(directions)}
        return await self._after(request, outcome, "added", form=form, anchor="#rules")

    @requires(*ADMIN)
    async def edit_form(self, request: web.Request) -> web.StreamResponse:
        position = self._position(request)
        fields, directions = await self._posted(request)
        outcome = await self.edit(request, position, _form_rule(fields, directions), self._expected(fields))
        form = {**{k: fields.get(k, "") for k in RULE_FIELDS}, "directions": " ".join(directions)}
        return await self._after(request, outcome, "saved", form=form, editing=position, anchor=f"#rule-{position}")

    @requires(*ADMIN)
    async def delete_form(self, request: web.Request) -> web.StreamResponse:
        position = self._position(request)
        fields, _ = await self._posted(request)
        return await self._after(request, await self.delete(request, position, self._expected(fields)), "deleted",
                                 anchor="#rules")

    @requires(*ADMIN)
    async def move_form(self, request: web.Request) -> web.StreamResponse:
        position = self._position(request)
        fields, _ = await self._posted(request)
        step = {"up": -1, "down": 1}.get(fields.get("direction", ""), 0)
        outcome = await self.move(request, position, position + step, self._expected(fields))
        return await self._after(request, outcome, "moved", anchor=f"#rule-{position + step}")

    @requires(*ADMIN)
    async def mode_form(self, request: web.Request) -> web.StreamResponse:
        fields, _ = await self._posted(request)
        return await self._after(request, await self.set_mode(request, fields.get("mode", ""),
                                                              self._expected(fields)), "mode")

    @csrf_in_stream
    @requires(*ADMIN)
    async def import_form(self, request: web.Request) -> web.StreamResponse:
        """A deck sent with the page's form, up to ``[http] max_upload_mb`` (read as it arrives, the form's CSRF
        token first)."""
        async def page(problem: UploadProblem) -> web.StreamResponse:
            return await self._page(request, status=problem.status, errors={"deck": str(problem)})

        sent = await read_csv_upload(request, "deck", self.settings().http.max_upload_mb * 1024 * 1024, page)
        if isinstance(sent, web.StreamResponse):
            return sent
        outcome = await self.import_deck(request, sent.text, sent.filename or "deck.csv",
                                         append=sent.fields.get("append") == "on",
                                         expected=self._expected(sent.fields))
        return await self._after(request, outcome, "imported", anchor="#rules")

    @requires(*READ)
    async def export(self, request: web.Request) -> web.StreamResponse:
        """The rules as a CSV deck (``?format=yeastar`` for Yeastar's columns); ``?version=N``: a saved version's."""
        state = await self.state()
        form, raw = request.query.get("format", ""), request.query.get("version", "")
        if form not in ("", "smdrd", "yeastar"):
            raise web.HTTPBadRequest(text=f"format: expected smdrd or yeastar, got {form[:30]!r}\n")
        if raw and not (raw.isascii() and raw.isdigit() and len(raw) < 12):
            raise web.HTTPBadRequest(text=f"version: expected a version number, got {raw[:30]!r}\n")
        yeastar = form == "yeastar"
        rules, number = state.rules, state.number
        if raw and not state.database:
            raise web.HTTPNotFound(text="no such version: this tariff is the configuration's, with no saved versions\n")
        if raw and int(raw) != number:
            wanted = int(raw)
            old = await self._db(lambda t: t.version(wanted))
            if old is None:
                raise web.HTTPNotFound(text="no such version\n")
            rules = [TariffRuleConfig.model_validate(r) for r in old.document.get("rules", [])]
            number = wanted
        text = await asyncio.to_thread(write_csv, rules, yeastar=yeastar)
        name = f"rates-v{number}{'-yeastar' if yeastar else ''}.csv" if state.database else "rates.csv"
        return web.Response(text=text, content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @requires(*READ)
    async def test_page(self, request: web.Request) -> web.StreamResponse:
        answer, values, errors = await self.test(request.query)
        state = await self.state()
        talk = hms(parse_duration(values["duration"] or "60")) if answer is not None else ""
        return self.console.render(request, "rates_test.html", status=400 if errors else 200, title="Number tester",
                                   answer=answer, values=values, errors=errors, state=state, talk=talk)

    @requires(*ADMIN)
    async def rerate_page(self, request: web.Request) -> web.StreamResponse:
        """The period's preview: what re-rating it with the tariff in force would change."""
        return await self._rerate_page(request, request.query)

    async def _rerate_page(self, request: web.Request, query: Mapping[str, str], *, status: int = 200,
                           errors: Mapping[str, str] | None = None) -> web.StreamResponse:
        principal = principal_of(request)
        assert principal is not None
        first, last, problems = self.period(query)
        problems.update(errors or {})
        preview = None
        if first and last and not problems:
            try:
                preview = await self.rerate(first, last, apply=False)
            except SmdrdError as exc:  # the store cannot re-rate (PostgreSQL, docs/scaling.md), or is busy
                problems["from"] = str(exc)
        state = await self.state()
        return self.console.render(
            request, "rates_rerate.html", status=400 if problems and status == 200 else status, title="Re-rate calls",
            first=first, last=last, values={k: query.get(k, "")[:20] for k in ("from", "to")}, errors=problems,
            preview=preview, state=state, csrf=principal.csrf, done=DONE.get(query.get("done", ""), ""),
            version_text=version_text)

    @requires(*ADMIN)
    async def rerate_form(self, request: web.Request) -> web.StreamResponse:
        fields, _ = await self._posted(request)
        first, last, errors = self.period(fields)
        if first is None or last is None or errors:
            return await self._rerate_page(request, fields, status=400, errors=errors or {"from": "give both days"})
        state = await self.state()
        try:
            done = await self.rerate(first, last, apply=True)
        except SmdrdError as exc:
            return await self._rerate_page(request, fields, status=400, errors={"from": str(exc)})
        actor, now = self._actor(request), self.console.now()
        totals = done.as_json()
        await self.console._store(lambda a: a.record(
            "tariff.rerate", f"{first} to {last}", at=now, actor=actor,
            before={"cost": totals["cost_before"]},
            after={"cost": totals["cost_after"], "changed": done.changed, "checked": done.checked,
                   "version": state.number if state.database else None,
                   "version_changes": totals["version_changes"]}))
        raise web.HTTPSeeOther(f"/rates/rerate?{urlencode({'from': str(first), 'to': str(last), 'done': 'rerated'})}")

    # ---- the JSON API ----

    @staticmethod
    def _json(outcome: Outcome) -> web.Response:
        if outcome.errors:
            return web.json_response({"errors": outcome.errors}, status=outcome.status)
        info = outcome.version
        assert info is not None
        return web.json_response({"version": info.version, "rules": info.rules}, status=outcome.status)

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        from smdrd.console.users import UserAdmin

        return await UserAdmin._body(request)

    @staticmethod
    def _version_of(body: Mapping[str, Any]) -> int | None:
        value = body.get("version")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @requires(*READ)
    async def api_get(self, request: web.Request) -> web.StreamResponse:
        """The tariff and a page of its rules (``?offset=0&limit=1000``, at most `API_PAGE` a request)."""
        numbers = {}
        for key, default in (("offset", 0), ("limit", API_PAGE)):
            raw = request.query.get(key, "")
            if raw and not (raw.isascii() and raw.isdigit() and len(raw) < 10):
                return web.json_response({"errors": {key: "expected a whole number"}}, status=400)
            numbers[key] = int(raw) if raw else default
        offset, limit = numbers["offset"], min(numbers["limit"], API_PAGE)
        state = await self.state()
        rules = state.tariff.rules
        return web.json_response({
            "source": "database" if state.database else "files", "version": state.number, "mode": state.tariff.mode,
            "currency": state.tariff.currency, "bands": sorted(state.tariff.bands), "total": len(rules),
            "offset": offset, "rules": [{"position": i, **rule_json(r)}
                                        for i, r in enumerate(rules[offset:offset + limit], offset + 1)]})

    @requires(*READ)
    async def api_rule(self, request: web.Request) -> web.StreamResponse:
        position, state = self._position(request), await self.state()
        if not 1 <= position <= len(state.rules):
            return web.json_response({"errors": {"position": "no such rule"}}, status=404)
        return web.json_response({"position": position, **rule_json(state.rules[position - 1])})

    @requires(*READ)
    async def api_versions(self, request: web.Request) -> web.StreamResponse:
        history = await self._db(lambda t: t.versions(200))
        return web.json_response({"versions": [{"version": v.version, "created_at": v.created_at, "actor": v.actor,
                                                "note": v.note, "rules": v.rules} for v in history]})

    @requires(*ADMIN)
    async def api_add(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        expected, position = self._version_of(body), body.pop("position", None)
        body.pop("version", None)
        if position is not None and (not isinstance(position, int) or isinstance(position, bool)):
            return web.json_response({"errors": {"position": "expected a whole number"}}, status=400)
        outcome = await self.add(request, body, expected, position)
        if not outcome.errors:
            outcome.status = 201
        return self._json(outcome)

    @requires(*ADMIN)
    async def api_edit(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        expected = self._version_of(body)
        body.pop("version", None)
        to = body.pop("to", None)
        position = self._position(request)
        if to is not None:
            if not isinstance(to, int) or isinstance(to, bool) or body:
                return web.json_response({"errors": {"to": "expected a whole number, and no other field"}},
                                         status=400)
            return self._json(await self.move(request, position, to, expected))
        return self._json(await self.edit(request, position, body, expected))

    @requires(*ADMIN)
    async def api_delete(self, request: web.Request) -> web.StreamResponse:
        raw = request.query.get("version", "")
        expected = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 12 else None
        return self._json(await self.delete(request, self._position(request), expected))

    @requires(*ADMIN)
    async def api_mode(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        mode = body.get("mode")
        return self._json(await self.set_mode(request, mode if isinstance(mode, str) else "", self._version_of(body)))

    @requires(*ADMIN)
    async def api_import(self, request: web.Request) -> web.StreamResponse:
        """The request's body is the CSV deck (up to ``[http] max_upload_mb``); ``?append=1`` keeps the current
        rules."""
        try:
            text = await read_csv_body(request, "deck", self.settings().http.max_upload_mb * 1024 * 1024)
        except UploadProblem as exc:
            response = web.json_response({"errors": {"deck": str(exc)}}, status=exc.status)
            if exc.status == 413:
                response.force_close()  # the rest of the body is not read
            return response
        raw_v = request.query.get("version", "")
        expected = int(raw_v) if raw_v.isascii() and raw_v.isdigit() and len(raw_v) < 12 else None
        name = request.query.get("name", "deck.csv")[:200] or "deck.csv"
        outcome = await self.import_deck(request, text, name, append=request.query.get("append") in ("1", "true"),
                                         expected=expected)
        return self._json(outcome)

    @requires(*READ)
    async def api_test(self, request: web.Request) -> web.StreamResponse:
        answer, _, errors = await self.test(request.query)
        if errors or answer is None:
            return web.json_response({"errors": errors or {"number": "required"}}, status=400)
        return web.json_response(answer.to_json())


def register(console: Console) -> RateAdmin:
    """Add the rate pages and API to ``console``'s server."""
    admin = RateAdmin(console)
    console.closers.append(admin.close)
    router = console.server.app.router
    router.add_get("/rates", admin.list_page)
    router.add_post("/rates", admin.add_form)
    router.add_get("/rates/test", admin.test_page)
    router.add_get("/rates/export.csv", admin.export)
    router.add_post("/rates/import", admin.import_form)
    router.add_post("/rates/mode", admin.mode_form)
    router.add_get("/rates/rerate", admin.rerate_page)
    router.add_post("/rates/rerate", admin.rerate_form)
    router.add_get("/rates/{position}", admin.edit_page)
    router.add_post("/rates/{position}", admin.edit_form)
    router.add_post("/rates/{position}/delete", admin.delete_form)
    router.add_post("/rates/{position}/move", admin.move_form)
    router.add_get("/api/tariff", admin.api_get)
    router.add_put("/api/tariff", admin.api_mode)
    router.add_get("/api/tariff/versions", admin.api_versions)
    router.add_get("/api/tariff/test", admin.api_test)
    router.add_post("/api/tariff/import", admin.api_import)
    router.add_get("/api/tariff/export.csv", admin.export)
    router.add_post("/api/tariff/rules", admin.api_add)
    router.add_get("/api/tariff/rules/{position}", admin.api_rule)
    router.add_put("/api/tariff/rules/{position}", admin.api_edit)
    router.add_delete("/api/tariff/rules/{position}", admin.api_delete)
    return admin
