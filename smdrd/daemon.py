"""The daemon: wires the async edges (sources, the journal writer) to the pure core, and runs their lifecycle.

Start: open and migrate the database, start the writer, start every enabled source, tell systemd READY.
SIGHUP: reload the configuration; sources added, removed or changed are restarted, the others keep their
connections; an invalid file keeps the old configuration running and says why.
SIGTERM/SIGINT: stop reading (each source drains what it already has), commit everything received, exit 0.

A source that fails is restarted after a growing delay; nothing a PBX sends can stop the daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from smdrd import __version__
from smdrd.config import Settings, SourceConfig, load_config
from smdrd.core import Entry
from smdrd.errors import ConfigError, SmdrdError
from smdrd.ingest import RaterHolder, SourceIngest
from smdrd.notify import notify, watchdog_interval
from smdrd.sources.base import Source
from smdrd.store.writer import JournalWriter

log = structlog.get_logger("smdrd.daemon")


@dataclass
class RunningSource:
    config: SourceConfig
    ingest: SourceIngest
    source: Source
    task: asyncio.Task[None]


def build_rater(settings: Settings) -> RaterHolder:
    """The rating function for ``settings`` (``None`` until a tariff engine is available)."""
    try:
        from smdrd.rating import Rater
    except ImportError:
        return RaterHolder(None)
    rater = Rater.from_config(settings.site, settings.tariff)
    return RaterHolder(rater.rate)


class Daemon:
    """One smdrd process. ``await Daemon(settings, config_path).run()`` returns the exit status."""

    def __init__(
        self,
        settings: Settings,
        config_path: Path | None = None,
        *,
        on_commit: Callable[[list[Entry], float], None] | None = None,
    ) -> None:
        self.settings = settings
        self.config_path = config_path
        db = settings.database
        self.writer = JournalWriter(db.path, commit_interval=db.commit_interval_ms / 1000,
                                    batch_rows=db.batch_rows, max_pending=db.max_pending_rows,
                                    on_commit=on_commit)
        self.rater = build_rater(settings)
        self.sources: dict[str, RunningSource] = {}
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()
        self._reloading: asyncio.Task[None] | None = None

    @property
    def ready(self) -> asyncio.Event:
        """Set once the database is open and the sources are started."""
        return self._ready

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.get_running_loop().create_task(self.reload(), name="reload")

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        await self.writer.open()
        writer_task = loop.create_task(self.writer.run(), name="journal-writer")
        for sig, handler in ((signal.SIGTERM, self.request_stop), (signal.SIGINT, self.request_stop),
                             (signal.SIGHUP, self.request_reload)):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, handler)
        for cfg in self.settings.sources:
            if cfg.enabled:
                self._start_source(cfg)
        watchdog = loop.create_task(self._watchdog(), name="watchdog")
        log.info("daemon.started", version=__version__, database=str(self.settings.database.path),
                 sources=[s.name for s in self.settings.sources if s.enabled])
        notify("READY=1", f"STATUS=collecting from {len(self.sources)} source(s)")
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            notify("STOPPING=1")
            log.info("daemon.stopping", pending=self.writer.pending)
            await self._stop_sources(list(self.sources))
            watchdog.cancel()
            await self.writer.close()
            await writer_task
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
            log.info("daemon.stopped", lines=self.writer.stats.lines, calls=self.writer.stats.calls)
        return 0

    def _start_source(self, cfg: SourceConfig) -> None:
        from smdrd.sources.factory import build_source

        ingest = SourceIngest(name=cfg.name, format=cfg.format, site=self.settings.site, writer=self.writer,
                              rater=self.rater, encoding=cfg.encoding, year=cfg.year,
                              options=cfg.format_options, max_line=cfg.max_line_length)
        source = build_source(cfg, ingest)
        task = asyncio.get_running_loop().create_task(self._supervise(source), name=f"source:{cfg.name}")
        self.sources[cfg.name] = RunningSource(cfg, ingest, source, task)
        log.info("source.started", source=cfg.name, kind=cfg.kind, format=cfg.format)

    async def _supervise(self, source: Source) -> None:
        """Run ``source``; restart it after a growing delay if it fails. A finished file read is done."""
        failures = 0
        while True:
            try:
                await source.run()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                delay = min(60.0, 2.0 ** min(failures, 6))
                level = log.error if failures == 1 else log.debug
                level("source.failed", source=source.name, error=repr(exc), restart_in=delay,
                      failures=failures)
                source.status.last_error = repr(exc)
                await asyncio.sleep(delay)
                continue
            if source.kind == "file":
                log.info("source.finished", source=source.name)
                return
            failures = 0
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
            new_rater = build_rater(new)
        except (ConfigError, SmdrdError) as exc:
            log.error("daemon.reload_rejected", reason=str(exc), kept="the running configuration")
            return
        if new.database.path != self.settings.database.path:
            log.warning("daemon.reload_database_ignored", reason="the database path changes on restart only")
        old = {s.name: s for s in self.settings.sources if s.enabled}
        fresh = {s.name: s for s in new.sources if s.enabled}
        removed = [n for n in old if n not in fresh]
        added = [n for n in fresh if n not in old]
        if new.site != self.settings.site:
            changed = [n for n in old if n in fresh]  # parsers read the site's timezone: restart them all
        else:
            changed = [n for n in old if n in fresh and fresh[n] != old[n]]
        self.rater.rate = new_rater.rate
        self.settings = new
        await self._stop_sources(removed + changed)
        for name in changed + added:
            self._start_source(fresh[name])
        log.info("daemon.reloaded", added=added, removed=removed, changed=changed,
                 unchanged=[n for n in old if n in fresh and n not in changed])

    async def _watchdog(self) -> None:
        interval = watchdog_interval()
        if interval is None:
            return
        while True:
            notify("WATCHDOG=1")
            await asyncio.sleep(interval)


def run_daemon(settings: Settings, config_path: Path | None, **kwargs: Any) -> int:
    """Run the daemon until SIGTERM/SIGINT; return the exit status."""
    return asyncio.run(Daemon(settings, config_path, **kwargs).run())
