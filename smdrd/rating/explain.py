"""The number tester's answer: how one call would be rated, and the arithmetic that produced its cost.

Pure: a `Rater` (already compiled) and plain values in, an `Explanation` out; no I/O, no clock. The console's
``/rates/test`` page and ``/api/tariff/test`` show it, and `smdrd rate` prints the same breakdown.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from smdrd.rating.tariff import Breakdown, Rater

__all__ = ["Explanation", "explain"]


@dataclass(frozen=True, slots=True)
class Explanation:
    """What rating says about a call, with its working.

    Attributes:
        number: the number as given (as the PBX would write it).
        e164: the normalised number (``""`` for an extension, a short code or an unreadable number).
        region: its ISO 3166 region (``""`` when unknown).
        call_class: the call's class.
        rule: the name of the rule that priced it (``""``: none did).
        prefix: the prefix the rule matched on.
        cost: the cost, rounded once.
        currency: the tariff's currency.
        arithmetic: one line such as ``first 120 s 0.2 + 1 x 0.3 per 60 s = 0.50 EUR``.
        steps: the working, one step a line (rule found, each term, rounding).
    """

    number: str
    e164: str
    region: str
    call_class: str
    rule: str
    prefix: str
    cost: Decimal
    currency: str
    arithmetic: str
    steps: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """JSON-safe data (amounts as decimal strings)."""
        return {"number": self.number, "e164": self.e164, "region": self.region, "call_class": self.call_class,
                "rule": self.rule, "prefix": self.prefix, "cost": str(self.cost), "currency": self.currency,
                "arithmetic": self.arithmetic, "steps": list(self.steps)}


def _steps(breakdown: Breakdown, duration: int, decimals: int, currency: str) -> list[str]:
    b = breakdown
    if b.note:
        return [f"{b.note}: {b.cost} {currency}"]
    out = []
    if b.connection_fee:
        out.append(f"connection fee {b.connection_fee}")
    if b.initial_cost or b.initial_time:
        out.append(f"initial period: the first {b.initial_time} s cost {b.initial_cost}")
    for p in b.pieces:
        out.append(f"{p.units} started unit(s) of {p.billing_unit} s from second {p.offset} at {p.rate} = "
                   f"{p.amount}" + (f" (rule {p.rule})" if len(b.pieces) > 1 else ""))
    if not b.pieces and duration > b.initial_time:
        out.append("no units after the initial period")
    if b.minimum_charge:
        used = " (applied)" if b.unrounded == b.minimum_charge else " (not reached)"
        out.append(f"minimum charge {b.minimum_charge}{used}")
    out.append(f"exact sum {b.unrounded}, rounded half-up to {decimals} decimals = {b.cost} {currency}")
    return out


def explain(
    rater: Rater,
    number: str,
    start: datetime,
    duration: int,
    *,
    direction: str = "outbound",
    trunk: str = "",
    answered: bool = True,
) -> Explanation:
    """How ``rater`` rates a call to ``number`` starting at ``start`` (naive: the site's time) lasting
    ``duration`` talk seconds on ``trunk``."""
    rating, breakdown = rater.explain(number, start, duration, direction=direction, trunk=trunk,
                                      answered=answered)
    tariff = rater.tariff
    steps = [f"normalised: {rating.e164 or '(not a phone number)'}, class {rating.call_class}"
             + (f", region {rating.region}" if rating.region else "")]
    if rating.rule:
        how = "the earliest rule in force" if tariff.mode == "first-match" else "the longest prefix in force"
        steps.append(f"rule: {rating.rule}" + (f" (prefix {rating.prefix}, {how})" if rating.prefix else ""))
    steps.extend(_steps(breakdown, duration, tariff.decimals, tariff.currency))
    return Explanation(number, rating.e164, rating.region, rating.call_class, rating.rule, rating.prefix,
                       rating.cost, rating.currency, breakdown.describe(tariff.currency), tuple(steps))
