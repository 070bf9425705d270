"""Prometheus metrics of ``smdrd central`` (`smdrd.central`): what the central store took from each site, served
as ``/metrics`` beside a ``/healthz`` on the collector's own HTTP server (``[http]``, when its configuration has
that section).

The daemon's conventions (`smdrd.metrics`): ``smdrd_`` names (here ``smdrd_central_``, so that one Prometheus
scraping the sites and the central collector never adds a call twice under one name), base units, ``_total``
counters, no ``_created`` series, the process and runtime metrics. Every series of a site carries ``site``:
the sites are bounded by the central store's ``sites`` table (one row per site that ever published), the
sources by each site's configuration, the directions and call classes fold into ``unknown`` as the daemon's
do. Nothing is labelled with an extension, a number or a peer.

Where the numbers come from:

* Counters are fed by each committed batch (`smdrd.store.postgres.central.CentralBatch`): lines, errors, calls,
  talk time and cost that the store **added** (a re-delivery adds nothing, and counts under
  ``smdrd_central_entries_known_total``), so they agree with PostgreSQL as the daemon's agree with its journal.
* The newest line of each site is read from the store once, at start (`seed`), then kept from the batches; the
  newest line of each site and source, and each site's lag, from the batches since start.
* The collector's own state (PostgreSQL reachable, MQTT subscribed, retries, refused payloads) at scrape time.
"""

from __future__ import annotations

import json
import platform
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, Info, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from smdrd import __version__
from smdrd.http import Request, Response
from smdrd.metrics import DIRECTIONS, render
from smdrd.rating.classes import CALL_CLASSES, UNKNOWN
from smdrd.store.api import SiteSeen
from smdrd.store.postgres.central import CentralBatch

if TYPE_CHECKING:
    from smdrd.central import Collector

__all__ = ["CentralMetrics", "health", "install"]

_KNOWN_CLASSES = frozenset(CALL_CLASSES)
_KNOWN_DIRECTIONS = frozenset(DIRECTIONS)


class CentralMetrics:
    """The central collector's registry and what it counts; `stored` after each committed batch."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.started_at = time.time()
        site_source = ["site", "source"]
        self.lines = Counter("smdrd_central_lines_stored_total",
                             "Journal lines the sites published that the central store added (parsed or not; a "
                             "re-delivery adds none).", site_source, registry=r)
        self.parse_errors = Counter("smdrd_central_parse_errors_total",
                                    "Lines added that the site journalled with an error (unparsable, too long).",
                                    site_source, registry=r)
        calls = ["site", "source", "direction", "call_class"]
        self.calls = Counter("smdrd_central_calls_total",
                             "Calls the central store added (a transferred call once).", calls, registry=r)
        self.talk = Counter("smdrd_central_call_talk_seconds_total",
                            "Talk time of the calls the central store added, in seconds.", calls, registry=r)
        self.cost = Counter("smdrd_central_call_cost_total",
                            "Cost of the rated calls the central store added, in units of the currency (not "
                            "cents).", [*calls, "currency"], registry=r)
        self.known = Counter("smdrd_central_entries_known_total",
                             "Entries delivered again that the central store had already (they add nothing).",
                             ["site"], registry=r)
        self.revised = Counter("smdrd_central_entries_revised_total",
                               "Stored lines whose calls a site's re-rate or reparse replaced (their figures "
                               "moved; the calls counters count each call once, when first added).",
                               ["site"], registry=r)
        self.alerts = Counter("smdrd_central_alerts_stored_total",
                              "Alerts the sites raised that the central inbox added (a re-delivery adds none).",
                              ["site", "rule", "severity"], registry=r)
        self.commit_duration = Histogram("smdrd_central_commit_duration_seconds",
                                         "Time one batch's PostgreSQL transaction took.", registry=r,
                                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        Info("smdrd_build", "The running smdrd's version.", registry=r).info(
            {"version": __version__, "python_version": platform.python_version()})
        #: site -> newest line stored (the site's receipt time, Unix seconds)
        self.site_last: dict[str, float] = {}
        #: (site, source) -> newest line stored since start
        self.source_last: dict[tuple[str, str], float] = {}
        #: site -> at its last batch: commit time less the site's receipt of the newest entry in it, in seconds
        self.site_lag: dict[str, float] = {}

    def seed(self, sites: Sequence[SiteSeen]) -> None:
        """The sites the store holds, with their newest line: their series exist (at 0) from the start."""
        for site in sites:
            self.known.labels(site.name)
            self.revised.labels(site.name)
            if site.last_line is not None:
                self.site_last[site.name] = max(self.site_last.get(site.name, 0.0), site.last_line / 1e6)

    def stored(self, batch: CentralBatch, entries: Sequence[Mapping[str, Any]], seconds: float) -> None:
        """Count what ``batch`` (the committed transaction of ``entries``) added."""
        now = time.time()
        self.commit_duration.observe(seconds)
        for (site, source), (lines, errors) in batch.lines_by.items():
            self.lines.labels(site, source).inc(lines)
            self.parse_errors.labels(site, source).inc(errors)
        for site, n in batch.known_by.items():
            self.known.labels(site).inc(n)
        for site, n in batch.revised_by.items():
            self.revised.labels(site).inc(n)
        for (site, rule, severity), n in batch.alerts_by.items():
            self.alerts.labels(site, rule, severity).inc(n)
        for c in batch.calls_by:
            direction = c.direction if c.direction in _KNOWN_DIRECTIONS else UNKNOWN
            call_class = c.call_class if c.call_class in _KNOWN_CLASSES else UNKNOWN
            self.calls.labels(c.site, c.source, direction, call_class).inc(c.calls)
            self.talk.labels(c.site, c.source, direction, call_class).inc(c.talk)
            if c.currency:
                self.cost.labels(c.site, c.source, direction, call_class, c.currency).inc(c.cost_micros / 1e6)
        newest: dict[str, float] = {}
        fresh: dict[str, float] = {}  # a revision is an old line sent again (a rerate there): no measure of lag
        for e in entries:
            site, at = str(e["site"]), int(e["received_at"]) / 1e6
            key = (site, str(e["source"]))
            self.source_last[key] = max(self.source_last.get(key, 0.0), at)
            newest[site] = max(newest.get(site, 0.0), at)
            if not e.get("revision"):
                fresh[site] = max(fresh.get(site, 0.0), at)
        for site, at in newest.items():
            self.site_last[site] = max(self.site_last.get(site, 0.0), at)
            if site in fresh:
                self.site_lag[site] = max(0.0, now - fresh[site])
            self.known.labels(site)  # a site's series exist from its first batch
            self.revised.labels(site)


class _LiveCollector:
    """The collector's state and the newest lines, read at scrape time."""

    def __init__(self, collector: Collector, metrics: CentralMetrics) -> None:
        self._collector = weakref.proxy(collector)
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        c, m = self._collector, self._metrics
        site_last = GaugeMetricFamily("smdrd_central_site_last_line_timestamp_seconds",
                                      "When the site received the newest line the central store holds of it, in "
                                      "Unix time (the site's clock).", labels=["site"])
        for site, at in sorted(m.site_last.items()):
            site_last.add_metric([site], at)
        source_last = GaugeMetricFamily("smdrd_central_source_last_line_timestamp_seconds",
                                        "When the site received the newest line of the source stored since the "
                                        "collector started, in Unix time (the site's clock).",
                                        labels=["site", "source"])
        for (site, source), at in sorted(m.source_last.items()):
            source_last.add_metric([site, source], at)
        lag = GaugeMetricFamily("smdrd_central_site_lag_seconds",
                                "At the site's last batch stored since the collector started: from the site's "
                                "receipt of the newest entry in it to its commit here.", labels=["site"])
        for site, seconds in sorted(m.site_lag.items()):
            lag.add_metric([site], seconds)
        yield from (site_last, source_last, lag)
        stats = c.stats
        yield CounterMetricFamily("smdrd_central_entries_rejected", "Payloads that were no journal entry, or "
                                  "that PostgreSQL refused: logged, acknowledged, not stored.", value=stats.rejected)
        yield CounterMetricFamily("smdrd_central_commit_retries", "Batches that PostgreSQL could not take and were "
                                  "retried (nothing acknowledged meanwhile).", value=stats.retries)
        yield GaugeMetricFamily("smdrd_central_store_up", "1 while the last PostgreSQL transaction (or connection) "
                                "succeeded.", value=1 if c.store_up else 0)
        yield GaugeMetricFamily("smdrd_central_mqtt_connected", "1 while subscribed at the central broker.",
                                value=1 if c.subscription.connected else 0)
        yield GaugeMetricFamily("smdrd_start_time_seconds", "When the collector started, in Unix time.",
                                value=m.started_at)


def health(collector: Collector) -> tuple[int, dict[str, Any]]:
    """``/healthz``'s status and body: healthy while PostgreSQL takes the batches and the subscription is up."""
    reasons = []
    if not collector.store_up:
        reasons.append(f"PostgreSQL: {collector.store_error or 'not connected yet'}")
    if not collector.subscription.connected:
        reasons.append(f"MQTT: not subscribed at {collector.settings.mqtt.host}:{collector.settings.mqtt.port}"
                       + (f" ({collector.subscription.stats.last_error})" if collector.subscription.stats.last_error
                          else ""))
    body = {"status": "unhealthy" if reasons else "ok", "reasons": reasons, "version": __version__,
            "store": {"up": collector.store_up}, "mqtt": {"connected": collector.subscription.connected},
            "stored": {"lines": collector.stats.lines, "calls": collector.stats.calls,
                       "known": collector.stats.known, "revised": collector.stats.revised,
                       "alerts": collector.stats.alerts, "rejected": collector.stats.rejected}}
    return (503 if reasons else 200), body


def install(collector: Collector) -> CentralMetrics:
    """The collector's metrics, its process's, and (with an HTTP server) ``/metrics`` and ``/healthz``."""
    disable_created_metrics()  # type: ignore[no-untyped-call]  # as the daemon's (smdrd.metrics.install)
    m = CentralMetrics()
    m.registry.register(_LiveCollector(collector, m))
    ProcessCollector(registry=m.registry)
    PlatformCollector(registry=m.registry)
    GCCollector(registry=m.registry)
    if collector.http is not None:
        async def serve_metrics(request: Request) -> Response:
            body, content_type = render(m.registry, request.headers.get("accept"))
            return Response(200, body, content_type)

        async def serve_health(request: Request) -> Response:
            status, body = health(collector)
            return Response(status, json.dumps(body).encode(), "application/json")

        collector.http.route("/metrics", serve_metrics)
        collector.http.route("/healthz", serve_health)
    return m
