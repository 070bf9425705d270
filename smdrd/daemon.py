"""The daemon: wires the async edges (sources, the journal writer) to the pure core, and runs their lifecycle.

Start: open and migrate the database, start the writer, start every enabled source, tell systemd READY.
SIGHUP: reload the configuration; sources added, removed or changed are restarted, the others keep their
connections; an invalid file keeps the old configuration running and says why.
SIGTERM/SIGINT: stop reading (each source drains what it already has), commit everything received, exit 0.

A source that fails is restarted after a growing delay; nothing a PBX sends can stop the daemon.

Composition is explicit: `Daemon.build` makes each feature of `FEATURES` (health, metrics, reports, the console,
alerts, MQTT delivery, retention) in that order, handing each what it needs (alerts get the metrics object; MQTT
delivery gets both), and keeps them in `Daemon.features`. A feature adds HTTP routes (`Daemon.http`), observers
of committed entries (`Daemon.commit_listeners`, a list), reload listeners, background tasks (`Daemon.add_task`)
and the call observer (`Daemon.hooks`). Every task (the writer, each source, each feature's) runs under one
`asyncio.TaskGroup`, supervised: one that dies of an error is logged with its traceback, turns `/healthz` red and
starves the watchdog, and the others keep running until systemd restarts the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable, Collection, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from smdrd import __version__
from smdrd.backoff import Backoff
from smdrd.config import Settings, SourceConfig, http_token, load_config
from smdrd.core import Entry
from smdrd.directory import resolve as resolve_directory
from smdrd.errors import SmdrdError
from smdrd.heap import settle
from smdrd.http import HttpServer
from smdrd.ingest import Hooks, SourceIngest
from smdrd.notify import notify, watchdog_interval
from smdrd.pipeline import MAX_IN_FLIGHT, Pipeline
from smdrd.sources.base import Source
from smdrd.sources.streams import describe
from smdrd.store import journal_writer
from smdrd.store.sqlite.writer import JournalWriter
from smdrd.tariffs import note_in_force
from smdrd.tariffs import resolved as resolved_tariff

if TYPE_CHECKING:
    from smdrd.alerts.feature import Alerts
    from smdrd.console import Console
    from smdrd.delivery import MqttDelivery
    from smdrd.health import HealthMonitor
    from smdrd.mail import MailDelivery
    from smdrd.metrics import Metrics
    from smdrd.rating import Rater
    from smdrd.reports.http import ReportService
    from smdrd.retention import Pruner

log = structlog.get_logger("smdrd.daemon")


@dataclass
class RunningSource:
    config: SourceConfig
    ingest: SourceIngest
    source: Source
    task: asyncio.Task[None]


#: the features a daemon is built with, in build order (each one's dependencies come before it).
FEATURES: tuple[str, ...] = ("health", "metrics", "reports", "console", "alerts", "mqtt", "mail", "retention")


@dataclass
class Features:
    """The features one daemon was built with (``None``: not built). Explicit references, no registries."""

    health: HealthMonitor | None = None
    metrics: Metrics | None = None
    reports: ReportService | None = None
    console: Console | None = None
    alerts: Alerts | None = None
    mqtt: MqttDelivery | None = None
    mail: MailDelivery | None = None
    retention: Pruner | None = None


CommitListener = Callable[[list[Entry], float], None]

#: at stop, how long to keep retrying commits that fail (a full disk) before giving up and exiting 1.
STOP_COMMIT_TIMEOUT = 20.0


def build_hooks(settings: Settings, base_dir: Path | None = None, version: int | None = None) -> Hooks:
    """The pipeline's hooks for ``settings``: the tariff's rating function (the alerts feature adds the observer),
    whose ratings name the saved tariff version ``version`` (None: the files' tariff, by its digest).

    Raises:
        TariffError: a rate deck or rule is invalid (says which file and line).
    """
    from smdrd.rating import Rater

    rater = Rater.from_config(settings.site, settings.tariff, base_dir=base_dir, version=version)
    return Hooks(rater.rate)


class Daemon:
    """One smdrd process. ``await Daemon(settings, config_path).run()`` returns the exit status."""

    def __init__(
        self,
        settings: Settings,
        config_path: Path | None = None,
        *,
        on_commit: CommitListener | None = None,
        features: Collection[str] | None = None,
    ) -> None:
        # [tariff] source = "database": the latest saved version's rules, and its number (None: the files)
        settings, self.tariff_version = resolved_tariff(settings)
        settings = resolve_directory(settings)  # [directory] source = "database": its departments
        self.settings = settings
        #: the stored directory's version in force (`use_directory`), None before the first swap
        self.directory_version: int | None = None
        self.config_path = config_path
        db = settings.database
        #: called after each commit with the committed entries and the commit's duration.
        self.commit_listeners: list[CommitListener] = [on_commit] if on_commit else []
        # ``max_pending_rows`` bounds every line received and not yet committed (what a kill -9 can lose): with
        # the worker, the lines it holds take their share of it, and the writer queues the rest.
        in_worker = min(MAX_IN_FLIGHT, db.max_pending_rows // 4) if db.parse_in_worker else 0
        self.writer: JournalWriter = journal_writer(  # SQLite, or PostgreSQL for a [database] url
            db.target, commit_interval=db.commit_interval_ms / 1000, batch_rows=db.batch_rows,
            max_pending=db.max_pending_rows - in_worker, on_commit=self._committed, site=settings.site.name)
        self.hooks = build_hooks(settings, self.base_dir, self.tariff_version)
        #: parses and rates every source's lines in a worker process (alert rules run here, on its entries).
        self.pipeline: Pipeline | None = None
        if db.parse_in_worker:
            self.pipeline = Pipeline(settings, self.base_dir, on_failure=self._failed, max_in_flight=in_worker,
                                     version=self.tariff_version)
        #: the HTTP server (metrics, health, reports), or None when ``[http] enabled = false``.
        self.http: HttpServer | None = None
        if settings.http.enabled:
            self.http = HttpServer(settings.http.listen, _http_token(settings), config=settings.http)
        #: called with the new settings after a successful reload (features re-read their sections).
        self.reload_listeners: list[Callable[[Settings], None]] = []
        self._task_factories: list[tuple[str, Callable[[], Coroutine[Any, Any, Any]]]] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._group: asyncio.TaskGroup | None = None
        self._children: set[asyncio.Task[Any]] = set()
        wanted = FEATURES if features is None else tuple(features)
        unknown = sorted(set(wanted) - set(FEATURES))
        if unknown:
            raise ValueError(f"unknown features {unknown}; expected some of {', '.join(FEATURES)}")
        #: which features to build, and (after `build`) the built ones.
        self.wanted_features = wanted
        self.features = Features()
        self._built = False
        self.sources: dict[str, RunningSource] = {}
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()
        self._reloading: asyncio.Task[None] | None = None
        #: supervised tasks that died of an error, by name, with the error: `/healthz` turns 503, the watchdog
        #: is no longer fed (so systemd restarts the daemon) and the stop says what happened.
        self.failed_tasks: dict[str, str] = {}
        self._stopping = False

    @property
    def base_dir(self) -> Path | None:
        """The folder relative paths in the configuration are read from (the config file's)."""
        return self.config_path.parent if self.config_path is not None else None

    def build(self) -> Features:
        """Make each wanted feature, in `FEATURES` order, with what it needs (once; `run` calls it)."""
        if self._built:
            return self.features
        self._built = True
        wanted, f = self.wanted_features, self.features
        if "health" in wanted:
            from smdrd.health import install as health

            f.health = health(self)
        if "metrics" in wanted:
            from smdrd.metrics import install as metrics

            f.metrics = metrics(self)
        if "reports" in wanted:
            from smdrd.reports.http import install as reports

            f.reports = reports(self)
        if "console" in wanted:
            from smdrd.console import install as console

            f.console = console(self)
        if "alerts" in wanted:
            from smdrd.alerts.feature import install as alerts

            f.alerts = alerts(self, metrics=f.metrics)
        if "mqtt" in wanted:
            from smdrd.delivery import install as mqtt

            f.mqtt = mqtt(self, alerts=f.alerts, metrics=f.metrics)
        if "mail" in wanted:
            from smdrd.mail import install as mail

            f.mail = mail(self)
        if "retention" in wanted:
            from smdrd.retention import install as retention

            f.retention = retention(self)
        from smdrd.directory import watch

        self.add_task("directory-watch", lambda: watch(self))
        return f

    def add_task(self, name: str, factory: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Run ``factory()`` (a coroutine) as a background task from start; it is cancelled at stop, after
        the journal is committed."""
        self._task_factories.append((name, factory))

    def _committed(self, entries: list[Entry], seconds: float) -> None:
        for listener in self.commit_listeners:
            try:
                listener(entries, seconds)
            except Exception as exc:  # a metrics or report bug must not stall the journal
                log.error("daemon.commit_listener_failed", error=repr(exc))

    @property
    def ready(self) -> asyncio.Event:
        """Set once the database is open and the sources are started."""
        return self._ready

    def request_stop(self) -> None:
        self._stop.set()

    def _spawn(self, name: str, factory: Callable[[], Coroutine[Any, Any, Any]]) -> asyncio.Task[Any]:
        """Run ``factory()`` as a supervised task of the daemon's task group."""
        assert self._group is not None, "only while the daemon runs"
        task = self._group.create_task(self._supervised(name, factory), name=name)
        self._children.add(task)
        task.add_done_callback(self._children.discard)
        return task

    async def _supervised(self, name: str, factory: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Run ``factory()``; if it ends with an error (a bug), that is never silent, and the task group (every other
        task) keeps running: `/healthz` says what failed and the watchdog makes systemd restart the daemon."""
        try:
            await factory()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed(name, exc)
        else:
            if name == "journal-writer" and not self._stopping:
                self._failed(name, RuntimeError("the journal writer returned before the daemon stopped"))

    def _failed(self, name: str, exc: BaseException) -> None:
        self.failed_tasks[name] = f"{type(exc).__name__}: {exc}"[:500]
        log.error("daemon.task_failed", task=name, error=self.failed_tasks[name],
                  exc_info=(type(exc), exc, exc.__traceback__),
                  consequence="unhealthy; the systemd watchdog is no longer fed, so systemd restarts smdrd")
        notify(f"STATUS=failed: {name} stopped by an internal error; see the log")

    def request_reload(self) -> None:
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.get_running_loop().create_task(self.reload(), name="reload")

    async def run(self) -> int:
        """Build, start, run until asked to stop, stop; the exit status (0, or 1 after a failure)."""
        self.build()
        await self.writer.open()
        if self.http is not None:
            try:
                await self.http.start()
            except SmdrdError as exc:  # the configuration's [http] listen: say which file holds it
                await self.writer.close_connection()
                if self.config_path is None:
                    raise
                raise SmdrdError(f"{self.config_path}: {exc}") from None
            except BaseException:
                await self.writer.close_connection()
                raise
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                try:
                    return await self._run()
                finally:
                    for task in list(self._children):  # none should be left; never wait for a stray one
                        task.cancel()
                    self._group = None
        except BaseExceptionGroup as group_error:
            # Supervised tasks never raise into the group, so this is the body's own error: raise it as it is.
            if len(group_error.exceptions) == 1:
                raise group_error.exceptions[0] from None
            raise

    async def _run(self) -> int:
        loop = asyncio.get_running_loop()
        await self._note_tariff(self.tariff_version)
        writer_task = self._spawn("journal-writer", self.writer.run)
        if self.pipeline is not None:
            self._spawn("pipeline", self.pipeline.run)
        for name, factory in self._task_factories:
            self._tasks.append(self._spawn(name, factory))
        for sig, handler in ((signal.SIGTERM, self.request_stop), (signal.SIGINT, self.request_stop),
                             (signal.SIGHUP, self.request_reload)):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, handler)
        # With the worker, sources start once it can parse: what they received before would wait unjournalled.
        if self.pipeline is None or await self.pipeline.wait_ready(self._stop):
            for cfg in self.settings.sources:
                if cfg.enabled:
                    self._start_source(cfg)
        watchdog = self._spawn("watchdog", self._watchdog)
        log.info("daemon.started", version=__version__, database=self.settings.database.shown,
                 sources=[s.name for s in self.settings.sources if s.enabled])
        notify("READY=1", f"STATUS=collecting from {len(self.sources)} source(s)")
        # What it holds from now on (modules, settings, the rater) is long-lived: frozen once per process, and
        # the young generation collected less often (`smdrd.heap`).
        settle(once=True)
        self._ready.set()
        status = 0
        try:
            await self._stop.wait()
        finally:
            self._stopping = True
            notify("STOPPING=1")
            log.info("daemon.stopping", pending=self.writer.pending)
            await self._stop_sources(list(self.sources))
            if self.pipeline is not None:  # what the worker holds, to the writer
                await self.pipeline.close(give_up_after=STOP_COMMIT_TIMEOUT)
            watchdog.cancel()
            if "journal-writer" in self.failed_tasks:
                # The writer died of a bug (logged with its traceback when it happened): nothing will commit
                # what is pending, so say so and exit at once rather than wait for a commit that cannot come.
                status = 1
                log.error("daemon.stop_after_failure", failed=dict(self.failed_tasks),
                          uncommitted_lines=self.writer.pending,
                          reason="the journal writer had stopped; lines received since then were not committed")
                await self.writer.close_connection()
            elif not await self.writer.close(give_up_after=STOP_COMMIT_TIMEOUT):
                # Commits keep failing (disk full): exit non-zero rather than hang until systemd's SIGKILL.
                status = 1
                writer_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer_task
                await self.writer.close_connection()
            else:
                await writer_task
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(task, 5.0)
            if self.http is not None:
                await self.http.close()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
            if self.failed_tasks:
                status = 1
            log.info("daemon.stopped", lines=self.writer.stats.lines, calls=self.writer.stats.calls,
                     status=status)
        return status

    def _start_source(self, cfg: SourceConfig) -> None:
        from smdrd.sources.factory import build_source

        ingest = SourceIngest(name=cfg.name, format=cfg.format, site=self.settings.site, writer=self.writer,
                              hooks=self.hooks, encoding=cfg.encoding, year=cfg.year,
                              options=cfg.format_options, max_line=cfg.max_line_length,
                              pipeline=self.pipeline)
        source = build_source(cfg, ingest)
        task = self._spawn(f"source:{cfg.name}", lambda: self._supervise(source))
        self.sources[cfg.name] = RunningSource(cfg, ingest, source, task)
        log.info("source.started", source=cfg.name, kind=cfg.kind, format=cfg.format)

    async def _supervise(self, source: Source) -> None:
        """Run ``source``; restart it after a growing delay if it fails. A finished file read is done."""
        backoff = Backoff(2.0, 60.0, floor=1.0)
        while True:
            try:
                await source.run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = backoff.next_delay()
                level = log.error if backoff.attempt == 1 else log.debug
                # An SmdrdError says what went wrong in words (a missing file, a refused login): no traceback.
                level("source.failed", source=source.name, error=describe(exc), restart_in=round(delay, 1),
                      failures=backoff.attempt, exc_info=backoff.attempt == 1 and not isinstance(exc, SmdrdError))
                source.status.failed(exc)
                await asyncio.sleep(delay)
                continue
            if source.kind == "file":
                log.info("source.finished", source=source.name)
                return
            backoff.reset()
            await asyncio.sleep(1.0)

    async def _stop_sources(self, names: list[str]) -> None:
        running = [self.sources.pop(n) for n in names if n in self.sources]
        for rs in running:
            rs.task.cancel()
        for rs in running:
            with contextlib.suppress(asyncio.CancelledError):
                try:
                    await asyncio.wait_for(rs.task, 5.0)
                except TimeoutError:
                    log.error("source.stop_timeout", source=rs.config.name)
                except Exception as exc:
                    log.error("source.stop_failed", source=rs.config.name, error=repr(exc))

    async def reload(self) -> None:
        """Re-read the configuration file; restart only the sources that changed."""
        log.info("daemon.reloading", config=str(self.config_path))
        try:
            new = await asyncio.to_thread(load_config, self.config_path)
            new, version = await asyncio.to_thread(resolved_tariff, new)
            new = await asyncio.to_thread(resolve_directory, new)
            new_hooks = build_hooks(new, self.base_dir, version)
        except SmdrdError as exc:  # a config or tariff error: names the file, key or line, never a secret
            log.error("daemon.reload_rejected", reason=str(exc), kept="the running configuration")
            return
        except Exception as exc:  # anything else loading raises (a bug): still keep the running configuration
            log.error("daemon.reload_rejected", reason=_unexpected(exc), kept="the running configuration")
            return
        if new.database.target != self.settings.database.target:
            log.warning("daemon.reload_database_ignored", reason="the database path changes on restart only")
        old = {s.name: s for s in self.settings.sources if s.enabled}
        fresh = {s.name: s for s in new.sources if s.enabled}
        removed = [n for n in old if n not in fresh]
        added = [n for n in fresh if n not in old]
        if new.site != self.settings.site:
            changed = [n for n in old if n in fresh]  # parsers read the site's timezone: restart them all
        else:
            changed = [n for n in old if n in fresh and fresh[n] != old[n]]
        self.hooks.rate = new_hooks.rate
        if self.pipeline is not None:
            self.pipeline.configure(new, self.base_dir, version=version)
        self.settings = new
        if version != self.tariff_version:
            await self._note_tariff(version)
        for listener in self.reload_listeners:
            listener(new)
        await self._stop_sources(removed + changed)
        for name in changed + added:
            self._start_source(fresh[name])
        log.info("daemon.reloaded", added=added, removed=removed, changed=changed,
                 unchanged=[n for n in old if n in fresh and n not in changed])

    def use_directory(self, settings: Settings, version: int | None = None) -> None:
        """Swap in the departments of ``settings`` (the directory changed in the database, now at ``version``):
        every feature re-reads them as at a reload (reports and the managers' scoping, budget alerts, metrics).
        Not a version at or below the one in force: the watch may have read the stored directory just before the
        console wrote and swapped in a newer one, and would put the old one back until its next look."""
        if version is not None:
            if self.directory_version is not None and version <= self.directory_version:
                return
            self.directory_version = version
        self.settings = self.settings.model_copy(update={"departments": settings.departments})
        for listener in self.reload_listeners:
            listener(self.settings)
        log.info("daemon.directory_swapped", departments=len(settings.departments))

    async def _note_tariff(self, version: int | None) -> None:
        """The audit log's ``tariff.in_force`` entry: from now on calls are priced by ``version`` (with
        ``source = "database"``; nothing for the files, whose digest the ``daemon.tariff_in_force`` event gives)."""
        self.tariff_version = version
        rater = getattr(self.hooks.rate, "__self__", None)
        digest = str(getattr(getattr(rater, "tariff", None), "digest", ""))
        log.info("daemon.tariff_in_force", version=version, digest=digest)
        if version is None:
            return
        try:
            await asyncio.to_thread(note_in_force, self.settings.database.target, version, digest, at=int(time.time()))
        except Exception as exc:  # the database is busy or gone: the log above still says it
            log.warning("daemon.tariff_in_force_not_noted", version=version, error=f"{type(exc).__name__}: {exc}")

    async def use_tariff(self, settings: Settings, rater: Rater | None = None, *, version: int | None = None) -> None:
        """Swap in the tariff of ``settings`` (``version``, saved in the console), as a reload would: compiled off
        the event loop (unless ``rater`` is its compiled rater already, `Rater.labelled` with ``version``), then
        swapped in one assignment here and queued to the pipeline worker behind the lines already sent; noted in
        the audit log. Raises `TariffError` (the running tariff stays) when it does not compile."""
        rate = rater.rate if rater is not None else (
            await asyncio.to_thread(build_hooks, settings, self.base_dir, version)).rate
        self.hooks.rate = rate
        if self.pipeline is not None:
            self.pipeline.configure(settings, self.base_dir, version=version)
        self.settings = self.settings.model_copy(update={"tariff": settings.tariff})
        log.info("daemon.tariff_swapped", rules=len(settings.tariff.rules), mode=settings.tariff.mode)
        await self._note_tariff(version)

    async def _watchdog(self) -> None:
        interval = watchdog_interval()
        if interval is None:
            return
        while True:
            if self.failed_tasks:
                # Starve the watchdog: systemd kills and restarts a daemon one of whose tasks died of a bug.
                log.error("daemon.watchdog_starved", failed=sorted(self.failed_tasks))
                return
            notify("WATCHDOG=1")
            await asyncio.sleep(interval)


def _http_token(settings: Settings) -> str | None:
    """The HTTP token (`smdrd.config.http_token`): a token_file that cannot be read or holds an empty or short
    token is a `ConfigError` at start, so the server never runs open by mistake."""
    return http_token(settings.http)


def _unexpected(exc: BaseException) -> str:
    """An unexpected error as a reason for the log: its type and where it was raised, not its text (which may
    quote a value from the configuration, a secret among them)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f" at {Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}" if tb is not None else ""
    return f"unexpected {type(exc).__name__}{where} while loading the configuration (a bug: please report it)"


def run_daemon(settings: Settings, config_path: Path | None, **kwargs: Any) -> int:
    """Run the daemon until SIGTERM/SIGINT; return the exit status."""
    return asyncio.run(Daemon(settings, config_path, **kwargs).run())
