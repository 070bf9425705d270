"""The cost formula and money handling: published examples, rounding once, no binary floats."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smdrd.rating.money import MoneyError, parse_money, round_cost
from smdrd.rating.rules import Rule, price


def yeastar_rule() -> Rule:
    # Yeastar's Call Rate Rule example: the first 120 s cost 0.2, then 0.3 for every 60 s.
    return Rule("yeastar", ("1",), rate=Decimal("0.3"), billing_unit=60, initial_time=120,
                initial_cost=Decimal("0.2"))


@pytest.mark.parametrize(("seconds", "expected"), [(68, "0.2"), (125, "0.5"), (190, "0.8")])
def test_yeastar_published_example(seconds: int, expected: str) -> None:
    """A Yeastar user would see costs that differ from the PBX's own call report."""
    assert round_cost(price(yeastar_rule(), seconds), 2) == Decimal(expected)


def test_carrier_six_second_increments() -> None:
    """A carrier's 0.03 a minute billed 6/6 must cost 0.003 for a 4 s call, not a whole minute."""
    rule = Rule("carrier", ("44",), rate=Decimal("0.003"), billing_unit=6)
    assert round_cost(price(rule, 4), 3) == Decimal("0.003")
    assert round_cost(price(rule, 7), 3) == Decimal("0.006")


def test_thirty_six_increments() -> None:
    """30/6 billing: the first 30 s are charged whole, then 6 s units."""
    rule = Rule("c", ("44",), rate=Decimal("0.006"), billing_unit=6, initial_time=30,
                initial_cost=Decimal("0.03"))
    assert price(rule, 1) == Decimal("0.03")
    assert price(rule, 31) == Decimal("0.036")


def test_connection_fee_and_minimum_charge() -> None:
    """A short call pays the minimum charge; a long one the fee plus units."""
    rule = Rule("p", ("4490",), rate=Decimal("1.50"), connection_fee=Decimal("0.25"),
                minimum_charge=Decimal("2.00"))
    assert price(rule, 10) == Decimal("2.00")
    assert price(rule, 130) == Decimal("4.75")


def test_rounded_once_half_up() -> None:
    """Rounding each unit would drift; the cost is rounded once, 0.005 going up."""
    rule = Rule("r", ("1",), rate=Decimal("0.001"), billing_unit=1)
    assert round_cost(price(rule, 5), 2) == Decimal("0.01")
    assert round_cost(price(rule, 4), 2) == Decimal("0.00")
    assert round_cost(Decimal("0.125"), 2) == Decimal("0.13")


def test_floats_are_refused_with_advice() -> None:
    """A TOML float (rate = 0.03) is rejected with a message saying to quote it."""
    with pytest.raises(MoneyError, match="quoted"):
        parse_money(0.03)


@pytest.mark.parametrize("bad", ["-1", "abc", "NaN", "Infinity", "", True])
def test_bad_amounts_are_refused(bad: object) -> None:
    """Negative, non-numeric or non-finite prices are errors, not zero."""
    with pytest.raises(MoneyError):
        parse_money(bad)


@given(st.decimals(min_value=0, max_value=10, places=4), st.integers(0, 10_000))
def test_cost_is_exact_decimal(rate: Decimal, seconds: int) -> None:
    """The unrounded cost is exactly units * rate: no float went through it."""
    rule = Rule("r", ("1",), rate=rate, billing_unit=60)
    units = -(-seconds // 60)
    assert price(rule, seconds) == units * rate
