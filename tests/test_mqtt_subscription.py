"""`smdrd.mqtt.Subscription` against a real Mosquitto: the next batch is received and decoded while the handler
keeps the previous one, yet batches are handed over one at a time, in order, and each is acknowledged only after
the handler returned; what was not acknowledged comes again, in order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiomqtt

from smdrd.config import MqttConfig
from smdrd.mqtt import Delivery, Subscription
from smdrd.testing import Broker
from tests.test_alerts_daemon import broker  # noqa: F401  (a fixture)

MESSAGES = 30


def subscription(b: Broker, batch: int) -> Subscription:
    config = MqttConfig(enabled=True, host=b.host, port=b.port, reconnect_min=0.1, reconnect_max=1.0)
    return Subscription(config, ["t/#"], "test-subscription", batch=batch)


async def until(condition: Callable[[], bool], within: float = 20.0) -> bool:
    for _ in range(int(within / 0.02)):
        if condition():
            return True
        await asyncio.sleep(0.02)
    return condition()


async def publish(b: Broker, first: int, count: int) -> None:
    async with aiomqtt.Client(b.host, b.port) as client:
        for i in range(first, first + count):
            await client.publish(f"t/{i % 3}", f"m{i}".encode(), qos=1)


async def session(b: Broker) -> None:
    """The subscription's session at the broker, then no client on it: the broker queues for it."""
    sub = subscription(b, 10)
    task = asyncio.create_task(sub.run(_ignore, _payload))
    assert await until(lambda: sub.connected)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _payload(d: Delivery) -> str:
    return d.payload.decode()


async def _ignore(batch: list[str]) -> None:
    pass


async def test_the_next_batch_is_decoded_while_one_is_held_and_nothing_unkept_is_acknowledged(
        broker: Broker) -> None:  # noqa: F811
    await session(broker)
    await publish(broker, 0, MESSAGES)
    decoded: list[str] = []
    handed: list[list[str]] = []
    release = asyncio.Event()

    def decode(d: Delivery) -> str:
        decoded.append(d.payload.decode())
        return decoded[-1]

    async def hold(batch: list[str]) -> None:
        handed.append(batch)
        await release.wait()  # never released: the handler is still keeping batch 1 when the client stops

    sub = subscription(broker, 10)
    task = asyncio.create_task(sub.run(hold, decode))
    try:
        assert await until(lambda: len(decoded) >= 20), decoded
        await asyncio.sleep(0.3)  # more has arrived meanwhile: not taken while two batches are in hand
        assert len(handed) == 1 and handed[0] == [f"m{i}" for i in range(len(handed[0]))]
        assert decoded == [f"m{i}" for i in range(len(handed[0]) + 10)]
        assert sub.stats.acknowledged == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    # Nothing was acknowledged: all of it comes again, in order, to the next client of the session.
    kept: list[str] = []

    async def keep(batch: list[str]) -> None:
        kept.extend(batch)

    again = subscription(broker, 10)
    task = asyncio.create_task(again.run(keep, _payload))
    try:
        assert await until(lambda: len(kept) >= MESSAGES), kept
        assert kept == [f"m{i}" for i in range(MESSAGES)]
        assert await until(lambda: again.stats.acknowledged == MESSAGES)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_batches_are_handed_over_one_at_a_time_in_order_each_after_the_previous_was_acknowledged(
        broker: Broker) -> None:  # noqa: F811
    await session(broker)
    await publish(broker, 0, MESSAGES)
    kept: list[str] = []
    acknowledged_before: list[tuple[int, int]] = []
    sub = subscription(broker, 4)

    async def keep(batch: list[str]) -> None:
        acknowledged_before.append((sub.stats.acknowledged, len(kept)))
        await asyncio.sleep(0.05)  # a store's time: the next batch is being decoded meanwhile
        kept.extend(batch)

    task = asyncio.create_task(sub.run(keep, _payload))
    try:
        await publish(broker, MESSAGES, MESSAGES)  # some while it runs
        assert await until(lambda: sub.stats.acknowledged == 2 * MESSAGES), kept
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert kept == [f"m{i}" for i in range(2 * MESSAGES)]
    # every batch was handed over once the one before it was kept and acknowledged, never beside it
    assert all(acked == before for acked, before in acknowledged_before)
    assert 1 < sub.stats.batches <= 2 * MESSAGES
