"""``smdrd central``: the collector that stores what every site publishes into one PostgreSQL store.

Sites publish each journal entry at least once (``[mqtt] publish_journal``, `smdrd.mqtt.Publisher`) to
``<journal_prefix>/<site>/journal/<source>``; their brokers bridge to a central one, or they connect to it
directly. The collector holds a persistent session there (`smdrd.mqtt.Subscription`: a fixed client id, QoS 1,
no clean session), and stores each batch of entries in one transaction (`smdrd.store.postgres.central`); the
broker's PUBACKs go out only after the commit. So an entry is never acknowledged before it is stored; one
stored but not acknowledged (a crash, a lost link) comes again, and the store's identities (the site is part of
each) make the second delivery a no-op.

What it never does: acknowledge an entry PostgreSQL did not commit, or drop an entry because PostgreSQL is away
(it retries the same batch, holding its acknowledgements, until PostgreSQL is back). A payload that is not a
journal entry is logged and acknowledged: it could never be stored, and would otherwise come back for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from smdrd.backoff import Backoff
from smdrd.config import Settings
from smdrd.errors import ConfigError
from smdrd.mqtt import Delivery, Subscription
from smdrd.mqtt_payloads import journal_filter, read_journal_message
from smdrd.notify import notify, watchdog_interval
from smdrd.store.api import StoreUnavailable
from smdrd.store.postgres.central import CentralBatch, CentralWriter, EntryRefused

__all__ = ["CentralStats", "Collector", "run_central"]

log = structlog.get_logger("smdrd.central")


@dataclass(slots=True)
class CentralStats:
    """What the collector stored since it started."""

    lines: int = 0
    calls: int = 0
    #: entries it had already (delivered again)
    known: int = 0
    #: payloads that were not journal entries
    rejected: int = 0
    #: commits that failed and were retried
    retries: int = 0


class Collector:
    """Subscribes at ``[mqtt]``'s broker and stores every site's entries into ``[database] url``; `run` until
    cancelled.

    Raises:
        ConfigError: ``[database] url`` is not set.
    """

    def __init__(self, settings: Settings, *, base_dir: Path | None = None) -> None:
        if not settings.database.url:
            raise ConfigError(None, [("database.url", "smdrd central stores into PostgreSQL: set [database] url = "
                                                      "\"postgresql://...\"")])
        self.settings = settings
        self.url = settings.database.url
        self.subscription = Subscription(settings.mqtt, [journal_filter(settings.mqtt.journal_prefix)],
                                         settings.central.client_id, base_dir=base_dir,
                                         batch=settings.central.batch)
        self.stats = CentralStats()

    async def run(self) -> None:
        """Open the store (waiting for PostgreSQL), then subscribe and store until cancelled."""

        writer = CentralWriter(self.url)
        await self._open(writer)
        try:
            await self.subscription.run(lambda batch: self._store(writer, batch))
        finally:
            await writer.close()

    async def _open(self, writer: CentralWriter) -> None:
        backoff = Backoff(0.5, 30.0)
        while True:
            try:
                await writer.open()
                notify("READY=1", "STATUS=storing what the sites publish")
                log.info("central.started", client_id=self.subscription.client_id,
                         topics=self.subscription.topics)
                return
            except StoreUnavailable as exc:
                delay = backoff.next_delay()
                log.warning("central.store_unavailable", error=str(exc), retry_in=round(delay, 2))
                await asyncio.sleep(delay)

    async def _store(self, writer: CentralWriter, batch: list[Delivery]) -> None:
        """Store ``batch`` (retrying until PostgreSQL takes it); the subscription acknowledges it after."""
        entries: list[dict[str, Any]] = []
        for d in batch:
            try:
                entries.append(read_journal_message(d.payload))
            except (ValueError, TypeError, KeyError) as exc:
                self.stats.rejected += 1
                log.error("central.bad_entry", topic=d.topic, error=str(exc), payload=d.payload[:200])
        if not entries:
            return
        try:
            await self._commit(writer, entries)
        except EntryRefused:
            for entry in entries:  # one at a time: the refused one is left out, every other one is stored
                try:
                    await self._commit(writer, [entry])
                except EntryRefused as exc:
                    self.stats.rejected += 1
                    log.error("central.entry_refused", site=entry.get("site"), source=entry.get("source"),
                              line=entry.get("id"), error=str(exc))

    async def _commit(self, writer: CentralWriter, entries: list[dict[str, Any]]) -> None:
        backoff = Backoff(0.1, 10.0)
        while True:
            try:
                result: CentralBatch = await writer.store(entries)
                break
            except StoreUnavailable as exc:
                self.stats.retries += 1
                delay = backoff.next_delay()
                log.warning("central.store_failed", error=str(exc), entries=len(entries), retry_in=round(delay, 2))
                await asyncio.sleep(delay)
        self.stats.lines += result.lines
        self.stats.calls += result.calls
        self.stats.known += result.known


def run_central(settings: Settings, config_path: Path | None = None) -> int:
    """Run the collector until SIGTERM or SIGINT (systemd's stop): entries stored but not yet acknowledged are
    delivered again at the next start, and stored once."""
    collector = Collector(settings, base_dir=config_path.parent if config_path else None)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
        interval = watchdog_interval()
        watchdog = asyncio.create_task(_watchdog(interval)) if interval else None
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await collector.run()
        finally:
            notify("STOPPING=1")
            if watchdog is not None:
                watchdog.cancel()
        log.info("central.stopped", lines=collector.stats.lines, calls=collector.stats.calls,
                 known=collector.stats.known)

    asyncio.run(main())
    return 0


async def _watchdog(interval: float) -> None:
    """Tell systemd the event loop is alive (``WatchdogSec``): a stuck loop, not a busy one, gets restarted."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)
