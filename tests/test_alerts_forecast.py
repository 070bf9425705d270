"""The ``budget_forecast`` alert rule: a department's month-end forecast crosses its monthly budget before the budget
itself is reached; once per month and department, resolved when the month ends (issue 16, point 5)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import jsonschema

from smdrd.mqtt_payloads import load_schema
from tests.test_alerts_rules import TZ, Harness

SALES = [{"name": "Sales", "extensions": ["200-209"], "budget": "1000"}]
#: Wednesday 12 March 2025, 13:00 in New York: 7 working days and half of the 12th gone, 13.5 left (21 in all).
MID_MONTH = datetime(2025, 3, 12, 13, 0, tzinfo=TZ)


def harness(**alerts: Any) -> Harness:
    return Harness({"expensive_call": {"enabled": False}, **alerts}, departments=SALES)


def forecasts(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for a in alerts if a["rule"] == "budget_forecast"]


def test_a_forecast_over_budget_raises_once_a_month_with_the_department() -> None:
    h = harness()
    assert forecasts(h.call("914155550100", at=MID_MONTH, cost=Decimal(300), extension="205")) == []  # 840
    raised = forecasts(h.call("914155550100", at=MID_MONTH, cost=Decimal(100), extension="201"))  # 400 -> 1120
    assert len(raised) == 1
    alert = raised[0]
    assert alert["department"] == "Sales" and alert["severity"] == "warning"
    assert alert["id"] == "budget_forecast:Sales:2025-03"
    assert alert["facts"]["forecast"] == "1120.00" and alert["facts"]["spent"] == "400.00"
    assert alert["facts"]["budget"] == "1000.00" and alert["facts"]["working_days"] == 21
    assert "1120" in alert["reason"] and "Sales" in alert["reason"]
    assert forecasts(h.call("914155550100", at=MID_MONTH + timedelta(hours=1), cost=Decimal(50))) == []  # once
    april = forecasts(h.call("914155550100", at=datetime(2025, 4, 10, 13, 0, tzinfo=TZ), cost=Decimal(900)))
    assert [a["id"] for a in april] == ["budget_forecast:Sales:2025-04"], "a new month, a new alert"


def test_no_forecast_alert_once_the_budget_itself_is_reached_or_too_early_in_the_month() -> None:
    h = harness()
    early = datetime(2025, 3, 3, 10, 0, tzinfo=TZ)  # Monday the 3rd: a quarter of a working day gone
    assert forecasts(h.call("914155550100", at=early, cost=Decimal(500), extension="201")) == []
    over = h.call("914155550100", at=MID_MONTH, cost=Decimal(600), extension="201")  # 1100 of 1000
    assert forecasts(over) == [] and [a["severity"] for a in over if a["rule"] == "budget"] == ["critical"]
    h2 = harness(budget_forecast={"min_working_days": 0})
    assert len(forecasts(h2.call("914155550100", at=early, cost=Decimal(500), extension="201"))) == 1


def test_the_budget_rules_count_a_calls_cost_once() -> None:
    """Both rules read one spend per department and month: 450 is 45 % of the budget, not 90 %."""
    h = harness()
    alerts = h.call("914155550100", at=MID_MONTH, cost=Decimal(450), extension="201")
    assert [a["rule"] for a in alerts] == ["budget_forecast"]  # no 80 % warning from a spend counted twice


def test_the_forecast_alert_is_resolved_when_the_month_ends() -> None:
    h = harness()
    raised = forecasts(h.call("914155550100", at=MID_MONTH, cost=Decimal(400), extension="201"))
    eng = h.engine
    assert eng.check_periods(datetime(2025, 3, 31, 23, 0, tzinfo=TZ).timestamp()) == []
    ended = [json.loads(r.payload) for r in eng.check_periods(datetime(2025, 4, 1, 0, 5, tzinfo=TZ).timestamp())]
    assert [(e["rule"], e["state"], e["resolves"], e["department"]) for e in ended] == [
        ("budget_forecast", "resolved", raised[0]["id"], "Sales")]
    schema = load_schema("alert")  # the MQTT payload contract (docs/alerts.md) holds for both
    for payload in (*raised, *ended):
        jsonschema.validate(payload, schema, format_checker=jsonschema.FormatChecker())


def test_weekends_and_holidays_are_not_working_days() -> None:
    """With the 10th and 11th closed, the 12th at 13:00 has 5.5 working days gone and 13.5 left: 400 -> 1381.82."""
    h = harness(business_hours={"holidays": ["2025-03-10", "2025-03-11"]})
    alert = forecasts(h.call("914155550100", at=MID_MONTH, cost=Decimal(400), extension="201"))[0]
    assert alert["facts"]["working_days"] == 19 and alert["facts"]["forecast"] == "1381.82"
