"""Alerts on abnormal calls: rules on the hot path, and an outbox written in the call's transaction.

Built by `smdrd.daemon.Daemon.build` as the ``alerts`` feature (``daemon.features.alerts``), after ``metrics``.
`install` puts the rules where the calls are rated: in the pipeline worker when the daemon has one
(`smdrd.pipeline.Pipeline.set_alerts`: the engine and all its state live there), otherwise as the call observer
on the event loop (`smdrd.alerts.engine.AlertEngine.observe`). It adds a commit listener (logs and counts the
alerts committed), a background task (source health checks, outbox retention) and a reload listener (re-reads
``[alerts]`` and ``[[departments]]``). Delivery is the ``mqtt`` feature's (`smdrd.delivery`): it reads
the outbox, and `Alerts.outbox_listeners` wakes it when an operational alert is added.

This package never holds a call back: rules run inline and cheap, everything slow happens after the commit.
See docs/alerts.md for the rules, topics and payloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

import structlog

from smdrd.alerts.engine import RESOLVED_SUFFIX, AlertEngine, AlertStats, Departments, NoDepartments
from smdrd.alerts.rules import MAX_SEEN, SPEND_RULES, RuleSet, SourceSnapshot, build_rules
from smdrd.errors import SmdrdError
from smdrd.journal import Alert, JournalEntry
from smdrd.pipeline import AlertSetup, Spend
from smdrd.store import open_store

if TYPE_CHECKING:
    from smdrd.config import Settings
    from smdrd.daemon import Daemon
    from smdrd.metrics import Metrics

__all__ = ["AlertEngine", "AlertStats", "Alerts", "compile_settings", "install"]

log = structlog.get_logger("smdrd.alerts")



def departments_of(settings: Settings) -> tuple[Departments, dict[str, tuple[Decimal | None, Decimal | None]]]:
    """The department directory of ``[[departments]]`` and its monthly budgets (``budget``)."""
    from smdrd.reports.departments import Directory

    try:
        directory = Directory.from_config(settings.departments)
    except SmdrdError as exc:  # load_config reports it; alerts still run, without departments
        log.error("alerts.departments_invalid", reason=str(exc))
        return NoDepartments(), {}
    return directory, {name: (None, budget) for name, budget in directory.budgets.items()}


def compile_settings(settings: Settings) -> tuple[RuleSet, Departments]:
    """The rules and the department directory for ``settings`` (the tariff's holidays are closed days too)."""
    directory, budgets = departments_of(settings)
    rules = build_rules(settings.alerts, settings.site, holidays=settings.tariff.holidays, budgets=budgets)
    return rules, directory


def _which_call(alert: Alert) -> dict[str, object]:
    """The call an alert is about, for its log line: the call's uid, extension, number and start, and the
    reason a person reads (from the payload, which says it for every channel)."""
    payload = json.loads(alert.payload)
    call = payload.get("call") or {}
    return {"call": call.get("uid"), "extension": payload.get("extension"), "number": call.get("number"),
            "start": call.get("start"), "reason": payload.get("reason")}


class Alerts:
    """The alerts feature of one daemon: engine, outbox, publisher and the source health checks."""

    def __init__(self, daemon: Daemon, *, metrics: Metrics | None = None) -> None:
        self.daemon = daemon
        settings = daemon.settings
        rules, directory = compile_settings(settings)
        self.engine = AlertEngine(rules, settings.site.tz, site=settings.site.name, directory=directory,
                                  decimals=settings.tariff.decimals)
        self.store = open_store(settings.database.target)
        self.outbox = self.store.outbox()
        #: the daemon's pipeline worker, which then runs the rules (the engine here only compiles them).
        self.pipeline = daemon.pipeline
        self._worker_stats = AlertStats()
        if self.pipeline is not None:
            self.pipeline.set_alerts(self._setup(), self._stored_spend, self._stored_seen)
        #: called after alerts were added to the outbox outside a commit (the MQTT delivery wakes).
        self.outbox_listeners: list[Callable[[], None]] = []
        #: alerts committed and not yet acknowledged by the broker (approximate between checks).
        self.pending = 0
        self._metrics = metrics
        self._declare_rules()

    # -- daemon hooks -----------------------------------------------------------------------------------------

    def committed(self, entries: list[JournalEntry], seconds: float) -> None:
        """Commit listener: log and count the alerts just made durable."""
        raised = 0
        for entry in entries:
            for alert in entry.alerts:
                raised += 1
                log.warning("alert.raised", rule=alert.rule, severity=alert.severity, id=alert.id,
                            **_which_call(alert))
                self._metric_raised(alert.rule, alert.severity)
        if raised:
            self.pending += raised
            self._metric_pending()

    def delivered(self, n: int) -> None:
        """``n`` alerts were acknowledged by the broker (the MQTT delivery's report)."""
        self.pending = max(0, self.pending - n)
        self._metric_pending()

    def reloaded(self, settings: Settings) -> None:
        """Reload listener: swap in the new rules."""
        try:
            rules, directory = compile_settings(settings)
        except Exception as exc:  # validated already; a surprise here must not break the reload
            log.error("alerts.reload_rejected", reason=str(exc), kept="the running rules")
            return
        self.engine.configure(rules, settings.site.tz, site=settings.site.name, directory=directory,
                              decimals=settings.tariff.decimals)
        if self.pipeline is not None:
            self.pipeline.set_alerts(self._setup(), self._stored_spend, self._stored_seen)
        self._declare_rules()
        log.info("alerts.reloaded", rules=[a.rule.name for a in rules.calls + rules.sources])

    # -- the background task ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Seed the budgets, then run the source health checks and the outbox's retention until cancelled."""
        self._seed_budgets()  # synchronously, before any source runs: the first call sees stored spend
        try:
            await self.outbox.open()
            self.pending = await self.outbox.count_pending()
            self._metric_pending()
            await self._checks()
        finally:
            await self.outbox.close()

    def _setup(self) -> AlertSetup:
        e = self.engine
        return AlertSetup(e.rules, e.tz.key, e.site, e.directory, e.decimals)

    @property
    def stats(self) -> AlertStats:
        """The engine's counters: the worker's as of its last answer (`current_stats`), or the loop's own."""
        return self._worker_stats if self.pipeline is not None else self.engine.stats

    async def current_stats(self) -> AlertStats:
        """The engine's counters now, once every call sent before was rated (asks the worker, if it has one)."""
        if self.pipeline is not None and (checked := await self.pipeline.check([], 0, stats_only=True)):
            self._worker_stats = checked.stats
        return self.stats

    def _stored_spend(self) -> Spend:
        """This month's stored spend, that budgets start from (none to read without a budget rule)."""
        if not any(a.rule.name in SPEND_RULES for a in self.engine.rules.calls):
            return []
        now = datetime.now(self.engine.tz)
        month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        return self.store.spend_since(int(month_start.timestamp()))

    def _stored_seen(self) -> list[str]:
        """The uids of the newest stored calls, oldest first, that the engine takes as observed already."""
        if not self.engine.rules.calls:
            return []
        return self.store.recent_call_uids(MAX_SEEN)

    def _seed_budgets(self) -> None:
        if self.pipeline is not None:
            return  # the worker's engine starts from the stored spend each time a worker starts
        try:
            totals, seen = self._stored_spend(), self._stored_seen()
        except Exception as exc:
            log.error("alerts.budget_seed_failed", error=str(exc))
            return
        self.engine.seed_spend(totals)
        self.engine.seed_seen(seen)

    async def _check(self, now: float) -> list[Alert]:
        """The operational alerts raised or resolved at ``now``, by whichever engine runs the rules."""
        if self.pipeline is None:
            return self.engine.check_sources(self._snapshots(), now) + self.engine.check_periods(now)
        checked = await self.pipeline.check(self._snapshots(), now)
        if checked is None:
            return []
        self._worker_stats = checked.stats
        return checked.alerts

    async def _checks(self) -> None:
        last_prune = 0.0
        while True:
            await asyncio.sleep(self.daemon.settings.alerts.check_interval)
            try:
                now = time.time()
                raised = await self._check(now)
                if raised:
                    added = await self.outbox.insert(raised)
                    for alert in raised:
                        if alert.id.endswith(RESOLVED_SUFFIX):  # a source back, a budget period over
                            log.info("alert.resolved", rule=alert.rule, id=alert.id)
                            continue
                        log.warning("alert.raised", rule=alert.rule, severity=alert.severity, id=alert.id)
                        self._metric_raised(alert.rule, alert.severity)
                    if added:
                        self.pending += added
                        self._metric_pending()
                        for listener in self.outbox_listeners:
                            listener()
                if now - last_prune > 3600:
                    last_prune = now
                    await self.outbox.prune(self.daemon.settings.alerts.retention_days)
                    self.pending = await self.outbox.count_pending()
                    self._metric_pending()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a locked database, a bug: try again at the next check
                log.error("alerts.check_failed", error=repr(exc))

    def _snapshots(self) -> list[SourceSnapshot]:
        from smdrd.health import source_down

        # "Down" means what /healthz says (a push source between calls, a file read once, are not down).
        now = time.time()
        snaps = []
        for name, rs in self.daemon.sources.items():
            status, counters = rs.source.status, rs.ingest.counters
            down = source_down(rs.config.kind, bool(getattr(rs.config, "follow", False)), status.connected,
                               counters.last_line_at, now)
            snaps.append(SourceSnapshot(name, down is None, counters.lines, counters.errors, status.last_data_at))
        return snaps

    # -- metrics (when the daemon has the metrics feature) ------------------------------------------------------

    def _declare_rules(self) -> None:
        if self._metrics is None:
            return
        for armed in self.engine.rules.calls + self.engine.rules.sources:
            rule = armed.rule
            severities = ("warning", "critical") if rule.name == "budget" else (str(getattr(rule, "severity", "")),)
            for severity in severities:
                with contextlib.suppress(Exception):
                    self._metrics.declare_alert_rule(rule.name, severity)

    def _metric_raised(self, rule: str, severity: str) -> None:
        if self._metrics is not None:
            with contextlib.suppress(Exception):
                self._metrics.alert_raised(rule, severity)

    def _metric_pending(self) -> None:
        if self._metrics is not None:
            with contextlib.suppress(Exception):
                self._metrics.alerts_pending(self.pending)


def install(daemon: Daemon, *, metrics: Metrics | None = None) -> Alerts:
    """Add alerts to ``daemon`` (see the module docstring), reporting to ``metrics`` when there is one."""
    alerts = Alerts(daemon, metrics=metrics)
    if daemon.pipeline is None:
        daemon.hooks.add_observer(alerts.engine.observe)
    daemon.commit_listeners.append(alerts.committed)
    daemon.reload_listeners.append(alerts.reloaded)
    daemon.add_task("alerts", alerts.run)
    return alerts
