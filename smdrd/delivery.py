"""Delivery over MQTT: the daemon's feature that runs the `smdrd.mqtt.Publisher` (``[mqtt]``).

Its own feature, independent of the alert rules: it delivers whatever the alert outbox holds (alerts committed
with their calls, operational alerts) and, with ``[mqtt] publish_calls``, every stored call from the journal's
call feed, at least once (`smdrd.store.api.CallFeed`). Built by `smdrd.daemon.Daemon.build` as ``mqtt`` after
``alerts`` and ``metrics``, from which it takes two optional hooks: the alerts feature's delivered count (its
pending-alerts gauge) and the metrics object (the connection gauge).

A commit wakes the publisher (new alerts, new calls); a reload with a changed ``[mqtt]`` restarts it with the
new settings; ``enabled = false`` stops it. The outbox and the feed keep what was not delivered meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import structlog

from smdrd.journal import JournalEntry
from smdrd.store import open_store

if TYPE_CHECKING:
    from smdrd.alerts.feature import Alerts
    from smdrd.config import Settings
    from smdrd.daemon import Daemon
    from smdrd.metrics import Metrics
    from smdrd.mqtt import Publisher

__all__ = ["MqttDelivery", "install"]

log = structlog.get_logger("smdrd.delivery")


class MqttDelivery:
    """The publisher of one daemon, restarted when ``[mqtt]`` changes; `run` is its task."""

    def __init__(self, daemon: Daemon, *, alerts: Alerts | None = None, metrics: Metrics | None = None) -> None:
        self.daemon = daemon
        self.config = daemon.settings.mqtt
        self.site = daemon.settings.site.name
        store = open_store(daemon.settings.database.path)
        self.outbox = store.outbox()
        self.feed = store.call_feed()
        #: the running publisher (None while ``[mqtt]`` is disabled or between restarts).
        self.publisher: Publisher | None = None
        self._alerts = alerts
        self._metrics = metrics
        self._changed = asyncio.Event()

    def committed(self, entries: list[JournalEntry], seconds: float) -> None:
        """Commit listener: wake the publisher for what was just committed."""
        publisher = self.publisher
        if publisher is None:
            return
        alerts = any(e.alerts for e in entries)
        calls = self.config.publish_calls and any(e.calls for e in entries)
        if alerts or calls:
            publisher.wake(alerts=alerts, calls=calls)

    def outbox_changed(self) -> None:
        """Alerts were added outside a commit (operational alerts): publish them now."""
        if self.publisher is not None:
            self.publisher.wake()

    def reloaded(self, settings: Settings) -> None:
        """Restart the publisher when ``[mqtt]`` or the site's name changed."""
        if settings.mqtt != self.config or settings.site.name != self.site:
            self.config, self.site = settings.mqtt, settings.site.name
            self._changed.set()

    async def run(self) -> None:
        """Run the publisher (when enabled) until cancelled."""
        from smdrd.mqtt import Publisher

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
                self.publisher = Publisher(cfg, self.outbox, base_dir=self.daemon.base_dir,
                                           on_connected=self._connected, on_delivered=self._delivered,
                                           feed=self.feed, site=self.site)
                task = asyncio.ensure_future(self.publisher.run())
                changed = asyncio.ensure_future(self._changed.wait())
                try:
                    await asyncio.wait((task, changed), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    changed.cancel()
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                if not self._changed.is_set():
                    task.result()  # the publisher ended on its own: only a bug does that; the daemon reports it
                    raise RuntimeError("the MQTT publisher stopped on its own")
        finally:
            self.publisher = None
            await self.feed.close()
            await self.outbox.close()

    def _connected(self, connected: bool) -> None:
        if self._metrics is not None:
            with contextlib.suppress(Exception):
                self._metrics.mqtt_connected(connected)

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
