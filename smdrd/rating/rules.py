"""Rating rules and time bands: small named plain data, and the plain functions that price a call with them.

Pure: no I/O here. A rule is what a carrier's rate deck line or Yeastar's Call Rate Rule says: the price of a
billing unit, an initial period with its own price, a connection fee and a minimum charge. The cost of an
answered call of ``t`` seconds is::

    max(minimum_charge, connection_fee + initial_cost + ceil(max(0, t - initial_time) / billing_unit) * rate)

which gives carriers' ``60/60``, ``30/6`` and ``1/1`` increments (``initial_time = 30, billing_unit = 6`` with
``initial_cost`` the price of 30 s) as well as Yeastar's "first 120 s for 0.2, then 0.3 a minute".

A call with no talk time (unanswered, or an answered leg of 0 seconds) is not billed by carriers: it costs 0,
or the connection fee alone when the rule says ``charge_unanswered`` (see `price_attempt`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from smdrd.errors import TariffError
from smdrd.rating.money import ZERO, intern

__all__ = [
    "ANY_HOLIDAY",
    "DAY_NAMES",
    "DIRECTIONS",
    "Band",
    "Rule",
    "TariffSourceError",
    "parse_days",
    "parse_hours",
    "price",
    "price_attempt",
]

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DIRECTIONS = frozenset({"outbound", "inbound"})
ANY_HOLIDAY = "any"
# re.ASCII: \d would otherwise match full-width and other non-ASCII digits, which int() then reads.
_HOURS = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$", re.ASCII)
_WEEK = 7 * 24 * 60


class TariffSourceError(TariffError):
    """A bad entry in a rate deck or in the inline rules.

    Attributes:
        source: the deck's path, or ``tariff.rules`` / ``tariff.bands`` for the configuration.
        line: the deck line (1 is the header) or the inline rule's index; ``None`` for the source as a whole.
        reason: what was wrong and what was expected.
    """

    def __init__(self, source: str, line: int | None, reason: str) -> None:
        self.source = source
        self.line = line
        self.reason = reason
        #: where, as a person finds it: the deck's ``path:line``, or the configuration's key (``tariff.rules[2]``).
        self.where = source
        if line is not None:
            self.where = f"{source}[{line}]" if source.startswith("tariff.") else f"{source}:{line}"
        super().__init__(f"{self.where}: {reason}")


def parse_days(items: Iterable[str]) -> frozenset[int]:
    """``["mon-fri", "sun"]`` to weekday numbers (Monday is 0).

    Raises:
        ValueError: naming the item that is not a day or a range of days.
    """
    days: set[int] = set()
    for item in items:
        lo, sep, hi = item.strip().lower().partition("-")
        try:
            first = DAY_NAMES.index(lo[:3]) if len(lo) >= 3 else -1
            last = DAY_NAMES.index(hi[:3]) if sep and len(hi) >= 3 else first
        except ValueError:
            first = last = -1
        if first < 0 or last < 0:
            raise ValueError(f"expected days such as \"mon-fri\" or \"sat\", got {item!r}")
        day = first
        days.add(day)
        while day != last:  # ranges wrap: "fri-mon" is Friday to Monday
            day = (day + 1) % 7
            days.add(day)
    return frozenset(days)


def parse_hours(text: str) -> tuple[int, int]:
    """``"08:00-18:00"`` to minutes of the day ``(480, 1080)``; the end is excluded and may be ``24:00``.

    An end before the start wraps past midnight (``"18:00-08:00"``); ``"00:00-24:00"`` is the whole day.

    Raises:
        ValueError: when the text is not ``HH:MM-HH:MM`` or a time is out of range, or the range is empty.
    """
    m = _HOURS.match(text)
    if not m:
        raise ValueError(f"expected hours such as \"08:00-18:00\", got {text!r}")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if h1 > 23 or m1 > 59 or m2 > 59 or end > 1440 or start == end:
        raise ValueError(f"expected hours such as \"08:00-18:00\" (00:00 to 24:00, not empty), got {text!r}")
    return start, end


@dataclass(frozen=True, slots=True)
class Band:
    """A named time band (peak, off-peak, weekend, holiday) in the site's local time.

    The day test applies to the calendar day of the instant, the hour test to its time of day, so
    ``mon-fri 18:00-08:00`` covers Monday 00:00-08:00 and Monday 18:00-24:00, but not Saturday 02:00.

    Attributes:
        name: the band's name (``peak``).
        days: weekday numbers (Monday is 0).
        start: first minute of the day in the band.
        end: first minute of the day after the band (wraps past midnight when ``end <= start``).
        holidays: ``any`` (holidays do not matter), ``exclude`` (never on a holiday) or ``only``.
    """

    name: str
    days: frozenset[int] = frozenset(range(7))
    start: int = 0
    end: int = 1440
    holidays: str = ANY_HOLIDAY

    @property
    def edges(self) -> tuple[int, ...]:
        """Minutes of the day at which the band may start or stop applying."""
        return tuple(m for m in (0, self.start, self.end) if m < 1440)

    @property
    def specificity(self) -> tuple[int, int]:
        """Sort key: smaller is more specific (holiday-only bands first, then fewer minutes a week)."""
        span = self.end - self.start if self.end > self.start else 1440 - self.start + self.end
        return (0 if self.holidays == "only" else 1, len(self.days) * span)

    def contains(self, local: datetime, holiday: bool) -> bool:
        """True when the local time ``local`` (on a holiday or not) is in the band."""
        if holiday:
            if self.holidays == "exclude":
                return False
        elif self.holidays == "only":
            return False
        if local.weekday() not in self.days:
            return False
        minute = local.hour * 60 + local.minute
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end


# A rule without a band sorts after every banded rule on the same prefix.
_NO_BAND = (2, _WEEK)


@dataclass(frozen=True, slots=True)
class Rule:
    """One rating rule (one deck line, or one ``[[tariff.rules]]`` table).

    Attributes:
        name: shown in reports and stored with each call.
        prefixes: E.164 digits, country code first (``44`` the UK, ``447`` UK mobiles).
        call_class: the class this rule gives its calls, or ``None`` to keep phonenumbers' class.
        rate: the price of one billing unit after the initial period.
        billing_unit: seconds per unit (60 bills by the minute, 6 by tenths of a minute, 1 by the second).
        initial_time: seconds covered by ``initial_cost``.
        initial_cost: the price of the initial period.
        connection_fee: charged once per answered call.
        minimum_charge: no answered call with talk time costs less.
        charge_unanswered: a call with no talk time (unanswered, or answered for 0 s) costs the connection
            fee; when false (the default) it costs 0.
        band: the time band the rule applies in, ``None`` for always.
        valid_from: first day (local) the rule applies, ``None`` for always.
        valid_until: last day (local, included) the rule applies, ``None`` for always.
        trunks: the trunks (or carriers, as the PBX names the line) the rule applies to; empty for all.
        directions: ``outbound`` and/or ``inbound``.
        number_length: the rule applies only to numbers of exactly this many E.164 digits (country code
            included, no ``+``), as Yeastar's "Number Length"; 0 for any length.
        order: position among all rules of the tariff (inline rules first, then decks in order).
        source: where the rule was written (``rates.csv`` or ``tariff.rules``).
        line: the deck line or the inline rule's index.
    """

    name: str
    prefixes: tuple[str, ...]
    rate: Decimal = ZERO
    billing_unit: int = 60
    initial_time: int = 0
    initial_cost: Decimal = ZERO
    connection_fee: Decimal = ZERO
    minimum_charge: Decimal = ZERO
    charge_unanswered: bool = False
    call_class: str | None = None
    band: Band | None = None
    valid_from: date | None = None
    valid_until: date | None = None
    trunks: frozenset[str] = frozenset()
    directions: frozenset[str] = frozenset({"outbound"})
    number_length: int = 0
    order: int = 0
    source: str = ""
    line: int = 0
    #: connection fee plus initial cost, added once per call.
    fixed: Decimal = field(init=False, repr=False, compare=False)
    #: whether the rule depends on the call's time (band or validity), so the hot path can skip the clock.
    timed: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fixed", intern(self.connection_fee + self.initial_cost))
        timed = self.band is not None or self.valid_from is not None or self.valid_until is not None
        object.__setattr__(self, "timed", timed)

    @property
    def specificity(self) -> tuple[int, int]:
        """Tie-break among rules on the same prefix: the more specific band first."""
        return self.band.specificity if self.band is not None else _NO_BAND

    def in_force(self, local: datetime | None, holiday: bool) -> bool:
        """True when the rule's band and validity dates admit a call starting at ``local``."""
        if not self.timed or local is None:
            return not self.timed
        if self.band is not None and not self.band.contains(local, holiday):
            return False
        day = local.date()
        if self.valid_from is not None and day < self.valid_from:
            return False
        return self.valid_until is None or day <= self.valid_until


def price_attempt(rule: Rule) -> Decimal:
    """The unrounded cost of a call with no talk time: 0, or the connection fee if the rule charges one."""
    return rule.connection_fee if rule.charge_unanswered else ZERO


def price(rule: Rule, seconds: int) -> Decimal:
    """The unrounded cost of an answered call of ``seconds`` under ``rule`` (see the module docstring).

    ``seconds`` of 0 or less is a call with no talk time (`price_attempt`), never the initial cost.
    """
    if seconds <= 0:
        return price_attempt(rule)
    extra = seconds - rule.initial_time
    # Exact in the default 28-digit context: amounts have at most 15 significant digits (`parse_money`) and
    # a call has fewer than 10**10 units.
    total = rule.fixed + -(-extra // rule.billing_unit) * rule.rate if extra > 0 else rule.fixed
    return total if total >= rule.minimum_charge else rule.minimum_charge
