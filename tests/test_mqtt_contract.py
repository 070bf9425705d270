"""The MQTT payload contract and Home Assistant discovery, on a real Mosquitto: every message a daemon publishes
validates against the JSON Schema its topic names (`smdrd.mqtt_payloads`), the retained discovery configs are
what Home Assistant's MQTT discovery documents, and ``/healthz`` says "degraded" while alerts wait for a broker.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from smdrd.config import Settings
from smdrd.mqtt_payloads import SCHEMAS, load_schema, schema_name
from smdrd.record import CallRecord, Direction
from smdrd.testing import Broker, Subscriber, free_port
from tests.test_alerts_daemon import (
    broker,  # noqa: F401  (a fixture)
    call,
    running,
    settings,
    subscribed,
)

#: a credential a caller keys in: it must never reach a payload.
AUTH_CODE = "987654"
DECIMALS = 3


def _settings(tmp_path: Path, b: Broker, port: int, pbx_port: int, **extra: Any) -> Settings:
    s = settings(tmp_path, b, port, mqtt={"publish_calls": True, "homeassistant": True, "state_interval": 0.1},
                 alerts={"check_interval": 0.1, "source_down": {"minutes": 0.01}},
                 tariff={"decimals": DECIMALS, "currency": "EUR",
                         "rules": [{"name": "sf", "prefixes": ["1415"], "rate": "1.00", "billing_unit": 60}]},
                 departments=[{"name": "Sales", "extensions": ["200-209"], "budget": "1"},
                              {"name": "Ops & Support", "extensions": ["300-309"]}], **extra)
    data = s.model_dump(mode="json")
    data["sources"].append({"name": "pbx2", "kind": "tcp-client", "format": "avaya-ipo", "host": "127.0.0.1",
                            "port": pbx_port, "reconnect_min": 0.05, "reconnect_max": 0.1})
    return Settings.model_validate(data)


class ListeningPbx:
    """A PBX in listen mode that the daemon's tcp-client source connects to; `stop` takes it off the network."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.writers.append(writer)

        self.server = await asyncio.start_server(accepted, "127.0.0.1", self.port)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.close()
        self.writers.clear()
        await self.server.wait_closed()


@asynccontextmanager
async def listening_pbx(port: int) -> AsyncIterator[ListeningPbx]:
    pbx = ListeningPbx(port)
    await pbx.start()
    try:
        yield pbx
    finally:
        if pbx.server is not None and pbx.server.is_serving():
            await pbx.stop()


def now_call(number: str, **kw: Any) -> CallRecord:
    # Today in the site's timezone (UTC), so the retained "today" figures count it.
    return call(number, at=datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=2), **kw)


def validate(topic: str, payload: bytes) -> str | None:
    """Validate ``payload`` against its topic's schema; the schema's name (None: a removal of a discovery)."""
    name = schema_name(topic, "smdrd", "homeassistant")
    assert name is not None, f"{topic}: a topic with no schema"
    if name == "discovery" and payload == b"":
        return None  # an entity removed: an empty retained message
    document = payload.decode() if name == "status" else json.loads(payload)
    jsonschema.Draft202012Validator(load_schema(name)).validate(document)
    return name


def amounts(value: Any, key: str = "") -> list[str]:
    """Every money string in a payload (keys cost, cost_today, cost_month, spent, budget)."""
    if isinstance(value, dict):
        return [a for k, v in value.items() for a in amounts(v, k)]
    if isinstance(value, list):
        return [a for v in value for a in amounts(v, key)]
    return [value] if isinstance(value, str) and key in ("cost", "cost_today", "cost_month", "spent", "budget") \
        else []


def test_every_schema_is_a_valid_json_schema() -> None:
    for name in SCHEMAS:
        jsonschema.Draft202012Validator.check_schema(load_schema(name))


async def test_every_payload_the_daemon_publishes_validates_against_its_schema(tmp_path: Path,
                                                                              broker: Broker) -> None:  # noqa: F811
    """Calls, alerts (raised and resolved), the status, the retained state, sources and discovery, all from one
    daemon: each message validates against its topic's schema, money has the tariff's three decimals, calls and
    alerts carry site and department, and the authorisation code appears nowhere. A Node-RED flow written from
    the docs would otherwise break on the first payload that disagrees."""
    port, pbx_port = free_port(), free_port()
    s = _settings(tmp_path, broker, port, pbx_port)
    async with listening_pbx(pbx_port) as listening, subscribed(broker, ("#",)) as sub, running(s) as pbx:
        await pbx.send(now_call("914155550100", duration=120, extension="201"),  # Sales, 2.000 EUR: budget
                       now_call("918095551234", duration=30, extension="301"),   # high_risk to +1 809
                       replace(now_call("914155550101", extension="202"), auth_code=AUTH_CODE),
                       now_call("914155550102", direction=Direction.INBOUND, extension="203"))
        assert await sub.wait_until(lambda: len(sub.on("smdrd/call")) >= 4, 10)
        await listening.stop()  # pbx2 goes down, then comes back: source_down, then its resolved event
        assert await sub.wait_until(lambda: any(json.loads(m.payload)["rule"] == "source_down"
                                                for m in sub.on("smdrd/alert/#")), 10)
        await listening.start()
        assert await sub.wait_until(lambda: any(json.loads(m.payload)["state"] == "resolved"
                                                for m in sub.on("smdrd/alert/#")), 10)
        assert await sub.wait_until(lambda: any(json.loads(m.payload)["calls_today"] >= 3
                                                for m in sub.on("smdrd/state")), 10)
    seen: dict[str, int] = {}
    for m in sub.messages:
        assert AUTH_CODE.encode() not in m.payload, m.topic
        name = validate(m.topic, m.payload)
        if name is None or name == "status":
            continue
        seen[name] = seen.get(name, 0) + 1
        doc = json.loads(m.payload)
        for amount in amounts(doc):
            assert re.fullmatch(rf"[0-9]+\.[0-9]{{{DECIMALS}}}", amount), (m.topic, amount)
        if name in ("call", "alert"):
            assert doc["site"] == s.site.name and "department" in doc
    assert set(seen) == {"call", "alert", "state", "source", "discovery"}, seen
    calls = {c["extension"]: c for c in (json.loads(m.payload) for m in sub.on("smdrd/call"))}
    assert calls["201"]["department"] == "Sales" and calls["301"]["department"] == "Ops & Support"
    assert calls["201"]["cost"] == "2.000" and calls["201"]["answered"] is True
    assert calls["201"]["start_utc"].endswith("+00:00")
    got = [json.loads(m.payload) for m in sub.on("smdrd/alert/#")]
    assert {(a["rule"], a["state"]) for a in got} >= {("high_risk", "raised"), ("budget", "raised"),
                                                      ("source_down", "raised"), ("source_down", "resolved")}
    down = next(a for a in got if a["rule"] == "source_down" and a["state"] == "raised")
    back = next(a for a in got if a["rule"] == "source_down" and a["state"] == "resolved")
    assert back["resolves"] == down["id"] and back["source"] == down["source"] == "pbx2"
    assert datetime.fromisoformat(down["facts"]["down_since"]).utcoffset() is not None
    last = json.loads(sub.on("smdrd/last_call")[-1].payload)
    assert last["direction"] == "outbound" and last["extension"] == "202"  # the last outbound, not the inbound


_TEMPLATE_PATH = re.compile(r"value_json((?:\.[a-z_0-9]+|\[(?:'[^']*'|\"(?:[^\"\\]|\\.)*\")\])+)")
_PATH_PART = re.compile(r"\.([a-z_0-9]+)|\[('[^']*'|\"(?:[^\"\\]|\\.)*\")\]")


def template_values(template: str, document: Any) -> list[Any]:
    """The values each ``value_json...`` path of a Home Assistant template reads from ``document`` (a KeyError
    when the state topic does not carry the key)."""
    values = []
    for path in _TEMPLATE_PATH.findall(template):
        value = document
        for attr, quoted in _PATH_PART.findall(path):
            key = attr or (json.loads(quoted) if quoted.startswith('"') else quoted[1:-1])
            value = value[key]
        values.append(value)
    assert values, template
    return values


async def retained(b: Broker, topic: str, within: float = 5.0) -> list[tuple[str, bytes]]:
    """What a late subscriber (Home Assistant after a restart) receives on ``topic``: the retained messages."""
    sub = Subscriber(b.host, b.port, [topic])
    task = asyncio.create_task(sub.run())
    try:
        await asyncio.wait_for(sub.subscribed.wait(), within)
        await asyncio.sleep(0.3)  # retained messages arrive right after the subscription
        return [(m.topic, m.payload) for m in sub.messages if m.retain]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_home_assistant_discovery_is_retained_and_follows_the_documented_schema(
        tmp_path: Path, broker: Broker) -> None:  # noqa: F811
    """[mqtt] homeassistant = true: a late subscriber to homeassistant/# gets one retained config per entity,
    each with Home Assistant's required keys, a unique id, the one device of the site, availability tied to the
    retained status topic (online; offline by the last will), and a state topic that really carries the value
    the template reads. A Home Assistant restarted after the daemon would otherwise show nothing, or unknown."""
    port, pbx_port = free_port(), free_port()
    s = _settings(tmp_path, broker, port, pbx_port)
    async with listening_pbx(pbx_port), subscribed(broker, ("smdrd/alert/#",)) as alerts_sub, running(s) as pbx:
        await pbx.send(now_call("914155550100", duration=120, extension="201"),
                       now_call("918095551234", duration=30, extension="301"))
        assert await alerts_sub.wait_until(lambda: bool(alerts_sub.messages), 10)
        for _ in range(100):
            state = await retained(broker, "smdrd/state", 1.0)
            if state and json.loads(state[-1][1])["calls_today"] >= 2:
                break
        configs = await retained(broker, "homeassistant/#")
        assert configs, "no retained discovery config"
        ids, devices = set(), set()
        components: dict[str, int] = {}
        for topic, payload in configs:
            assert validate(topic, payload) == "discovery"
            prefix, component, node_id, object_id, last = topic.split("/")
            assert (prefix, last) == ("homeassistant", "config")
            assert re.fullmatch(r"[a-zA-Z0-9_-]+", node_id) and re.fullmatch(r"[a-zA-Z0-9_-]+", object_id)
            components[component] = components.get(component, 0) + 1
            config = json.loads(payload)
            assert config["unique_id"] not in ids
            ids.add(config["unique_id"])
            devices.add(tuple(config["device"]["identifiers"]))
            assert (config["availability_topic"], config["payload_available"], config["payload_not_available"]) \
                == ("smdrd/status", "online", "offline")
            if component == "event":
                assert config["state_topic"] == "smdrd/alert/+"
                for alert in (json.loads(m.payload) for m in alerts_sub.messages):
                    assert alert["event_type"] in config["event_types"]
                continue
            assert component in ("sensor", "binary_sensor")
            state_msgs = await retained(broker, config["state_topic"])
            assert state_msgs, f"{config['unique_id']}: nothing retained on {config['state_topic']}"
            values = template_values(config["value_template"], json.loads(state_msgs[-1][1]))
            assert values[0] is not None or any(v is not None for v in values), config["unique_id"]
            if component == "binary_sensor":
                assert config["device_class"] == "connectivity" and isinstance(values[0], bool)
            elif config.get("state_class"):
                float(values[0])  # a number Home Assistant can chart
        assert components == {"sensor": 3 + 3 * 2 + 1, "binary_sensor": 2, "event": 1}, components
        assert len(devices) == 1  # one device per site
        status = await retained(broker, "smdrd/status")
        assert status[-1][1] == b"online"
    status = await retained(broker, "smdrd/status")
    assert status[-1][1] == b"offline"  # availability follows the daemon


async def test_healthz_says_degraded_while_alerts_wait_for_the_broker(tmp_path: Path,
                                                                     broker: Broker) -> None:  # noqa: F811
    """The broker goes away and an alert is raised: /healthz stays 200 (the PBX path collects and stores every
    call) with status "degraded" and how many alerts wait; a monitor restarting smdrd on 503 must not restart it
    for that."""
    port = free_port()
    s = settings(tmp_path, broker, port, http={"enabled": True, "listen": "127.0.0.1:0"})
    async with running(s, features=("health", "alerts", "mqtt")) as pbx:
        http = pbx.daemon.http
        assert http is not None
        url = f"http://127.0.0.1:{http.bound_port}/healthz"

        def get() -> tuple[int, dict[str, Any]]:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, json.loads(response.read())

        await pbx.send(now_call("914155550100"))  # the source is connected: the PBX path is healthy
        for _ in range(100):
            code, body = await asyncio.to_thread(get)
            if body.get("mqtt", {}).get("connected"):
                break
            await asyncio.sleep(0.05)
        assert (code, body["status"], body["degraded"]) == (200, "ok", [])
        broker.stop()
        await pbx.send(call("918095551234", at=datetime(2025, 3, 4, 2, 13, tzinfo=UTC), extension="205"))
        for _ in range(200):
            code, body = await asyncio.to_thread(get)
            if body["status"] == "degraded" and body["mqtt"]["pending_alerts"]:
                break
            await asyncio.sleep(0.05)
        assert code == 200 and body["status"] == "degraded" and body["reasons"] == []
        assert body["mqtt"]["connected"] is False and body["mqtt"]["pending_alerts"] >= 1
        assert body["degraded"] == [f"mqtt: not connected to the broker; {body['mqtt']['pending_alerts']} alert(s) "
                                    f"waiting in the outbox"]
        broker.start()
        for _ in range(200):  # connected first, then the waiting alerts delivered
            code, body = await asyncio.to_thread(get)
            if body["status"] == "ok" and body["mqtt"]["pending_alerts"] == 0:
                break
            await asyncio.sleep(0.05)
        assert (code, body["status"], body["mqtt"]["pending_alerts"]) == (200, "ok", 0)


@pytest.mark.parametrize("name", SCHEMAS)
def test_each_schema_ships_in_the_package(name: str) -> None:
    assert load_schema(name)["$id"].endswith(f"/{name}.schema.json")


def test_the_payloads_in_docs_alerts_md_follow_the_schemas() -> None:
    """Every JSON example of docs/alerts.md that is a payload validates against its schema, and the Node-RED
    flow is valid JSON: a user copying them gets what the daemon sends."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "alerts.md").read_text()
    blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", text, re.S)]
    kinds = []
    for doc in blocks:
        if isinstance(doc, list):
            kinds.append("node-red")
            continue
        kind = ("call" if "call_key" in doc else "alert" if "rule" in doc else "state" if "calls_today" in doc
                else "source" if "kind" in doc else None)
        assert kind is not None, doc
        jsonschema.Draft202012Validator(load_schema(kind)).validate(doc)
        kinds.append(kind)
    assert sorted(kinds) == ["alert", "alert", "call", "node-red", "source", "state"]


async def test_a_reload_removes_the_discovery_of_a_source_taken_out(tmp_path: Path,
                                                                   broker: Broker) -> None:  # noqa: F811
    """SIGHUP with a source and a department removed: their retained discovery configs and the source's state
    are removed at the broker (empty retained messages), so Home Assistant drops the entities instead of
    showing them unavailable for ever; the rest stays."""
    from smdrd.config import load_config
    from smdrd.daemon import Daemon
    from smdrd.testing import config_toml, running_daemon

    port, pbx_port = free_port(), free_port()
    s = _settings(tmp_path, broker, port, pbx_port)
    data = s.model_dump(mode="json", exclude_none=True)
    path = tmp_path / "smdrd.toml"
    path.write_text(config_toml(data))
    daemon = Daemon(load_config(path, use_env=False), path, features=("mqtt",))
    async with listening_pbx(pbx_port), running_daemon(daemon):
        for _ in range(100):
            configs = dict(await retained(broker, "homeassistant/#", 1.0))
            if any("source_pbx2" in t for t in configs):
                break
        assert any("source_pbx2" in t for t in configs) and any("dept_ops" in t for t in configs)
        assert await retained(broker, "smdrd/source/pbx2")
        data["sources"] = [src for src in data["sources"] if src["name"] != "pbx2"]
        data["departments"] = [d for d in data["departments"] if d["name"] == "Sales"]
        path.write_text(config_toml(data))
        await daemon.reload()
        for _ in range(100):
            after = dict(await retained(broker, "homeassistant/#", 1.0))
            if not any("source_pbx2" in t for t in after):
                break
        assert not any("source_pbx2" in t or "dept_ops" in t for t in after)
        assert any("source_ipo" in t for t in after) and any("dept_sales" in t for t in after)
        assert await retained(broker, "smdrd/source/pbx2") == []
