"""Home Assistant discovery, pure: ids Home Assistant accepts and keeps apart, and event types for every alert."""

from __future__ import annotations

import json

from smdrd.alerts.rules import CLEARING_RULES, RULE_NAMES
from smdrd.homeassistant import Discovery, discovery_messages, event_types, slug
from smdrd.mqtt_payloads import Topics


def test_slugs_are_plain_and_keep_different_names_apart() -> None:
    """Two departments whose names differ only in punctuation must not share an entity (the second would
    silently replace the first in Home Assistant)."""
    assert slug("sales") == "sales"
    assert slug("Sales & Support") != slug("Sales / Support")
    assert all(c.isalnum() or c == "_" for c in slug("Zażółć gęślą / jaźń"))
    assert slug("Sales") != slug("sales")


def test_every_alert_event_type_is_declared() -> None:
    """The event entity accepts every rule, and the resolved event of the rules that clear, nothing else."""
    types = event_types()
    assert set(RULE_NAMES) <= set(types)
    assert {t.removesuffix("_resolved") for t in types if t.endswith("_resolved")} == set(CLEARING_RULES)


def test_configs_have_unique_ids_one_device_and_the_site_topics() -> None:
    messages = discovery_messages(Discovery("Head Office", Topics("acme/hq"), "ha", "EUR", 2, ["pbx"],
                                            ["Sales", "Sales & Support", "Sales / Support"]))
    configs = [json.loads(p) for p in messages.values()]
    assert len({c["unique_id"] for c in configs}) == len(configs) == 3 + 3 * 3 + 1 + 1 + 1
    assert {tuple(c["device"]["identifiers"]) for c in configs} == {(f"smdrd_{slug('Head Office')}",)}
    assert all(t.startswith("ha/") and t.endswith("/config") for t in messages)
    assert {c["availability_topic"] for c in configs} == {"acme/hq/status"}
    assert {c["state_topic"] for c in configs} == {"acme/hq/state", "acme/hq/last_call", "acme/hq/source/pbx",
                                                   "acme/hq/alert/+"}
