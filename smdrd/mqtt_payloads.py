"""The MQTT payload contract: what each topic carries, built from plain data, and the JSON Schema of each.

One contract for every topic (docs/alerts.md, "Topics"): times are ISO 8601 with their offset, booleans are
``true``/``false``, money is a decimal string with the tariff's decimals (``"14.00"``), every call and alert
names its ``site`` and ``department`` (``null`` when it has none), and no payload ever carries an authorisation
code. The schemas ship in the package (``smdrd/data/mqtt/<name>.schema.json``); `schema_name` says which one a
topic's payload follows, so a subscriber (or a test) can validate whatever it receives.

Pure: no I/O here but reading the schemas from the package; the publisher (`smdrd.mqtt`) sends what these
functions build, and the delivery feature (`smdrd.delivery`) gathers the figures.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from importlib import resources
from typing import Any

import orjson

__all__ = [
    "JOURNAL_VERSION", "SCHEMAS", "CallShape", "DepartmentFigures", "SiteFigures", "Topics", "confirmed_filter",
    "confirmed_message", "confirmed_topic", "encode", "journal_filter", "journal_message", "journal_topic",
    "load_schema", "money_text", "read_alert_message", "read_confirmed_message", "read_journal_message",
    "schema_name", "source_message", "state_message", "topic_level",
]

#: the payload schemas shipped in the package, by name.
SCHEMAS = ("alert", "call", "status", "state", "source", "discovery")

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def encode(payload: object) -> bytes:
    """A payload as it goes on the wire: compact JSON in UTF-8."""
    return _encode(payload).encode()


def topic_level(name: str) -> bool:
    """Whether ``name`` can be one topic level (not empty, no ``/``, ``+``, ``#`` or NUL)."""
    return bool(name) and not any(c in name for c in "/+#\0")


#: the journal entry payload's version (``v``): a central collector refuses one it does not know.
JOURNAL_VERSION = 1


def journal_topic(prefix: str, site: str, source: str) -> str:
    """Where a site publishes the journal entries of ``source``: ``<prefix>/<site>/journal/<source>`` (a source
    name that cannot be one topic level has its ``/ + #`` made ``_``: the payload names the source exactly)."""
    level = "".join("_" if c in "/+#\0" else c for c in source) or "_"
    return f"{prefix}/{site}/journal/{level}"


def journal_filter(prefix: str) -> str:
    """The topic filter of every site's journal entries (the central collector's subscription)."""
    return f"{prefix}/+/journal/+"


def confirmed_topic(prefix: str, site: str, collector: str) -> str:
    """Where the central collector ``collector`` (its MQTT client id) publishes ``site``'s confirmed point
    (retained): ``<prefix>/<site>/confirmed/<collector>`` (`smdrd.store.confirm`); a client id that cannot be one
    topic level has its ``/ + #`` made ``_``. One topic per collector: two collectors (two stores) on one broker
    each say their own."""
    level = "".join("_" if c in "/+#\0" else c for c in collector) or "_"
    return f"{prefix}/{site}/confirmed/{level}"


def confirmed_filter(prefix: str, site: str) -> str:
    """The topic filter of every collector's confirmed point of ``site`` (the site's subscription)."""
    return f"{prefix}/{site}/confirmed/+"


def confirmed_message(site: str, point: int, at: float) -> bytes:
    """A site's confirmed point as a collector publishes it: every entry the site published up to ``point`` (its
    journal position) is stored centrally, said at ``at`` (the collector's clock, UTC seconds: a retained point
    whose collector stopped saying it goes stale at the site)."""
    return encode({"v": JOURNAL_VERSION, "site": site, "confirmed": int(point), "at": round(at, 3)})


def read_confirmed_message(payload: bytes) -> tuple[int, float]:
    """The confirmed point of a `confirmed_message` payload, and when it was said (UTC seconds).

    Raises:
        ValueError: not such a payload.
    """
    message = orjson.loads(payload)
    if not isinstance(message, dict) or message.get("v") != JOURNAL_VERSION:
        raise ValueError("not a confirmed point of version 1")
    point = message.get("confirmed")
    if not isinstance(point, int) or isinstance(point, bool) or point < 0:
        raise ValueError(f"bad confirmed point {point!r}")
    at = message.get("at")
    if not isinstance(at, int | float) or isinstance(at, bool) or not math.isfinite(at):
        raise ValueError(f"bad confirmed time {at!r}")
    return point, float(at)


def journal_message(site: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """A journal entry as a site publishes it: ``fields`` as `smdrd.store.api.CallFeed.entries` gives them,
    with the site, the version and ``raw`` in base64 (a PBX's bytes need not be UTF-8)."""
    return {"v": JOURNAL_VERSION, "site": site, **fields, "raw": base64.b64encode(fields["raw"]).decode()}


def read_journal_message(payload: bytes) -> dict[str, Any]:
    """A journal entry payload back as `journal_message` made it (``raw`` as bytes).

    Raises:
        ValueError: not such a payload (not JSON, another version, a field missing).
    """
    message = orjson.loads(payload)  # a quarter of stdlib json's time (its error is a ValueError)
    if not isinstance(message, dict) or message.get("v") != JOURNAL_VERSION:
        raise ValueError("not a journal entry of version 1")
    if not topic_level(str(message.get("site", ""))):
        raise ValueError(f"bad site {message.get('site')!r}")
    message["raw"] = base64.b64decode(message["raw"], validate=True)
    for key in ("id", "source", "peer", "received_at", "format", "status", "calls"):
        if key not in message:
            raise ValueError(f"no {key}")
    return message


def read_alert_message(payload: bytes) -> dict[str, Any]:
    """An alert as a site publishes it (``<topic_prefix>/alert/<rule>``, the outbox payload of
    `smdrd.alerts.engine`), checked for what the central inbox keeps of it: its ``id``, ``rule``, ``severity``,
    ``site`` and ``raised_at``; ``created_at`` added (UTC microseconds of ``raised_at``).

    Raises:
        ValueError: not such a payload.
    """
    message = orjson.loads(payload)
    if not isinstance(message, dict):
        raise ValueError("not an alert: not a JSON object")
    for key in ("id", "rule", "severity", "raised_at"):
        if not isinstance(message.get(key), str) or not message[key]:
            raise ValueError(f"not an alert: no {key}")
    if not topic_level(str(message.get("site", ""))):
        raise ValueError(f"bad site {message.get('site')!r}")
    raised = datetime.fromisoformat(message["raised_at"])
    if raised.tzinfo is None:
        raise ValueError("raised_at without its offset")
    message["created_at"] = int(raised.timestamp() * 1_000_000)
    return message


def money_text(amount: Decimal, decimals: int) -> str:
    """``amount`` as every payload writes money: a decimal string with ``decimals`` places, half up."""
    return str(amount.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP))


def iso(ts: float, tz: tzinfo = UTC) -> str:
    """Epoch seconds as ISO 8601 with the offset of ``tz`` (to the second)."""
    return datetime.fromtimestamp(ts, tz).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic one daemon publishes under ``prefix`` (``[mqtt] topic_prefix``)."""

    prefix: str

    @property
    def status(self) -> str:
        return f"{self.prefix}/status"

    @property
    def call(self) -> str:
        return f"{self.prefix}/call"

    @property
    def state(self) -> str:
        return f"{self.prefix}/state"

    @property
    def last_call(self) -> str:
        return f"{self.prefix}/last_call"

    @property
    def alerts(self) -> str:
        """The filter of every alert topic (``<prefix>/alert/<rule>``)."""
        return f"{self.prefix}/alert/+"

    def alert(self, rule: str) -> str:
        return f"{self.prefix}/alert/{rule}"

    def source(self, name: str) -> str:
        return f"{self.prefix}/source/{name}"


def schema_name(topic: str, prefix: str, discovery_prefix: str = "homeassistant") -> str | None:
    """The schema (one of `SCHEMAS`) the payloads of ``topic`` follow; None for a topic that is not smdrd's."""
    if topic.startswith(f"{discovery_prefix}/") and topic.endswith("/config"):
        return "discovery"
    if not topic.startswith(f"{prefix}/"):
        return None
    rest = topic[len(prefix) + 1:]
    if rest.startswith("alert/"):
        return "alert"
    if rest.startswith("source/"):
        return "source"
    return {"status": "status", "call": "call", "last_call": "call", "state": "state"}.get(rest)


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The JSON Schema ``name`` (one of `SCHEMAS`), as shipped in ``smdrd/data/mqtt/``."""
    if name not in SCHEMAS:
        raise ValueError(f"expected one of {', '.join(SCHEMAS)}, got {name!r}")
    text = resources.files("smdrd").joinpath("data", "mqtt", f"{name}.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@dataclass(frozen=True, slots=True)
class CallShape:
    """Turns a stored call's fields (`smdrd.store.api.FeedCall.fields`) into the ``call`` payload.

    Args:
        site: ``[site] name``.
        decimals: the tariff's decimals.
        timezone: the site's (a start stored without an offset is read in it).
        department: extension and site-local day (``YYYY-MM-DD``) to department, None for none.
    """

    site: str
    decimals: int = 2
    timezone: tzinfo = UTC
    department: Callable[[str, str], str | None] = lambda extension, day: None

    def message(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in fields.items() if k != "auth_code"}  # a credential: never published
        start = datetime.fromisoformat(str(fields["start"]))
        if start.tzinfo is None:
            start = start.replace(tzinfo=self.timezone)
        out["start"] = start.isoformat()
        out["start_utc"] = iso(float(fields["start_utc"]))
        out["answered"] = bool(fields["answered"])
        cost = fields.get("cost")
        out["cost"] = None if cost is None else money_text(Decimal(str(cost)), self.decimals)
        extension = str(fields.get("extension") or "")
        out["department"] = self.department(extension, start.date().isoformat()) if extension else None
        out["site"] = self.site
        return out


@dataclass(frozen=True, slots=True)
class DepartmentFigures:
    """One department's outbound calls today, and its cost today and this month (sub-departments included)."""

    name: str
    calls_today: int
    cost_today: Decimal
    cost_month: Decimal


@dataclass(frozen=True, slots=True)
class SiteFigures:
    """The site's figures for the retained state topic: outbound calls as ``smdrd report`` counts them."""

    day: date
    calls_today: int
    cost_today: Decimal
    cost_month: Decimal
    departments: Sequence[DepartmentFigures] = ()


def state_message(figures: SiteFigures, *, site: str, currency: str, decimals: int) -> dict[str, Any]:
    """The retained ``<prefix>/state`` payload (no time of its own: an unchanged state is not sent again)."""
    return {
        "site": site,
        "day": figures.day.isoformat(),
        "month": figures.day.strftime("%Y-%m"),
        "currency": currency,
        "calls_today": figures.calls_today,
        "cost_today": money_text(figures.cost_today, decimals),
        "cost_month": money_text(figures.cost_month, decimals),
        "departments": {d.name: {"calls_today": d.calls_today,
                                 "cost_today": money_text(d.cost_today, decimals),
                                 "cost_month": money_text(d.cost_month, decimals)}
                        for d in figures.departments},
    }


def source_message(name: str, kind: str, *, site: str, up: bool, connected: bool, reason: str | None,
                   last_line: float | None, tz: tzinfo) -> dict[str, Any]:
    """The retained ``<prefix>/source/<name>`` payload: is the source up, as ``/healthz`` judges it."""
    return {
        "source": name,
        "kind": kind,
        "site": site,
        "up": up,
        "connected": connected,
        "reason": reason,
        "last_line": None if last_line is None else iso(last_line, tz),
    }
