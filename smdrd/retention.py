"""Retention in the daemon: a background task that prunes old call details and raw lines (``[retention]``).

Install with ``smdrd.retention`` in `smdrd.daemon.EXTENSIONS` (or ``extensions=("smdrd.retention",)``). The
task prunes at start and then every ``interval_minutes``, in batches of ``batch_rows``, each batch its own short
``BEGIN IMMEDIATE`` transaction on its own connection, run in a worker thread, with ``pause_ms`` between
batches. So the journal writer never waits longer than one small batch for the write lock, and the event loop
never waits at all. A reload (SIGHUP) applies a changed ``[retention]`` at once.

What it must never do: hold the write lock across a pause, touch the rollups (see `smdrd.store.api.Retention`), or
let a failure stop the daemon: a failed run is logged and tried again at the next interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import structlog

from smdrd.config import RetentionConfig, Settings
from smdrd.store import is_url, open_store
from smdrd.store.api import Cutoffs, LineCursor, PruneCounts, Retention, StoreUnavailable, cutoffs

if TYPE_CHECKING:
    from collections.abc import Callable
    from zoneinfo import ZoneInfo

    from smdrd.daemon import Daemon

__all__ = ["Pruner", "install"]

log = structlog.get_logger("smdrd.retention")

_T = TypeVar("_T")


class Pruner:
    """Prunes one database in the background; `run` is the daemon task."""

    def __init__(self, path: Path | str, config: RetentionConfig, tz: ZoneInfo) -> None:
        #: a SQLite file, or a PostgreSQL database's URL (`smdrd.store.open_store`).
        self.path: Path | str = path if is_url(path) else Path(path)
        self.config = config
        self.tz = tz
        #: what the last finished run pruned, and when it finished (UTC seconds); for tests and a curious human.
        self.last: PruneCounts | None = None
        self.last_at: float | None = None
        self.runs = 0
        self._wake = asyncio.Event()

    def reconfigure(self, settings: Settings) -> None:
        """Take a reloaded ``[retention]``; a changed interval or period applies from now."""
        if settings.retention != self.config or settings.site.tz != self.tz:
            self.config = settings.retention
            self.tz = settings.site.tz
            self._wake.set()

    async def run(self) -> None:
        """Prune now and every ``interval_minutes`` until cancelled."""
        while True:
            try:
                await self.prune_once()
            except (StoreUnavailable, OSError) as exc:
                # A locked or full disk is not worth stopping for: the rows are still old next time.
                log.error("retention.failed", error=str(exc), retry_in_minutes=self.config.interval_minutes)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.interval_minutes * 60)

    async def prune_once(self, now: datetime | None = None) -> PruneCounts:
        """One run: every call and line older than the configured periods, batch by batch."""
        cfg = self.config
        cut = cutoffs(now or datetime.now(UTC), self.tz, calls_days=cfg.calls_days, lines_days=cfg.lines_days)
        counts = PruneCounts()
        if cut.calls_before is None and cut.lines_before is None:
            return counts
        started = time.monotonic()
        store = await asyncio.to_thread(open_store(self.path).retention)
        try:
            await self._prune(store, cut, counts)
        finally:
            await asyncio.to_thread(store.close)
        seconds = time.monotonic() - started
        self.last, self.last_at, self.runs = counts, time.time(), self.runs + 1
        level = log.info if counts.total else log.debug
        level("retention.pruned", calls=counts.calls, lines_deleted=counts.lines_deleted,
              lines_emptied=counts.lines_emptied, batches=counts.batches, seconds=round(seconds, 2),
              calls_before=_iso(cut.calls_before), lines_before=_iso(cut.lines_before, 1_000_000))
        return counts

    async def _prune(self, store: Retention, cut: Cutoffs, counts: PruneCounts) -> None:
        batch, pause = self.config.batch_rows, self.config.pause_ms / 1000
        if cut.calls_before is not None:
            before = cut.calls_before
            while True:
                n = await _in_thread(store.prune_calls_batch, before, batch)
                counts.calls += n
                counts.batches += 1
                if n < batch:
                    break
                await asyncio.sleep(pause)
        if cut.lines_before is not None:
            cursor: LineCursor | None = None
            while True:
                deleted, emptied, cursor = await _in_thread(store.prune_lines_batch, cut.lines_before, cursor,
                                                            batch)
                counts.lines_deleted += deleted
                counts.lines_emptied += emptied
                if cursor is None:
                    break
                if deleted or emptied:
                    counts.batches += 1
                    await asyncio.sleep(pause)
                else:
                    await asyncio.sleep(0)  # a read-only batch: no lock to hand over, but let the loop run


async def _in_thread(func: Callable[..., _T], *args: object) -> _T:
    """``func(*args)`` in a worker thread. Cancelled (daemon stop), it still finishes its batch first: the
    connection must not be closed under a transaction that another thread is running."""
    future = asyncio.ensure_future(asyncio.to_thread(func, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await future
        raise


def _iso(stamp: int | None, per_second: int = 1) -> str | None:
    if stamp is None:
        return None
    return datetime.fromtimestamp(stamp / per_second, UTC).isoformat(timespec="seconds")


def install(daemon: Daemon) -> Pruner:
    """Add the pruning task and its reload listener to ``daemon``."""
    settings = daemon.settings
    pruner = Pruner(settings.database.target, settings.retention, settings.site.tz)
    daemon.add_task("retention", pruner.run)
    daemon.reload_listeners.append(pruner.reconfigure)
    return pruner
