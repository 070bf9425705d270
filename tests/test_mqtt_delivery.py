"""Alert delivery through a real Mosquitto broker: outages, daemon restarts, SIGKILL and the last will."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from smdrd.config import MqttConfig
from smdrd.daemon import Daemon
from smdrd.mqtt import Publisher
from smdrd.record import CallRecord
from smdrd.testing import Broker, Subscriber, free_port
from tests.test_alerts_daemon import (
    NIGHT,
    alerts,
    broker,  # noqa: F401  (a fixture)
    call,
    require_broker,
    running,
    settings,
    subscribed,
)


async def mqtt_connected(daemon: Daemon, within: float = 10.0) -> None:
    alerts_ = daemon.features.mqtt
    assert alerts_ is not None
    for _ in range(int(within / 0.02)):
        if alerts_.publisher is not None and alerts_.publisher.connected:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the publisher did not connect")


def pending(tmp_path: Path) -> int:
    conn = sqlite3.connect(tmp_path / "smdrd.db")
    try:
        return int(conn.execute("SELECT count(*) FROM alert_outbox WHERE delivered_at IS NULL").fetchone()[0])
    finally:
        conn.close()


async def wait_pending(tmp_path: Path, n: int, within: float = 10.0) -> int:
    for _ in range(int(within / 0.05)):
        got = pending(tmp_path)
        if got == n:
            return got
        await asyncio.sleep(0.05)
    return pending(tmp_path)


ROOT = Path(__file__).resolve().parents[1]


def night_calls(extension_base: int, n: int) -> list[CallRecord]:
    # One alert each: a look-alike destination at night from a fresh extension (no snooze between them).
    return [call("918095551234", at=NIGHT + timedelta(seconds=i), extension=str(extension_base + i))
            for i in range(n)]


@pytest.fixture
def persistent_broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path / "pbroker", persistence=True, binary=require_broker())
    b.start()
    yield b
    b.stop()


def persistent_subscriber(b: Broker) -> Subscriber:
    return Subscriber(b.host, b.port, ["smdrd/alert/#"], client_id="test-alert-consumer", persistent=True)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
async def test_broker_outage_every_alert_arrives_exactly_once(
        tmp_path: Path, persistent_broker: Broker, how: signal.Signals) -> None:
    """The broker goes away (stopped, or killed) while calls keep raising alerts, then comes back: every alert
    raised before, during and after the outage reaches a QoS-1 subscriber exactly once, oldest first. A user
    would see alerts lost while the broker was down, or doubled when it returned."""
    b = persistent_broker
    sub = persistent_subscriber(b)
    sub_task = asyncio.create_task(sub.run())
    port = free_port()
    try:
        await asyncio.wait_for(sub.subscribed.wait(), 10)
        await asyncio.sleep(1.2)  # the broker saves the subscriber's session (autosave every second)
        async with running(settings(tmp_path, b, port, alerts={"after_hours": {"enabled": False}})) as pbx:
            await pbx.send(*night_calls(3000, 20))
            assert await sub.wait_until(lambda: len(sub.messages) >= 20, 10)
            b.stop(how)
            await pbx.send(*night_calls(4000, 30))  # raised while the broker is down
            assert await wait_pending(tmp_path, 30) == 30
            await asyncio.sleep(0.3)
            b.start()
            await pbx.send(*night_calls(5000, 10))
            assert await sub.wait_until(lambda: len(sub.messages) >= 60, 15), len(sub.messages)
            assert await wait_pending(tmp_path, 0) == 0
            await asyncio.sleep(0.3)  # a duplicate would arrive by now
            runtime = pbx.daemon.features.mqtt
            assert runtime is not None and runtime.publisher is not None
            stats = runtime.publisher.stats
        # The daemon sent each alert once, and marked each delivered once acknowledged...
        assert (stats.alerts_sent, stats.alerts_published) == (60, 60)
        # ...and the subscriber has every one of them. (A broker restarted from its persistence file may deliver
        # a message it had already delivered once more: QoS 1 is at least once, and the id de-duplicates.)
        ids = [json.loads(m.payload)["id"] for m in sub.messages]
        assert len(set(ids)) == 60 and set(Counter(ids)) == set(ids)
        # oldest first: the outage's alerts arrive in the order their calls were stored
        exts = [int(json.loads(m.payload)["extension"]) for m in sub.messages]
        outage = [e for e in exts if 4000 <= e < 5000]
        assert outage == sorted(outage)
    finally:
        sub_task.cancel()
        await asyncio.gather(sub_task, return_exceptions=True)


async def test_daemon_restarted_with_alerts_pending_loses_none(tmp_path: Path, broker: Broker) -> None:  # noqa: F811
    """The broker is down, alerts are raised and the daemon stops with them pending; it starts again after the
    broker is back: every pending alert is delivered, once. A user would lose the alerts of a night when the
    broker and the daemon were both restarted."""
    port = free_port()
    broker.stop()
    s = settings(tmp_path, broker, port, alerts={"after_hours": {"enabled": False}})
    async with running(s) as pbx:
        await pbx.send(*night_calls(6000, 25))
        assert await wait_pending(tmp_path, 25) == 25
    assert pending(tmp_path) == 25
    broker.start()
    async with subscribed(broker, ("smdrd/alert/#",)) as sub:
        async with running(s):
            assert await sub.wait_until(lambda: len(sub.messages) >= 25, 10)
            assert await wait_pending(tmp_path, 0) == 0
            await asyncio.sleep(0.3)
        got = [a["extension"] for a in alerts(sub)]
        assert got == [str(6000 + i) for i in range(25)]  # all, once each, oldest first


async def test_clean_stop_sets_status_offline_and_start_sets_online(tmp_path: Path, broker: Broker) -> None:  # noqa: F811
    """The retained status topic says online while the daemon runs and offline after SIGTERM, so a dashboard
    that subscribes late still sees the truth."""
    port = free_port()
    async with running(settings(tmp_path, broker, port)) as pbx:
        await mqtt_connected(pbx.daemon)
        async with subscribed(broker, ("smdrd/status",)) as late:
            assert await late.wait_until(lambda: bool(late.messages), 5)
            assert late.messages[0].payload == b"online" and late.messages[0].retain
    async with subscribed(broker, ("smdrd/status",)) as after:
        assert await after.wait_until(lambda: bool(after.messages), 5)
        assert after.messages[-1].payload == b"offline" and after.messages[-1].retain


def _command(config: Path) -> list[str]:
    return [sys.executable, "-m", "smdrd", "run", "--config", str(config)]


async def test_sigkill_of_the_daemon_leaves_offline_on_the_status_topic(tmp_path: Path,
                                                                       broker: Broker) -> None:  # noqa: F811
    """SIGKILL of a real `smdrd run` process: the broker publishes the last will, and the retained status is
    offline. A monitoring dashboard would otherwise show a dead daemon as online for ever."""
    config = tmp_path / "smdrd.toml"
    config.write_text(f'[database]\npath = "{tmp_path / "smdrd.db"}"\n[http]\nenabled = false\n'
                      f'[mqtt]\nenabled = true\nhost = "{broker.host}"\nport = {broker.port}\n'
                      f'topic_prefix = "site/hq"\n')
    proc = subprocess.Popen(_command(config), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,  # noqa: ASYNC220
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        async with subscribed(broker, ("site/hq/status",)) as sub:
            assert await sub.wait_until(lambda: any(m.payload == b"online" for m in sub.messages), 15)
            proc.send_signal(signal.SIGKILL)
            proc.wait(5)
            assert await sub.wait_until(lambda: sub.messages[-1].payload == b"offline", 10)
        async with subscribed(broker, ("site/hq/status",)) as late:
            assert await late.wait_until(lambda: bool(late.messages), 5)
            assert late.messages[-1].payload == b"offline" and late.messages[-1].retain
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


async def test_publish_calls_sends_every_rated_call(tmp_path: Path, broker: Broker) -> None:  # noqa: F811
    """[mqtt] publish_calls = true: each stored call appears on <prefix>/call with its rating."""
    port = free_port()
    async with subscribed(broker, ("smdrd/call",)) as sub:
        async with running(settings(tmp_path, broker, port, mqtt={"publish_calls": True})) as pbx:
            await pbx.send(call("912125550100"), call("9011442079460000", extension="202"))
            assert await sub.wait_until(lambda: len(sub.messages) >= 2, 10)
        calls = [json.loads(m.payload) for m in sub.messages]
        assert [(c["extension"], c["e164"], c["call_class"]) for c in calls] == [
            ("201", "+12125550100", "national"), ("202", "+442079460000", "international")]
        assert calls[0]["cost"] == "0.00" and calls[0]["uid"].startswith("avaya-ipo:")  # the tariff's decimals


def call_subscriber(b: Broker) -> Subscriber:
    return Subscriber(b.host, b.port, ["smdrd/call"], client_id="test-call-consumer", persistent=True)


async def test_the_call_feed_loses_no_call_across_a_broker_outage_and_a_daemon_restart(
        tmp_path: Path, persistent_broker: Broker) -> None:
    """publish_calls without the alerts feature: calls stored while the broker is down, and while the daemon is
    stopped, are published when both are back, each at least once, in the order they were stored; calls the
    broker had acknowledged before the restart are not sent again. A queue in memory (the old feed) lost the
    outage's calls at the restart, and dropped the oldest past 10,000."""
    b = persistent_broker
    sub = call_subscriber(b)
    sub_task = asyncio.create_task(sub.run())
    port = free_port()
    cfg = settings(tmp_path, b, port, mqtt={"publish_calls": True})
    numbers = [f"9011442079460{i:03d}" for i in range(30)]
    try:
        await asyncio.wait_for(sub.subscribed.wait(), 10)
        await asyncio.sleep(1.2)  # the broker saves the subscriber's session (autosave every second)
        async with running(cfg, features=("mqtt",)) as pbx:
            await pbx.send(*(call(n, at=NIGHT + timedelta(minutes=i)) for i, n in enumerate(numbers[:10])))
            assert await sub.wait_until(lambda: len(sub.messages) >= 10, 10)
            b.stop(signal.SIGTERM)
            await pbx.send(*(call(n, at=NIGHT + timedelta(minutes=10 + i)) for i, n in enumerate(numbers[10:25])))
            for _ in range(200):
                if pbx.daemon.writer.stats.calls >= 25:
                    break
                await asyncio.sleep(0.05)
            assert pbx.daemon.writer.stats.calls == 25
        # The daemon is stopped with 15 calls never published; the broker comes back first.
        b.start()
        async with running(cfg, features=("mqtt",)) as pbx:
            await pbx.send(*(call(n, at=NIGHT + timedelta(minutes=25 + i)) for i, n in enumerate(numbers[25:])))
            # (Counted by uid: the restarted broker may deliver again what it had delivered before.)
            assert await sub.wait_until(lambda: len({json.loads(m.payload)["uid"] for m in sub.messages}) >= 30,
                                        15), len(sub.messages)
            feed = pbx.daemon.features.mqtt
            assert feed is not None and feed.publisher is not None
            stats = feed.publisher.stats
            for _ in range(100):  # the last acknowledgements are counted as they complete
                if stats.calls_published >= 20:
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)  # a re-send of the first ten would be counted by now
            assert stats.calls_published == 20  # the 15 of the outage, the 5 new: not the first 10
        # (A broker restarted from its persistence file may deliver again what it had delivered: QoS 1 is at
        # least once, and the uid de-duplicates.)
        got: list[dict[str, Any]] = []
        for c in (json.loads(m.payload) for m in sub.messages):
            if c["uid"] not in {g["uid"] for g in got}:
                got.append(c)  # the first arrival of each
        assert [c["e164"] for c in got] == ["+" + n[4:] for n in numbers]  # every one, in the order stored
        assert all("auth_code" not in c and c["site"] == cfg.site.name for c in got)
    finally:
        sub_task.cancel()
        await asyncio.gather(sub_task, return_exceptions=True)


async def test_username_and_password_file(tmp_path: Path) -> None:
    """A broker that requires a login: the password is read from password_file (trailing newline ignored);
    a wrong one keeps the publisher disconnected and the alerts pending."""
    require_broker()
    b = Broker(tmp_path / "authbroker", users={"smdrd": "s3cret pass"})
    b.start()
    try:
        secret = tmp_path / "mqtt.password"
        secret.write_text("s3cret pass\n")
        cfg = MqttConfig(enabled=True, host=b.host, port=b.port, username="smdrd", password_file=secret,
                         reconnect_min=0.05, reconnect_max=0.1)

        class Empty:
            async def pending(self, limit: int = 100, after: int = 0) -> list[object]:
                return []

            async def mark_delivered(self, rows: object, at: float | None = None) -> None:
                return None

        for password, expected in (("s3cret pass\n", True), ("wrong\n", False)):
            secret.write_text(password)
            pub = Publisher(cfg, Empty())  # type: ignore[arg-type]
            task = asyncio.create_task(pub.run())
            for _ in range(40):
                if pub.connected:
                    break
                await asyncio.sleep(0.05)
            assert pub.connected is expected
            if not expected:
                assert pub.stats.connect_failures >= 1 and pub.stats.last_error
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        b.stop()
