"""The MQTT broker is killed and restarted while alerts are being raised, through a real daemon process."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from smdrd.parsers.avaya_ipo import AvayaIPOfficeParser
from smdrd.record import CallRecord
from smdrd.testing import Broker, DaemonProcess, Subscriber, free_port, tcp_server_source
from tests.faults.conftest import Ledger, base_config, push_lines, query, scaled, wait_stored
from tests.test_alerts_daemon import NIGHT, call, require_broker

pytestmark = pytest.mark.faults


@pytest.fixture
def persistent_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker that saves its sessions every second, as a production Mosquitto does."""
    b = Broker(tmp_path / "broker", persistence=True, binary=require_broker())
    b.start()
    yield b
    b.stop()


def alert_lines(first: int, n: int) -> list[bytes]:
    """``n`` lines, each a night call to a high-risk destination from its own extension: one alert each."""
    lines = []
    for i in range(first, first + n):
        record = call("90018095551234", at=NIGHT + timedelta(seconds=i), extension=str(1000 + i))
        record = CallRecord(**{f: getattr(record, f) for f in record.__dataclass_fields__} | {
            "call_id": str(2_000_000 + i)})
        lines.append(AvayaIPOfficeParser.render(record)[0].encode())
    return lines


async def test_broker_killed_and_restarted_while_alerts_are_raised_every_alert_arrives(
        tmp_path: Path, daemons: list[DaemonProcess], persistent_broker: Broker) -> None:
    """Alert-raising calls stream in at 20 a second; the broker is SIGKILLed, stays down for 3 s, and comes
    back. Every alert raised (one per call: none twice by id in the outbox) is acknowledged by the broker and
    reaches a QoS-1 subscriber; a redelivery by the restarted broker carries the same id, so a consumer drops
    it. A user would see fraud alerts lost during a broker restart, or raised twice."""
    b = persistent_broker
    port = free_port()
    config = base_config(tmp_path, [tcp_server_source("ipo", port)],
                         database={"commit_interval_ms": 10},
                         mqtt={"enabled": True, "host": b.host, "port": b.port, "reconnect_min": 0.1,
                               "reconnect_max": 0.5},
                         alerts={"after_hours": {"enabled": False}})
    d = DaemonProcess(tmp_path, config)
    daemons.append(d)
    sub = Subscriber(b.host, b.port, ["smdrd/alert/#"], client_id="fault-consumer", persistent=True)
    sub_task = asyncio.create_task(sub.run())
    try:
        await asyncio.wait_for(sub.subscribed.wait(), 10)
        await asyncio.sleep(1.2)  # the broker saves the subscriber's session (autosave every second)
        d.start()
        d.wait_event("mqtt.connected")
        n = scaled(200, 120)
        ledger = Ledger("ipo")
        sender = asyncio.create_task(push_lines(port, alert_lines(0, n), 20, ledger, burst=1))
        await asyncio.sleep(n / 20 * 0.3)
        b.stop()  # SIGKILL
        await asyncio.sleep(3.0)
        b.start()
        await sender
        await wait_stored(d.db, "ipo", n)
        received = await sub.wait_until(lambda: len({json.loads(m.payload)["id"] for m in sub.messages}) >= n, 30)
        await asyncio.sleep(0.5)  # a late duplicate would arrive by now
    finally:
        sub_task.cancel()
        await asyncio.gather(sub_task, return_exceptions=True)
    await d.aterminate()
    ledger.check(d.db)
    outbox = query(d.db, "SELECT alert_id, delivered_at FROM alert_outbox")
    ids = Counter(json.loads(m.payload)["id"] for m in sub.messages)
    redelivered = sum(c - 1 for c in ids.values())
    print(f"alerts: {n} calls, {len(outbox)} in the outbox, {len(ids)} distinct ids received, "
          f"{redelivered} redelivered by the restarted broker, {len(d.events('mqtt.connected'))} connections")
    assert received, f"only {len(ids)} of {n} alerts arrived"
    assert len(outbox) == n, "one alert per call, none twice"
    assert all(delivered is not None for _, delivered in outbox), "alerts left unacknowledged in the outbox"
    assert set(ids) == {alert_id for alert_id, _ in outbox}
    assert len(d.events("mqtt.connected")) >= 2, "the broker outage was not felt"
    d.assert_clean_log()
