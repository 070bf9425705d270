"""Alert rules: small named callables over one rated call and a small sliding-window state.

Pure and synchronous: no I/O, no asyncio, no clock here. Time is the call's own start time (so the same calls
give the same alerts in the daemon, in a test and in a replay), and the only memory is `AlertState`, which is
bounded. A rule returns the `Finding`\\ s a call raises; the engine (`smdrd.alerts.engine`) applies exclusions
and the snooze, and turns findings into outbox rows.

Each rule is a frozen dataclass built from its ``[alerts.<rule>]`` section by `build_rules`; `RULE_NAMES`
lists them in the order they are evaluated. Operational rules (a source down, parse failures) are not about
calls: `check_source` evaluates them over a `SourceSnapshot`. The conditions of `CLEARING_RULES` end (a source
is back, the parse failures stop, a budget period is over): their rules then return a finding with ``clears``
set, which the engine publishes as the resolved event of the alert still open.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from functools import lru_cache
from typing import ClassVar, Final, Generic, Protocol, TypeVar

import phonenumbers

from smdrd.alerts.config import HIGH_RISK_COUNTRIES, NANP_LOOKALIKE_PREFIXES, NETWORK_PREFIXES, AlertsConfig
from smdrd.frozen import constructor
from smdrd.rating.config import SiteConfig
from smdrd.rating.rules import parse_days, parse_hours
from smdrd.reports.forecast import WorkingCalendar, month_end_forecast

K = TypeVar("K")
V = TypeVar("V")
R = TypeVar("R")

WARNING: Final = "warning"
CRITICAL: Final = "critical"

OUTBOUND: Final = "outbound"
INBOUND: Final = "inbound"
#: the directions a call has (`smdrd.record.Direction`'s values): what `RuleSet.for_direction` is keyed by.
DIRECTIONS: Final = (INBOUND, OUTBOUND, "internal")
_OUTBOUND_ONLY: Final = frozenset({OUTBOUND})
INTERNATIONAL: Final = "international"
#: classes that are not external calls (velocity counts external calls only).
_NOT_EXTERNAL = frozenset({"internal", "emergency"})

#: memory bounds: the most extensions, numbers and call uids the state remembers (oldest forgotten first).
MAX_KEYS: Final = 20_000
MAX_SEEN: Final = 50_000


@dataclass(frozen=True, slots=True)
class RatedCall:
    """What the rules see of a call: the record and its rating, in the site's local time.

    Attributes:
        uid: the call's stored uid (stable across re-sent lines): alert ids are derived from it.
        start: the start, timezone-aware, in the site's timezone.
        ts: the start as seconds since the Unix epoch (window arithmetic).
        number: the other party as the PBX wrote it; ``digits`` is the same with only its digits.
        e164: the normalised number, ``""`` when rating did not give one.
        department: the extension's department, ``None`` when it has none.
        region: the number's ISO 3166 region as the rater named it (``""`` when unknown); ``None`` when the
            call was not rated by a rater that names regions (the rules then look it up from ``e164``).
    """

    uid: str
    start: datetime
    ts: float
    duration: int
    ring: int | None
    direction: str
    answered: bool
    extension: str
    number: str
    digits: str
    e164: str
    call_class: str
    cost: Decimal
    currency: str
    department: str | None = None
    region: str | None = None

    @property
    def destination_region(self) -> str:
        """The region of ``e164``: the rater's answer when it gave one (no second look-up on the hot path)."""
        if self.region is not None:
            return self.region
        return region_of(self.e164) if self.e164 else ""

    @property
    def external(self) -> bool:
        return self.direction != "internal" and self.call_class not in _NOT_EXTERNAL


@dataclass(frozen=True, slots=True)
class Finding:
    """One alert a rule raises.

    Attributes:
        rule: the rule's name (the topic is ``<prefix>/alert/<rule>``).
        severity: ``warning`` or ``critical``.
        reason: one sentence a person reads on a phone.
        key: what the snooze is per: ``ext:201``, ``num:+18095551234``, ``site``, ``dept:Sales``...
        id: the stable alert id: the same call (or period, or outage) always gives the same id.
        facts: the figures behind the reason (threshold, count, window), JSON-safe.
        clears: the condition that raised ``(rule, key)`` is over (a source is back, a budget period ended, the
            parse failures stopped): the engine publishes it as the resolved event of the open alert, if any.
    """

    rule: str
    severity: str
    reason: str
    key: str
    id: str
    facts: Mapping[str, object] = field(default_factory=dict)
    clears: bool = False


#: `Finding(...)` with every field given, for the rules that raise one for most calls of a flood (after hours, a
#: velocity limit passed): most of those are snoozed, so building them must cost little (`smdrd.frozen`).
_finding = constructor(Finding, "_finding")
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class _Window:
    """Events ``(ts, weight)`` within a sliding window, with their count and summed weight kept current."""

    __slots__ = ("events", "total")

    def __init__(self) -> None:
        self.events: deque[tuple[float, float]] = deque()
        self.total = 0.0

    def add(self, ts: float, weight: float, span: float) -> None:
        """Count an event at ``ts``, kept in time order; one ``span`` or more before the newest (a late line of
        a call long over) is outside the window and not counted."""
        events = self.events
        newest = events[-1][0] if events else ts
        if ts <= newest - span:
            return
        if ts >= newest:
            events.append((ts, weight))
        else:  # a little late: in its place, so that the oldest stay at the front
            i = len(events)
            while i and events[i - 1][0] > ts:
                i -= 1
            events.insert(i, (ts, weight))
        self.total += weight
        cutoff = events[-1][0] - span
        while events and events[0][0] <= cutoff:
            self.total -= events.popleft()[1]

    def __len__(self) -> int:
        return len(self.events)


def _bounded_put(store: OrderedDict[K, V], key: K, value: V, limit: int = MAX_KEYS) -> None:
    store[key] = value
    store.move_to_end(key)
    while len(store) > limit:
        store.popitem(last=False)


#: a budget period as its alerts name it ("daily", not "dayly").
PERIOD_ADJECTIVE: Final = {"day": "daily", "month": "monthly"}


@dataclass(slots=True)
class AlertState:
    """Everything the rules remember between calls: bounded, in memory, rebuilt after a restart.

    Alert ids do not depend on it, so a restart can raise an alert again only if its id is new: a re-sent line
    or a budget already passed this period never alerts twice (the outbox ignores a known id).
    """

    ext_windows: OrderedDict[str, tuple[_Window, _Window]] = field(default_factory=OrderedDict)
    site_calls: _Window = field(default_factory=_Window)
    site_intl: _Window = field(default_factory=_Window)
    #: number -> the start times of its short calls in a row (the last `within`)
    streaks: OrderedDict[str, tuple[float, ...]] = field(default_factory=OrderedDict)
    #: E.164 number -> ts of the missed inbound call from abroad
    missed: OrderedDict[str, float] = field(default_factory=OrderedDict)
    #: (department, "day" | "month", period) -> spend
    spend: dict[tuple[str, str, str], Decimal] = field(default_factory=dict)
    #: (department, kind, period, severity) already raised
    budget_fired: set[tuple[str, str, str, str]] = field(default_factory=set)
    #: the uid of the last call whose cost went into ``spend`` (the budget rules share it: counted once)
    spend_counted: str = ""
    #: (rule, key) -> ts of the last alert, for the snooze
    last_alert: OrderedDict[tuple[str, str], float] = field(default_factory=OrderedDict)
    #: call uids already seen (a re-sent line must not count twice in a window)
    seen: OrderedDict[str, None] = field(default_factory=OrderedDict)
    #: source -> when it was first seen disconnected (wall clock, from the operational checks)
    down_since: dict[str, float] = field(default_factory=dict)
    #: sources whose current outage has been alerted
    down_alerted: set[str] = field(default_factory=set)
    #: source -> samples (ts, lines, errors) of its counters
    source_samples: dict[str, deque[tuple[float, int, int]]] = field(default_factory=dict)
    #: sources whose parse-failure rate is over the limit right now
    parse_failing: set[str] = field(default_factory=set)
    #: (rule, key) -> the last alert raised for a condition that has not cleared yet (`OpenAlert`)
    open_alerts: OrderedDict[tuple[str, str], OpenAlert] = field(default_factory=OrderedDict)
    #: call rule -> its snooze in seconds, as the engine runs it (`held` reads it; empty: nothing is held early)
    snoozes: dict[str, float] = field(default_factory=dict)
    #: findings `held` told a rule not to build, by rule (the engine shares its ``stats.snoozed`` here)
    held_back: Counter[str] = field(default_factory=Counter)

    def held(self, rule: str, key: str, ts: float) -> bool:
        """True when the engine's snooze would drop a finding of ``rule`` for ``key`` at ``ts`` (the same test
        as `smdrd.alerts.engine.AlertEngine`'s, counted as snoozed there too). A rule that raises for most calls
        of a flood (after hours, a velocity limit passed) asks first, so it does not write the reason of an
        alert nobody will see: most of the cost of a flood's calls otherwise."""
        snooze = self.snoozes.get(rule)
        if not snooze or snooze <= 0:
            return False
        before = self.last_alert.get((rule, key))
        if before is not None and abs(ts - before) < snooze:
            self.held_back[rule] += 1
            return True
        return False


@dataclass(frozen=True, slots=True)
class OpenAlert:
    """An alert whose condition may clear (a source down, a budget passed, parse failures): its id, severity and
    facts, for the resolved event."""

    id: str
    severity: str
    facts: Mapping[str, object]


class CallRule(Protocol):
    """A rule over calls: a name (the alert topic's last level) and a call to findings.

    A rule may also say which call directions it ever looks at (``applies_to``: a set of `DIRECTIONS`): calls
    of other directions are then not given to it. It must return nothing for them, and leave its state alone.
    """

    @property
    def name(self) -> str: ...

    def __call__(self, call: RatedCall, state: AlertState) -> Iterable[Finding]: ...


def _who(call: RatedCall) -> str:
    return f"extension {call.extension}" if call.extension else "an unknown extension"


def _dest(call: RatedCall) -> str:
    return call.e164 or call.number or "a withheld number"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 600 else f"{seconds / 60:.1f} min"


def _hms(seconds: int) -> str:
    """A call's duration exactly (``1:00:29``): rounded to minutes, one just over its limit read as the limit."""
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


@dataclass(frozen=True, slots=True)
class BusinessHours:
    """Opening hours in the site's local time: weekdays (Monday is 0), minutes of the day, closed dates."""

    days: frozenset[int]
    start: int
    end: int
    holidays: frozenset[date]

    def open_at(self, local: datetime) -> bool:
        """True when the site is open at ``local`` (a time in the site's timezone)."""
        if local.date() in self.holidays or local.weekday() not in self.days:
            return False
        minute = local.hour * 60 + local.minute
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end  # hours that wrap past midnight


@dataclass(frozen=True, slots=True)
class AfterHours:
    """An outbound call of the watched classes while the site is closed."""

    name: ClassVar[str] = "after_hours"
    applies_to: ClassVar[frozenset[str]] = _OUTBOUND_ONLY
    severity: str
    hours: BusinessHours
    classes: frozenset[str]
    min_seconds: int

    def __call__(self, call: RatedCall, state: AlertState) -> Iterable[Finding]:
        if call.direction != OUTBOUND or call.call_class not in self.classes or call.duration < self.min_seconds:
            return ()
        if self.hours.open_at(call.start):
            return ()
        key = f"ext:{call.extension}"
        if state.held(self.name, key, call.ts):
            return ()
        start = call.start
        when = f"{_WEEKDAYS[start.weekday()]} {start.hour:02d}:{start.minute:02d}"  # strftime("%a %H:%M"), C locale
        return (_finding(self.name, self.severity,
                         f"{call.call_class} call from {_who(call)} to {_dest(call)} at {when}, outside business "
                         f"hours", key, f"{self.name}:{call.uid}",
                         {"local_time": start.isoformat()}, False),)


@lru_cache(maxsize=65_536)
def region_of(e164: str) -> str:
    """The ISO region of an E.164 number (``+18095551234`` -> ``DO``); ``""`` when unknown."""
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(e164)) or ""
    except phonenumbers.NumberParseException:
        return ""


@dataclass(frozen=True, slots=True)
class HighRisk:
    """An outbound call to a listed prefix, country or call class."""

    name: ClassVar[str] = "high_risk"
    applies_to: ClassVar[frozenset[str]] = _OUTBOUND_ONLY
    severity: str
    e164_prefixes: tuple[str, ...]
    dialled_prefixes: tuple[str, ...]
    countries: frozenset[str]
    classes: frozenset[str]
    #: "+53", "+1"...: the calling codes of ``countries`` (a number outside them needs no region lookup)
    country_codes: tuple[str, ...] = ()

    def __call__(self, call: RatedCall, state: AlertState) -> Iterable[Finding]:
        if call.direction != OUTBOUND:
            return ()
        why = ""
        if call.e164 and call.e164.startswith(self.e164_prefixes):
            why = f"listed prefix {next(p for p in self.e164_prefixes if call.e164.startswith(p))}"
        elif self.dialled_prefixes and call.digits.startswith(self.dialled_prefixes):
            why = f"listed dialled prefix {next(p for p in self.dialled_prefixes if call.digits.startswith(p))}"
        elif call.call_class in self.classes:
            why = f"{call.call_class} number"
        elif (self.countries and call.e164.startswith(self.country_codes)
              and (region := call.destination_region) in self.countries):
            why = f"high-risk country {region}"
        if not why:
            return ()
        return (Finding(self.name, self.severity, f"{_who(call)} called {_dest(call)}: {why}",
                        f"ext:{call.extension}", f"{self.name}:{call.uid}",
                        {"region": call.destination_region, "match": why}),)


@dataclass(frozen=True, slots=True)
class LongCall:
    """A call longer than the limit."""

    name: ClassVar[str] = "long_call"
    severity: str
    seconds: int
    directions: frozenset[str]

    @property
    def applies_to(self) -> frozenset[str]:
        return self.directions

    def __call__(self, call: RatedCall, state: AlertState) -> Iterable[Finding]:
        if call.direction not in self.directions or call.duration <= self.seconds:
            return ()
        return (Finding(self.name, self.severity,
                        f"{call.direction} call of {_hms(call.duration)} between {_who(call)} and "
                        f"{_dest(call)} (limit {_minutes(self.seconds)})", f"ext:{call.extension}",
                        f"{self.name}:{call.uid}", {"limit_seconds": self.seconds}),)


@dataclass(frozen=True, slots=True)
class ExpensiveCall:
    """A call that costs more than the limit."""

    name: ClassVar[str] = "expensive_call"
    severity: str
    cost: Decimal

    def __call__(self, call: RatedCall, state: AlertState) -> Iterable[Finding]:
        if call.cost <= self.cost:
            return ()
        return (Finding(self.name, self.severity,
                        f"call from {_who(call)} to {_dest(call)} cost {call.cost} {call.currency} "
                        f"(limit {self.cost})", f"ext:{call.extension}", f"{self.name}:{call.uid}",
                        {"limit": str(self.cost)}),)


@dataclass(frozen=True, slots=True)
class Velocity:
    """Too many external calls, or international minutes, in a sliding window: per extension and site-wide.

    A limit of 0 is off. The windows slide on the calls' start times.
    """

    name: ClassVar[str] = "velocity"
    applies_to: ClassVar[frozenset[str]] = _OUTBOUND_ONLY
    severity: str
    window: float
    extension_calls: int
    extension_intl_seconds: float
    site_calls: int
    site_intl_seconds: float

    def __call__(self, call: RatedCall, state: AlertState) -> Iterable[Finding]:
        if not call.external or call.direction != OUTBOUND:
            return ()
        intl = float(call.duration) if call.call_class == INTERNATIONAL else 0.0
        span, ts = self.window, call.ts
        windows = state.ext_windows
        pair = windows.get(call.extension)
        if pair is None:
            _bounded_put(windows, call.extension, pair := (_Window(), _Window()))
        else:
            windows.move_to_end(call.extension)
        calls, minutes = pair
        site_calls, site_intl = state.site_calls, state.site_intl
        calls.add(ts, 1.0, span)
        minutes.add(ts, intl, span)
        site_calls.add(ts, 1.0, span)
        site_intl.add(ts, intl, span)
        # Four plain tests (this runs for every outbound call): a limit of 0 is off.
        breaches: list[tuple[str, float, float]] = []
        if (limit := self.extension_calls) and (value := len(calls)) > limit:
            breaches.append(("ext", limit, value))
        if (limit_s := self.extension_intl_seconds) and (total := minutes.total) > limit_s:
            breaches.append(("ext-intl", limit_s, total))
        if (limit := self.site_calls) and (value := len(site_calls)) > limit:
            breaches.append(("site", limit, value))
        if (limit_s := self.site_intl_seconds) and (total := site_intl.total) > limit_s:
            breaches.append(("site-intl", limit_s, total))
        if not breaches:
            return ()
        out: list[Finding] = []
        for scope, bound, amount in breaches:
            key = f"ext:{call.extension}:{scope}" if scope.startswith("ext") else f"site:{scope}"
            if state.held(self.name, key, ts):
                continue
            who = _who(call) if scope.startswith("ext") else "the site"
            if scope.endswith("intl"):
                text = (f"{who} made {_minutes(amount)} of international calls in {_minutes(span)} "
                        f"(limit {_minutes(bound)})")
            else:
                text = f"{who} made {amount:.0f} external calls in {_minutes(span)} (limit {bound})"
            out.append(_finding(self.name, self.severity, text, key, f"{self.name}:{scope}:{call.uid}",
                                {"scope": scope, "value": amount, "limit": bound, "window_seconds": span}, False))
        return out


@dataclass(frozen=True, slots=True)
class ShortCalls:
    """Many short calls in a row to the same number (a modem, a dialler, or a test of a hijacked line)."""

    name: ClassVar[str] = "short_calls"
    applies_to: ClassVar[frozenset[str]] = _OUTBOUND_ONLY
    severity: str
    count: int
    max_seconds: int
    within: float

    def __call__(self, call: RatedCall, state: AlertState) -> Iterable[Finding]:
        if call.direction != OUTBOUND or not call.external:
            return ()
        number = call.e164 or call.digits
        if not number:
            return ()
        if call.duration > self.max_seconds:
            state.streaks.pop(number, None)
            return ()
        # the streak's start times, sliding: those more than `within` before this call drop out of it
        times = [t for t in state.streaks.get(number, ()) if call.ts - t <= self.within]
        times.append(call.ts)
        n, first = len(times), min(times)
        if n < self.count:
            _bounded_put(state.streaks, number, tuple(times))
            return ()
        state.streaks.pop(number, None)
        return (Finding(self.name, self.severity,
                        f"{n} calls in a row to {number} of at most {self.max_seconds} s each, within "
                        f"{_minutes(call.ts - first)} (last from {_who(call)})", f"num:{number}",
                        f"{self.name}:{call.uid}", {"count": n, "max_seconds": self.max_seconds}),)


@dataclass(frozen=True, slots=True)
class Wangiri:
    """A missed one-ring inbound call from abroad, then an outbound call back to that number."""

    name: ClassVar[str] = "wangiri"
    applies_to: ClassVar[frozenset[str]] = frozenset({INBOUND, OUTBOUND})
    severity: str
    max_ring: int
    callback_within: float
    home_prefix: str  # "+44": numbers not starting with it are abroad

    def _abroad(self, call: RatedCall) -> bool:
        if call.call_class == INTERNATIONAL:
            return True
        return bool(call.e164) and not call.e164.startswith(self.home_prefix)

    def __call__(self, call: RatedCall, state: AlertState) -> Iterable[Finding]:
        if not call.e164:
            return ()
        if call.direction == INBOUND:
            if not call.answered and (call.ring is None or call.ring <= self.max_ring) and self._abroad(call):
                _bounded_put(state.missed, call.e164, call.ts)
            return ()
        if call.direction != OUTBOUND:
            return ()
        missed_at = state.missed.get(call.e164)
        if missed_at is None or not 0 <= call.ts - missed_at <= self.callback_within:
            return ()
        del state.missed[call.e164]
        return (Finding(self.name, self.severity,
                        f"{_who(call)} called back {call.e164}, which rang once from abroad and hung up "
                        f"{_minutes(call.ts - missed_at)} before (Wangiri)", f"num:{call.e164}",
                        f"{self.name}:{call.uid}",
                        {"missed_at": datetime.fromtimestamp(missed_at, call.start.tzinfo).isoformat()}),)


@dataclass(frozen=True, slots=True)
class Budget:
    """A department's spend passes ``warn`` (warning) or 100 % (critical) of its daily or monthly budget, once
    per period. ``budgets`` maps a department to its ``(daily, monthly)`` limits (``None``: no limit)."""

    name: ClassVar[str] = "budget"
    severity: str
    warn: Decimal
    budgets: Mapping[str, tuple[Decimal | None, Decimal | None]]

    def __call__(self, call: RatedCall, state: AlertState) -> Iterable[Finding]:
        dept = call.department
        if dept is None or not call.cost or dept not in self.budgets:
            return ()
        count_spend(call, dept, state)
        out: list[Finding] = []
        for kind, period, limit in (("day", call.start.strftime("%Y-%m-%d"), self.budgets[dept][0]),
                                    ("month", call.start.strftime("%Y-%m"), self.budgets[dept][1])):
            spent = state.spend[dept, kind, period]
            if not limit:
                continue
            share = spent / limit
            level = CRITICAL if share >= 1 else WARNING if share >= self.warn else None
            if level is None or (dept, kind, period, level) in state.budget_fired:
                continue
            state.budget_fired.add((dept, kind, period, level))
            if level == CRITICAL:
                state.budget_fired.add((dept, kind, period, WARNING))
            out.append(Finding(self.name, level,
                               f"department {dept} spent {spent} {call.currency} this {kind} ({period}): "
                               f"{share * 100:.0f} % of its {PERIOD_ADJECTIVE[kind]} budget of {limit}",
                               f"dept:{dept}:{kind}:{period}",
                               f"{self.name}:{dept}:{kind}:{period}:{level}",
                               {"department": dept, "kind": kind, "period": period, "spent": str(spent),
                                "budget": str(limit)}))
        return out


def count_spend(call: RatedCall, dept: str, state: AlertState) -> None:
    """Add ``call``'s cost to its department's day and month in ``state.spend``, once however many budget rules
    look at the call."""
    if state.spend_counted == call.uid:
        return
    state.spend_counted = call.uid
    for key in ((dept, "day", call.start.strftime("%Y-%m-%d")), (dept, "month", call.start.strftime("%Y-%m"))):
        state.spend[key] = state.spend.get(key, Decimal(0)) + call.cost
    if len(state.spend) > 4 * MAX_KEYS:  # old periods: keep the newest only
        for k in sorted(state.spend, key=lambda k: k[2])[: len(state.spend) // 2]:
            del state.spend[k]


@dataclass(frozen=True, slots=True)
class BudgetForecast:
    """A department's month-end forecast (`smdrd.reports.forecast.month_end_forecast`, the figure the console's
    overview shows) crosses its monthly budget while the spend is still under it: once per month and department,
    and only once ``min_working_days`` of the month have passed. It clears when the month ends (the engine's
    `check_periods`). ``budgets`` maps a department to its monthly budget."""

    name: ClassVar[str] = "budget_forecast"
    severity: str
    budgets: Mapping[str, Decimal]
    calendar: WorkingCalendar
    min_working_days: Decimal

    def __call__(self, call: RatedCall, state: AlertState) -> Iterable[Finding]:
        dept = call.department
        if dept is None or not call.cost or dept not in self.budgets:
            return ()
        count_spend(call, dept, state)
        period = call.start.strftime("%Y-%m")
        fired = (dept, "forecast", period, self.severity)
        budget = self.budgets[dept]
        spent = state.spend[dept, "month", period]
        if fired in state.budget_fired or spent >= budget:
            return ()  # said already, or the budget itself is reached: the budget rule's to say
        forecast = month_end_forecast(spent, call.start, self.calendar)
        if forecast.elapsed < self.min_working_days or not forecast.over(budget):
            return ()
        state.budget_fired.add(fired)
        projected = forecast.projected.quantize(Decimal("0.01"))  # the payload's facts get the tariff's decimals
        return (Finding(self.name, self.severity,
                        f"department {dept} is on course to spend {projected} {call.currency} this month "
                        f"({period}), over its monthly budget of {budget}: {spent} spent in "
                        f"{forecast.elapsed:.1f} of {forecast.working_days} working days",
                        f"dept:{dept}:forecast:{period}", f"{self.name}:{dept}:{period}",
                        {"department": dept, "kind": "month", "period": period, "spent": str(spent),
                         "budget": str(budget), "forecast": str(forecast.projected),
                         "working_days_elapsed": f"{forecast.elapsed:.2f}",
                         "working_days": forecast.working_days}),)


# -- operational rules ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourceSnapshot:
    """A source's health at one moment (from its status and its ingest counters)."""

    name: str
    connected: bool
    lines: int
    errors: int
    last_data_at: float | None = None


#: the rules whose alerts are about a budget period (``facts``: ``kind`` and ``period``): resolved when it ends.
PERIOD_RULES: Final = frozenset({"budget", "budget_forecast"})
#: the rules that read the spend stored this month (`AlertState.spend`), seeded at start from the database.
SPEND_RULES: Final = PERIOD_RULES


def budget_period_ended(facts: Mapping[str, object], local: datetime) -> bool:
    """True when the budget period of a budget alert's ``facts`` is over at ``local`` (site time)."""
    current = local.strftime("%Y-%m-%d" if facts.get("kind") == "day" else "%Y-%m")
    return facts.get("period") != current


def _iso(ts: float, tz: tzinfo) -> str:
    return datetime.fromtimestamp(ts, tz).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class SourceDown:
    """A source disconnected for longer than ``seconds``: one alert per outage, and a clearing finding when it
    is connected again. Times are written in ``tz`` (the site's), with their offset."""

    name: ClassVar[str] = "source_down"
    severity: str
    seconds: float
    tz: tzinfo = UTC

    def __call__(self, snap: SourceSnapshot, now: float, state: AlertState) -> Iterable[Finding]:
        if snap.connected:
            since_ = state.down_since.pop(snap.name, None)
            if snap.name not in state.down_alerted or since_ is None:
                return ()
            state.down_alerted.discard(snap.name)
            return (Finding(self.name, self.severity,
                            f"source {snap.name} is connected again after {_minutes(now - since_)}",
                            f"source:{snap.name}", f"{self.name}:{snap.name}:{int(since_)}:resolved",
                            {"source": snap.name, "down_since": _iso(since_, self.tz), "up_since": _iso(now, self.tz),
                             "down_seconds": round(now - since_, 3)}, clears=True),)
        since = state.down_since.setdefault(snap.name, now)
        if now - since < self.seconds or snap.name in state.down_alerted:
            return ()
        state.down_alerted.add(snap.name)
        last = f"; last data at {_iso(snap.last_data_at, self.tz)}" if snap.last_data_at else ""
        return (Finding(self.name, self.severity,
                        f"source {snap.name} has been disconnected for {_minutes(now - since)}{last}",
                        f"source:{snap.name}", f"{self.name}:{snap.name}:{int(since)}",
                        {"source": snap.name, "down_since": _iso(since, self.tz),
                         "last_data_at": _iso(snap.last_data_at, self.tz) if snap.last_data_at else None}),)


@dataclass(frozen=True, slots=True)
class ParseErrors:
    """More than ``percent`` of a source's lines failed to parse within the window."""

    name: ClassVar[str] = "parse_errors"
    severity: str
    percent: float
    min_lines: int
    window: float

    def __call__(self, snap: SourceSnapshot, now: float, state: AlertState) -> Iterable[Finding]:
        samples = state.source_samples.setdefault(snap.name, deque())
        if not samples or snap.lines < samples[-1][1]:
            # A new source (or one re-created on reload): its counters started from zero.
            samples.clear()
            samples.append((now, 0, 0))
        samples.append((now, snap.lines, snap.errors))
        while len(samples) > 1 and samples[1][0] <= now - self.window:
            samples.popleft()
        t0, lines0, errors0 = samples[0]
        lines, errors = snap.lines - lines0, snap.errors - errors0
        if lines < self.min_lines or errors * 100 <= self.percent * lines:
            if snap.name not in state.parse_failing or errors * 100 > self.percent * lines:
                return ()  # too few lines to raise, but still failing: the episode goes on
            state.parse_failing.discard(snap.name)
            return (Finding(self.name, self.severity,
                            f"source {snap.name}: the parse failures are back under {self.percent} % "
                            f"({errors} of {lines} lines in the last {_minutes(now - t0)})",
                            f"source:{snap.name}", f"{self.name}:{snap.name}:{int(now)}:resolved",
                            {"source": snap.name, "lines": lines, "errors": errors}, clears=True),)
        if snap.name in state.parse_failing:
            return ()  # the episode raised already: once per episode (as source_down once per outage), so its
            # one resolved event closes it; an hourly repeat under a new id stayed open in the inbox for ever
        state.parse_failing.add(snap.name)
        return (Finding(self.name, self.severity,
                        f"source {snap.name}: {errors} of {lines} lines failed to parse in the last "
                        f"{_minutes(now - t0)} ({errors * 100 / lines:.1f} %, limit {self.percent} %)",
                        f"source:{snap.name}", f"{self.name}:{snap.name}:{int(now)}",
                        {"source": snap.name, "lines": lines, "errors": errors}),)


class SourceRule(Protocol):
    """A rule over a source's health, at wall-clock time ``now``."""

    @property
    def name(self) -> str: ...

    def __call__(self, snap: SourceSnapshot, now: float, state: AlertState) -> Iterable[Finding]: ...


# -- building the rules from the configuration ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Exclusions:
    """Extensions and destination prefixes a rule ignores."""

    extensions: frozenset[str] = frozenset()
    e164_prefixes: tuple[str, ...] = ()
    dialled_prefixes: tuple[str, ...] = ()
    #: nothing is excluded (the usual case): the engine then does not ask `excludes` for every call.
    empty: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "empty", not (self.extensions or self.e164_prefixes or self.dialled_prefixes))

    @classmethod
    def of(cls, extensions: Iterable[str], numbers: Iterable[str]) -> Exclusions:
        nums = list(numbers)
        return cls(frozenset(extensions), tuple(n for n in nums if n.startswith("+")),
                   tuple(n for n in nums if not n.startswith("+")))

    def excludes(self, call: RatedCall) -> bool:
        if call.extension in self.extensions:
            return True
        if self.e164_prefixes and call.e164.startswith(self.e164_prefixes):
            return True
        return bool(self.dialled_prefixes) and call.digits.startswith(self.dialled_prefixes)


@dataclass(frozen=True, slots=True)
class Armed(Generic[R]):
    """A rule with its exclusions and snooze (seconds)."""

    rule: R
    exclusions: Exclusions
    snooze: float


@dataclass(frozen=True, slots=True)
class RuleSet:
    """The compiled ``[alerts]`` section: swapped in one assignment on reload.

    ``for_direction`` gives the call rules that can raise anything, or change their state, for a call of one
    direction (a rule's ``applies_to``; a rule without it sees every call), in ``calls``' order: the engine
    runs only those, so an inbound call does not walk the rules about outbound ones.
    """

    calls: tuple[Armed[CallRule], ...]
    sources: tuple[Armed[SourceRule], ...]
    _by_direction: dict[str, tuple[Armed[CallRule], ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_direction", {
            direction: tuple(a for a in self.calls
                             if (scope := getattr(a.rule, "applies_to", None)) is None or direction in scope)
            for direction in DIRECTIONS})

    def for_direction(self, direction: str) -> tuple[Armed[CallRule], ...]:
        """The call rules a call of ``direction`` can concern (every call rule for an unknown direction)."""
        return self._by_direction.get(direction, self.calls)


#: the rules whose condition clears: each alert they raise is followed by a resolved event when it does.
CLEARING_RULES: Final = frozenset({"source_down", "parse_errors", "budget", "budget_forecast"})

RULE_NAMES: Final = ("after_hours", "high_risk", "long_call", "expensive_call", "velocity", "short_calls",
                     "wangiri", "budget", "budget_forecast", "source_down", "parse_errors")


def build_rules(
    cfg: AlertsConfig,
    site: SiteConfig,
    *,
    holidays: Iterable[date] = (),
    budgets: Mapping[str, tuple[Decimal | None, Decimal | None]] | None = None,
) -> RuleSet:
    """Compile ``cfg`` into rules. ``holidays`` adds closed days (the tariff's); ``budgets`` adds department
    budgets from elsewhere (``[[departments]]``), under those of ``[alerts.budget.departments]``."""
    calls: list[Armed[CallRule]] = []
    sources: list[Armed[SourceRule]] = []
    if not cfg.enabled:
        return RuleSet((), ())

    def arm(section: object, rule: R) -> Armed[R]:
        ext = [*cfg.exclude_extensions, *getattr(section, "exclude_extensions", [])]
        nums = [*cfg.exclude_numbers, *getattr(section, "exclude_numbers", [])]
        return Armed(rule, Exclusions.of(ext, nums), float(getattr(section, "snooze_minutes", 0.0)) * 60)

    bh = cfg.business_hours
    start, end = parse_hours(bh.hours)
    hours = BusinessHours(parse_days(bh.days), start, end, frozenset([*bh.holidays, *holidays]))
    if (c := cfg.after_hours).enabled:
        calls.append(arm(c, AfterHours(c.severity, hours, frozenset(c.classes), c.min_seconds)))
    if (h := cfg.high_risk).enabled:
        listed = [*(NANP_LOOKALIKE_PREFIXES + NETWORK_PREFIXES if h.builtin_prefixes else ()), *h.prefixes]
        countries = {x for c_ in h.countries for x in (HIGH_RISK_COUNTRIES if c_ == "default" else (c_,))}
        countries.discard(site.country)
        home = f"+{phonenumbers.country_code_for_region(site.country)}"
        e164 = tuple(sorted({p for p in listed if p.startswith("+")}, key=len, reverse=True))
        if site.country in _NANP_REGIONS:  # a Jamaican site's own area code is not a look-alike
            own = {f"{home}{p}" for p in _own_nanp_codes(site)}
            e164 = tuple(p for p in e164 if p not in own)
        dialled = tuple(p for p in listed if not p.startswith("+"))
        codes = tuple(sorted({f"+{phonenumbers.country_code_for_region(c)}" for c in countries} - {"+0"}))
        calls.append(arm(h, HighRisk(h.severity, e164, dialled, frozenset(countries), frozenset(h.classes),
                                     codes)))
    if (lc := cfg.long_call).enabled:
        calls.append(arm(lc, LongCall(lc.severity, int(lc.minutes * 60), frozenset(lc.directions))))
    if (ec := cfg.expensive_call).enabled:
        calls.append(arm(ec, ExpensiveCall(ec.severity, ec.cost)))
    if (v := cfg.velocity).enabled:
        calls.append(arm(v, Velocity(v.severity, v.window_minutes * 60, v.extension_calls,
                                     v.extension_international_minutes * 60, v.site_calls,
                                     v.site_international_minutes * 60)))
    if (sc := cfg.short_calls).enabled:
        calls.append(arm(sc, ShortCalls(sc.severity, sc.count, sc.max_seconds, sc.within_minutes * 60)))
    if (w := cfg.wangiri).enabled:
        home = f"+{phonenumbers.country_code_for_region(site.country)}"
        calls.append(arm(w, Wangiri(w.severity, w.max_ring_seconds, w.callback_hours * 3600, home)))
    if (b := cfg.budget).enabled:
        merged = dict(budgets or {})
        merged.update({name: (d.daily, d.monthly) for name, d in b.departments.items()})
        if merged:
            # the snooze does not apply: a budget alert is once per period and level by its id
            calls.append(Armed(Budget(WARNING, Decimal(str(b.warn_percent)) / 100, merged),
                               Exclusions.of([*cfg.exclude_extensions, *b.exclude_extensions], []), 0.0))
    if (bf := cfg.budget_forecast).enabled:
        monthly = {name: m for name, (_, m) in (budgets or {}).items() if m}
        monthly.update({name: d.monthly for name, d in cfg.budget.departments.items() if d.monthly})
        if monthly:
            calendar = WorkingCalendar(hours.days, hours.holidays, (hours.start, hours.end))
            calls.append(Armed(BudgetForecast(bf.severity, monthly, calendar, Decimal(str(bf.min_working_days))),
                               Exclusions.of([*cfg.exclude_extensions, *cfg.budget.exclude_extensions,
                                              *bf.exclude_extensions], []), 0.0))
    if (sd := cfg.source_down).enabled:
        sources.append(Armed(SourceDown(sd.severity, sd.minutes * 60, site.tz), Exclusions(), 0.0))
    if (pe := cfg.parse_errors).enabled:
        sources.append(Armed(ParseErrors(pe.severity, pe.percent, pe.min_lines, pe.window_minutes * 60),
                             Exclusions(), pe.snooze_minutes * 60))
    return RuleSet(tuple(calls), tuple(sources))


_NANP_REGIONS = frozenset(phonenumbers.region_codes_for_country_code(1))


#: the NANP's premium-rate service codes among `NANP_LOOKALIKE_PREFIXES` (phonenumbers files them under US).
_NANP_PREMIUM = frozenset({"+1900", "+1976"})


def _own_nanp_codes(site: SiteConfig) -> set[str]:
    """The three-digit area codes of the site's own NANP country (a site in Jamaica dials 876 at home)."""
    area = site.area_code.lstrip("1")
    codes = {area} if area else set()
    for prefix in NANP_LOOKALIKE_PREFIXES:
        if prefix in _NANP_PREMIUM:
            continue  # premium-rate services, not an area code at home: a US site's own 900 still alerts
        example = f"{prefix}5550123"
        if region_of(example) == site.country:
            codes.add(prefix[2:])
    return codes
