"""Calls with no talk time (unanswered, or answered for 0 s) cost 0 unless a rule charges its connection fee
for them, in the daemon's rating and in ``smdrd rate`` alike (issue 18, item 7)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smdrd.errors import TariffError
from smdrd.rating import Dialplan, Rater, Rule, build_tariff, parse_deck
from smdrd.record import CallRecord, Direction

NEW_YORK = ZoneInfo("America/New_York")
DECK = """\
name,prefix,rate,billing_unit,initial_time,initial_cost,connection_fee,minimum_charge,charge_unanswered
Dominican Republic,1809,0.35,60,60,0.45,,,
Jamaica,1876,0.45,60,60,0.50,0.10,0.75,yes
"""
US = ["--country", "US", "--area-code", "212", "--at", "2026-03-02T10:00", "--json"]


def rate(deck: Path, *args: str) -> dict[str, str]:
    """``smdrd rate ... --json`` as a user runs it; the one number's JSON object."""
    result = subprocess.run([sys.executable, "-m", "smdrd", "rate", "--rules", str(deck), *US, *args],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    out: dict[str, str] = json.loads(result.stdout)
    return out


@pytest.fixture
def deck(tmp_path: Path) -> Path:
    path = tmp_path / "rates.csv"
    path.write_text(DECK)
    return path


def test_rate_charges_nothing_for_a_zero_second_call(deck: Path) -> None:
    """`smdrd rate 918095550100 --duration 0` costs 0, not the rule's initial cost of 0.45."""
    out = rate(deck, "918095550100", "--duration", "0")
    assert (out["rule"], Decimal(out["cost"])) == ("Dominican Republic", Decimal(0))
    assert Decimal(rate(deck, "918095550100", "--duration", "1")["cost"]) == Decimal("0.45")


def test_rate_charges_the_connection_fee_alone_when_the_rule_says_so(deck: Path) -> None:
    """charge_unanswered = yes: an attempt costs the connection fee, neither the initial cost nor the minimum."""
    assert Decimal(rate(deck, "918765550100", "--duration", "0")["cost"]) == Decimal("0.10")
    assert Decimal(rate(deck, "918765550100", "--duration", "30", "--unanswered")["cost"]) == Decimal("0.10")
    assert Decimal(rate(deck, "918095550100", "--duration", "30", "--unanswered")["cost"]) == 0


def test_rate_explains_why_an_attempt_costs_what_it_does(deck: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "smdrd", "rate", "--rules", str(deck), *US[:-1],
                             "918765550100", "918095550100", "--duration", "0"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "0.10 USD (no talk time, connection fee only)" in result.stdout
    assert "0 USD (no talk time)" in result.stdout


def test_a_bad_charge_unanswered_cell_names_the_line() -> None:
    with pytest.raises(TariffError, match=r"deck\.csv:2: charge_unanswered: expected yes or no, got 'maybe'"):
        parse_deck(["prefix,rate,charge_unanswered\n", "44,0.1,maybe\n"], "deck.csv")


money = st.decimals(min_value=0, max_value=5, places=3)
rules_st = st.builds(
    lambda rate, unit, initial, icost, fee, minimum, attempt: Rule(
        "r", ("1809",), rate=rate, billing_unit=unit, initial_time=initial, initial_cost=icost,
        connection_fee=fee, minimum_charge=minimum, charge_unanswered=attempt),
    money, st.sampled_from([1, 6, 60]), st.integers(0, 120), money, money, money, st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(rules_st, st.booleans(), st.integers(0, 600), st.booleans())
def test_the_daemon_and_rate_agree_on_calls_without_talk_time(rule: Rule, answered: bool, seconds: int,
                                                              split: bool) -> None:
    """The daemon rates the record; `smdrd rate` explains the same call: one cost, 0 or the connection fee
    whatever the initial cost and minimum charge, rounded once."""
    duration = 0 if answered else seconds
    rater = Rater(Dialplan("US", "212", ("9",)), build_tariff([rule], decimals=2, split=split), NEW_YORK)
    start = datetime(2026, 3, 2, 10, 0, tzinfo=NEW_YORK)
    record = CallRecord(format="sim", start=start, duration=duration, direction=Direction.OUTBOUND,
                        extension="201", number="918095550100", answered=answered)
    daemon = rater.rate(record)
    shown, breakdown = rater.explain("918095550100", start, duration, answered=answered)
    expected = rule.connection_fee.quantize(Decimal("0.01"), ROUND_HALF_UP) if rule.charge_unanswered else 0
    assert daemon == shown
    assert daemon.cost == breakdown.cost == expected
    assert daemon.rule == "r"
