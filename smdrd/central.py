"""``smdrd central``: the collector that stores what every site publishes into one PostgreSQL store.

Sites publish each journal entry at least once (``[mqtt] publish_journal``, `smdrd.mqtt.Publisher`) to
``<journal_prefix>/<site>/journal/<source>``; their brokers bridge to a central one, or they connect to it
directly. The collector holds a persistent session there (`smdrd.mqtt.Subscription`: a fixed client id, QoS 1,
no clean session), and stores each batch of entries in one transaction (`smdrd.store.postgres.central`); the
broker's PUBACKs go out only after the commit. So an entry is never acknowledged before it is stored; one stored
but not acknowledged (a crash, a lost link) comes again, and the store's identities (the site is part of each)
make the second delivery a no-op. The next batch is received and decoded while one is being stored, and stored
after it: batches are stored and acknowledged one at a time, in the order they came.

What it never does: acknowledge an entry PostgreSQL did not commit, or drop an entry because PostgreSQL is away
(it retries the same batch, holding its acknowledgements, until PostgreSQL is back). A payload that is not a
journal entry is logged and acknowledged: it could never be stored, and would otherwise come back for ever.

The sites' alerts (``[central] alert_topics``) are kept the same way, in the central store's alerts inbox
under ``<site>:<id>`` (two sites' identical calls raise alerts of the same id): delivered at least once by the
site's outbox and its broker, stored once, acknowledged after the commit. People acknowledge and snooze them in
a console over the central store; the site's own inbox keeps its own state.

After each commit the collector publishes, retained, each site's confirmed point (`smdrd.store.confirm`, kept
in the batch's transaction) to ``<journal_prefix>/<site>/confirmed/<client id>``, at most about once a second,
and every site's again at each connection to its broker and every `CONFIRM_HEARTBEAT`, each with its clock's
time: a site whose entries a broker acknowledged and then lost (killed before it saved them) sees the point
stop behind them and sends them again (`smdrd.mqtt.Confirmation`); a collector that stopped saying its points
(stopped for good, replaced, the site moved away) goes stale there and sends nobody back. A clean stop leaves
its points retained (it comes back); ``mosquitto_pub -r -n -t <topic>`` clears one for good.

With an ``[http]`` section it serves ``/metrics`` (what it stored, by site: `smdrd.central_metrics`) and
``/healthz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from paho.mqtt.client import topic_matches_sub

from smdrd import central_metrics
from smdrd.backoff import Backoff
from smdrd.config import Settings
from smdrd.errors import ConfigError
from smdrd.http import HttpServer
from smdrd.http_config import http_token
from smdrd.mqtt import Delivery, Retain, Subscription
from smdrd.mqtt_payloads import (
    confirmed_message,
    confirmed_topic,
    journal_filter,
    read_alert_message,
    read_journal_message,
)
from smdrd.notify import notify, watchdog_interval
from smdrd.store import open_store
from smdrd.store.api import SiteSeen, StoreUnavailable
from smdrd.store.postgres.central import CentralBatch, CentralWriter, EntryRefused

__all__ = ["CentralStats", "Collector", "run_central"]

log = structlog.get_logger("smdrd.central")

#: seconds between two publications of every site's confirmed point, unchanged or not: a site counts a point
#: only while it is fresh (`smdrd.mqtt.CONFIRM_FRESH`, far longer), so a collector that stops saying it (gone
#: for good) stops sending the site back.
CONFIRM_HEARTBEAT = 30.0

#: a delivery decoded: whether it is an alert (else a journal entry), and its fields
Decoded = tuple[bool, dict[str, Any]]


@dataclass(slots=True)
class CentralStats:
    """What the collector stored since it started."""

    lines: int = 0
    calls: int = 0
    #: entries it had already (delivered again)
    known: int = 0
    #: stored lines whose calls a site's newer revision replaced (a rerate or reparse there)
    revised: int = 0
    #: sites' alerts new to the central inbox
    alerts: int = 0
    #: payloads that were not journal entries (or alerts)
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
        self.alert_topics = list(settings.central.alert_topics)
        #: whether a topic is an alert topic, cached: paho's matcher costs about 100 µs a call on a loaded
        #: machine, per delivery, and the topics are few (sites x sources, and the alert rules)
        self.is_alert_topic = functools.lru_cache(maxsize=65_536)(self._matches_alert_topics)
        self.subscription = Subscription(settings.mqtt, [journal_filter(settings.mqtt.journal_prefix),
                                                         *self.alert_topics],
                                         settings.central.client_id, base_dir=base_dir,
                                         batch=settings.central.batch)
        self.stats = CentralStats()
        #: whether the last PostgreSQL connection or transaction succeeded (``/healthz``), and if not, why
        self.store_up = False
        self.store_error: str | None = None
        #: ``/metrics`` and ``/healthz``, served only when the configuration has an ``[http]`` section (enabled):
        #: a collector beside a site's daemon must not take the daemon's default port unasked.
        self.http: HttpServer | None = None
        if "http" in settings.model_fields_set and settings.http.enabled:
            self.http = HttpServer(settings.http.listen, http_token(settings.http), config=settings.http)
        self.metrics = central_metrics.install(self)
        #: each site's confirmed point, as committed (published retained to the site)
        self.confirmed: dict[str, int] = {}
        self._confirmed_changed = asyncio.Event()

    async def run(self) -> None:
        """Serve ``[http]`` (if set), open the store (waiting for PostgreSQL), then subscribe and store until
        cancelled."""
        if self.http is not None:
            await self.http.start()
        writer = CentralWriter(self.url, calls_days=self.settings.retention.calls_days)
        try:
            await self._open(writer)
            await self._seed()
            await self._read_confirmed(writer)
            await self.subscription.run(lambda batch: self._store(writer, batch), self._decode,
                                        session=self._publish_confirmed)
        finally:
            await writer.close()
            if self.http is not None:
                await self.http.close()

    async def _seed(self) -> None:
        """The sites the store holds, with their newest line, for the metrics (read once, in a thread)."""

        def read() -> list[SiteSeen]:
            reader = open_store(self.url).reports()
            try:
                return reader.sites()
            finally:
                reader.close()

        try:
            self.metrics.seed(await asyncio.to_thread(read))
        except Exception as exc:  # only metrics, whatever the store's driver raised: they fill in as batches come
            log.warning("central.sites_unread", error=str(exc))

    async def _read_confirmed(self, writer: CentralWriter) -> None:
        """Every site's confirmed point, to publish at each connection (waiting for PostgreSQL)."""
        backoff = Backoff(0.5, 30.0)
        while True:
            try:
                self.confirmed.update(await writer.confirmed())
                return
            except StoreUnavailable as exc:
                delay = backoff.next_delay()
                log.warning("central.store_unavailable", error=str(exc), retry_in=round(delay, 2))
                await asyncio.sleep(delay)

    async def _publish_confirmed(self, publish: Retain) -> None:
        """Beside each connection: every site's confirmed point, retained, with this clock's time; then each one
        that moved, at most about once a second, and all of them again every `CONFIRM_HEARTBEAT`. A publish that
        failed (its acknowledgement late) is tried again a second later; the connection's end cancels this (the
        next one publishes them all again)."""
        prefix, collector = self.settings.mqtt.journal_prefix, self.subscription.client_id
        sent: dict[str, int] = {}
        beat = -math.inf
        while True:
            self._confirmed_changed.clear()
            if time.monotonic() - beat >= CONFIRM_HEARTBEAT:
                beat, sent = time.monotonic(), {}
            todo = {site: point for site, point in self.confirmed.items() if sent.get(site) != point}
            if not todo:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._confirmed_changed.wait(),
                                           max(0.0, beat + CONFIRM_HEARTBEAT - time.monotonic()))
                continue
            at = time.time()
            results = await asyncio.gather(*(publish(confirmed_topic(prefix, site, collector),
                                                     confirmed_message(site, point, at))
                                             for site, point in todo.items()), return_exceptions=True)
            for (site, point), result in zip(todo.items(), results, strict=True):
                if isinstance(result, Exception):
                    log.warning("central.confirmed_unpublished", site=site, confirmed=point, error=str(result))
                else:
                    sent[site] = point
            await asyncio.sleep(min(1.0, CONFIRM_HEARTBEAT))

    async def _open(self, writer: CentralWriter) -> None:
        backoff = Backoff(0.5, 30.0)
        while True:
            try:
                await writer.open()
                self.store_up, self.store_error = True, None
                notify("READY=1", "STATUS=storing what the sites publish")
                log.info("central.started", client_id=self.subscription.client_id,
                         topics=self.subscription.topics)
                return
            except StoreUnavailable as exc:
                self.store_up, self.store_error = False, str(exc)
                delay = backoff.next_delay()
                log.warning("central.store_unavailable", error=str(exc), retry_in=round(delay, 2))
                await asyncio.sleep(delay)

    def _matches_alert_topics(self, topic: str) -> bool:
        return any(topic_matches_sub(f, topic) for f in self.alert_topics)

    def _decode(self, d: Delivery) -> Decoded | None:
        """A delivery as the writer takes it (an alert or not, and its fields), or None (logged, counted) for a
        payload that is neither: decoded as it arrives, while the batch before it is being stored."""
        alert = self.is_alert_topic(d.topic)
        try:
            return alert, read_alert_message(d.payload) if alert else read_journal_message(d.payload)
        except (ValueError, TypeError, KeyError) as exc:
            self.stats.rejected += 1
            log.error("central.bad_alert" if alert else "central.bad_entry", topic=d.topic, error=str(exc),
                      payload=d.payload[:200])
            return None

    async def _store(self, writer: CentralWriter, batch: list[Decoded | None]) -> None:
        """Store ``batch`` (retrying until PostgreSQL takes it); the subscription acknowledges it after."""
        entries = [fields for alert, fields in filter(None, batch) if not alert]
        alerts = [fields for alert, fields in filter(None, batch) if alert]
        if not entries and not alerts:
            return
        try:
            await self._commit(writer, entries, alerts)
        except EntryRefused:
            # one at a time: the refused one is left out, every other one is stored
            for one, one_alert in [*(([e], []) for e in entries), *(([], [a]) for a in alerts)]:
                try:
                    await self._commit(writer, one, one_alert)
                except EntryRefused as exc:
                    self.stats.rejected += 1
                    item = (one or one_alert)[0]
                    log.error("central.entry_refused", site=item.get("site"), source=item.get("source"),
                              line=item.get("id"), error=str(exc))
                    if one:  # never storable: its site's confirmed point passes it all the same
                        with contextlib.suppress(EntryRefused):
                            await self._commit(writer, [], [], passed=one)

    async def _commit(self, writer: CentralWriter, entries: list[dict[str, Any]],
                      alerts: list[dict[str, Any]], *, passed: list[dict[str, Any]] | None = None) -> None:
        backoff = Backoff(0.1, 10.0)
        while True:
            began = time.perf_counter()
            try:
                result: CentralBatch = await writer.store(entries, alerts, passed=passed or ())
                self.store_up, self.store_error = True, None
                break
            except StoreUnavailable as exc:
                self.store_up, self.store_error = False, str(exc)
                self.stats.retries += 1
                delay = backoff.next_delay()
                log.warning("central.store_failed", error=str(exc), entries=len(entries), retry_in=round(delay, 2))
                await asyncio.sleep(delay)
        self.stats.lines += result.lines
        self.stats.calls += result.calls
        self.stats.known += result.known
        self.stats.revised += result.revised
        self.stats.alerts += sum(result.alerts_by.values())
        self.metrics.stored(result, entries, time.perf_counter() - began)
        if result.confirmed_by:
            self.confirmed.update(result.confirmed_by)
            self._confirmed_changed.set()


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
                 known=collector.stats.known, revised=collector.stats.revised)

    asyncio.run(main())
    return 0


async def _watchdog(interval: float) -> None:
    """Tell systemd the event loop is alive (``WatchdogSec``): a stuck loop, not a busy one, gets restarted."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval)
