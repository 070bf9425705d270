"""Shared pieces of the fault-injection suite: the ledger, a daemon configuration, and a PBX in listen mode.
(The real daemon process is `smdrd.testing.DaemonProcess`; the ``daemons`` fixture is in tests/conftest.py.)

The ledger is the suite's one judge: what the PBX side wrote, line by line, against what the database holds
for that source, line by line. Any line missing, doubled, altered or out of order fails the test, and both
counts are printed either way, so a passing run shows its own evidence (``pytest -s``).

Sizes shrink under ``SMDRD_FAULTS_SHORT=1`` (CI); every scenario still injects its fault at least once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sqlite3
import time
from collections import Counter, deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from smdrd.parsers.avaya_ipo import AvayaIPOfficeParser
from smdrd.simulator import Traffic, render_calls
from smdrd.testing import daemon_config, open_connection_retry

#: CI's short form: smaller counts and fewer rounds, same faults.
SHORT = os.environ.get("SMDRD_FAULTS_SHORT", "") not in ("", "0")


def pytest_configure(config: pytest.Config) -> None:
    # Registered here until pyproject.toml's marker list has it (the suite runs under --strict-markers).
    config.addinivalue_line("markers", "faults: fault-injection scenarios against a real daemon process")


def scaled(full: int, short: int) -> int:
    """``full`` normally, ``short`` under ``SMDRD_FAULTS_SHORT=1``."""
    return short if SHORT else full


# --- what the PBX writes -------------------------------------------------------------------------------------


def ipo_lines(calls: int, seed: int) -> list[bytes]:
    """Realistic Avaya IP Office SMDR lines for ``calls`` simulated calls (a transfer writes two lines)."""
    traffic = Traffic(seed=seed, country="PL", format="avaya-ipo")
    return [line.encode() for line in render_calls(AvayaIPOfficeParser, traffic, calls)]


def stored_lines(db: Path, source: str) -> list[bytes]:
    """The raw lines journalled for ``source``, in journal order (not the empty markers of flushed calls)."""
    if not db.exists():
        return []  # connecting would create an empty file under the daemon that is about to create it
    conn = sqlite3.connect(db)
    try:
        return [bytes(r[0]) for r in conn.execute(
            "SELECT raw FROM lines WHERE source = ? AND status != 'flushed' ORDER BY id", (source,))]
    finally:
        conn.close()


def query(db: Path, sql: str, *params: object) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def compare_ledger(written: list[bytes], stored: list[bytes], what: str = "") -> None:
    """Fail unless ``stored`` is exactly ``written``, line for line; print both counts either way."""
    label = f" ({what})" if what else ""
    print(f"ledger{label}: PBX wrote {len(written)} lines, database holds {len(stored)}")
    if stored == written:
        return
    missing = Counter(written) - Counter(stored)
    extra = Counter(stored) - Counter(written)
    first = next((i for i, (a, b) in enumerate(zip(written, stored, strict=False)) if a != b),
                 min(len(written), len(stored)))
    lines = [f"ledger{label} differs: PBX wrote {len(written)} lines, database holds {len(stored)}",
             f"  missing from the database: {sum(missing.values())}; extra or doubled: {sum(extra.values())}",
             f"  first difference at line {first}"]
    lines += [f"  missing: {line[:100]!r}" for line in list(missing)[:5]]
    lines += [f"  extra:   {line[:100]!r} x{n}" for line, n in list(extra.items())[:5]]
    if not missing and not extra:
        lines.append("  same lines, different order")
    pytest.fail("\n".join(lines), pytrace=False)


class Ledger:
    """What one PBX wrote (only bytes a peer could read), compared with what one source's rows hold."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.written: list[bytes] = []

    def check(self, db: Path) -> list[bytes]:
        stored = stored_lines(db, self.source)
        compare_ledger(self.written, stored, self.source)
        return stored


async def wait_stored(db: Path, source: str, n: int, within: float = 30.0) -> int:
    """Wait until ``source`` has ``n`` journalled lines (or the time is up); return how many it has."""
    deadline = time.monotonic() + within
    got = 0
    while time.monotonic() < deadline:
        with contextlib.suppress(sqlite3.OperationalError):  # mid-migration
            got = len(stored_lines(db, source))
            if got >= n:
                return got
        await asyncio.sleep(0.05)
    return got


# --- a real daemon's configuration -----------------------------------------------------------------------------


def base_config(folder: Path, sources: list[dict[str, Any]], **sections: dict[str, Any]) -> dict[str, Any]:
    """`smdrd.testing.daemon_config` with HTTP off unless a scenario asks for it."""
    return daemon_config(folder, sources, **{"http": {"enabled": False}, **sections})


# --- a PBX in listen mode ------------------------------------------------------------------------------------


def _peer_closed(sock: socket.socket) -> bool:
    """True once the collector closed its end (FIN or reset): a PBX stops writing to a dead connection."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


class ListeningPbx:
    """A PBX in listen mode (IP Office's "SMDR: TCP, listen"): the collector connects to it.

    Call records enter its buffer (`add`) whether or not anyone is connected, and are held until a collector
    is; like a real PBX it writes them as calls end, in bursts of up to ``burst`` lines every ``gap`` seconds.
    `drop` closes the connection (between bursts, cleanly), `stop` and `start` are a PBX restart. ``ledger``
    gets every line handed to a live connection.

    Before each burst it checks that the collector has not closed its end: a line written into a connection
    the collector has already closed is lost in TCP itself (no acknowledgement exists in SMDR), not in smdrd.
    """

    def __init__(self, port: int, ledger: Ledger, *, burst: int = 20, gap: float = 0.02) -> None:
        self.port = port
        self.ledger = ledger
        self.burst = burst
        self.gap = gap
        self.buffer: deque[bytes] = deque()
        self.connections = 0
        self._server: socket.socket | None = None
        self._conn: socket.socket | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._accepting: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._drop = False

    async def __aenter__(self) -> ListeningPbx:
        self.start()
        self._tasks.append(asyncio.create_task(self._pump(), name="pbx-pump"))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.stop()

    def start(self) -> None:
        """Listen (again): the PBX is up."""
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", self.port))
        srv.listen(4)
        srv.setblocking(False)
        self._server = srv
        self._accepting = asyncio.create_task(self._accept(srv), name="pbx-accept")

    def stop(self) -> None:
        """The PBX goes away: stop listening and close the connection (the buffer is kept)."""
        if self._accepting is not None:
            # cancelled before the socket closes, so the event loop forgets its descriptor (a new socket may
            # reuse the number on `start`)
            self._accepting.cancel()
            self._accepting = None
        if self._server is not None:
            self._server.close()
            self._server = None
        self._close_conn()

    def add(self, lines: Iterable[bytes]) -> None:
        self.buffer.extend(lines)
        self._wake.set()

    async def produce(self, lines: list[bytes], rate: float) -> None:
        """Add ``lines`` to the buffer at ``rate`` lines a second (calls ending), connected or not."""
        started = time.monotonic()
        for i, line in enumerate(lines):
            due = started + i / rate
            if (delay := due - time.monotonic()) > 0.002:
                await asyncio.sleep(delay)
            self.add([line])

    def drop(self) -> None:
        """Close the current connection after the burst in progress (a flaky link or a PBX housekeeping)."""
        self._drop = True
        self._wake.set()

    @property
    def connected(self) -> bool:
        return self._conn is not None

    async def wait_drained(self, within: float = 30.0) -> None:
        """Wait until the buffer is empty (everything handed to a collector)."""
        deadline = time.monotonic() + within
        while self.buffer:
            assert time.monotonic() < deadline, f"{len(self.buffer)} lines still held by the PBX"
            await asyncio.sleep(0.02)

    async def _accept(self, srv: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError):  # the listening socket closed by `stop`
            while True:
                conn, _ = await loop.sock_accept(srv)
                conn.setblocking(False)
                self._close_conn()  # a PBX serves one SMDR collector: the newest wins
                self._conn = conn
                self.connections += 1
                self._wake.set()

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()  # nothing unread on our side, so this is a clean FIN after every byte written

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self._drop:
                self._drop = False
                self._close_conn()
            conn = self._conn
            if conn is not None and _peer_closed(conn):
                self._close_conn()
                conn = None
            if conn is None or not self.buffer:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 0.05)
                continue
            burst = [self.buffer.popleft() for _ in range(min(self.burst, len(self.buffer)))]
            self.ledger.written.extend(burst)
            try:
                await loop.sock_sendall(conn, b"".join(line + b"\r\n" for line in burst))
            except OSError:
                # The collector vanished mid-burst: these lines may or may not have arrived. The ledger keeps
                # them as written, so a loss here shows up as a difference rather than being excused.
                self._close_conn()
            if self.gap:
                await asyncio.sleep(self.gap)


# --- a PBX in push mode --------------------------------------------------------------------------------------


async def push_lines(port: int, lines: list[bytes], rate: float, ledger: Ledger, *, burst: int = 10) -> None:
    """A PBX that connects to a tcp-server source and writes ``lines`` at ``rate`` a second, ``burst`` at a
    time; the daemon holding back (backpressure) slows it down, as a full socket slows a real PBX. It waits for
    the source to listen: a daemon logs ``daemon.started`` (and may connect to its broker) before its sources
    are bound, and a CI run once connected in between."""
    _, writer = await open_connection_retry("127.0.0.1", port)
    started = time.monotonic()
    try:
        for i in range(0, len(lines), burst):
            chunk = lines[i:i + burst]
            writer.write(b"".join(line + b"\r\n" for line in chunk))
            ledger.written.extend(chunk)
            await writer.drain()
            due = started + (i + burst) / rate
            if (delay := due - time.monotonic()) > 0.002:
                await asyncio.sleep(delay)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
