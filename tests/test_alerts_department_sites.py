"""A membership naming a site (issue 17) counts for a box's alert rules and MQTT call payloads when it names the
box's own ``[site] name``, and not when it names another site, as the box's reports resolve its calls."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from smdrd.config import Settings
from smdrd.delivery import call_shape
from tests.test_alerts_rules import DAY, Harness

#: 401 is Ops' at this box (site ``hq``, as the harness's engine is named); 402 is Branch's at site ``branch``
#: only; 403 is Shared's at every site (no site named).
DEPARTMENTS: list[dict[str, Any]] = [
    {"name": "Ops", "budget": "1000", "members": [{"extensions": ["401"], "site": "hq"}]},
    {"name": "Branch", "budget": "1000", "members": [{"extensions": ["402"], "site": "branch"}]},
    {"name": "Shared", "budget": "1000", "extensions": ["403"]},
]


def test_a_budget_counts_a_membership_naming_this_site_and_not_another() -> None:
    h = Harness({"expensive_call": {"enabled": False}}, departments=DEPARTMENTS)
    h.engine.seed_spend([(ext, "2025-03-01", Decimal(850)) for ext in ("401", "402", "403")])
    ops = h.call("914155550100", cost=Decimal(20), extension="401")
    assert [(a["rule"], a["severity"], a["department"]) for a in ops] == [("budget", "warning", "Ops")]
    shared = h.call("914155550100", cost=Decimal(20), extension="403")
    assert [(a["rule"], a["department"]) for a in shared] == [("budget", "Shared")]
    # Branch's 402 is another site's extension: this box's 402 is in no department, and no budget is spent.
    assert h.call("914155550100", cost=Decimal(200), extension="402") == []
    assert not any(key[0] == "Branch" for key in h.engine.state.spend)


def test_a_budget_with_the_box_renamed_follows_the_new_name() -> None:
    h = Harness({"expensive_call": {"enabled": False}}, departments=DEPARTMENTS)
    rules, directory = h.engine.rules, h.engine.directory
    h.engine.configure(rules, h.settings.site.tz, site="branch", directory=directory)
    h.engine.seed_spend([("402", "2025-03-01", Decimal(850))])
    assert [a["department"] for a in h.call("914155550100", cost=Decimal(20), extension="402")] == ["Branch"]
    assert h.call("914155550100", cost=Decimal(200), extension="401") == []


def test_the_mqtt_call_payload_names_the_department_at_this_site() -> None:
    settings = Settings.model_validate({
        "site": {"name": "hq", "timezone": "America/New_York", "country": "US", "area_code": "212"},
        "departments": DEPARTMENTS})
    shape = call_shape(settings)
    fields = {"start": DAY.isoformat(), "start_utc": DAY.timestamp(), "answered": 1, "cost": "0.10",
              "extension": "401"}
    assert shape.message(fields)["department"] == "Ops"
    assert shape.message({**fields, "extension": "402"})["department"] is None
    assert shape.message({**fields, "extension": "403"})["department"] == "Shared"
    assert shape.message(fields)["site"] == "hq"
