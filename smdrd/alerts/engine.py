"""The alert engine: runs the rules over each stored call and returns the outbox rows to commit with it.

`AlertEngine.observe` is the daemon's `smdrd.core.Observe`: it is called on the hot path, for every call, in
the same step that builds the call's journal entry, and the `smdrd.journal.Alert`s it returns are written in
the same transaction as the call. So an alert exists exactly when its call does: never lost, never raised for a
call that was not stored. The alert id is derived from the call's uid and the rule, and the outbox ignores a
known id, so a re-sent line never raises an alert twice.

No I/O here (the database and MQTT are the daemon's edges), and nothing here may raise into the pipeline:
`smdrd.core.add_calls` notes an observer failure on the line, but a rule bug should not cost that either.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol
from zoneinfo import ZoneInfo

from smdrd.alerts.rules import (
    CLEARING_RULES,
    MAX_KEYS,
    MAX_SEEN,
    PERIOD_ADJECTIVE,
    PERIOD_RULES,
    AlertState,
    Finding,
    OpenAlert,
    RatedCall,
    RuleSet,
    SourceSnapshot,
    budget_period_ended,
)
from smdrd.frozen import constructor
from smdrd.journal import Alert, RatingLike
from smdrd.mqtt_payloads import money_text
from smdrd.record import CallRecord
from smdrd.reports.config import UNASSIGNED

_ZERO = Decimal(0)
#: `RatedCall(...)` built for every call the rules see, at half the cost of its frozen ``__init__``.
_rated_call = constructor(RatedCall, "_rated_call")
_NON_DIGITS = re.compile(r"\D")
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
#: the end of a resolved event's id: the id of the alert it resolves, then this.
RESOLVED_SUFFIX = ":resolved"
#: the facts that are amounts of money (decimal strings).
_MONEY_FACTS = ("spent", "budget", "limit", "forecast")


@dataclass(slots=True)
class AlertStats:
    """Counters for metrics and logs."""

    #: alerts raised, by (rule, severity)
    raised: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: findings held back by a rule's snooze, by rule
    snoozed: Counter[str] = field(default_factory=Counter)
    #: calls evaluated
    calls: int = 0
    #: rule failures (a bug: the call is stored and the other rules still run)
    failures: int = 0
    last_failure: str | None = None


class Departments(Protocol):
    """Which department an extension (of the site named ``site``) is in on a day
    (`smdrd.reports.departments.Directory` fits)."""

    def department(self, extension: str, day: str, site: str = "") -> str: ...


class NoDepartments:
    """No ``[[departments]]``: every extension is unassigned."""

    def department(self, extension: str, day: str, site: str = "") -> str:
        return UNASSIGNED


def _assigns(directory: Departments) -> bool:
    """False for a directory that puts no extension in a department (none, or no ``[[departments]]``): every
    call's department is then None, and the engine skips looking it up (a date and a search a call)."""
    if type(directory) is NoDepartments:
        return False
    memberships = getattr(directory, "memberships", None)  # `smdrd.reports.departments.Directory`'s
    return memberships is None or bool(memberships)


class AlertEngine:
    """Rules, their state and the outbox rows they make.

    Args:
        rules: the compiled ``[alerts]`` section (`smdrd.alerts.rules.build_rules`).
        timezone: the site's timezone (business hours, budget periods).
        site: the site's name (in every payload).
        directory: extension and day -> department (`UNASSIGNED` for none).
        clock: wall-clock seconds (``raised_at``); tests pin it.
        decimals: the tariff's decimals: every amount in a payload is written with them (``"14.00"``).
    """

    def __init__(
        self,
        rules: RuleSet,
        timezone: ZoneInfo,
        *,
        site: str = "smdrd",
        directory: Departments | None = None,
        clock: Callable[[], float] = time.time,
        decimals: int = 2,
    ) -> None:
        self.rules = rules
        self.decimals = decimals
        self.tz = timezone
        self.site = site
        self.directory: Departments = directory or NoDepartments()
        self._departments = _assigns(self.directory)
        self.state = AlertState()
        self.stats = AlertStats()
        self._clock = clock
        self._arm(rules)

    def configure(self, rules: RuleSet, timezone: ZoneInfo, *, site: str, directory: Departments,
                  decimals: int = 2) -> None:
        """Swap in a reloaded configuration; the windows, streaks, snoozes and open alerts carry over."""
        self.decimals = decimals
        self.tz = timezone
        self.site = site
        self.directory = directory
        self._departments = _assigns(directory)
        self.rules = rules
        self._arm(rules)

    def _arm(self, rules: RuleSet) -> None:
        """Tell the state the call rules' snoozes, so that a rule can skip building a finding the snooze would
        drop (`AlertState.held`); what it skips is counted in ``stats.snoozed`` as the rest."""
        self.state.snoozes = {armed.rule.name: armed.snooze for armed in rules.calls}
        self.state.held_back = self.stats.snoozed

    # -- calls ------------------------------------------------------------------------------------------------

    def observe(self, record: CallRecord, rating: RatingLike | None, uid: str) -> Sequence[Alert]:
        """The `smdrd.core.Observe` hook: the alerts ``record`` raises (usually none)."""
        rules = self.rules.calls
        if not rules:
            return ()
        seen = self.state.seen
        if uid in seen:
            return ()  # a re-sent line: its alerts (same ids) are stored already, its call must not count again
        seen[uid] = None
        if len(seen) > MAX_SEEN:
            del seen[next(iter(seen))]
        self.stats.calls += 1
        call = self.rated_call(record, rating, uid)
        rows: list[Alert] = []
        state = self.state
        # Only the rules that can concern a call of this direction (an inbound call skips the outbound ones).
        for armed in self.rules.for_direction(call.direction):
            exclusions = armed.exclusions
            if not exclusions.empty and exclusions.excludes(call):
                continue
            try:
                findings = armed.rule(call, state)
                if not findings:  # the usual answer (an empty tuple): nothing to copy
                    continue
                if not isinstance(findings, tuple | list):
                    findings = list(findings)  # a generator must run inside the try: a bug in it is caught
            except Exception as exc:  # a rule bug: keep the call and the other rules' alerts
                self.stats.failures += 1
                self.stats.last_failure = f"{armed.rule.name}: {type(exc).__name__}: {exc}"
                continue
            for finding in findings:
                if self._snoozed(finding, armed.snooze, call.ts):
                    continue
                rows.append(self.row(finding, call=call))
                self._opened(finding)
        return rows

    def rated_call(self, record: CallRecord, rating: RatingLike | None, uid: str) -> RatedCall:
        """The rules' view of a call."""
        start = record.start
        local = start.astimezone(self.tz) if start.tzinfo else start.replace(tzinfo=self.tz)
        number = record.number
        extension = record.extension
        department = (self._department(extension, local.date().isoformat())
                      if self._departments and extension else None)
        # Positional, in RatedCall's field order (the hot path: see `smdrd.frozen`).
        if rating is None:
            return _rated_call(uid, local, local.timestamp(), record.duration, record.ring, record.direction._value_,
                               record.answered, extension, number,
                               number if number.isdigit() else _NON_DIGITS.sub("", number), "", "unknown", _ZERO,
                               "", department, None)
        return _rated_call(uid, local, local.timestamp(), record.duration, record.ring, record.direction._value_,
                           record.answered, extension, number,
                           number if number.isdigit() else _NON_DIGITS.sub("", number), rating.e164,
                           rating.call_class, rating.cost, rating.currency, department, rating.region)

    def _department(self, extension: str, day: str) -> str | None:
        if not extension:
            return None
        # At this box's site, as reports resolve its calls: a membership naming another site is not this one's.
        dept = self.directory.department(extension, day, self.site)
        return None if dept == UNASSIGNED else dept

    def _snoozed(self, finding: Finding, snooze: float, ts: float) -> bool:
        if snooze <= 0:
            return False
        key = (finding.rule, finding.key)
        last = self.state.last_alert
        before = last.get(key)
        if before is not None and abs(ts - before) < snooze:
            self.stats.snoozed[finding.rule] += 1
            return True
        last[key] = ts
        last.move_to_end(key)
        if len(last) > MAX_KEYS:
            last.popitem(last=False)
        return False

    # -- sources ----------------------------------------------------------------------------------------------

    def check_sources(self, snapshots: Iterable[SourceSnapshot], now: float) -> list[Alert]:
        """The alerts of the operational rules, at wall-clock ``now``."""
        rows: list[Alert] = []
        for snap in snapshots:
            for armed in self.rules.sources:
                try:
                    findings = list(armed.rule(snap, now, self.state))
                except Exception as exc:
                    self.stats.failures += 1
                    self.stats.last_failure = f"{type(exc).__name__}: {exc}"
                    continue
                for finding in findings:
                    if finding.clears:
                        rows.extend(self._cleared(finding, source=snap.name))
                    elif not self._snoozed(finding, armed.snooze, now):
                        rows.append(self.row(finding, source=snap.name))
                        self._opened(finding)
        return rows

    def check_periods(self, now: float) -> list[Alert]:
        """The resolved events of budget alerts whose period (day, month) is over at wall-clock ``now``."""
        local = datetime.fromtimestamp(now, self.tz)
        ended = [(rule, key) for (rule, key), open_ in self.state.open_alerts.items()
                 if rule in PERIOD_RULES and budget_period_ended(open_.facts, local)]
        rows: list[Alert] = []
        for rule, key in ended:
            facts = self.state.open_alerts[rule, key].facts
            dept, kind, period = facts.get("department"), facts.get("kind"), facts.get("period")
            adjective = PERIOD_ADJECTIVE.get(str(kind), str(kind))
            rows += self._cleared(Finding(rule, "", f"department {dept}: its {adjective} budget period {period} is "
                                          "over", key, "", {**facts}, clears=True))
        return rows

    # -- alerts that clear ------------------------------------------------------------------------------------

    def _opened(self, finding: Finding) -> None:
        if finding.rule not in CLEARING_RULES:
            return
        opened = self.state.open_alerts
        opened[finding.rule, finding.key] = OpenAlert(finding.id, finding.severity, finding.facts)
        opened.move_to_end((finding.rule, finding.key))
        if len(opened) > MAX_KEYS:
            opened.popitem(last=False)

    def _cleared(self, finding: Finding, *, source: str | None = None) -> list[Alert]:
        """The resolved event of the alert ``finding`` clears (none when no alert of it is open)."""
        open_ = self.state.open_alerts.pop((finding.rule, finding.key), None)
        if open_ is None:
            return []
        resolved = Finding(finding.rule, open_.severity, finding.reason, finding.key, open_.id + RESOLVED_SUFFIX,
                           finding.facts, clears=True)
        return [self.row(resolved, source=source, resolves=open_.id)]

    # -- payloads ---------------------------------------------------------------------------------------------

    def row(self, finding: Finding, *, call: RatedCall | None = None, source: str | None = None,
            resolves: str | None = None) -> Alert:
        """The `Alert` of ``finding`` (``resolves``: the id of the alert a clearing finding resolves)."""
        now = self._clock()
        if resolves is None:
            self.stats.raised[finding.rule, finding.severity] += 1
        dept = call.department if call else finding.facts.get("department")
        payload: dict[str, object] = {
            "id": finding.id,
            "rule": finding.rule,
            "state": "resolved" if resolves else "raised",
            "event_type": f"{finding.rule}_resolved" if resolves else finding.rule,
            "resolves": resolves,
            "severity": finding.severity,
            "reason": finding.reason,
            "site": self.site,
            "raised_at": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
            "extension": call.extension if call else None,
            "department": dept if isinstance(dept, str) else None,
            "number": (call.e164 or call.number) if call else None,
            "cost": money_text(call.cost, self.decimals) if call and call.currency else None,
            "currency": (call.currency or None) if call else None,
            "source": source,
            "call": call_json(call, self.decimals) if call else None,
            "facts": self._facts(finding.facts),
        }
        return Alert(finding.id, finding.rule, finding.severity, int(now * 1_000_000), _encode(payload))

    def _facts(self, facts: Mapping[str, object]) -> dict[str, object]:
        """``facts`` with their amounts (a budget, its spend, a cost limit) in the tariff's decimals."""
        out = dict(facts)
        for key in _MONEY_FACTS:
            if isinstance(value := out.get(key), str):
                out[key] = money_text(Decimal(value), self.decimals)
        return out

    def seed_seen(self, uids: Iterable[str]) -> None:
        """Take the calls ``uids`` (oldest first: the newest stored calls) as observed already: the same lines
        re-sent after a restart (a PBX replaying its buffer) raise nothing and count no spend again."""
        seen = self.state.seen
        for uid in uids:
            seen[uid] = None
        while len(seen) > MAX_SEEN:
            del seen[next(iter(seen))]

    def seed_spend(self, totals: Iterable[tuple[str, str, Decimal]]) -> None:
        """Start the budget rule's periods from stored spend: ``(extension, local day YYYY-MM-DD, cost)``."""
        spend = self.state.spend
        for extension, day, cost in totals:
            dept = self._department(extension, day)
            if dept is None or not cost:
                continue
            for key in ((dept, "day", day), (dept, "month", day[:7])):
                spend[key] = spend.get(key, _ZERO) + cost


def call_json(call: RatedCall, decimals: int = 2) -> dict[str, object]:
    """The ``call`` object of an alert's payload (``cost`` is ``null`` for a call that was not rated)."""
    return {
        "uid": call.uid,
        "start": call.start.isoformat(),
        "duration": call.duration,
        "ring": call.ring,
        "direction": call.direction,
        "answered": call.answered,
        "extension": call.extension,
        "number": call.number,
        "e164": call.e164,
        "call_class": call.call_class,
        "department": call.department,
        "cost": money_text(call.cost, decimals) if call.currency else None,
        "currency": call.currency or None,
    }
