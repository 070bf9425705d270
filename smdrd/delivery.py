"""Delivery over MQTT: the daemon's feature that runs the `smdrd.mqtt.Publisher` (``[mqtt]``).

Its own feature, independent of the alert rules: it delivers whatever the alert outbox holds (alerts committed
with their calls, operational alerts) and, with ``[mqtt] publish_calls``, every stored call from the journal's
call feed, at least once (`smdrd.store.api.CallFeed`); with ``[mqtt] publish_journal``, every journal entry for
a central collector (`smdrd.central`). Built by `smdrd.daemon.Daemon.build` as ``mqtt`` after
``alerts`` and ``metrics``, from which it takes two optional hooks: the alerts feature's delivered count (its
pending-alerts gauge) and the metrics object (the connection gauge).

A commit wakes the publisher (new alerts, new calls); a reload with a changed ``[mqtt]`` restarts it with the
new settings; ``enabled = false`` stops it. The outbox and the feed keep what was not delivered meanwhile.

With ``[mqtt] publish_state`` (or ``homeassistant``) it also keeps the retained state topics current: the site's
figures (the departments report of today and of this month, read in a thread), each source's health (as
``/healthz`` judges it) and the last outbound call; with ``homeassistant``, the discovery configs
(`smdrd.homeassistant`). The publisher re-sends only what changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import structlog

from smdrd.journal import JournalEntry
from smdrd.mqtt_payloads import (
    CallShape,
    DepartmentFigures,
    SiteFigures,
    encode,
    source_message,
    state_message,
)
from smdrd.store import open_store
from smdrd.store.api import Store

if TYPE_CHECKING:
    from smdrd.alerts.feature import Alerts
    from smdrd.config import Settings
    from smdrd.daemon import Daemon
    from smdrd.metrics import Metrics
    from smdrd.mqtt import Publisher

__all__ = ["MqttDelivery", "install"]

log = structlog.get_logger("smdrd.delivery")

#: the retained state is refreshed at least this often (a new day, a new month, a call re-rated), in seconds.
STATE_REFRESH = 60.0
#: how often each source's retained health is looked at, in seconds (unchanged health is not sent again).
SOURCE_CHECK = 5.0


def call_shape(settings: Settings) -> CallShape:
    """The call payload's shape for ``settings``: site, the tariff's decimals, departments."""
    from smdrd.alerts.feature import departments_of

    directory, _ = departments_of(settings)
    site = settings.site.name

    def department(extension: str, day: str) -> str | None:
        from smdrd.reports.config import UNASSIGNED

        name = directory.department(extension, day, site)  # at this box's site, as reports resolve its calls
        return None if name == UNASSIGNED else name

    return CallShape(settings.site.name, settings.tariff.decimals, settings.site.tz, department)


def site_figures(store: Store, settings: Settings, now: float) -> SiteFigures:
    """Today's and this month's outbound figures, from the departments report (blocking: run it in a thread)."""
    from smdrd.reports import Query, run_report
    from smdrd.reports.queries import context_from

    ctx = context_from(settings)
    today = datetime.fromtimestamp(now, settings.site.tz).date()
    reader = store.reports()
    try:
        day = run_report(reader, Query("departments", today, today), ctx)
        month = run_report(reader, Query("departments", today.replace(day=1), today), ctx)
    finally:
        reader.close()
    configured = {d.name for d in settings.departments}
    monthly = {row["department"]: row["cost"] for row in month.rows}
    departments = [DepartmentFigures(row["department"], row["calls"], row["cost"],
                                     monthly.get(row["department"], Decimal(0)))
                   for row in day.rows if row["department"] in configured]
    day_totals, month_totals = day.totals or {}, month.totals or {}
    return SiteFigures(today, day_totals.get("calls", 0), day_totals.get("cost", Decimal(0)),
                       month_totals.get("cost", Decimal(0)), departments)


class MqttDelivery:
    """The publisher of one daemon, restarted when ``[mqtt]`` changes; `run` is its task."""

    def __init__(self, daemon: Daemon, *, alerts: Alerts | None = None, metrics: Metrics | None = None) -> None:
        self.daemon = daemon
        self.config = daemon.settings.mqtt
        self.site = daemon.settings.site.name
        store = open_store(daemon.settings.database.target)
        self.store = store
        self.outbox = store.outbox()
        self.feed = store.call_feed()
        self.shape = call_shape(daemon.settings)
        #: the running publisher (None while ``[mqtt]`` is disabled or between restarts).
        self.publisher: Publisher | None = None
        self._alerts = alerts
        self._metrics = metrics
        self._changed = asyncio.Event()
        #: calls were committed since the retained figures were last read
        self._figures_due = asyncio.Event()
        #: retained topics this delivery published (discovery configs, sources), to remove the ones that go
        self._retained_topics: set[str] = set()

    def committed(self, entries: list[JournalEntry], seconds: float) -> None:
        """Commit listener: wake the publisher for what was just committed."""
        publisher = self.publisher
        if publisher is None:
            return
        alerts = any(e.alerts for e in entries)
        stored = any(e.calls for e in entries)
        calls = self.config.publish_calls and stored
        journal = self.config.publish_journal and bool(entries)
        if alerts or calls or journal:
            publisher.wake(alerts=alerts, calls=calls, entries=journal)
        if stored:
            self._figures_due.set()

    def outbox_changed(self) -> None:
        """Alerts were added outside a commit (operational alerts): publish them now."""
        if self.publisher is not None:
            self.publisher.wake()

    def reloaded(self, settings: Settings) -> None:
        """Restart the publisher when ``[mqtt]`` or the site's name changed; take the new departments and tariff
        decimals for the call payloads and the state."""
        self.shape = call_shape(settings)
        if self.publisher is not None:
            self.publisher.shape = self.shape
        self._figures_due.set()
        if settings.mqtt != self.config or settings.site.name != self.site:
            self.config, self.site = settings.mqtt, settings.site.name
            self._changed.set()

    async def run(self) -> None:
        """Run the publisher (when enabled) until cancelled."""
        from smdrd.mqtt import Publisher

        if self.config.enabled and self.config.publish_calls:
            self._place_call_feed()
        self._place_revision_feed(self.config.enabled and self.config.publish_journal)
        try:
            await self.outbox.open()
            await self.feed.open()
            while True:
                self._changed.clear()
                cfg = self.config
                if not cfg.enabled:
                    self.publisher = None
                    await self._changed.wait()
                    continue
                publisher = self.publisher = Publisher(
                    cfg, self.outbox, base_dir=self.daemon.base_dir, on_connected=self._connected,
                    on_delivered=self._delivered, on_resent=self._resent, feed=self.feed, site=self.site,
                    shape=self.shape)
                jobs: list[Awaitable[None]] = [publisher.run()]
                if cfg.state_topics:
                    jobs.append(self._keep_state(publisher))
                else:
                    self._unretain(publisher, set())  # turned off by a reload: what it published goes
                tasks = [asyncio.ensure_future(job) for job in jobs]
                changed = asyncio.ensure_future(self._changed.wait())
                try:
                    await asyncio.wait((*tasks, changed), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    changed.cancel()
                    for task in tasks:
                        task.cancel()
                    for task in tasks:
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await task
                if not self._changed.is_set():
                    for task in tasks:  # ended on its own: only a bug does that; the daemon reports it
                        if task.done() and not task.cancelled():
                            task.result()
                    raise RuntimeError("the MQTT publisher stopped on its own")
        finally:
            self.publisher = None
            await self.feed.close()
            await self.outbox.close()

    def _place_call_feed(self) -> None:
        """Place a new call feed's cursor at the journal's end before any source runs (this task's first step
        comes before theirs), not at the first connection to the broker: every call a daemon started with
        ``publish_calls`` commits is then sent, however slow the broker or the start."""
        from smdrd.mqtt import CALL_FEED
        from smdrd.store.api import StoreUnavailable

        try:
            self.store.start_call_feed(CALL_FEED)  # blocking, once: a few milliseconds at start
        except StoreUnavailable as exc:  # the publisher places it at its first connection instead
            log.warning("mqtt.call_feed_start_failed", error=str(exc))

    def _place_revision_feed(self, publishing: bool) -> None:
        """While the journal is published, the revisions of its entries (lines a rerate or reparse changes) are
        recorded from the daemon's start, not from the first connection to the broker: a rerate run while the
        broker is away still reaches the central store. Once it is not, none is recorded or kept."""
        from smdrd.store.api import REVISION_FEED, StoreUnavailable

        try:
            if publishing:
                self.store.start_call_feed(REVISION_FEED)  # blocking, once: a few milliseconds at start
            else:
                self.store.stop_call_feed(REVISION_FEED)
        except StoreUnavailable as exc:  # the publisher places it at its first connection instead
            log.warning("mqtt.revision_feed_start_failed", error=str(exc))

    # -- the retained state ---------------------------------------------------------------------------------------

    async def _keep_state(self, publisher: Publisher) -> None:
        """Keep the retained state topics (and Home Assistant's discovery) current until cancelled."""
        loop = asyncio.get_running_loop()
        last_figures = -STATE_REFRESH
        self._figures_due.set()
        while True:
            settings = self.daemon.settings
            topics = {publisher.topics.state, publisher.topics.last_call}
            try:
                topics |= self._retain_discovery(publisher, settings)
                topics |= self._retain_sources(publisher, settings)
                self._unretain(publisher, topics)
                interval = settings.mqtt.state_interval
                since = loop.time() - last_figures
                if (self._figures_due.is_set() and since >= interval) or since >= STATE_REFRESH:
                    self._figures_due.clear()
                    last_figures = loop.time()
                    await self._retain_figures(publisher, settings)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a locked database, a department loop: try again at the next tick
                log.warning("mqtt.state_failed", error=repr(exc))
            await asyncio.sleep(min(SOURCE_CHECK, settings.mqtt.state_interval))

    async def _retain_figures(self, publisher: Publisher, settings: Settings) -> None:
        figures = await asyncio.to_thread(site_figures, self.store, settings, time.time())
        publisher.retain(publisher.topics.state, encode(state_message(
            figures, site=settings.site.name, currency=settings.tariff.currency, decimals=settings.tariff.decimals)))
        last = await self.feed.last("outbound")
        if last is not None:
            publisher.retain(publisher.topics.last_call, encode(self.shape.message(last.fields)))

    def _retain_sources(self, publisher: Publisher, settings: Settings) -> set[str]:
        from smdrd.health import source_down

        now = time.time()
        topics = set()
        for cfg in settings.sources:
            if not cfg.enabled:
                continue
            rs = self.daemon.sources.get(cfg.name)
            connected = rs is not None and rs.source.status.connected
            last = rs.ingest.counters.last_line_at if rs is not None else None
            why = "not running" if rs is None else source_down(cfg.kind, bool(getattr(cfg, "follow", False)),
                                                              connected, last, now)
            topic = publisher.topics.source(cfg.name)
            topics.add(topic)
            publisher.retain(topic, encode(source_message(
                cfg.name, cfg.kind, site=settings.site.name, up=why is None, connected=connected, reason=why,
                last_line=last, tz=settings.site.tz)))
        return topics

    def _retain_discovery(self, publisher: Publisher, settings: Settings) -> set[str]:
        if not settings.mqtt.homeassistant:
            return set()
        from smdrd.homeassistant import Discovery, discovery_messages

        messages = discovery_messages(Discovery(
            settings.site.name, publisher.topics, settings.mqtt.discovery_prefix, settings.tariff.currency,
            settings.tariff.decimals, [s.name for s in settings.sources if s.enabled],
            [d.name for d in settings.departments]))
        for topic, payload in messages.items():
            publisher.retain(topic, payload)
        return set(messages)

    def _unretain(self, publisher: Publisher, keep: set[str]) -> None:
        """Remove the retained messages this delivery published that are no longer wanted (a source removed)."""
        for topic in self._retained_topics - keep:
            publisher.retain(topic, b"")
        self._retained_topics = set(keep)

    # -- hooks --------------------------------------------------------------------------------------------------

    def _connected(self, connected: bool) -> None:
        if self._metrics is not None:
            with contextlib.suppress(Exception):
                self._metrics.mqtt_connected(connected)

    def _resent(self, rewinds: int, entries: int) -> None:
        if self._metrics is not None:
            with contextlib.suppress(Exception):
                self._metrics.mqtt_journal_resent(rewinds, entries)

    def _delivered(self, n: int) -> None:
        if self._alerts is not None:
            self._alerts.delivered(n)


def install(daemon: Daemon, *, alerts: Alerts | None = None, metrics: Metrics | None = None) -> MqttDelivery:
    """Add MQTT delivery to ``daemon``."""
    delivery = MqttDelivery(daemon, alerts=alerts, metrics=metrics)
    daemon.commit_listeners.append(delivery.committed)
    daemon.reload_listeners.append(delivery.reloaded)
    if alerts is not None:
        alerts.outbox_listeners.append(delivery.outbox_changed)
    daemon.add_task("mqtt", delivery.run)
    return delivery
