"""The compiled tariff and the `Rater` the daemon calls for every call.

Pure apart from `compile_tariff`, which reads the configured rate decks (through `read_deck`). A `Tariff` is
immutable: a reload compiles a new one (which validates everything, raising `TariffError` naming the file and
line) and swaps in a new `Rater` with one assignment, so a bad file leaves the old tariff running.

Matching: rules are grouped by prefix in a `PrefixTable`. In ``longest-prefix`` mode the longest prefix of the
number with a rule in force wins; rules on the same prefix are tried trunk-specific rules first, then the
most specific time band, then in tariff order. In ``first-match`` mode the rule earliest in the tariff among
all those in force wins, whatever its prefix length, which keeps an ordered list imported from a PBX
meaning the same.

A number that fails validation (class ``unknown``) on an outbound call that no rule's prefix matches is
priced by `Tariff.unknown_for` the site's country: by default a copy of the tariff's most expensive
international rule, named so that reports flag it (``unknown_numbers = "most-expensive-international"``), or
nothing (``"free"``). A number nobody can read is more likely a mistyped or fraudulent call than a free one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from smdrd.errors import TariffError
from smdrd.frozen import constructor
from smdrd.rating import classes as cc
from smdrd.rating.deck import read_deck
from smdrd.rating.money import ZERO, exact_sum, round_cost
from smdrd.rating.normalise import Dialplan, Number, normalise, normalise_uncached
from smdrd.rating.rules import Band, Rule, TariffSourceError, parse_days, parse_hours, price, price_attempt
from smdrd.rating.trie import PrefixTable
from smdrd.record import CallRecord

if TYPE_CHECKING:
    from smdrd.rating.config import SiteConfig, TariffConfig

__all__ = [
    "FILES_LABEL",
    "FIRST_MATCH",
    "LONGEST_PREFIX",
    "UNKNOWN_FREE",
    "UNKNOWN_MOST_EXPENSIVE",
    "Breakdown",
    "Piece",
    "Rater",
    "Rating",
    "Tariff",
    "build_tariff",
    "compile_tariff",
    "empty_tariff",
    "tariff_label",
]

LONGEST_PREFIX = "longest-prefix"
FIRST_MATCH = "first-match"
#: ``[tariff] unknown_numbers``: how an outbound call to a number that fails validation is priced.
UNKNOWN_MOST_EXPENSIVE = "most-expensive-international"
UNKNOWN_FREE = "free"
#: the talk time by which "most expensive" rules are compared (a minute: per-minute prices are what carriers
#: publish, and it weighs connection fees and initial periods as a typical short call does).
_COMPARE_SECONDS = 60
_INBOUND = "inbound"
_OUTBOUND = "outbound"
_INTERNAL = "internal"
#: keys whose candidate rules a tariff remembers.
_MEMO_SIZE = 1 << 16


@dataclass(frozen=True, slots=True)
class Rating:
    """What rating says about one call; stored with the call.

    Attributes:
        e164: the other party in E.164 (``+442079460000``); ``""`` when it is not a phone number (an
            extension, a short code, a withheld number).
        call_class: one of `smdrd.rating.classes.CALL_CLASSES`.
        rule: the name of the rule that matched, ``""`` when none did.
        prefix: the prefix the rule matched on, ``""`` when none did.
        cost: the cost, rounded once to the tariff's decimals (0 for internal calls, and unless a rule says
            otherwise for inbound calls and calls with no talk time).
        currency: the tariff's ISO 4217 currency.
        region: the ISO 3166 region of ``e164`` (``DO`` for +1 809), ``""`` when unknown
            (`smdrd.rating.normalise.Number.region`): what reports and metrics call the destination's country.
        tariff_version: the tariff that priced it (`tariff_label`): a saved version's number (``"5"``),
            ``"files:<digest>"`` for a tariff from the configuration's files, ``""`` when not known.
    """

    e164: str
    call_class: str
    rule: str
    prefix: str
    cost: Decimal
    currency: str
    region: str = ""
    tariff_version: str = field(default="", compare=False)

    def __reduce__(self) -> tuple[Callable[..., Rating], tuple[str, str, str, str, Decimal, str, str, str]]:
        # Pickled by field values (import's worker sends millions): several times faster than the slots state.
        return (_rating, (self.e164, self.call_class, self.rule, self.prefix, self.cost, self.currency,
                         self.region, self.tariff_version))

    def to_json(self) -> dict[str, str]:
        """The rating as JSON-safe data (the cost as a decimal string)."""
        return {
            "e164": self.e164,
            "call_class": self.call_class,
            "rule": self.rule,
            "prefix": self.prefix,
            "cost": str(self.cost),
            "currency": self.currency,
            "region": self.region,
        }


#: `Rating(...)` in half the time (the slots' own setters instead of the frozen ``__setattr__``): on the hot path,
#: and what an unpickled rating is rebuilt with.
_rating = constructor(Rating, "_rating")


#: the `Rating.tariff_version` of a tariff from the configuration's files: this, then the tariff's digest.
FILES_LABEL = "files:"


def tariff_label(version: int | None, tariff: Tariff, source: str = "files") -> str:
    """What `Rating.tariff_version` says for ``tariff``: the number of the saved version it is (``version``),
    or, for a tariff from the files (``source``), `FILES_LABEL` and its digest; ``""`` when neither is known."""
    if version is not None:
        return str(version)
    return FILES_LABEL + tariff.digest if source == "files" and tariff.digest else ""


@dataclass(frozen=True, slots=True)
class Piece:
    """Billing units charged under one rule (a split call has one piece per time band it crossed).

    Attributes:
        rule: the rule's name.
        prefix: the prefix it matched on.
        offset: seconds from the start of the call to the first unit of the piece.
        units: billing units charged.
        billing_unit: seconds per unit.
        rate: the price of one unit.
        amount: ``units * rate``.
    """

    rule: str
    prefix: str
    offset: int
    units: int
    billing_unit: int
    rate: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Breakdown:
    """How a call's cost was reached (for `smdrd rate` and for people checking a bill).

    Attributes:
        note: why the call costs nothing or little (``unanswered``, ``inbound``...), ``""`` when it was
            priced by its talk time.
        connection_fee: the rule's connection fee.
        initial_cost: the price of the initial period.
        initial_time: the seconds the initial period covers.
        pieces: the units charged after the initial period.
        minimum_charge: the rule's minimum charge.
        unrounded: the exact cost before the one rounding.
        cost: the cost.
    """

    note: str
    connection_fee: Decimal = ZERO
    initial_cost: Decimal = ZERO
    initial_time: int = 0
    pieces: tuple[Piece, ...] = ()
    minimum_charge: Decimal = ZERO
    unrounded: Decimal = ZERO
    cost: Decimal = ZERO

    def describe(self, currency: str) -> str:
        """One line such as ``0.10 + 2 x 0.30 per 60 s = 0.70 EUR``."""
        if self.note:
            return f"{self.cost} {currency} ({self.note})"
        parts = []
        if self.connection_fee:
            parts.append(f"connection {self.connection_fee}")
        if self.initial_cost or self.initial_time:
            parts.append(f"first {self.initial_time} s {self.initial_cost}")
        parts.extend(f"{p.units} x {p.rate} per {p.billing_unit} s" + (f" ({p.rule})" if len(self.pieces) > 1
                                                                        else "") for p in self.pieces)
        text = " + ".join(parts) or "0"
        if self.minimum_charge and self.unrounded == self.minimum_charge:
            text += f" -> minimum {self.minimum_charge}"
        return f"{text} = {self.cost} {currency}"


@dataclass(frozen=True, slots=True)
class Tariff:
    """A compiled tariff: immutable, validated, ready for the hot path.

    Attributes:
        rules: every rule, in tariff order.
        table: the rules by prefix (see the module docstring for the order within a prefix).
        mode: ``longest-prefix`` or ``first-match``.
        currency: ISO 4217 code.
        decimals: the cost of a call is rounded once, half-up, to this many decimals.
        split: price a call crossing a time-band boundary piece by piece.
        holidays: local dates on which holiday bands apply.
        digest: a hash of everything the tariff was built from; stored with each rating, a later rerate
            can tell which calls were rated by an older tariff.
        unknown_numbers: how outbound calls to numbers that fail validation and match no prefix are priced
            (see the module docstring and `unknown_for`).
    """

    rules: tuple[Rule, ...]
    table: PrefixTable[Rule]
    mode: str = LONGEST_PREFIX
    currency: str = "USD"
    decimals: int = 2
    split: bool = False
    holidays: frozenset[date] = frozenset()
    digest: str = ""
    unknown_numbers: str = UNKNOWN_MOST_EXPENSIVE
    #: any rule depends on the time of the call (so the hot path may skip the clock when none does).
    timed: bool = field(init=False, repr=False)
    #: minutes of the day at which some band starts or stops (where a split call is cut).
    edges: tuple[int, ...] = field(init=False, repr=False)
    _memo: dict[str, tuple[tuple[Rule, str], ...]] = field(init=False, repr=False, compare=False)
    _unknown: dict[int, Rule | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "timed", any(r.timed for r in self.rules))
        edges = {0}
        for rule in self.rules:
            if rule.band is not None:
                edges.update(rule.band.edges)
        object.__setattr__(self, "edges", tuple(sorted(edges)))
        object.__setattr__(self, "_memo", {})
        object.__setattr__(self, "_unknown", {})

    def unknown_for(self, country_code: int) -> Rule | None:
        """The rule for outbound calls to numbers that fail validation, for a site in ``country_code``
        (``None``: they cost 0). Computed once per country (a pass over every rule), then remembered."""
        if self.unknown_numbers != UNKNOWN_MOST_EXPENSIVE:
            return None
        if country_code not in self._unknown:
            self._unknown[country_code] = unknown_rule(self.rules, str(country_code))
        return self._unknown[country_code]

    def candidates(self, key: str) -> tuple[tuple[Rule, str], ...]:
        """Every rule whose prefix starts ``key``, with that prefix, best first (before time, trunk and
        direction are looked at): longest prefix first, or tariff order in first-match mode.

        Memoised per key (a tariff sees the same few thousand numbers all month); the memo is invisible
        state of an otherwise immutable object and is dropped when it grows too large.
        """
        found = self._memo.get(key)
        if found is not None:
            return found
        # A rule for numbers of one length is left out here, once per key, not on the hot path.
        size = len(key)
        flat = [(rule, prefix) for prefix, bucket in self.table.matches(key) for rule in bucket
                if not rule.number_length or rule.number_length == size]
        if self.mode == FIRST_MATCH:
            flat.sort(key=lambda pair: pair[0].order)
        result = tuple(flat)
        if len(self._memo) >= _MEMO_SIZE:
            self._memo.clear()
        self._memo[key] = result
        return result

    def select(
        self, key: str, local: datetime | None, direction: str, trunk: str
    ) -> tuple[Rule, str] | None:
        """The rule (and the prefix it matched) for a call to ``key`` at local time ``local``.

        Args:
            key: `Number.key` (E.164 digits without ``+``).
            local: the call's start in the site's time; may be ``None`` when `timed` is false.
            direction: ``outbound`` or ``inbound``.
            trunk: the trunk the call used (``""`` when the PBX does not say).
        """
        if not key:
            return None
        holiday = local is not None and bool(self.holidays) and local.date() in self.holidays
        for rule, prefix in self._memo.get(key) or self.candidates(key):
            if direction not in rule.directions:
                continue
            if rule.trunks and trunk not in rule.trunks:
                continue
            if rule.timed and not rule.in_force(local, holiday):
                continue
            return rule, prefix
        return None


# --- building ---------------------------------------------------------------------------------------------


def _band(name: str, days: Sequence[str], hours: str, holidays: str) -> Band:
    start, end = parse_hours(hours)
    return Band(name=name, days=parse_days(days), start=start, end=end, holidays=holidays)


def build_tariff(
    rules: Iterable[Rule],
    *,
    mode: str = LONGEST_PREFIX,
    currency: str = "USD",
    decimals: int = 2,
    split: bool = False,
    holidays: Iterable[date] = (),
    digest: str = "",
    unknown_numbers: str = UNKNOWN_MOST_EXPENSIVE,
) -> Tariff:
    """Compile rules into a `Tariff` (pure: the rules are already parsed).

    Raises:
        TariffError: for an unknown mode or a number of decimals out of range.
    """
    if mode not in (LONGEST_PREFIX, FIRST_MATCH):
        raise TariffError(f"tariff.mode: expected {LONGEST_PREFIX} or {FIRST_MATCH}, got {mode!r}")
    if unknown_numbers not in (UNKNOWN_MOST_EXPENSIVE, UNKNOWN_FREE):
        raise TariffError(f"tariff.unknown_numbers: expected {UNKNOWN_MOST_EXPENSIVE} or {UNKNOWN_FREE}, "
                          f"got {unknown_numbers!r}")
    if not 0 <= decimals <= 12:
        raise TariffError(f"tariff.decimals: expected 0 to 12, got {decimals!r}")
    ordered = tuple(rules)

    def sort_key(rule: Rule) -> tuple[int, int, int, int]:
        if mode == FIRST_MATCH:
            return (0, 0, 0, rule.order)
        # A rule for one trunk is its carrier's price and beats a rule for every trunk; then the more
        # specific band; then tariff order.
        return (0 if rule.trunks else 1, *rule.specificity, rule.order)

    table = PrefixTable(((p, r) for r in ordered for p in r.prefixes), sort_key=sort_key)
    return Tariff(ordered, table, mode, currency.upper(), decimals, split, frozenset(holidays), digest,
                  unknown_numbers)


def _international(rule: Rule, home: str) -> bool:
    if rule.call_class is not None:
        return rule.call_class == cc.INTERNATIONAL
    return any(not p.startswith(home) for p in rule.prefixes)


def unknown_rule(rules: Iterable[Rule], home: str) -> Rule | None:
    """The rule for outbound calls to numbers that fail validation at a site whose country code is ``home``:
    the most expensive outbound international rule (a rule of class ``international``, or with no class and
    a prefix outside ``home``), by the price of a one-minute call, the earliest on a tie, whatever its time
    band or trunk; renamed so that a report shows the call was not priced by its own number. ``None`` for a
    tariff with no international rule that charges anything.
    """
    best: Rule | None = None
    best_cost = ZERO
    for rule in rules:
        if _OUTBOUND not in rule.directions or not _international(rule, home):
            continue
        cost = price(rule, _COMPARE_SECONDS)
        if cost > best_cost:
            best, best_cost = rule, cost
    if best is None:
        return None
    return replace(best, name=f"unknown number, priced as {best.name}", prefixes=(), call_class=None, band=None,
                   valid_from=None, valid_until=None, trunks=frozenset(), directions=frozenset({_OUTBOUND}))


def compile_tariff(config: TariffConfig, *, base_dir: Path | str | None = None) -> Tariff:
    """Build the tariff a configuration describes: inline rules first, then each deck in order.

    Args:
        config: the ``[tariff]`` section.
        base_dir: where relative deck paths are found (the config file's folder); the working directory
            when ``None``.

    Raises:
        TariffError: naming the deck and line, or the inline rule's index, of the first bad entry.
    """
    bands = {name: _band(name, b.days, b.hours, b.holidays) for name, b in config.bands.items()}
    digest = hashlib.sha256(config.model_dump_json().encode())
    rules: list[Rule] = []
    for i, spec in enumerate(config.rules):
        if spec.band is not None and spec.band not in bands:
            raise TariffSourceError("tariff.rules", i, f"unknown band {spec.band!r}")
        rules.append(Rule(
            name=spec.name or "+" + spec.prefixes[0],
            prefixes=tuple(spec.prefixes),
            rate=spec.rate,
            billing_unit=spec.billing_unit,
            initial_time=spec.initial_time,
            initial_cost=spec.initial_cost,
            connection_fee=spec.connection_fee,
            minimum_charge=spec.minimum_charge,
            charge_unanswered=spec.charge_unanswered,
            call_class=spec.call_class,
            band=bands[spec.band] if spec.band is not None else None,
            valid_from=spec.valid_from,
            valid_until=spec.valid_until,
            trunks=frozenset(spec.trunks),
            directions=frozenset(spec.directions),
            number_length=spec.number_length,
            order=len(rules),
            source="tariff.rules",
            line=i,
        ))
    for i, deck in enumerate(config.decks):
        path = Path(deck)
        if base_dir is not None and not path.is_absolute():
            path = Path(base_dir) / path
        if not path.is_file():  # named by its key, with the path it was looked for at (relative to the file)
            raise TariffSourceError("tariff.decks", i, f"no deck at {path}" + (" (a folder)" if path.is_dir() else ""))
        deck_rules, data = read_deck(path, bands=bands, first_order=len(rules))
        rules.extend(deck_rules)
        digest.update(hashlib.sha256(data).digest())
    return build_tariff(
        rules, mode=config.mode, currency=config.currency, decimals=config.decimals, split=config.split,
        holidays=config.holidays, digest=digest.hexdigest()[:16], unknown_numbers=config.unknown_numbers,
    )


# --- rating -----------------------------------------------------------------------------------------------


def _local(start: datetime, tz: tzinfo) -> datetime:
    # A naive start is the PBX's wall clock, taken to be the site's.
    return start.astimezone(tz) if start.tzinfo is not None else start.replace(tzinfo=tz)


@dataclass(frozen=True, slots=True)
class _Call:
    number: Number
    direction: str
    trunk: str
    local: datetime | None


class Rater:
    """Rates calls: a site's dial plan plus a compiled tariff. Immutable; share it freely.

    Build one with `Rater.from_config` at start and on reload (swap the whole object); call `rate` for each
    call on the hot path.

    Args:
        plan: the site's dial plan.
        tariff: the compiled tariff (`empty_tariff` prices nothing but still classifies).
        tz: the site's timezone; calls are rated by their local start time.
        cache: use the shared normalisation cache (turn off only to measure it).
        version: what each rating says priced it (`Rating.tariff_version`, see `tariff_label`).
    """

    __slots__ = ("_normalise", "_unknown", "plan", "tariff", "tz", "version")

    def __init__(self, plan: Dialplan, tariff: Tariff, tz: tzinfo, *, cache: bool = True, version: str = "") -> None:
        self.plan = plan
        self.tariff = tariff
        self.tz = tz
        self.version = version
        self._normalise = normalise if cache else normalise_uncached
        self._unknown = tariff.unknown_for(plan.country_code)

    def labelled(self, version: int | None) -> Rater:
        """This rater, its ratings saying they were priced by the saved version ``version`` (known once the
        tariff it was compiled from is saved)."""
        out = Rater(self.plan, self.tariff, self.tz, version=tariff_label(version, self.tariff, ""))
        out._normalise = self._normalise
        return out

    @classmethod
    def from_config(
        cls,
        site: SiteConfig,
        tariff: TariffConfig | None = None,
        *,
        base_dir: Path | str | None = None,
        cache: bool = True,
        version: int | None = None,
    ) -> Rater:
        """The rater for a configured site and tariff (no tariff: every call costs 0, classes still set).
        ``version``: the number of the saved version ``tariff`` is (``[tariff] source = "database"``), which
        each rating then names; a tariff from the files is named by its digest.

        Raises:
            TariffError: a deck or inline rule is invalid (naming the file and line, or the rule's index).
            ConfigError: the site's country is unknown to phonenumbers.
        """
        from smdrd.errors import ConfigError

        try:
            plan = Dialplan.from_site(site)
        except ValueError as exc:
            raise ConfigError(None, [("site.country", str(exc))]) from None
        compiled = empty_tariff() if tariff is None else compile_tariff(tariff, base_dir=base_dir)
        label = tariff_label(version, compiled, tariff.source if tariff is not None else "")
        return cls(plan, compiled, ZoneInfo(site.timezone), cache=cache, version=label)

    def normalise(self, number: str) -> Number:
        """``number`` as the site dials it, normalised (cached)."""
        return self._normalise(number, self.plan)

    def rate(self, record: CallRecord) -> Rating:
        """Rate one call record (the daemon's hot path)."""
        return self._rate(record.number, record.start, record.duration, record.direction, record.trunk,
                          record.answered)

    def rate_call(
        self,
        number: str,
        start: datetime,
        duration: int,
        *,
        direction: str = _OUTBOUND,
        trunk: str = "",
        answered: bool = True,
    ) -> Rating:
        """Rate a call given as plain values (what `rate` and a rerate of stored calls use).

        Args:
            number: the other party as the PBX wrote it.
            start: the call's start (naive means the site's local time).
            duration: talk seconds.
            direction: ``outbound``, ``inbound`` or ``internal``.
            trunk: the trunk used.
            answered: unanswered calls cost 0.
        """
        return self._rate(number, start, duration, direction, trunk, answered)

    def _rate(  # noqa: PLR0917 - positional arguments are measurably faster on the hot path
        self, number: str, start: datetime, duration: int, direction: str, trunk: str, answered: bool
    ) -> Rating:
        # The hot path: positional arguments, no generator, one memo probe, and `_rating` instead of the
        # frozen dataclass's __init__ (which costs twice as much as all the matching).
        tariff = self.tariff
        num = self._normalise(number, self.plan)
        if _INTERNAL in (direction, num.call_class):
            return _rating(num.e164, _INTERNAL, "", "", ZERO, tariff.currency, num.region, self.version)
        key = num.key
        local: datetime | None = None
        holiday = False
        for rule, prefix in (tariff._memo.get(key) or tariff.candidates(key)) if key else ():  # noqa: B007
            if direction not in rule.directions:
                continue
            if rule.trunks and trunk not in rule.trunks:
                continue
            if rule.timed:
                if local is None:
                    local = _local(start, self.tz)
                    holiday = bool(tariff.holidays) and local.date() in tariff.holidays
                if not rule.in_force(local, holiday):
                    continue
            break
        else:
            unknown = self._unknown_rule(num, direction)
            if unknown is None:
                return _rating(num.e164, num.call_class, "", "", ZERO, tariff.currency, num.region, self.version)
            rule, prefix = unknown, ""
        call_class = rule.call_class or num.call_class
        if not answered or duration <= 0:
            # No talk time: carriers bill nothing, unless the rule charges its connection fee for attempts.
            cost = round_cost(price_attempt(rule), tariff.decimals) if rule.charge_unanswered else ZERO
            return _rating(num.e164, call_class, rule.name, prefix, cost, tariff.currency, num.region, self.version)
        if tariff.split and rule is not self._unknown:
            call = _Call(num, direction, trunk, local or _local(start, self.tz))
            unrounded = self._split(call, rule, prefix, duration)[0]
        else:
            unrounded = price(rule, duration)
        return _rating(num.e164, call_class, rule.name, prefix, round_cost(unrounded, tariff.decimals),
                       tariff.currency, num.region, self.version)

    def _unknown_rule(self, num: Number, direction: str) -> Rule | None:
        """The tariff's rule for an outbound number that failed validation and matched no prefix."""
        if direction != _OUTBOUND or num.call_class != cc.UNKNOWN:
            return None
        return self._unknown

    def explain(
        self,
        number: str,
        start: datetime,
        duration: int,
        *,
        direction: str = _OUTBOUND,
        trunk: str = "",
        answered: bool = True,
    ) -> tuple[Rating, Breakdown]:
        """`rate_call` with the breakdown of the cost (slower; for the CLI and for checking bills)."""
        rating = self.rate_call(number, start, duration, direction=direction, trunk=trunk, answered=answered)
        tariff = self.tariff
        if rating.call_class == cc.INTERNAL:
            return rating, Breakdown("internal call")
        if not rating.rule:
            note = "inbound call, no inbound rule" if direction == _INBOUND else "no rule matched"
            return rating, Breakdown(note)
        num = self._normalise(number, self.plan)
        local = _local(start, self.tz)
        found = tariff.select(num.key, local, direction, trunk)
        if found is None:
            unknown = self._unknown_rule(num, direction)
            assert unknown is not None  # rate_call found a rule with the same inputs
            found = unknown, ""
        rule, prefix = found
        if not answered or duration <= 0:
            note = "unanswered" if not answered else "no talk time"
            if rule.charge_unanswered:
                note += ", connection fee only"
            return rating, Breakdown(note, connection_fee=rating.cost, unrounded=price_attempt(rule),
                                     cost=rating.cost)
        if tariff.split and rule is not self._unknown:
            unrounded, pieces = self._split(_Call(num, direction, trunk, local), rule, prefix, duration)
        else:
            unrounded = price(rule, duration)
            extra = duration - rule.initial_time
            units = -(-extra // rule.billing_unit) if extra > 0 else 0
            pieces = (Piece(rule.name, prefix, rule.initial_time, units, rule.billing_unit, rule.rate,
                            units * rule.rate),) if units else ()
        return rating, Breakdown(
            "", rule.connection_fee, rule.initial_cost, rule.initial_time, pieces, rule.minimum_charge,
            unrounded, rating.cost,
        )

    def _split(
        self, call: _Call, first: Rule, prefix: str, duration: int
    ) -> tuple[Decimal, tuple[Piece, ...]]:
        """Price a call unit by unit, each unit at the rule in force when the unit starts.

        The rule in force at the start gives the connection fee, the initial period and the minimum charge;
        the units after it are charged by whichever rule the band in force gives, so a call from 17:58 to
        18:05 pays two peak minutes and five off-peak ones.
        """
        assert call.local is not None
        tariff = self.tariff
        begin = call.local.timestamp()
        cuts = self._cuts(call.local, duration)
        total = first.fixed
        pieces: list[Piece] = []
        pos = first.initial_time
        seg = 0
        while pos < duration:
            while seg + 1 < len(cuts) and cuts[seg + 1] <= pos:
                seg += 1
            seg_end = min(cuts[seg + 1] if seg + 1 < len(cuts) else duration, duration)
            when = datetime.fromtimestamp(begin + pos, self.tz)
            found = tariff.select(call.number.key, when, call.direction, call.trunk)
            if found is None:  # no rule in force for this stretch: nothing to charge for it
                pos = seg_end
                continue
            rule, rule_prefix = found
            units = -(-(seg_end - pos) // rule.billing_unit)
            amount = units * rule.rate
            total = exact_sum(total, units, rule.rate)
            last = pieces[-1] if pieces else None
            if last is not None and last.rule == rule.name and last.prefix == rule_prefix:
                pieces[-1] = Piece(last.rule, last.prefix, last.offset, last.units + units, last.billing_unit,
                                   last.rate, last.amount + amount)
            else:
                pieces.append(Piece(rule.name, rule_prefix, pos, units, rule.billing_unit, rule.rate, amount))
            pos += units * rule.billing_unit
        total = max(total, first.minimum_charge)
        return total, tuple(pieces)

    def _cuts(self, local: datetime, duration: int) -> list[int]:
        """Offsets (seconds from the start, the first 0) at which some band or the date may change: each band edge
        of each day (an edge in the hour the clocks repeat, both times it comes), and the instant the clocks
        change (a call over it may leave a band: back from 01:40 to 01:00 leaves one that starts at 01:30; forward
        from 00:59 to 02:00 enters it). A cut where the band does not change costs nothing: the units run on."""
        begin = local.timestamp()
        cuts = {0}
        day = local.date()
        last_day = datetime.fromtimestamp(begin + duration, self.tz).date()
        while day <= last_day:
            for minute in self.tariff.edges:
                for fold in (0, 1):
                    wall = datetime.combine(day, time(minute // 60, minute % 60, fold=fold), tzinfo=self.tz)
                    offset = int(wall.timestamp() - begin)
                    if 0 < offset < duration:
                        cuts.add(offset)
            day += timedelta(days=1)
        cuts.update(offset for offset in _clock_changes(self.tz, int(begin), duration) if 0 < offset < duration)
        return sorted(cuts)


def _clock_changes(tz: tzinfo, begin: int, duration: int) -> list[int]:
    """The offsets (seconds from ``begin``) within ``duration`` at which ``tz``'s clocks change: at most one for a
    call (31 days at most; the clocks change months apart), found to the second by halving."""
    def offset_at(t: int) -> timedelta | None:
        return datetime.fromtimestamp(t, tz).utcoffset()

    lo, hi = begin, begin + duration
    if offset_at(lo) == offset_at(hi):
        return []
    after = offset_at(hi)
    while hi - lo > 1:  # offset_at(lo) differs, offset_at(hi) is the new one
        mid = (lo + hi) // 2
        if offset_at(mid) == after:
            hi = mid
        else:
            lo = mid
    return [hi - begin]


def empty_tariff(currency: str = "USD", decimals: int = 2) -> Tariff:
    """A tariff with no rules: every call costs 0 (classes still come from phonenumbers)."""
    return build_tariff((), currency=currency, decimals=decimals)
