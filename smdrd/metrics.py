"""Prometheus metrics for the daemon, served as ``/metrics`` on the daemon's HTTP server.

Built by `smdrd.daemon.Daemon.build` as the ``metrics`` feature (``daemon.features.metrics``). Every daemon
gets its own `CollectorRegistry`, so two daemons in one process (tests) never share a number.

Where the numbers come from:

* Call, cost, line and parse-error counters and the journal latency histogram are fed by a commit listener:
  a call counts once it is committed to the journal, never when it is merely received, so a scrape agrees with
  the database.
* Source status, pending rows, the writer's own counters, alert deliveries and the MQTT connection are read at
  scrape time by a custom collector: they are state, and reading them costs nothing between scrapes.
* Alert rules (another feature, handed this object when built) report raised alerts through
  `Metrics.alert_raised`.

Every series carries ``site``, the daemon's ``[site] name`` (added at exposition, `Labelled`), so one Prometheus
scraping many sites' daemons filters by site. Labels are bounded by the configuration: source, format,
direction, call class, department, currency, alert rule and severity; and ``country``, a destination's ISO 3166
region (bounded by the regions phonenumbers knows). This module must never label a series with an extension, a
number, a peer address or any other value a PBX or a caller chooses: that is what SQLite reports are for. Unknown
call classes fold into ``unknown`` for the same reason. Known label values are pre-initialised at start, so a
dashboard shows zeros rather than gaps. Nothing here may raise into the journal writer: the daemon logs and drops
listener errors.
"""

from __future__ import annotations

import contextlib
import platform
import time
import weakref
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, Info, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.samples import Sample

from smdrd import __version__
from smdrd.config import UNASSIGNED, Settings
from smdrd.errors import SmdrdError
from smdrd.health import source_down
from smdrd.http import Request, Response
from smdrd.journal import DUPLICATE, ERROR, FLUSHED, MICROS
from smdrd.journal import JournalEntry as Entry
from smdrd.rating.classes import CALL_CLASSES, UNKNOWN
from smdrd.record import Direction
from smdrd.reports.departments import Directory

if TYPE_CHECKING:
    from smdrd.daemon import Daemon

__all__ = [
    "CALL_DURATION_BUCKETS",
    "NO_DEPARTMENT",
    "WRITE_LATENCY_BUCKETS",
    "Labelled",
    "Metrics",
    "install",
    "render",
]

#: talk time buckets, 10 s to 1 h: a phone call is not a web request, and the default buckets stop at 10 s.
CALL_DURATION_BUCKETS: tuple[float, ...] = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600)
#: receipt to commit; the writer commits every ``commit_interval_ms`` (25 ms by default), so most lines land
#: below 0.25 s and anything in the last buckets means the disk or a lock is holding the journal back.
WRITE_LATENCY_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
#: the ``department`` label of a call whose extension is in no ``[[departments]]`` entry (as in reports).
NO_DEPARTMENT = UNASSIGNED

DIRECTIONS: tuple[str, ...] = tuple(d.value for d in Direction)
_KNOWN_CLASSES = frozenset(CALL_CLASSES)
_KNOWN_DIRECTIONS = frozenset(DIRECTIONS)


#: ``(extension, day)`` to the extension's department followed by each of its parents up to the top-level one
#: (`NO_DEPARTMENT` alone for an extension in none); the day (ISO, the call's local date) matters for dated
#: memberships.
DepartmentOf = Callable[[str | None, str], tuple[str, ...]]


class _Buckets:
    """A histogram's state without a lock or a per-observation Python loop over the bounds.

    The journal commits thousands of lines a second, and lines read in one chunk share their receive time:
    `observe` takes a count, so a batch costs one call per distinct value instead of one per line.
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(float(b) for b in bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float, count: int = 1) -> None:
        self.counts[bisect_left(self.bounds, value)] += count  # bisect_left: a bound is inclusive (le)
        self.sum += value * count

    def family_buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        total = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            # as prometheus-client writes its own buckets ("120.0", "+Inf"): one histogram, one spelling of le
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(total)))
        return out

    @property
    def count(self) -> int:
        return sum(self.counts)


def departments_of(settings: Settings) -> DepartmentOf:
    """The department lookup of ``settings``: the reports' `Directory`, so a call is counted under the same
    department in Grafana as in a report (ranges, dated memberships, the narrowest match winning), and under
    every parent of that department too, as a report's parent row includes its sub-departments."""
    directory = Directory.from_config(settings.departments)
    site = settings.site.name  # the box's own calls: a membership naming another site is not theirs
    chains: dict[str, tuple[str, ...]] = {}

    def department_of(extension: str | None, day: str) -> tuple[str, ...]:
        name = directory.department(extension, day, site) if extension else NO_DEPARTMENT
        chain = chains.get(name)
        if chain is None:
            chain = chains[name] = tuple(directory.ancestors(name))
        return chain

    return department_of


class Metrics:
    """The metrics of one daemon: its registry, the counters fed at commit, and the hooks for alerts and MQTT.

    Interface for the alerts and MQTT modules (call from anywhere in the event loop):

    * ``alert_raised(rule, severity)``: count one raised alert (call it when the alert is committed).
    * ``declare_alert_rule(rule, severity)``: pre-initialise a rule's series to 0 (at install and on reload).
    * ``alerts_pending(count)``: the number of alerts now waiting in the outbox (call it when it changes).
    * ``mqtt_connected(connected)``: whether the MQTT publisher is connected (call it when that changes).
    * ``mqtt_journal_resent(rewinds, entries)``: the journal feed went back to the central store's confirmed point
      ``rewinds`` times, and ``entries`` were acknowledged again since the last call.
    """

    def __init__(self, settings: Settings, *, department_of: DepartmentOf | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.settings = settings
        #: maps a call's extension to its department; swapped on reload.
        self.department_of: DepartmentOf = department_of or departments_of(settings)
        self._alerts_pending = 0
        self._mqtt_connected = False
        self.started_at = time.time()

        self.journal_rewinds = Counter(
            "smdrd_mqtt_journal_rewinds", "Times the journal feed went back to the central store's confirmed point "
            "(entries a broker acknowledged and the central store never got).", registry=r)
        self.journal_resent = Counter(
            "smdrd_mqtt_journal_entries_resent", "Journal entries the broker acknowledged again after such a "
            "rewind.", registry=r)
        # Calls count once, on their first leg, as in reports; talk time and cost add up every leg.
        self.calls = Counter("smdrd_calls_total", "Calls committed to the journal (a transferred call once).",
                             ["source", "direction", "call_class"], registry=r)
        self.talk = Counter("smdrd_call_talk_seconds_total", "Talk time of the calls committed, in seconds.",
                            ["source", "direction", "call_class"], registry=r)
        self.cost = Counter("smdrd_call_cost_total",
                            "Cost of the rated calls committed, in units of the currency (not cents).",
                            ["source", "direction", "call_class", "currency"], registry=r)
        # A call counts under its extension's department and under each parent of it (a report's parent row
        # includes its sub-departments): summing every department counts a call once per level of the tree.
        # smdrd_department_info{parent=""} picks the top-level departments, which count each call once. The
        # source label lets a dashboard's source filter apply to departments too: sources x departments x
        # directions x classes series, a few thousand for a large site.
        self.dept_calls = Counter("smdrd_department_calls_total",
                                  "Calls committed, by the department of the extension that made or took them; "
                                  "a parent department includes its sub-departments.",
                                  ["source", "department", "direction", "call_class"], registry=r)
        self.dept_talk = Counter("smdrd_department_talk_seconds_total",
                                 "Talk time of the calls committed, by department (a parent includes its "
                                 "sub-departments), in seconds.",
                                 ["source", "department", "direction", "call_class"], registry=r)
        self.dept_cost = Counter("smdrd_department_cost_total",
                                 "Cost of the rated calls committed, by department (a parent includes its "
                                 "sub-departments), in units of the currency.",
                                 ["source", "department", "direction", "currency"], registry=r)
        # The destination's country is the number's ISO 3166 region, as the destinations report names it (+1 809
        # is DO, not US): one of the ~250 regions phonenumbers knows, never the number itself; "" when unknown
        # (internal and unrated calls, non-geographic numbers). Not pre-initialised: only countries called.
        self.dest_calls = Counter("smdrd_destination_calls_total",
                                  "Calls committed, by the country (ISO 3166 region) of the other party's number.",
                                  ["source", "direction", "country"], registry=r)
        self.dest_cost = Counter("smdrd_destination_cost_total",
                                 "Cost of the rated calls committed, by the country (ISO 3166 region) of the "
                                 "number called, in units of the currency.",
                                 ["source", "direction", "country", "currency"], registry=r)
        self.lines = Counter("smdrd_lines_received_total",
                             "Lines received from a source and committed to the journal (parsed or not).",
                             ["source", "format"], registry=r)
        self.parse_errors = Counter("smdrd_parse_errors_total",
                                    "Lines journalled with an error: unparsable, or longer than max_line_length.",
                                    ["source", "format"], registry=r)
        self.alerts = Counter("smdrd_alerts_raised_total", "Alerts raised by the alert rules.",
                              ["rule", "severity"], registry=r)
        self.commit_duration = Histogram("smdrd_journal_commit_duration_seconds",
                                         "Time one journal transaction took.", registry=r,
                                         buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                                  2.5, 5))
        Info("smdrd_build", "The running smdrd's version.", registry=r).info(
            {"version": __version__, "python_version": platform.python_version()})
        self.call_duration = {d: _Buckets(CALL_DURATION_BUCKETS) for d in DIRECTIONS}
        self.write_latency = _Buckets(WRITE_LATENCY_BUCKETS)
        # Label children looked up once: `labels()` takes a lock and builds tuples, too slow per call.
        self._children: dict[tuple[int, tuple[str, ...]], Counter] = {}
        self.preinitialise(settings)

    # --- set-up ------------------------------------------------------------------------------------------

    def preinitialise(self, settings: Settings) -> None:
        """Create the series every configured label value will have, at 0 (dashboards show zeros, not gaps)."""
        self.settings = settings
        currency = settings.tariff.currency
        for source, fmt in configured_formats(settings):
            self._child(self.lines, source, fmt)
            self._child(self.parse_errors, source, fmt)
            for direction in DIRECTIONS:
                for cls in CALL_CLASSES:
                    self._child(self.calls, source, direction, cls)
                    self._child(self.talk, source, direction, cls)
                    self._child(self.cost, source, direction, cls, currency)
            for dept in [*(d.name for d in settings.departments), NO_DEPARTMENT]:
                for direction in DIRECTIONS:
                    for cls in CALL_CLASSES:
                        self._child(self.dept_calls, source, dept, direction, cls)
                        self._child(self.dept_talk, source, dept, direction, cls)
                    self._child(self.dept_cost, source, dept, direction, currency)

    def reload(self, settings: Settings) -> None:
        """After a reload: the new departments and sources get their series (old series keep their counts)."""
        # The reload validated the departments already; if not, keep counting by the old ones.
        with contextlib.suppress(SmdrdError):
            self.department_of = departments_of(settings)
        self.preinitialise(settings)

    def _child(self, metric: Counter, *labels: str) -> Counter:
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # --- feeding -----------------------------------------------------------------------------------------

    def on_commit(self, entries: list[Entry], seconds: float) -> None:
        """The commit listener: count what ``entries`` (one committed batch) hold."""
        self.commit_duration.observe(seconds)
        now_us = time.time_ns() // 1000
        lines: dict[tuple[str, str], int] = {}
        errors: dict[tuple[str, str], int] = {}
        calls: dict[tuple[str, str, str], list[int]] = {}  # -> [calls, talk seconds]
        cost: dict[tuple[str, str, str, str], int] = {}  # -> micros
        dept_calls: dict[tuple[str, str, str, str], list[int]] = {}
        dept_cost: dict[tuple[str, str, str, str], int] = {}
        dest_calls: dict[tuple[str, str, str], int] = {}
        dest_cost: dict[tuple[str, str, str, str], int] = {}
        durations: list[tuple[str, int]] = []
        department_of = self.department_of
        # The calls of a batch share a few extensions and start objects (a parser converts each distinct stamp
        # once): their day and department chain are looked up once a batch.
        depts_of: dict[tuple[str, str], tuple[str, ...]] = {}
        day_start: object = None
        day = ""
        received_at: int | None = None
        same = 0
        for entry in entries:
            if entry.status != FLUSHED:
                key = (entry.source, entry.format)
                lines[key] = lines.get(key, 0) + 1
                if entry.status == ERROR:
                    errors[key] = errors.get(key, 0) + 1
                if entry.received_at == received_at:
                    same += 1
                else:
                    if received_at is not None:
                        self.write_latency.observe(max(0.0, (now_us - received_at) / 1e6), same)
                    received_at, same = entry.received_at, 1
            if entry.status == DUPLICATE:
                continue  # a re-sent line: its calls were counted when they were first committed
            for call in entry.calls:
                record, rating = call.record, call.rating
                direction = record.direction._value_
                if direction not in _KNOWN_DIRECTIONS:
                    direction = UNKNOWN  # bounded, whatever a future parser writes
                cls = rating.call_class if rating is not None else None
                call_class = cls if cls in _KNOWN_CLASSES else UNKNOWN
                talk = record.duration
                first_leg = 1 if record.leg == 0 else 0  # a transferred call counts once, as in reports
                acc = calls.setdefault((entry.source, direction, call_class), [0, 0])
                acc[0] += first_leg
                acc[1] += talk
                # the membership day is the call's date in the PBX's own time, as stored and reported
                start = record.start
                if start is not day_start:
                    day_start, day = start, start.date().isoformat()
                ext_day = (record.extension, day)
                depts = depts_of.get(ext_day)
                if depts is None:
                    depts = depts_of[ext_day] = department_of(record.extension or None, day)
                for dept in depts:
                    dacc = dept_calls.setdefault((entry.source, dept, direction, call_class), [0, 0])
                    dacc[0] += first_leg
                    dacc[1] += talk
                country = rating.region if rating is not None else ""
                gkey = (entry.source, direction, country)
                dest_calls[gkey] = dest_calls.get(gkey, 0) + first_leg
                if rating is not None and rating.currency:
                    micros, currency = int(rating.cost * MICROS), rating.currency
                    ckey = (entry.source, direction, call_class, currency)
                    cost[ckey] = cost.get(ckey, 0) + micros
                    gcost = (entry.source, direction, country, currency)
                    dest_cost[gcost] = dest_cost.get(gcost, 0) + micros
                    for dept in depts:
                        dkey = (entry.source, dept, direction, currency)
                        dept_cost[dkey] = dept_cost.get(dkey, 0) + micros
                if record.answered and direction in self.call_duration:
                    durations.append((direction, talk))
        if received_at is not None:
            self.write_latency.observe(max(0.0, (now_us - received_at) / 1e6), same)
        for lkey, n in lines.items():
            self._child(self.lines, *lkey).inc(n)
        for lkey, n in errors.items():
            self._child(self.parse_errors, *lkey).inc(n)
        for ckey3, (n, talk) in calls.items():
            self._child(self.calls, *ckey3).inc(n)
            self._child(self.talk, *ckey3).inc(talk)
        for ckey4, micros in cost.items():
            self._child(self.cost, *ckey4).inc(micros / 1_000_000)
        for dkey4, (n, talk) in dept_calls.items():
            self._child(self.dept_calls, *dkey4).inc(n)
            self._child(self.dept_talk, *dkey4).inc(talk)
        for dkey4, micros in dept_cost.items():
            self._child(self.dept_cost, *dkey4).inc(micros / 1_000_000)
        for gkey, n in dest_calls.items():
            self._child(self.dest_calls, *gkey).inc(n)
        for gcost, micros in dest_cost.items():
            self._child(self.dest_cost, *gcost).inc(micros / 1_000_000)
        for direction, talk in durations:
            self.call_duration[direction].observe(talk)

    # --- the interface for the alerts and MQTT modules ---------------------------------------------------

    def alert_raised(self, rule: str, severity: str, count: int = 1) -> None:
        """Count ``count`` alerts raised by ``rule`` (a configured rule's name) at ``severity``."""
        self._child(self.alerts, rule, severity).inc(count)

    def declare_alert_rule(self, rule: str, severity: str) -> None:
        """Pre-initialise ``rule``'s series at 0, so a rule that never fired still shows on a dashboard."""
        self._child(self.alerts, rule, severity)

    def alerts_pending(self, count: int) -> None:
        """The number of alerts now waiting in the outbox for delivery."""
        self._alerts_pending = max(0, int(count))

    def mqtt_connected(self, connected: bool) -> None:
        """Whether the MQTT publisher is connected to its broker now."""
        self._mqtt_connected = bool(connected)

    def mqtt_journal_resent(self, rewinds: int, entries: int) -> None:
        """The journal feed's rewinds to the central store's confirmed point, and the entries sent again."""
        if rewinds:
            self.journal_rewinds.inc(rewinds)
        if entries:
            self.journal_resent.inc(entries)

    # --- exposition --------------------------------------------------------------------------------------

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition (text format, or OpenMetrics when ``accept`` asks for it) and its content type: every
        series labelled ``site`` with the daemon's ``[site] name``."""
        return render(self.registry, accept, {"site": self.settings.site.name})


class Labelled(CollectorRegistry):
    """``registry``'s metrics with ``labels`` added to every sample (a label a sample has already wins): the
    constant labels of an exposition, such as the site that one Prometheus scraping many sites filters by."""

    def __init__(self, registry: CollectorRegistry, labels: dict[str, str]) -> None:
        super().__init__()
        self._inner = registry
        self._labels = labels

    def collect(self) -> Iterator[Metric]:
        extra = self._labels
        for metric in self._inner.collect():
            out = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            # built directly: twice as fast as ``_replace``, and a scrape may hold tens of thousands of samples
            out.samples = [Sample(s.name, {**extra, **s.labels}, *s[2:]) for s in metric.samples]
            yield out


def render(registry: CollectorRegistry, accept: str | None, labels: dict[str, str] | None = None
           ) -> tuple[bytes, str]:
    """``registry``'s exposition (text format, or OpenMetrics when ``accept`` asks for it), with ``labels`` on
    every sample, and its content type."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(Labelled(registry, labels) if labels else registry), content_type


def configured_formats(settings: Settings) -> Iterator[tuple[str, str]]:
    """``(source, format)`` for every enabled source; the format as lines are journalled with it."""
    from smdrd.parsing import ParserContext, get_parser_class

    for cfg in settings.sources:
        if not cfg.enabled:
            continue
        try:
            # A parser may name its lines after its options (a custom layout's name), not the config key.
            parser = get_parser_class(cfg.format)(
                ParserContext(timezone=settings.site.tz, year=cfg.year, options=dict(cfg.format_options)))
            yield cfg.name, parser.name
        except Exception:  # the source will fail at start and say why; the metrics are not the place
            yield cfg.name, cfg.format


class _LiveCollector:
    """Reads the daemon's state at scrape time: sources, the journal writer, alerts pending, MQTT."""

    def __init__(self, daemon: Daemon, metrics: Metrics) -> None:
        self._daemon = weakref.proxy(daemon)  # the registry must not keep a stopped daemon alive
        self._metrics = metrics

    def collect(self) -> Iterable[Metric]:
        daemon, m = self._daemon, self._metrics
        labels = ["source"]
        connected = GaugeMetricFamily("smdrd_source_connected",
                                      "1 while the source has its PBX connected (or its port or file open).",
                                      labels=labels)
        last_line = GaugeMetricFamily("smdrd_source_last_line_timestamp_seconds",
                                      "When the source's last line was received, in Unix time; 0 for none since "
                                      "the source started.", labels=labels)
        reconnects = CounterMetricFamily("smdrd_source_reconnects", "Connections after the first (PBX or link "
                                         "restarts), since the source started.", labels=labels)
        connections = CounterMetricFamily("smdrd_source_connections", "Connections accepted or made, since the "
                                          "source started.", labels=labels)
        refused = CounterMetricFamily("smdrd_source_refused_connections", "Connections refused (allowed_peers, "
                                      "max_connections), since the source started.", labels=labels)
        received = CounterMetricFamily("smdrd_source_received_bytes", "Bytes read from the source, since it "
                                       "started.", labels=labels)
        files = CounterMetricFamily("smdrd_source_files_read", "Files read to their end (a spool source's), since "
                                    "the source started.", labels=labels)
        up = GaugeMetricFamily("smdrd_source_up", "1 while the source counts as up by the rules of /healthz "
                               "(connected, or a push source with a recent line).", labels=labels)
        info = GaugeMetricFamily("smdrd_source_info", "Each configured source, with its kind and format.",
                                 labels=["source", "kind", "format"])
        running = daemon.sources
        now = time.time()
        for cfg in daemon.settings.sources:
            if not cfg.enabled:
                continue
            rs = running.get(cfg.name)
            name = [cfg.name]
            info.add_metric([cfg.name, cfg.kind, cfg.format], 1)
            if rs is None:  # configured but not started (yet): zeros, not gaps
                for family in (connected, up, last_line, reconnects, connections, refused, received, files):
                    family.add_metric(name, 0)
                continue
            status = rs.source.status
            last = rs.ingest.counters.last_line_at
            connected.add_metric(name, 1 if status.connected else 0)
            down = source_down(cfg.kind, bool(getattr(cfg, "follow", False)), status.connected, last, now)
            up.add_metric(name, 1 if down is None else 0)
            last_line.add_metric(name, last or 0)
            reconnects.add_metric(name, status.reconnects)
            connections.add_metric(name, status.connections)
            refused.add_metric(name, status.refused)
            received.add_metric(name, status.bytes_read)
            files.add_metric(name, status.files_read)
        yield from (connected, up, last_line, reconnects, connections, refused, received, files, info)

        # The department tree, so a dashboard can keep to top-level departments (parent=""), whose figures
        # count each call once, or show a parent beside its sub-departments as a report does.
        departments = GaugeMetricFamily("smdrd_department_info", "Each department and its parent (\"\" for a "
                                        "top-level one); a parent's figures include its sub-departments'.",
                                        labels=["department", "parent"])
        for dep in daemon.settings.departments:
            departments.add_metric([dep.name, dep.parent or ""], 1)
        departments.add_metric([NO_DEPARTMENT, ""], 1)
        yield departments

        writer = daemon.writer
        yield GaugeMetricFamily("smdrd_journal_pending_rows", "Lines received and not yet committed.",
                                value=writer.pending)
        yield GaugeMetricFamily("smdrd_journal_max_pending_rows", "Pending lines at which sources are paused "
                                "(the writer's share of database.max_pending_rows).", value=writer.max_pending)
        yield CounterMetricFamily("smdrd_journal_commits", "Journal transactions committed.",
                                  value=writer.stats.commits)
        yield CounterMetricFamily("smdrd_journal_commit_failures", "Journal transactions that failed and were "
                                  "retried (disk full, database locked).", value=writer.stats.failures)
        yield CounterMetricFamily("smdrd_journal_duplicate_calls", "Calls received again (a PBX re-sending its "
                                  "buffer) and not stored twice.", value=writer.stats.duplicates)

        histogram = HistogramMetricFamily("smdrd_call_duration_seconds", "Talk time of answered calls.",
                                          labels=["direction"])
        for direction, buckets in m.call_duration.items():
            histogram.add_metric([direction], buckets.family_buckets(), buckets.sum)
        yield histogram
        latency = HistogramMetricFamily("smdrd_journal_write_latency_seconds",
                                        "From a line's receipt to the commit that journalled it.")
        latency.add_metric([], m.write_latency.family_buckets(), m.write_latency.sum)
        yield latency

        yield GaugeMetricFamily("smdrd_alerts_pending_delivery", "Alerts in the outbox, not yet delivered.",
                                value=m._alerts_pending)
        yield GaugeMetricFamily("smdrd_mqtt_connected", "1 while the MQTT publisher is connected to its broker.",
                                value=1 if m._mqtt_connected else 0)
        yield GaugeMetricFamily("smdrd_start_time_seconds", "When the daemon started, in Unix time.",
                                value=m.started_at)


def install(daemon: Daemon) -> Metrics:
    """Count commits, read live state at scrape time, and serve ``/metrics`` on the daemon's HTTP server."""
    # Prometheus 2 stores each `_created` sample as one more series: twice the series for a start time that
    # `smdrd_start_time_seconds` already gives. (Process-wide, which is what a daemon wants.)
    disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus-client 0.26
    m = Metrics(daemon.settings)
    m.registry.register(_LiveCollector(daemon, m))
    # The process and Python runtime, as every Prometheus client exports them (memory, CPU, open files, GC).
    ProcessCollector(registry=m.registry)
    PlatformCollector(registry=m.registry)
    GCCollector(registry=m.registry)
    daemon.commit_listeners.append(m.on_commit)
    daemon.reload_listeners.append(m.reload)
    if daemon.http is not None:
        async def serve_metrics(request: Request) -> Response:
            body, content_type = m.render(request.headers.get("accept"))
            return Response(200, body, content_type)

        daemon.http.route("/metrics", serve_metrics)
    return m
