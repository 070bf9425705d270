"""Numbers that fail validation have a rule of their own and the alert rules see them (issue 18, item 8)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smdrd.alerts.engine import AlertEngine
from smdrd.alerts.feature import compile_settings
from smdrd.config import Settings
from smdrd.rating import Dialplan, Rater, Rule, build_tariff
from smdrd.record import CallRecord, Direction

NEW_YORK = ZoneInfo("America/New_York")
#: a number a New York PBX wrote that phonenumbers cannot read as any valid number.
INVALID = "0118095550100"
DECK = """\
name,prefix,call_class,rate,billing_unit,initial_time,initial_cost,connection_fee,minimum_charge
US and Canada,1,,0.012,60,,,,
US toll-free 800,1800,toll-free,5.00,60,,,,
US premium 900,1900,premium,2.99,60,,,0.50,
Jamaica,1876,international,0.45,60,,,0.10,
United Kingdom,44,international,0.05,60,,,,
"""


def rate(*args: str) -> dict[str, str]:
    result = subprocess.run([sys.executable, "-m", "smdrd", "rate", *args, "--json"], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    out: dict[str, str] = json.loads(result.stdout)
    return out


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "rates.csv").write_text(DECK)
    path = tmp_path / "smdrd.toml"
    path.write_text('[site]\ncountry = "US"\narea_code = "212"\ntimezone = "America/New_York"\n'
                    '[tariff]\ndecks = ["rates.csv"]\n')
    return path


def test_an_invalid_number_is_priced_as_the_most_expensive_rule_and_flagged(config: Path) -> None:
    """Not 0.00: 0.10 + 2 x 0.45 as Jamaica, the dearest international rule (a US premium or toll-free
    price says nothing about a number abroad)."""
    out = rate(INVALID, "--duration", "90", "--config", str(config))
    assert out["call_class"] == "unknown"
    assert out["rule"] == "unknown number, priced as Jamaica"
    assert Decimal(out["cost"]) == Decimal("1.00")


def test_unknown_numbers_can_be_free(config: Path) -> None:
    config.write_text(config.read_text() + 'unknown_numbers = "free"\n')
    out = rate(INVALID, "--duration", "90", "--config", str(config))
    assert (out["call_class"], out["rule"], Decimal(out["cost"])) == ("unknown", "", Decimal(0))


def test_inbound_calls_from_unknown_numbers_still_cost_nothing(config: Path) -> None:
    out = rate(INVALID, "--duration", "90", "--inbound", "--config", str(config))
    assert (out["rule"], Decimal(out["cost"])) == ("", Decimal(0))


def test_the_after_hours_alert_sees_an_outbound_call_to_an_invalid_number() -> None:
    """An outbound external call at 02:13 raises after_hours, with the default alert rules, whatever its
    number looks like."""
    cfg = Settings.model_validate({"site": {"timezone": "America/New_York", "country": "US", "area_code": "212"}})
    rules, directory = compile_settings(cfg)
    engine = AlertEngine(rules, cfg.site.tz, site="hq", directory=directory, clock=lambda: 1_700_000_000.0)
    rater = Rater.from_config(cfg.site, cfg.tariff)
    night = datetime(2025, 3, 4, 2, 13, tzinfo=NEW_YORK)
    record = CallRecord(format="test", start=night, duration=45, direction=Direction.OUTBOUND, extension="201",
                        number=INVALID, answered=True)
    rating = rater.rate(record)
    assert rating.call_class == "unknown"
    raised: list[dict[str, Any]] = [json.loads(a.payload) for a in engine.observe(record, rating, "test:1")]
    assert [a["rule"] for a in raised] == ["after_hours"]


money = st.decimals(min_value=0, max_value=5, places=3)
rule_st = st.builds(
    lambda rate, fee, unit, direction: (rate, fee, unit, direction),
    money, money, st.sampled_from([1, 6, 60]), st.sampled_from(["outbound", "inbound"]),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(rule_st, min_size=1, max_size=6), st.integers(1, 3600))
def test_an_unknown_number_never_costs_less_than_any_international_rule_for_a_minute(
    specs: list[tuple[Decimal, Decimal, int, str]], seconds: int
) -> None:
    """Priced as the most expensive international rule: for a one-minute call, at least what any number
    abroad costs; exact, rounded once; and the same through the record (the daemon) and `explain`."""
    rules = [Rule(f"r{i}", (f"4{i}",), rate=rate, connection_fee=fee, billing_unit=unit,
                  directions=frozenset({direction}), order=i)
             for i, (rate, fee, unit, direction) in enumerate(specs)]
    home = Rule("US and Canada", ("1",), rate=Decimal("9.99"), order=len(rules))  # dearer, but not abroad
    rater = Rater(Dialplan("US", "212", ("9",)), build_tariff([*rules, home]), NEW_YORK)
    start = datetime(2026, 3, 2, 10, 0, tzinfo=NEW_YORK)
    unknown = rater.rate_call(INVALID, start, 60)
    outbound = [r for r in rules if "outbound" in r.directions]
    for r in outbound:
        assert unknown.cost >= rater.rate_call(f"9011{r.prefixes[0]}2079460000", start, 60).cost
    record = CallRecord(format="t", start=start, duration=seconds, direction=Direction.OUTBOUND, extension="201",
                        number=INVALID, answered=True)
    daemon = rater.rate(record)
    assert daemon == rater.explain(INVALID, start, seconds)[0]
    assert daemon.rule != "unknown number, priced as US and Canada"
    assert daemon.rule.startswith("unknown number, priced as ") or not any(
        r.rate or r.connection_fee for r in outbound)


def test_rate_shows_the_unknown_rule_without_an_empty_prefix(config: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "smdrd", "rate", INVALID, "--duration", "90", "--config",
                             str(config)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "rule   unknown number, priced as Jamaica\n" in result.stdout
