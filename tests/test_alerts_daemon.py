"""Alerts end to end: call lines into a real daemon (tcp-server source, avaya-ipo), alerts out of a real
Mosquitto broker to a QoS-1 subscriber."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from smdrd.config import Settings
from smdrd.daemon import Daemon
from smdrd.parsers.avaya_ipo import AvayaIPOfficeParser
from smdrd.record import CallRecord, Direction
from smdrd.testing import Broker, Subscriber, free_port, mosquitto_path, open_connection_retry, running_daemon

UTC_ = ZoneInfo("UTC")
NIGHT = datetime(2025, 3, 4, 2, 13, tzinfo=UTC_)  # a Tuesday
DAY = datetime(2025, 3, 4, 10, 0, tzinfo=UTC_)


def require_broker() -> str:
    path = mosquitto_path()
    if path is None:
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail("mosquitto is not installed: CI must run the MQTT tests against a real broker")
        pytest.skip("mosquitto is not installed (apt install mosquitto)")
    return path


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker", binary=require_broker())
    b.start()
    yield b
    b.stop()


@asynccontextmanager
async def subscribed(broker: Broker, topics: tuple[str, ...] = ("smdrd/#",)) -> AsyncIterator[Subscriber]:
    sub = Subscriber(broker.host, broker.port, list(topics))
    task = asyncio.create_task(sub.run())
    try:
        await asyncio.wait_for(sub.subscribed.wait(), 10)
        yield sub
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@dataclass
class Pbx:
    """The daemon under test and the PBX connection that feeds it."""

    daemon: Daemon
    port: int
    writer: asyncio.StreamWriter | None = None
    sent: list[bytes] = field(default_factory=list)
    n: int = 0

    async def send(self, *records: CallRecord) -> None:
        if self.writer is None:
            _, self.writer = await open_connection_retry("127.0.0.1", self.port)
        for given in records:
            self.n += 1
            record = given if given.call_id else CallRecord(**{**_fields(given), "call_id": str(1_000_000 + self.n)})
            line = AvayaIPOfficeParser.render(record)[0].encode()
            self.sent.append(line)
            self.writer.write(line + b"\r\n")
        await self.writer.drain()

    async def send_raw(self, *lines: bytes) -> None:
        if self.writer is None:
            _, self.writer = await open_connection_retry("127.0.0.1", self.port)
        for line in lines:
            self.writer.write(line + b"\r\n")
        await self.writer.drain()


def _fields(record: CallRecord) -> dict[str, Any]:
    return {f: getattr(record, f) for f in record.__dataclass_fields__}


def call(number: str, *, at: datetime = DAY, duration: int = 60, extension: str = "201",
         direction: Direction = Direction.OUTBOUND, ring: int = 3) -> CallRecord:
    return CallRecord(format="avaya-ipo", start=at, duration=duration, direction=direction, extension=extension,
                      number=number, ring=ring, answered=duration > 0)


def settings(tmp_path: Path, broker: Broker, port: int, **sections: Any) -> Settings:
    data: dict[str, Any] = {
        "database": {"path": str(tmp_path / "smdrd.db"), "commit_interval_ms": 10},
        "sources": [{"name": "ipo", "kind": "tcp-server", "format": "avaya-ipo", "listen": f"127.0.0.1:{port}"}],
        "http": {"enabled": False},
        "mqtt": {"enabled": True, "host": broker.host, "port": broker.port, "reconnect_min": 0.1,
                 "reconnect_max": 0.5},
    }
    for key, value in sections.items():
        data[key] = {**data[key], **value} if isinstance(data.get(key), dict) else value
    return Settings.model_validate(data)


@asynccontextmanager
async def running(s: Settings, features: tuple[str, ...] = ("alerts", "mqtt")) -> AsyncIterator[Pbx]:
    """The daemon (`smdrd.testing.running_daemon`) and a PBX that pushes calls to its first tcp-server source."""
    port = int(s.sources[0].listen.rsplit(":", 1)[1]) if s.sources and s.sources[0].kind == "tcp-server" else 0
    async with running_daemon(s, features=features) as daemon:
        pbx = Pbx(daemon, port)
        try:
            yield pbx
        finally:
            if pbx.writer is not None:
                pbx.writer.close()


def alerts(sub: Subscriber) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in sub.on("smdrd/alert/#")]


async def test_default_config_alerts_a_night_call_to_the_dominican_republic(tmp_path: Path,
                                                                            broker: Broker) -> None:
    """No [alerts] section at all: a 40-minute call at 02:13 to +1 809 555 1234 reaches the subscriber as an
    alert within seconds. A user who configured nothing would otherwise never hear of the 809 scam."""
    port = free_port()
    s = settings(tmp_path, broker, port)
    assert s.alerts == Settings().alerts  # really the defaults
    async with subscribed(broker) as sub, running(s) as pbx:
        await pbx.send(call("918095551234", at=NIGHT, duration=40 * 60))
        assert await sub.wait_until(lambda: any(a["rule"] == "high_risk" for a in alerts(sub)), 10)
        got = alerts(sub)
        first = got[0]
        assert first["number"] == "+18095551234" and first["extension"] == "201"
        assert first["call"]["duration"] == 2400 and first["call"]["start"].startswith("2025-03-04T02:13")
        topics = {m.topic for m in sub.on("smdrd/alert/#")}
        assert topics == {f"smdrd/alert/{a['rule']}" for a in got}
        assert [m.payload for m in sub.on("smdrd/status")][-1] == b"online"


def _tariff() -> dict[str, Any]:
    # 1.00 a minute to +1 415: an hour costs 60 (over the default expensive_call limit of 50).
    return {"rules": [{"name": "sf", "prefixes": ["1415"], "rate": "1.00", "billing_unit": 60}]}


#: rule -> (extra settings, crafted calls that must raise it, normal calls that must not raise anything)
CASES: dict[str, tuple[dict[str, Any], list[CallRecord], list[CallRecord]]] = {
    "after_hours": ({}, [call("9011442079460000", at=NIGHT, extension="301")],
                    [call("9011442079460000", at=DAY, extension="202"), call("912125550100", at=NIGHT,
                                                                           extension="203")]),
    "high_risk": ({"alerts": {"after_hours": {"enabled": False}}},
                  [call("918765550100", at=DAY, duration=20, extension="301")],
                  [call("914155550100", at=DAY, extension="202"), call("9011442079460000", extension="203")]),
    "long_call": ({}, [call("912125550100", duration=75 * 60, extension="301")],
                  [call("912125550100", duration=55 * 60, extension="202")]),
    "expensive_call": ({"tariff": _tariff(), "alerts": {"long_call": {"enabled": False}}},
                       [call("914155550100", duration=60 * 60, extension="301")],
                       [call("914155550100", duration=20 * 60, extension="202")]),
    "velocity": ({"alerts": {"velocity": {"extension_calls": 3}}},
                 [call(f"91415555010{i}", at=DAY + timedelta(minutes=i), extension="301") for i in range(4)],
                 [call(f"91415555020{i}", at=DAY + timedelta(minutes=30 * i), extension="202")
                  for i in range(3)]),
    "short_calls": ({}, [call("914155550199", at=DAY + timedelta(minutes=i), duration=2, extension="301")
                         for i in range(5)],
                    [call("914155550198", at=DAY + timedelta(minutes=i), duration=2 if i % 2 else 200,
                          extension="202") for i in range(6)]),
    "wangiri": ({"alerts": {"after_hours": {"enabled": False}}},
                [call("+442079460001", direction=Direction.INBOUND, duration=0, ring=2, extension="301"),
                 call("9011442079460001", at=DAY + timedelta(hours=1), extension="301")],
                [call("+442079460002", direction=Direction.INBOUND, duration=90, ring=2, extension="202"),
                 call("9011442079460002", at=DAY + timedelta(hours=1), extension="202")]),
    "budget": ({"tariff": _tariff(), "departments": [{"name": "Sales", "extensions": ["300-399"]}],
                "alerts": {"budget": {"departments": {"Sales": {"daily": "20"}}}}},
               [call("914155550100", duration=17 * 60, extension="301")],
               [call("914155550100", duration=30 * 60, extension="202")]),
}


@pytest.mark.parametrize("rule", list(CASES))
async def test_each_rule_fires_on_its_pattern_and_stays_silent_on_normal_calls(
        tmp_path: Path, broker: Broker, rule: str) -> None:
    """Normal calls first (from extension 20x), then the crafted pattern (from 301): the only alerts at the
    subscriber are the crafted ones, of this rule. A user would see a rule that never fires, or that fires on
    ordinary traffic."""
    extra, crafted, normal = CASES[rule]
    port = free_port()
    async with subscribed(broker) as sub, running(settings(tmp_path, broker, port, **extra)) as pbx:
        await pbx.send(*normal)
        await pbx.send(*crafted)
        assert await sub.wait_until(lambda: any(a["rule"] == rule for a in alerts(sub)), 10), alerts(sub)
        await pbx.daemon.writer.flushed()
        await asyncio.sleep(0.3)  # anything else would have been published by now, in order
        got = alerts(sub)
        assert {a["rule"] for a in got} == {rule}, got
        assert all(a["extension"] == "301" for a in got), got
        assert all(a["severity"] in ("warning", "critical") and a["id"] and a["reason"] for a in got)


async def test_the_snooze_holds_through_the_daemon(tmp_path: Path, broker: Broker) -> None:
    """Twenty night calls abroad from one extension in an hour: one after_hours alert at the subscriber, not
    twenty (one incident, one alert)."""
    port = free_port()
    async with subscribed(broker) as sub, running(settings(tmp_path, broker, port)) as pbx:
        await pbx.send(*[call("9011442079460000", at=NIGHT + timedelta(minutes=2 * i), extension="301")
                         for i in range(20)])
        await pbx.send(call("9011442079460000", at=NIGHT, extension="999"))  # a sentinel: published after
        assert await sub.wait_until(lambda: any(a["extension"] == "999" for a in alerts(sub)), 10)
        got = [(a["rule"], a["extension"]) for a in alerts(sub)]
        assert got == [("after_hours", "301"), ("after_hours", "999")]
        feature = pbx.daemon.features.alerts
        assert feature is not None and (await feature.current_stats()).snoozed["after_hours"] == 19


def stored_calls(tmp_path: Path) -> int:
    with sqlite3.connect(tmp_path / "smdrd.db") as conn:
        return int(conn.execute("SELECT count(*) FROM calls").fetchone()[0])


async def test_the_worker_runs_the_rules_and_a_new_worker_starts_from_the_stored_spend(
        tmp_path: Path, broker: Broker) -> None:
    """The rules run in the pipeline worker (the default). Killed, it is replaced, and the new one gets the rules
    again and starts its budgets from the spend stored this month: a department that had spent 12 of its daily
    20 before the crash passes its budget with the next 9 (a fresh worker alone would count 9 of 20)."""
    extra = {"tariff": _tariff(), "departments": [{"name": "Sales", "extensions": ["300-399"]}],
             "alerts": {"budget": {"departments": {"Sales": {"daily": "20"}}}}}
    today = datetime.now(UTC_).replace(hour=0, minute=1, second=0, microsecond=0)
    port = free_port()
    async with subscribed(broker) as sub, running(settings(tmp_path, broker, port, **extra)) as pbx:
        pipeline = pbx.daemon.pipeline
        assert pipeline is not None and pipeline.pid is not None
        await pbx.send(call("914155550100", at=today, duration=12 * 60, extension="301"))
        for _ in range(200):  # rated and stored before the crash
            if stored_calls(tmp_path) == 1:
                break
            await asyncio.sleep(0.05)
        os.kill(pipeline.pid, signal.SIGKILL)
        for _ in range(200):  # (a line sent to a dead worker is journalled as an error, for `smdrd reparse`)
            if pipeline.starts == 2:
                break
            await asyncio.sleep(0.05)
        await pbx.send(call("914155550100", at=today + timedelta(minutes=20), duration=9 * 60, extension="302"))
        assert await sub.wait_until(lambda: any(a["rule"] == "budget" for a in alerts(sub)), 15), alerts(sub)
        assert pipeline.starts == 2 and "pipeline" in pbx.daemon.failed_tasks
        budget = [a for a in alerts(sub) if a["rule"] == "budget"]
        assert [(a["severity"], a["extension"]) for a in budget] == [("critical", "302")], budget
        pbx.daemon.failed_tasks.clear()  # reported as it should be; the harness checks for unexpected ones


async def test_a_resent_line_never_realerts_even_after_a_restart(tmp_path: Path, broker: Broker) -> None:
    """The PBX re-sends its buffer after a daemon restart: the same line raises no second alert (the alert id
    is the call's, and the outbox keeps one)."""
    port = free_port()
    night_call = call("918095551234", at=NIGHT, extension="301")
    async with subscribed(broker) as sub:
        async with running(settings(tmp_path, broker, port)) as pbx:
            await pbx.send(night_call)
            await pbx.send(night_call)
            assert await sub.wait_until(lambda: len(alerts(sub)) >= 2, 10)
        first = sorted(a["id"] for a in alerts(sub))
        async with running(settings(tmp_path, broker, port)) as pbx:
            await pbx.send(call("918095551234", at=NIGHT, extension="301").__class__(
                **{**_fields(night_call), "call_id": "1000001"}))
            await pbx.send(call("9011442079460000", at=NIGHT, extension="999"))
            assert await sub.wait_until(lambda: any(a["extension"] == "999" for a in alerts(sub)), 10)
        again = sorted(a["id"] for a in alerts(sub) if a["extension"] == "301")
        assert again == first and len(first) == 2
    conn = sqlite3.connect(tmp_path / "smdrd.db")
    assert conn.execute("SELECT count(*) FROM alert_outbox WHERE delivered_at IS NULL").fetchone()[0] == 0


async def test_a_buffer_resent_after_a_restart_raises_nothing_again(tmp_path: Path, broker: Broker) -> None:
    """Three night calls abroad from one extension raise one after_hours alert. After a restart, the PBX re-sends
    the last two: the rules' memory of the calls they saw was gone, so the incident was raised again under a
    new id (and a budget counted the spend twice). The engine now starts knowing the newest stored calls."""
    port = free_port()
    nights = [call(f"901144207946000{i}", at=NIGHT + timedelta(minutes=i), extension="301") for i in range(3)]
    async with subscribed(broker) as sub:
        async with running(settings(tmp_path, broker, port)) as pbx:
            await pbx.send(*nights)
            assert await sub.wait_until(lambda: len(alerts(sub)) >= 1, 10)
            await asyncio.sleep(0.5)
            buffer = pbx.sent[1:]  # the lines as sent: a PBX re-sends the same bytes
        first = [(a["rule"], a["id"]) for a in alerts(sub)]
        assert [rule for rule, _ in first] == ["after_hours"]
        async with running(settings(tmp_path, broker, port)) as pbx:
            await pbx.send_raw(*buffer)
            await pbx.send(call("9011442079460000", at=NIGHT, extension="999"))  # a new call: the line is read
            assert await sub.wait_until(lambda: any(a["extension"] == "999" for a in alerts(sub)), 10)
            await asyncio.sleep(0.5)
        assert [(a["rule"], a["id"]) for a in alerts(sub) if a["extension"] == "301"] == first


async def test_source_down_and_parse_errors_are_operational_alerts(tmp_path: Path, broker: Broker) -> None:
    """A PBX that cannot be reached (tcp-client to a closed port) raises source_down; a source sending garbage
    raises parse_errors. Both without any call."""
    port, dead = free_port(), free_port()
    s = settings(tmp_path, broker, port, alerts={
        "check_interval": 0.1, "source_down": {"minutes": 0.01}, "parse_errors": {"min_lines": 5}})
    s = Settings.model_validate({**s.model_dump(mode="json"), "sources": [
        *s.model_dump(mode="json")["sources"],
        {"name": "dead", "kind": "tcp-client", "format": "avaya-ipo", "host": "127.0.0.1", "port": dead,
         "reconnect_min": 0.1, "reconnect_max": 0.2}]})
    async with subscribed(broker) as sub, running(s) as pbx:
        await pbx.send_raw(*[b"this is not SMDR %d" % i for i in range(10)])
        assert await sub.wait_until(lambda: {a["rule"] for a in alerts(sub)} >= {"source_down", "parse_errors"},
                                    10), alerts(sub)
        got = {a["rule"]: a for a in alerts(sub)}
        assert got["source_down"]["source"] == "dead" and got["source_down"]["call"] is None
        assert got["parse_errors"]["source"] == "ipo" and got["parse_errors"]["severity"] == "warning"
        await asyncio.sleep(0.5)
        assert [a["rule"] for a in alerts(sub)].count("source_down") == 1  # once per outage


async def test_reload_swaps_the_rules(tmp_path: Path, broker: Broker) -> None:
    """SIGHUP with a new [alerts] section: a disabled rule stops alerting at once, without a restart."""
    port = free_port()
    config = tmp_path / "smdrd.toml"
    base = (f'[database]\npath = "{tmp_path / "smdrd.db"}"\ncommit_interval_ms = 10\n'
            f'[http]\nenabled = false\n'
            f'[mqtt]\nenabled = true\nhost = "{broker.host}"\nport = {broker.port}\n'
            f'[[sources]]\nname = "ipo"\nkind = "tcp-server"\nformat = "avaya-ipo"\nlisten = "127.0.0.1:{port}"\n')
    config.write_text(base)
    from smdrd.config import load_config

    s = load_config(config, use_env=False)
    async with subscribed(broker) as sub:
        daemon = Daemon(s, config, features=("alerts", "mqtt"))
        task = asyncio.create_task(daemon.run())
        await daemon.ready.wait()
        pbx = Pbx(daemon, port)
        await pbx.send(call("918095551234", at=NIGHT, extension="301"))
        assert await sub.wait_until(lambda: len(alerts(sub)) == 2, 10)
        config.write_text(base + "[alerts.high_risk]\nenabled = false\n[alerts.after_hours]\nenabled = false\n"
                                 "[alerts.long_call]\nminutes = 1\n")
        await daemon.reload()
        await pbx.send(call("918095551234", at=NIGHT, duration=120, extension="302"))
        assert await sub.wait_until(lambda: len(alerts(sub)) >= 3, 10)
        await asyncio.sleep(0.2)
        assert [a["rule"] for a in alerts(sub)][2:] == ["long_call"]
        assert pbx.writer is not None
        pbx.writer.close()
        daemon.request_stop()
        assert await task == 0
