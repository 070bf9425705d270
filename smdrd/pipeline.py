"""The daemon's pipeline worker: framed lines are parsed and rated in a process of their own, off the event loop.

On the event loop a line costs ~100 µs to parse and rate when its number is new, so one loop tops out near 9k
lines/s and everything else it runs (accepting connections, commits, HTTP) waits behind the parsing. Here the
loop only frames bytes and sends the frames, in batches, to one worker process that runs `process_frame` (the
same pure core as ``smdrd import``) and sends the `JournalEntry`s back in the same order.

Why a process and not a thread pool: parsing and rating are pure Python and hold the GIL, so threads would take
turns with the loop instead of using the second core.

- **Order:** one worker, one pipe each way, operations answered in the order they were sent, so each stream's
  parser (page headers, open multi-leg calls) sees its lines in order, and entries reach the writer in order.
- **Reload:** `Pipeline.configure` queues the new site and tariff behind the lines already sent; the worker
  rebuilds its rater (a bad tariff keeps the old one there too, and is logged).
- **Alert rules** run here too, on each call as it is rated (`set_alerts`): the engine and its state (velocity
  windows, budgets spent, open alerts) live in the worker alone. The daemon sends it what only the daemon knows,
  in order with the lines: the compiled rules and directory (again at a reload), the spend stored this month (at
  each worker start, so a new worker's budgets start where the database is), and every few seconds the
  sources' state, answered with the operational alerts that raises or clears (`check`).
- **Crash:** if the worker dies, the lines it had not answered are journalled as ``error`` lines holding their
  bytes and the reason (``smdrd reparse`` turns them into calls later), the failure is reported (the daemon's
  ``failed_tasks``, so ``/healthz`` turns red and systemd restarts smdrd), and a new worker takes the next lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import socket
import struct
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import structlog

from smdrd import pipeline_worker as w
from smdrd.core import ERROR, JournalEntry
from smdrd.framing import Frame, Oversized, Skipped
from smdrd.pipeline_worker import AlertSetup, Answer, Checked, Spend

if TYPE_CHECKING:
    from smdrd.alerts.rules import SourceSnapshot
    from smdrd.config import Settings

__all__ = ["AlertSetup", "Checked", "Pipeline", "PipelineStream", "Spend"]

log = structlog.get_logger(__name__)

#: frames sent to the worker and not yet answered, beyond which sources wait (`Pipeline.wait_capacity`). Small:
#: answers go to the writer whatever its backlog, so this adds to what ``max_pending_rows`` bounds (2.7 KB a
#: line); a few hundred already keep the worker busy at 20,000 lines/s.
MAX_IN_FLIGHT = 1_000
#: operations per message to the worker: large enough that a flood costs one message per few hundred lines.
MAX_OPS = 512

def _config(settings: Settings, base_dir: Path | None, version: int | None) -> w.Configure:
    return w.Configure(settings.site.model_dump(mode="json"), settings.tariff.model_dump(mode="json"),
                       str(base_dir) if base_dir else None, version)


class PipelineStream:
    """One byte stream's handle on the worker (its parser lives there); made by `Pipeline.open_stream`."""

    __slots__ = ("_pipeline", "on_entries", "peer", "sid", "source")

    def __init__(self, pipeline: Pipeline, sid: int, source: str, peer: str,
                 on_entries: Callable[[list[JournalEntry]], None]) -> None:
        self._pipeline = pipeline
        self.sid = sid
        self.source = source
        self.peer = peer
        #: called on the loop with this stream's entries, in order.
        self.on_entries = on_entries

    def send(self, frames: Sequence[Frame], received_at: int) -> None:
        """Queue ``frames`` (received at ``received_at`` µs) for parsing. Never blocks."""
        self._pipeline._send(w.Lines(self.sid, self.source, self.peer, received_at, list(frames)), len(frames))

    def close(self) -> None:
        """End of the stream: the worker flushes what its parser holds (a cut-off multi-leg call)."""
        self._pipeline._send(w.Close(self.sid, self.source, self.peer, time.time_ns() // 1000), 1)


class Pipeline:
    """The worker process and the pipe to it, read and written by the event loop itself (asyncio streams over
    the pipe's socket: no threads taking turns with the loop for the GIL). Run `run` as a supervised task."""

    def __init__(self, settings: Settings, base_dir: Path | None = None, *,
                 on_failure: Callable[[str, BaseException], None] | None = None,
                 max_in_flight: int = MAX_IN_FLIGHT, version: int | None = None) -> None:
        self._config = _config(settings, base_dir, version)
        self._on_failure = on_failure
        self.max_in_flight = max_in_flight
        self._streams: dict[int, tuple[w.Open, PipelineStream]] = {}
        self._next_sid = 0
        #: operations sent and not yet answered, oldest first, with their weight in `_in_flight`.
        self._unanswered: deque[tuple[w.Op, int]] = deque()
        self._in_flight = 0
        #: operations not yet written; written together at the end of the loop's current iteration, so a
        #: flood costs one message per many lines and a trickle waits for nothing.
        self._queued: list[w.Op] = []
        self._flush_scheduled = False
        self._capacity = asyncio.Event()
        self._capacity.set()
        self._idle = asyncio.Event()
        self._idle.set()
        #: set by the worker's first message: it has its configuration and parses from now on.
        self._ready = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._closing = False
        #: the alert rules the worker runs, and where the spend that starts its budgets is read (`set_alerts`).
        self._alerts: tuple[AlertSetup, Callable[[], Spend], Callable[[], list[str]]] | None = None
        #: `check`\ s sent and not yet answered, by id.
        self._checks: dict[int, asyncio.Future[Checked | None]] = {}
        self._next_check = 0
        #: worker processes started (1, plus one per crash).
        self.starts = 0

    # -- the daemon's side ------------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The worker's process id (metrics, benchmarks), ``None`` before it starts."""
        return self._process.pid if self._process is not None else None

    def open_stream(self, *, source: str, peer: str, format: str, encoding: str, year: int | None,
                    options: dict[str, object], on_entries: Callable[[list[JournalEntry]], None]) -> PipelineStream:
        """A stream whose lines are parsed by a fresh parser of ``format`` in the worker."""
        self._next_sid += 1
        op = w.Open(self._next_sid, format, encoding, year, dict(options))
        stream = PipelineStream(self, op.sid, source, peer, on_entries)
        self._streams[op.sid] = (op, stream)
        self._queue(op)  # not answered: the worker only makes the parser
        return stream

    def configure(self, settings: Settings, base_dir: Path | None = None, *, version: int | None = None) -> None:
        """A reload: lines sent from now on are rated with ``settings``' tariff (sent behind the earlier ones),
        the saved version ``version`` of it (None: the files')."""
        self._config = _config(settings, base_dir, version)
        self._queue(self._config)

    def set_alerts(self, setup: AlertSetup, seed: Callable[[], Spend],
                   seen: Callable[[], list[str]] = list) -> None:
        """Run the alert rules of ``setup`` in the worker, on every call it rates; at a reload, swap them in (the
        engine's state carries over). Each new worker (the first, one after a crash) starts its budgets from
        ``seed()`` and takes the calls ``seen()`` as observed already, both read when it starts."""
        first = self._alerts is None
        self._alerts = (setup, seed, seen)
        if self._writer is not None:  # the worker runs: otherwise it gets them when it starts
            self._queue(w.SetAlerts(setup, _read_seed(seed) if first else None, _read_seed(seen) if first else None))

    async def check(self, snapshots: Sequence[SourceSnapshot], now: float, *,
                    stats_only: bool = False) -> Checked | None:
        """The alerts the sources' state raises or clears at wall-clock ``now``, and those of budget periods
        over (``stats_only``: neither, just the counters), from the worker's engine, in order behind the lines
        sent before; ``None`` when no worker answers (none runs, or it died meanwhile)."""
        if self._writer is None or self._alerts is None:
            return None
        self._next_check += 1
        answer: asyncio.Future[Checked | None] = asyncio.get_running_loop().create_future()
        self._checks[self._next_check] = answer
        self._send(w.Check(self._next_check, list(snapshots), now, stats_only), 0)
        return await answer

    async def wait_capacity(self) -> None:
        """Wait while more than ``max_in_flight`` lines are with the worker (sources call this after feeding)."""
        if not self._capacity.is_set():
            await self._capacity.wait()

    async def wait_ready(self, stop: asyncio.Event) -> bool:
        """Wait until the worker can parse (``True``), or until ``stop`` is set (``False``). The daemon starts
        its sources only then: lines received while the worker starts would wait unjournalled."""
        while not self._ready.is_set() and not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), 0.1)
        return self._ready.is_set()

    async def drained(self) -> None:
        """Wait until every line sent so far has come back (and was handed to its stream)."""
        await self._idle.wait()

    async def run(self) -> None:
        """Start the worker; restart it after a crash (reported through ``on_failure``); return after `close`."""
        self._loop = asyncio.get_running_loop()
        try:
            while True:
                reader = await self._start()
                await self._read(reader)
                if self._closing:
                    return
                self._crashed()
        finally:
            self._closing = True
            self._disconnect()
            self._stop_process()
            self._unchecked()

    async def close(self, give_up_after: float | None = None) -> None:
        """Wait (up to ``give_up_after`` seconds) for the lines in flight, then stop the worker (`run` returns)."""
        try:
            await asyncio.wait_for(self.drained(), give_up_after)
        except TimeoutError:
            log.error("pipeline.close_abandoned", lines_in_flight=self._in_flight, waited_seconds=give_up_after)
        self._closing = True
        # Every answer is in: the worker holds nothing, so close the pipe rather than wait for a goodbye (a worker
        # still importing at a quick stop would hold the exit up). `run` sees the end and stops the process.
        self._disconnect()
        if self._process is not None and self._loop is None:
            self._stop_process()

    # -- internals --------------------------------------------------------------------------------------------

    def _send(self, op: w.Op, weight: int) -> None:
        self._unanswered.append((op, weight))
        self._in_flight += weight
        self._idle.clear()
        if self._in_flight >= self.max_in_flight:
            self._capacity.clear()
        self._queue(op)

    def _queue(self, op: w.Op) -> None:
        self._queued.append(op)
        if not self._flush_scheduled and self._writer is not None and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._queued and self._writer is not None:
            ops, self._queued = self._queued, []
            self._write(ops)

    def _write(self, message: object) -> None:
        """One message in `multiprocessing.connection`'s framing (what the worker's ``Connection.recv`` reads)."""
        writer = self._writer
        if writer is None or writer.is_closing():
            return
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        writer.write((struct.pack("!i", len(data)) if len(data) < 0x7FFFFFFF
                      else struct.pack("!iQ", -1, len(data))) + data)

    async def _start(self) -> asyncio.StreamReader:
        ours, theirs = socket.socketpair()
        with theirs:
            process = _spawn_worker(theirs.fileno())
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        self._process, self._writer = process, writer
        self.starts += 1
        # What the new worker must know first: the configuration and every open stream (which the queue may
        # repeat: sent again from here, so only the lines and closes stay queued), then what is queued.
        first: list[w.Op] = [self._config]
        if self._alerts is not None:
            first.append(w.SetAlerts(self._alerts[0], _read_seed(self._alerts[1]), _read_seed(self._alerts[2])))
        self._write([*first, *(op for op, _ in self._streams.values())])
        self._queued = [op for op in self._queued if isinstance(op, w.Lines | w.Close | w.Check)]
        self._flush()
        return reader

    async def _read(self, reader: asyncio.StreamReader) -> None:
        """Hand each answer to its stream, until the worker says goodbye (None) or its end of the pipe closes."""
        while True:
            try:
                (size,) = struct.unpack("!i", await reader.readexactly(4))
                if size == -1:
                    (size,) = struct.unpack("!Q", await reader.readexactly(8))
                answers = pickle.loads(await reader.readexactly(size))
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if answers is None:
                return
            self._ready.set()
            self._answered(answers)

    def _disconnect(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    def _stop_process(self) -> None:
        # Called once every answer is in (or the worker is dead): it holds nothing worth waiting for, and a
        # worker still importing at a quick stop would otherwise hold the daemon's exit up.
        process = self._process
        if process is not None:
            try:
                process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    def _answered(self, answers: list[Answer]) -> None:
        for sid, entries in answers:
            op, weight = self._unanswered.popleft()
            self._in_flight -= weight
            if isinstance(op, w.Check):
                answer = self._checks.pop(op.cid, None)
                if answer is not None and not answer.done() and isinstance(entries, Checked):
                    answer.set_result(entries)
                continue
            assert isinstance(entries, list)
            found = self._streams.get(sid)
            if found is not None:
                if isinstance(op, w.Close):
                    del self._streams[sid]
                if entries:
                    found[1].on_entries(entries)
        self._settle()

    def _settle(self) -> None:
        if self._in_flight < self.max_in_flight:
            self._capacity.set()
        if not self._unanswered:
            self._idle.set()

    def _crashed(self) -> None:
        """The worker died: journal what it had not answered as error lines, report, and let `run` restart it."""
        self._disconnect()
        self._stop_process()
        code = self._process.returncode if self._process is not None else None
        self._queued = []  # lines are journalled below with the rest; opens and configuration are sent again
        reason = f"the pipeline worker stopped (exit code {code}) before parsing this line"
        lost = 0
        while self._unanswered:
            op, weight = self._unanswered.popleft()
            self._in_flight -= weight
            found = self._streams.get(op.sid) if isinstance(op, w.Lines | w.Close) else None
            if isinstance(op, w.Close):
                self._streams.pop(op.sid, None)
            if not isinstance(op, w.Lines) or found is None:
                continue
            fmt = found[0].format
            entries = [JournalEntry(op.source, op.peer, op.received_at, fmt, _raw(frame), ERROR, reason)
                       for frame in op.frames]
            lost += len(entries)
            found[1].on_entries(entries)
        self._settle()
        self._unchecked()
        exc = RuntimeError(f"the pipeline worker died (exit code {code}); {lost} line(s) it held were journalled "
                           "as errors for `smdrd reparse`; a new worker took over")
        log.error("pipeline.worker_died", exit_code=code, lines_journalled_as_errors=lost)
        if self._on_failure is not None:
            self._on_failure("pipeline", exc)


    def _unchecked(self) -> None:
        """No worker will answer the checks sent: they get ``None`` (the next check asks the next worker)."""
        checks, self._checks = self._checks, {}
        for answer in checks.values():
            if not answer.done():
                answer.set_result(None)


def _spawn_worker(fd: int) -> subprocess.Popen[bytes]:
    """A fresh interpreter running `smdrd.pipeline_worker.main` on the socket ``fd`` (never a fork of a process
    that holds threads; and not multiprocessing's spawn, which would import the daemon's main module, its CLI and
    configuration schema first: the worker starts in about half the time). It imports smdrd from where the
    daemon did, installed or from a source tree. Starting it takes a fork and an exec: milliseconds."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    code = "import sys; from smdrd.pipeline_worker import main; main(int(sys.argv[1]))"
    return subprocess.Popen([sys.executable, "-c", code, str(fd)], pass_fds=(fd,), stdin=subprocess.DEVNULL,
                            env=env)


_T = TypeVar("_T")


def _read_seed(seed: Callable[[], _T]) -> _T | None:
    """What ``seed()`` reads from the store for a new worker's engine (its spend, the calls it saw), or None."""
    try:
        return seed()
    except Exception as exc:  # a locked or broken database: the budgets start from nothing, and it is said
        log.error("alerts.budget_seed_failed", error=f"{type(exc).__name__}: {exc}"[:500])
        return None


def _raw(frame: Frame) -> bytes:
    if isinstance(frame, Oversized):
        return frame.head
    if isinstance(frame, Skipped):
        return frame.raw
    return bytes(frame)
