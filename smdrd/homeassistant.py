"""Home Assistant MQTT discovery (``[mqtt] homeassistant = true``): the retained config messages that make one
Home Assistant device per site, with its sensors, a connectivity binary sensor per source and an alerts event.

Each config is published retained to ``<discovery_prefix>/<component>/<node_id>/<object_id>/config`` and names
a retained state topic of the payload contract (`smdrd.mqtt_payloads`) with a template that picks its value, so
Home Assistant shows the last value again after its own restart. Every entity is available while the retained
``<topic_prefix>/status`` says ``online`` (the publisher's status and last will).

Pure: builds the messages from plain data; the delivery feature (`smdrd.delivery`) hands them to the publisher.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from smdrd import __version__
from smdrd.alerts.rules import CLEARING_RULES, RULE_NAMES
from smdrd.mqtt_payloads import Topics

__all__ = ["Discovery", "discovery_messages", "event_types", "slug"]

_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def slug(name: str) -> str:
    """``name`` as an id part Home Assistant accepts (``[a-z0-9_]``): readable, and made unique by a short digest
    when the name had to change (``Sales & Support`` and ``Sales / Support`` stay two)."""
    plain = _NOT_SLUG.sub("_", name.lower()).strip("_")
    if plain == name:
        return plain
    digest = hashlib.sha1(name.encode()).hexdigest()[:6]
    return f"{plain}_{digest}" if plain else digest


def event_types() -> list[str]:
    """Every ``event_type`` an alert can carry: each rule, and ``<rule>_resolved`` for the rules that clear."""
    return [*RULE_NAMES, *(f"{r}_resolved" for r in RULE_NAMES if r in CLEARING_RULES)]


@dataclass(frozen=True, slots=True)
class Discovery:
    """What the discovery messages are made from.

    Args:
        site: ``[site] name`` (one device per site).
        topics: the site's topics (``[mqtt] topic_prefix``).
        discovery_prefix: ``[mqtt] discovery_prefix``.
        currency: the tariff's (the cost sensors' unit).
        decimals: the tariff's (the cost sensors' display precision).
        sources: the enabled sources' names.
        departments: the configured departments' names (each gets its own calls and cost sensors).
    """

    site: str
    topics: Topics
    discovery_prefix: str = "homeassistant"
    currency: str = "USD"
    decimals: int = 2
    sources: Sequence[str] = ()
    departments: Sequence[str] = ()

    @property
    def node_id(self) -> str:
        return f"smdrd_{slug(self.site)}"

    def _config(self, component: str, object_id: str, name: str, state_topic: str,
                **extra: Any) -> tuple[str, dict[str, Any]]:
        node = self.node_id
        payload: dict[str, Any] = {
            "name": name,
            "unique_id": f"{node}_{object_id}",
            "state_topic": state_topic,
            **extra,
            "availability_topic": self.topics.status,
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": {"identifiers": [node], "name": f"smdrd {self.site}", "manufacturer": "smdrd",
                       "model": "Call accounting", "sw_version": __version__},
            "origin": {"name": "smdrd", "sw_version": __version__},
        }
        return f"{self.discovery_prefix}/{component}/{node}/{object_id}/config", payload

    def _figures(self, object_id: str, label: str, path: str) -> Iterable[tuple[str, dict[str, Any]]]:
        state = self.topics.state
        yield self._config("sensor", f"{object_id}calls_today", f"{label}Outbound calls today", state,
                           value_template=f"{{{{ value_json{path}.calls_today }}}}", state_class="total_increasing",
                           unit_of_measurement="calls", icon="mdi:phone-outgoing")
        for period, title in (("today", "Cost today"), ("month", "Cost this month")):
            yield self._config("sensor", f"{object_id}cost_{period}", f"{label}{title}", state,
                               value_template=f"{{{{ value_json{path}.cost_{period} }}}}", device_class="monetary",
                               state_class="total", unit_of_measurement=self.currency,
                               suggested_display_precision=self.decimals)

    def messages(self) -> list[tuple[str, dict[str, Any]]]:
        """Every config message: ``(topic, payload)``."""
        out = list(self._figures("", "", ""))
        for dept in self.departments:
            # A JSON string is a valid Jinja string literal: any department name reads back as written.
            out += self._figures(f"dept_{slug(dept)}_", f"{dept}: ", f"['departments'][{json.dumps(dept)}]")
        out.append(self._config("sensor", "last_outbound_call", "Last outbound call", self.topics.last_call,
                                value_template="{{ value_json.e164 or value_json.number }}",
                                json_attributes_topic=self.topics.last_call, icon="mdi:phone-log"))
        for source in self.sources:
            out.append(self._config("binary_sensor", f"source_{slug(source)}", f"Source {source}",
                                    self.topics.source(source), device_class="connectivity",
                                    value_template="{{ 'ON' if value_json.up else 'OFF' }}",
                                    json_attributes_topic=self.topics.source(source),
                                    entity_category="diagnostic"))
        out.append(self._config("event", "alert", "Alert", self.topics.alerts, event_types=event_types(),
                                icon="mdi:phone-alert"))
        return out


def discovery_messages(discovery: Discovery) -> dict[str, bytes]:
    """The config messages as the publisher retains them: topic to compact JSON."""
    return {topic: json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
            for topic, payload in discovery.messages()}
