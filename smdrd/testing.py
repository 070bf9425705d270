"""Test helpers for smdrd's own tests and for plugin authors: a collecting ingest, free ports, pty pairs, the
parser conformance kit (`check_parser`, `check_garbage`, `check_round_trip`, `golden_cases`, `check_golden`),
a real MQTT broker with a collecting subscriber (`Broker`, `Subscriber`), and a daemon's configuration as plain
data (`daemon_config`, `tcp_server_source`, `tcp_client_source`, `config_toml`) for a real daemon process
(`DaemonProcess`) or one in this event loop (`running_daemon`).

Nothing here is used by the daemon itself.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import inspect
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import termios
import time
import tty
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smdrd.errors import ParseError
from smdrd.framing import Frame, Framer, Oversized, Skipped
from smdrd.journal import FilePosition
from smdrd.parsing import Parser, ParserContext, flush_records, get_parser_class, parse_line
from smdrd.record import CallRecord, Direction, check_record
from smdrd.sources.base import FramerLike

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

    from smdrd.config import Settings
    from smdrd.core import Entry
    from smdrd.daemon import Daemon
    from smdrd.journal import JournalEntry
    from smdrd.store.sqlite.writer import JournalWriter


@dataclass
class CollectedStream:
    """A stream that frames what it is fed and keeps the lines (raw bytes) in memory."""

    peer: str
    framer: FramerLike
    lines: list[bytes] = field(default_factory=list)
    oversized: list[Oversized] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    closed: bool = False
    #: the positions the source marked (`smdrd.sources.base.Stream.mark`), in order.
    marks: list[FilePosition] = field(default_factory=list)
    #: where marks count as saved at once (`CollectingIngest.commit_marks`), by path.
    saved: dict[str, FilePosition] | None = None

    def _take(self, frames: Sequence[Frame]) -> None:
        for frame in frames:
            if isinstance(frame, Oversized):
                self.oversized.append(frame)
            elif isinstance(frame, Skipped):
                self.skipped.append(frame)
            else:
                self.lines.append(frame)

    async def feed(self, data: bytes) -> None:
        self._take(self.framer.feed(data))

    async def close(self) -> None:
        self._take(self.framer.close())
        self.closed = True

    def mark(self, position: FilePosition) -> None:
        self.marks.append(position)
        if self.saved is not None:
            self.saved[position.path] = position


@dataclass
class CollectingIngest:
    """An `Ingest` that keeps every stream, for testing sources without a database; ``positions`` are what
    `saved_position` gives (none unless a test puts some there)."""

    max_line: int = 8192
    streams: list[CollectedStream] = field(default_factory=list)
    positions: dict[str, FilePosition] = field(default_factory=dict)
    #: true: every position marked counts as saved at once (as if each line were committed as it is fed).
    commit_marks: bool = False
    #: the paths whose positions were forgotten (`forget_position`), in order.
    forgotten: list[str] = field(default_factory=list)

    def open_stream(self, peer: str, framer: FramerLike | None = None) -> CollectedStream:
        stream = CollectedStream(peer, framer or Framer(self.max_line),
                                 saved=self.positions if self.commit_marks else None)
        self.streams.append(stream)
        return stream

    def saved_position(self, path: str) -> FilePosition | None:
        return self.positions.get(path)

    def committed_position(self, path: str) -> FilePosition | None:
        return self.positions.get(path)

    def saved_paths(self) -> list[str]:
        return list(self.positions)

    def forget_position(self, path: str) -> None:
        self.positions.pop(path, None)
        self.forgotten.append(path)

    @property
    def lines(self) -> list[bytes]:
        """Every line of every stream, stream by stream."""
        return [line for s in self.streams for line in s.lines]


#: Ports handed out by :func:`free_port`: below Linux's ephemeral range (32768-60999), so the kernel never gives
#: one to a ``bind(0)`` or an outgoing connection in another process between our check and the server's bind.
_PORT_BASE, _PORT_BLOCK, _PORT_BLOCKS = 20000, 1500, 8
_ports_given: dict[int, int] = {}


def _port_block() -> int:
    """This process's block of ports: one per pytest-xdist worker (``gw0``, ``gw1`` ...), else by process id."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        return int(worker[2:]) % _PORT_BLOCKS
    return os.getpid() % _PORT_BLOCKS


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now and that no other test process will be handed.

    A port the kernel picks (``bind(0)``) is free when asked but may be anyone's a moment later: with tests
    in parallel, another worker's client connection took one between our check and the daemon's bind. So each
    process walks its own block of ports outside the ephemeral range, from a random place in it, and never hands
    out the same one twice running (the block is long enough to wrap only long after a test has let its port
    go).
    """
    block = _port_block()
    start = _PORT_BASE + block * _PORT_BLOCK
    if block not in _ports_given:  # anywhere in the block: two test runs at once rarely start on the same port
        _ports_given[block] = random.randrange(_PORT_BLOCK)
    for _ in range(_PORT_BLOCK):
        offset = _ports_given[block]
        _ports_given[block] = (offset + 1) % _PORT_BLOCK
        port = start + offset
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise OSError(f"no free port left in {start}-{start + _PORT_BLOCK - 1}")


def open_pty() -> tuple[int, str]:
    """A pty pair in raw mode: returns the master's file descriptor and the slave's device path.

    Write to the master to play the PBX; the serial source opens the slave path like a serial port.
    (pyserial's ``loop://`` has no file descriptor, so it cannot stand in for a port under asyncio.)
    """
    master, slave = os.openpty()
    tty.setraw(master, termios.TCSANOW)
    path = os.ttyname(slave)
    os.close(slave)
    return master, path


async def open_connection_retry(
    host: str, port: int, within: float = 10.0
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """``asyncio.open_connection``, retried until something listens (a source that is still starting)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await asyncio.open_connection(host, port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)


# --- A daemon's configuration ---------------------------------------------------------------------------------
#
# One builder for the configuration a test gives a daemon, as plain data: `Settings.model_validate` takes it for
# an in-process `Daemon`, `config_toml` writes it for ``smdrd run --config``. A test states only what it needs
# beyond the defaults, so what differs from one test to the next is what the test is about.


def daemon_config(folder: Path, sources: Sequence[Mapping[str, Any]] = (), **sections: Any) -> dict[str, Any]:
    """A daemon's configuration: the database at ``folder/smdrd.db`` with a 50 ms commit interval, the site in
    Europe/Warsaw (PL), JSON logs, HTTP on a free loopback port (``127.0.0.1:0``), and ``sources``.

    Each keyword is a section: a table is merged key by key into the default of that name
    (``database={"commit_interval_ms": 20}`` keeps the path; ``http={"enabled": False}``), or added
    (``tariff={...}``); a list (``departments=[...]``) is taken as it is.
    """
    config: dict[str, Any] = {
        "site": {"timezone": "Europe/Warsaw", "country": "PL"},
        "database": {"path": str(folder / "smdrd.db"), "commit_interval_ms": 50},
        "logging": {"format": "json"},
        "http": {"listen": "127.0.0.1:0"},
        "sources": [dict(s) for s in sources],
    }
    for name, data in sections.items():
        base = config.get(name)
        config[name] = {**base, **data} if isinstance(base, dict) and isinstance(data, Mapping) else data
    return config


def tcp_server_source(name: str, port: int, **extra: Any) -> dict[str, Any]:
    """A ``tcp-server`` source for Avaya IP Office lines on ``127.0.0.1:port`` (the PBX connects and pushes)."""
    return {"name": name, "kind": "tcp-server", "format": "avaya-ipo", "listen": f"127.0.0.1:{port}", **extra}


def tcp_client_source(name: str, port: int, **extra: Any) -> dict[str, Any]:
    """A ``tcp-client`` source for Avaya IP Office lines from ``127.0.0.1:port`` (a PBX in listen mode), quick
    to reconnect."""
    return {"name": name, "kind": "tcp-client", "format": "avaya-ipo", "host": "127.0.0.1", "port": port,
            "reconnect_min": 0.05, "reconnect_max": 0.5, **extra}


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def _is_table_array(value: object) -> bool:
    return isinstance(value, list | tuple) and bool(value) and all(isinstance(v, Mapping) for v in value)


def config_toml(config: Mapping[str, Any]) -> str:
    """``config`` (as `daemon_config` builds it) as a TOML document: tables, nested tables and arrays of tables
    (``sources``, ``departments``, ``tariff.rules``) of scalars, lists and dates."""
    out: list[str] = []

    def table(path: str, data: Mapping[str, Any], header: str) -> None:
        out.append(header)
        nested = {k: v for k, v in data.items() if isinstance(v, Mapping)}
        arrays = {k: v for k, v in data.items() if _is_table_array(v)}
        out.extend(f"{k} = {_toml_value(v)}" for k, v in data.items() if k not in nested and k not in arrays)
        for key, sub in nested.items():
            table(f"{path}.{key}", sub, f"[{path}.{key}]")
        for key, items in arrays.items():
            for item in items:
                table(f"{path}.{key}", item, f"[[{path}.{key}]]")

    for name, data in config.items():
        if isinstance(data, Mapping):
            table(name, data, f"[{name}]")
        else:
            for item in data:
                table(name, item, f"[[{name}]]")
    return "\n".join(out) + "\n"


# --- A daemon in this process --------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running_daemon(
    settings: Settings | Daemon,
    *,
    features: Collection[str] | None = None,
    on_commit: Callable[[list[Entry], float], None] | None = None,
    config_path: Path | None = None,
    within: float = 30.0,
) -> AsyncIterator[Daemon]:
    """A `Daemon` on ``settings`` running in this event loop: ready when the block starts, asked to stop when it
    ends, and it must then exit 0. ``within`` only stops a hung test (start or stop).

    ``settings`` may also be a `Daemon` the test has built and changed before it runs (a route added); the
    other arguments are then ignored. For a test that wants another exit status, or to stop the daemon itself,
    run the `Daemon` by hand.
    """
    from smdrd.daemon import Daemon

    if isinstance(settings, Daemon):
        daemon = settings
    else:
        daemon = Daemon(settings, config_path, on_commit=on_commit, features=features)
    task = asyncio.create_task(daemon.run(), name="daemon")
    ready = asyncio.create_task(daemon.ready.wait())
    await asyncio.wait({task, ready}, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    if not ready.done():
        ready.cancel()
        if task.done():
            raise AssertionError(f"the daemon ended before it was ready (exit {task.result()})")
        task.cancel()
        raise AssertionError(f"the daemon was not ready within {within} s")
    try:
        yield daemon
    except BaseException:
        daemon.request_stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, within)
        raise
    daemon.request_stop()
    status = await asyncio.wait_for(task, within)
    assert status == 0, f"the daemon exited {status}"


# --- A real daemon process -------------------------------------------------------------------------------------


class DaemonProcess:
    """A real ``python -m smdrd run`` on ``config`` (as `daemon_config` builds it, with JSON logs), written to
    ``folder/smdrd.toml``; its stdout and stderr (JSON log lines and anything else) go to ``folder/daemon.log``.

    The log is appended to, so a second `DaemonProcess` on the same folder (a restart) sees the first one's
    events too: `start` counts ``daemon.started`` events from where the log was.
    """

    def __init__(self, folder: Path, config: Mapping[str, Any]) -> None:
        from smdrd.config import load_config

        self.folder = folder
        self.db = Path(config["database"]["path"])
        self.config_path = folder / "smdrd.toml"
        self.config_path.write_text(config_toml(config))
        load_config(self.config_path, use_env=False)  # the test's own config must be valid
        self.log = folder / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, within: float = 20.0, env: Mapping[str, str] | None = None) -> DaemonProcess:
        """Start it (with ``env`` added to this process's environment) and wait for its ``daemon.started``
        event."""
        before = len(self.events("daemon.started"))
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "smdrd", "run", "--config", str(self.config_path)],
                                         stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        self.starts += 1
        try:
            self.wait_event("daemon.started", before + 1, within)
        except BaseException:
            self.kill()  # a daemon that did not start in time is not left running past the test
            raise
        return self

    def wait_port(self, port: int, within: float = 20.0) -> None:
        """Wait until something accepts on ``127.0.0.1:port`` (a ``tcp-server`` source is listening). The probe
        is a connection that closes at once: the daemon logs it as a peer that came and went."""
        deadline = time.monotonic() + within
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                assert time.monotonic() < deadline, f"nothing listens on {port}:\n{self.log_text()[-4000:]}"
                assert self.alive(), f"the daemon exited:\n{self.log_text()[-4000:]}"
                time.sleep(0.05)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the running daemon (SIGHUP to reload, SIGTERM to stop)."""
        assert self.proc is not None, "start() first"
        self.proc.send_signal(sig)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def events(self, name: str) -> list[dict[str, Any]]:
        """The log events called ``name`` so far."""
        found = []
        for line in self.log_text().splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict) and event.get("event") == name:
                    found.append(event)
        return found

    def wait_event(self, name: str, n: int = 1, within: float = 20.0) -> list[dict[str, Any]]:
        """Wait until the log holds ``n`` events called ``name``; return them."""
        deadline = time.monotonic() + within
        while len(found := self.events(name)) < n:
            assert time.monotonic() < deadline, f"no {name} event (x{n}) in:\n{self.log_text()[-4000:]}"
            assert self.alive(), f"the daemon exited:\n{self.log_text()[-4000:]}"
            time.sleep(0.02)
        return found

    async def await_event(self, name: str, n: int = 1, within: float = 20.0) -> list[dict[str, Any]]:
        """`wait_event` for a test whose event loop must keep running (a fake PBX in it)."""
        deadline = time.monotonic() + within
        while len(found := self.events(name)) < n:
            assert time.monotonic() < deadline, f"no {name} event (x{n}) in:\n{self.log_text()[-4000:]}"
            assert self.alive(), f"the daemon exited:\n{self.log_text()[-4000:]}"
            await asyncio.sleep(0.02)
        return found

    def terminate(self) -> None:
        """SIGTERM; it must exit 0 (the 15 s only stops a hung test)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=15)
        assert code == 0, f"exit status {code} (negative: killed by that signal)\n{self.log_text()[-4000:]}"

    async def aterminate(self) -> None:
        await asyncio.to_thread(self.terminate)

    def kill(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()

    def assert_clean_log(self) -> None:
        """No Python traceback anywhere in the daemon's output (a crash, or asyncio's noisy callbacks)."""
        text = self.log_text()
        assert "Traceback" not in text, text[-6000:]
        assert "Exception in callback" not in text, text[-6000:]

    @contextlib.contextmanager
    def serving(self) -> Iterator[DaemonProcess]:
        """Started for the block; at its end it must stop with exit 0 and a log without a traceback (killed
        whatever happens)."""
        try:
            yield self.start()
            self.terminate()
            self.assert_clean_log()
        finally:
            self.kill()

    def vm_kib(self, field: str = "VmHWM") -> int:
        """``VmHWM`` (peak resident set) or ``VmRSS`` of the running daemon, in KiB."""
        for row in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if row.startswith(field + ":"):
                return int(row.split()[1])
        raise AssertionError(f"no {field} in /proc/{self.pid}/status")


# --- The parser conformance kit ---------------------------------------------------------------------------------
#
# For smdrd's own parsers (tests/test_conformance.py) and for a third-party plugin checking itself:
#
#     from smdrd.testing import check_parser, golden_cases, check_golden
#
#     def test_acme_conforms() -> None:
#         check_parser(AcmeParser, samples=["2024/01/02 10:00:00,00:01:05,3,O,214,0612345678"])
#
#     @pytest.mark.parametrize("path", golden_cases(Path(__file__).parent / "fixtures"))
#     def test_golden(path: Path) -> None:
#         check_golden(path, AcmeParser)
#
# The properties need ``hypothesis`` (smdrd's ``test`` extra); it is imported when a property runs.

#: the record fields a round trip compares by default (``start`` is compared to the format's resolution).
ROUND_TRIP_FIELDS = ("duration", "ring", "direction", "extension", "number", "trunk", "answered")

ContextFor = Callable[[CallRecord], ParserContext]


def golden_cases(folder: Path) -> list[Path]:
    """Every capture ``<folder>/<format>/<name>.smdr`` (the folder names the format), sorted."""
    return sorted(folder.glob("*/*.smdr"))


def parse_fixture(path: Path, parser_class: type[Parser] | None = None) -> list[dict[str, Any]]:
    """Parse a capture the way the daemon does (framer, the format's encoding, `parse_line`, `flush_records`).

    ``<name>.options.json`` beside it may hold ``{"year": ..., "timezone": ..., "country": ..., "encoding": ...,
    "options": {...}}`` for what the format leaves out (``country`` is the site's, ``[site] country``). Without
    ``parser_class`` the format is the name of the capture's folder.

    Returns:
        The records as `CallRecord.to_json` gives them, in order.
    """
    from zoneinfo import ZoneInfo

    opts_path = path.with_suffix(".options.json")
    opts = json.loads(opts_path.read_text()) if opts_path.exists() else {}
    tz = ZoneInfo(opts["timezone"]) if opts.get("timezone") else None
    cls = parser_class or get_parser_class(path.parent.name)
    parser = cls(ParserContext(timezone=tz, year=opts.get("year"), options=opts.get("options", {}),
                               country=opts.get("country")))
    framer = Framer(1 << 20)
    frames = framer.feed(path.read_bytes()) + framer.close()
    out: list[dict[str, Any]] = []
    for frame in frames:
        assert not isinstance(frame, Oversized), f"{path}: a line longer than 1 MiB"
        assert isinstance(frame, bytes)
        records = parse_line(parser, frame.decode(opts.get("encoding", cls.encoding), errors="replace"))
        out.extend(r.to_json() for r in records or ())
    held, errors = flush_records(parser)
    assert not errors, f"{path}: held records out of bounds at the end: {errors}"
    out.extend(r.to_json() for r in held)
    return out


def check_golden(path: Path, parser_class: type[Parser] | None = None) -> None:
    """Assert that a capture parses to its ``<name>.expected.jsonl`` (one JSON record a line), record by record.

    Expectations are written (and reviewed) by hand against the vendor's documents, not generated by the
    parser under test.
    """
    expected_path = path.with_suffix(".expected.jsonl")
    expected = [json.loads(line) for line in expected_path.read_text().splitlines() if line.strip()]
    got = parse_fixture(path, parser_class)
    for i, (want, have) in enumerate(zip(expected, got, strict=False)):
        assert have == want, f"{path.name}: record {i} differs: expected {want}, got {have}"
    assert len(got) == len(expected), f"{path.name}: expected {len(expected)} records, got {len(got)}"


def _context(context: ParserContext | ContextFor | None, record: CallRecord | None) -> ParserContext:
    if context is None:
        return ParserContext()
    if isinstance(context, ParserContext):
        return context
    assert record is not None, "a context that depends on the record needs a record"
    return context(record)


def _feed(parser: Parser, line: str) -> None:
    """One line through ``parser``: only `ParseError` may escape, and every record must be within bounds."""
    try:
        records = parser.parse(line)
    except ParseError:
        return
    for record in records or ():
        check_record(record)  # a ParseError here is a record no real call can have: the property fails


def check_garbage(parser_class: type[Parser], *, samples: Sequence[str] = (),
                  context: ParserContext | None = None, encoding: str | None = None, max_bytes: int = 400,
                  max_examples: int = 300) -> None:
    """Property: garbage in gives `ParseError` (or ``None``), never another exception, and never a record out of
    bounds (`smdrd.record.check_record`), from `Parser.parse` or `Parser.flush`.

    Garbage is random bytes (decoded as the format's ``encoding`` with replacement characters) and, when
    ``samples`` (real lines) are given, each sample cut short, with a few characters overwritten, and with one
    character changed, all fed to one parser followed by the samples themselves (so parser state such as a
    names line or an open call is exercised too).
    """
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    enc = encoding or parser_class.encoding
    tested = settings(max_examples=max_examples, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])

    def run(lines: Sequence[str]) -> None:
        parser = parser_class(context or ParserContext())
        for line in lines:
            _feed(parser, line)
        for record in parser.flush():
            check_record(record)

    @tested
    @given(st.binary(max_size=max_bytes))
    def random_bytes(data: bytes) -> None:
        run([data.decode(enc, errors="replace")])

    random_bytes()
    if not samples:
        return

    @tested
    @given(st.data())
    def mangled_samples(data: st.DataObject) -> None:
        line = data.draw(st.sampled_from(list(samples)))
        cut = data.draw(st.integers(0, len(line)))
        pos = data.draw(st.integers(0, len(line)))
        junk = data.draw(st.text(max_size=5))
        char = data.draw(st.characters())
        run([line[:cut], line[:pos] + junk + line[pos + len(junk):], line[:pos] + char + line[pos + 1:],
             *samples])

    mangled_samples()


def _same_start(parser_class: type[Parser], got: datetime, want: datetime) -> bool:
    if parser_class.time_resolution <= 1:
        return got == want.replace(microsecond=0)
    return abs((got - want).total_seconds()) < parser_class.time_resolution


def check_round_trip(parser_class: type[Parser],
                     records: SearchStrategy[CallRecord] | SearchStrategy[tuple[CallRecord, ParserContext]], *,
                     context: ParserContext | ContextFor | None = None,
                     fields: Sequence[str] = ROUND_TRIP_FIELDS, compare_start: bool = True,
                     check_lines: Callable[[list[str]], None] | None = None, max_examples: int = 200) -> None:
    """Property: what `Parser.render` writes, `Parser.parse` reads back as the same call.

    For each record drawn from ``records`` (a record, or a record and the context to read it in, for formats
    whose reading depends on when it happens): a fresh parser (made with that context, else ``context``, or
    ``context(record)``) reads
    the format's `Parser.header_lines` (each must be skipped: ``None``), then the rendered lines, then is
    flushed; exactly one record must come out, equal to the drawn one in ``fields`` and in its start time (to
    the format's `Parser.time_resolution`). ``check_lines`` may assert more about the rendered lines (their
    width). A record the format cannot carry renders no line and is skipped.
    """
    from hypothesis import given, settings

    @settings(max_examples=max_examples, deadline=None)
    @given(records)
    def round_trip(drawn: CallRecord | tuple[CallRecord, ParserContext]) -> None:
        record, ctx = drawn if isinstance(drawn, tuple) else (drawn, _context(context, drawn))
        parser = parser_class(ctx)
        lines = parser.render(record)
        if not lines:
            return
        if check_lines is not None:
            check_lines(lines)
        for header in parser_class.header_lines(record.start):
            assert parser.parse(header) is None, f"header line not skipped: {header!r}"
        out = [r for line in lines for r in parser.parse(line) or ()]
        out.extend(parser.flush())
        assert len(out) == 1, f"{lines} read back as {len(out)} records"
        back = out[0]
        if compare_start:
            assert _same_start(parser_class, back.start, record.start), (back.start, record.start)
        assert {f: getattr(back, f) for f in fields} == {f: getattr(record, f) for f in fields}, lines

    round_trip()


def call_records(format: str, *, start: datetime = datetime(2020, 1, 1), zone: tzinfo | None = None,
                 max_duration: int = 5 * 3600) -> SearchStrategy[CallRecord]:
    """A simple strategy of calls for a round trip: digit extensions and numbers, a trunk unless internal, ring
    time up to 10 minutes, answered when it lasted. Formats that carry less write their own."""
    from hypothesis import strategies as st

    digit_text = st.text("0123456789", min_size=1, max_size=12)

    @st.composite
    def draw_record(draw: st.DrawFn) -> CallRecord:
        direction = draw(st.sampled_from(list(Direction)))
        duration = draw(st.integers(0, max_duration))
        return CallRecord(
            format=format,
            start=(start + timedelta(seconds=draw(st.integers(0, 10**8)))).replace(tzinfo=zone),
            duration=duration, ring=draw(st.integers(0, 600)), direction=direction,
            extension=draw(st.text("0123456789", min_size=2, max_size=5)), number=draw(digit_text),
            trunk="" if direction is Direction.INTERNAL else draw(digit_text), answered=duration > 0)

    result: SearchStrategy[CallRecord] = draw_record()
    return result


def check_detection(parser_class: type[Parser], samples: Sequence[str], *,
                    context: ParserContext | None = None) -> None:
    """`Parser.detect` recognises the format's own ``samples`` (real lines) and its parser reads every one of
    them, so ``smdrd detect`` can rank it first on them: `smdrd.parsing.detect_formats` scores a format above
    `smdrd.parsing.REJECTED_CEILING` only when its parser reads the lines (a claim on shape alone is not
    enough). A class that does not implement `Parser.detect` is not checked."""
    from smdrd.parsing import REJECTED_CEILING, verify

    own = inspect.getattr_static(parser_class, "detect") is not inspect.getattr_static(Parser, "detect")
    if not own or not any(line.strip() for line in samples):
        return  # a format that makes no claim (a layout from the config) is never detected
    claimed = parser_class.detect(list(samples))
    found = verify(parser_class, list(samples), claimed, context)
    assert found.rejected == 0, f"the parser refuses {found.rejected} of its samples: {found.first_error}"
    assert found.score > REJECTED_CEILING, f"detect gives {claimed} for the format's own samples"


def check_parser(parser_class: type[Parser], *, samples: Sequence[str] = (),
                 records: SearchStrategy[CallRecord] | SearchStrategy[tuple[CallRecord, ParserContext]] | None = None,
                 context: ParserContext | ContextFor | None = None,
                 fields: Sequence[str] = ROUND_TRIP_FIELDS, max_examples: int = 200) -> None:
    """The whole conformance kit for one parser class (what a third-party plugin runs on itself).

    Checks the class (a `Parser` with a ``name`` and a one-line ``description``, `detect` a classmethod giving
    0 to 1), `check_detection` with ``samples``, `check_garbage` with ``samples``, and, when the class has its
    own `Parser.render`, `check_round_trip` with ``records`` (default `call_records`).
    """
    assert issubclass(parser_class, Parser), f"{parser_class!r} is not a smdrd Parser"
    assert isinstance(parser_class.name, str), "a parser needs a format name"
    assert parser_class.name, "a parser needs a format name"
    assert isinstance(parser_class.description, str), "a parser needs a one-line description"
    assert "\n" not in parser_class.description, "a parser needs a one-line description"
    assert isinstance(inspect.getattr_static(parser_class, "detect"), classmethod)
    for lines in ([], list(samples), ["garbage"]):
        score = parser_class.detect(lines)
        assert 0.0 <= score <= 1.0, f"detect gave {score} for {lines[:3]}"
    fixed = context if isinstance(context, ParserContext) else None
    check_detection(parser_class, samples, context=fixed)
    check_garbage(parser_class, samples=samples, context=fixed, max_examples=max_examples)
    if inspect.getattr_static(parser_class, "render") is not inspect.getattr_static(Parser, "render"):
        check_round_trip(parser_class, records if records is not None else call_records(parser_class.name),
                         context=context, fields=fields, max_examples=max_examples)


# ---- MQTT: a real Mosquitto broker, and a subscriber that collects what arrives ----
# For tests, benchmarks and tools (nothing here is used by the daemon): smdrd's own tests, and a plugin or
# integration that wants to see what smdrd publishes.

MOSQUITTO_CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def password_hash(password: str, salt: bytes | None = None) -> str:
    """A Mosquitto 2 password-file hash (PBKDF2-SHA512, 101 rounds), as ``mosquitto_passwd`` writes it."""
    salt = salt or os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101)
    return f"$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def mosquitto_path() -> str | None:
    """The ``mosquitto`` binary, or ``None`` when it is not installed."""
    for candidate in MOSQUITTO_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


class Broker:
    """A Mosquitto broker listening on ``127.0.0.1:<port>``, anonymous, configured in ``directory``.

    Args:
        directory: where its configuration (and persistence file, if any) and log are written.
        persistence: keep sessions and queued QoS-1 messages across a stop, as a production broker does (saved
            every second and at a clean stop); off by default.
        users: user name -> password; when given, anonymous clients are refused.
    """

    def __init__(self, directory: Path, *, persistence: bool = False, binary: str | None = None,
                 users: dict[str, str] | None = None) -> None:
        self.directory = directory
        self.persistence = persistence
        self.users = users or {}
        self.binary = binary or mosquitto_path() or "mosquitto"
        self.host = "127.0.0.1"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        self.config_path = directory / "mosquitto.conf"
        self.log_path = directory / "mosquitto.log"

    def _write_config(self) -> None:
        lines = [f"listener {self.port} {self.host}"]
        if os.geteuid() == 0:
            # Run as root, mosquitto drops to the "mosquitto" user, which cannot read or write a test's folder.
            lines.append("user root")
        if self.users:
            passwords = self.directory / "passwords"
            passwords.write_text("".join(f"{u}:{password_hash(p)}\n" for u, p in self.users.items()))
            passwords.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.directory}/",
                      "persistence_file mosquitto.db", "autosave_interval 1"]
        else:
            lines.append("persistence false")
        lines += ["log_dest stderr", "log_type error", "log_type warning", "log_type notice",
                  "max_queued_messages 100000"]
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self, within: float = 10.0) -> None:
        """Start it and wait until it accepts connections."""
        self._write_config()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([self.binary, "-c", str(self.config_path)], stdout=log, stderr=log)
        deadline = time.monotonic() + within
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.process.returncode}: "
                                   f"{self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def stop(self, sig: int = signal.SIGKILL) -> None:
        """Stop it (SIGKILL by default: a crash; SIGTERM: a clean stop that saves its persistence file)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, sig)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass(frozen=True, slots=True)
class Received:
    """A message a `Subscriber` received."""

    topic: str
    payload: bytes
    retain: bool
    at: float


class Subscriber:
    """Collects what arrives on ``topics`` (QoS 1), reconnecting and resubscribing on its own.

    For tests, benchmarks and tools, not for the daemon. With ``persistent`` the broker keeps its session (and
    queues QoS-1 messages for it) while it is away: a fixed ``client_id`` is then required.

    Args:
        host: the broker's host; port: its port.
        topics: topic filters to subscribe to.
        on_message: also called with each message as it arrives (a benchmark's clock).
    """

    def __init__(
        self,
        host: str,
        port: int,
        topics: Sequence[str],
        *,
        client_id: str | None = None,
        persistent: bool = False,
        on_message: Callable[[Received], None] | None = None,
        retry: float = 0.02,
    ) -> None:
        if persistent and not client_id:
            raise ValueError("a persistent session needs a fixed client_id")
        self.host = host
        self.port = port
        self.topics = list(topics)
        self.client_id = client_id
        self.persistent = persistent
        self.retry = retry
        self.on_message = on_message
        self.messages: list[Received] = []
        self.subscribed = asyncio.Event()
        self._arrived = asyncio.Event()

    async def run(self) -> None:
        """Collect until cancelled."""
        import aiomqtt

        while True:
            try:
                async with aiomqtt.Client(self.host, self.port, identifier=self.client_id,
                                          clean_session=not self.persistent, timeout=5) as client:
                    for topic in self.topics:
                        await client.subscribe(topic, qos=1)
                    self.subscribed.set()
                    async for message in client.messages:
                        payload = message.payload
                        received = Received(str(message.topic), payload if isinstance(payload, bytes)
                                            else str(payload).encode(), bool(message.retain), time.monotonic())
                        self.messages.append(received)
                        if self.on_message is not None:
                            self.on_message(received)
                        self._arrived.set()
            except (aiomqtt.MqttError, OSError):
                self.subscribed.clear()
                await asyncio.sleep(self.retry)

    def on(self, topic: str) -> list[Received]:
        """The messages received on ``topic`` (exact) or under ``topic/#`` when it ends with ``/#``."""
        if topic.endswith("/#"):
            return [m for m in self.messages if m.topic.startswith(topic[:-1])]
        return [m for m in self.messages if m.topic == topic]

    async def wait_until(self, condition: Callable[[], bool], within: float = 10.0) -> bool:
        """Wait until ``condition()`` holds (checked as messages arrive); False when ``within`` runs out."""
        deadline = time.monotonic() + within
        while not condition():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(left, 0.1))
        return True


async def write_entries(database: Path | str, entries: Iterable[JournalEntry], **options: Any) -> JournalWriter:
    """Store ``entries`` as the daemon does, through ``database``'s batching journal writer (a SQLite path or a
    ``postgresql://`` URL, `smdrd.store.journal_writer`), committing every few milliseconds; the writer, closed,
    for its `stats`."""
    from smdrd.store import journal_writer

    writer = journal_writer(database, **{"commit_interval": 0.005, **options})
    await writer.open()
    task = asyncio.create_task(writer.run())
    for entry in entries:
        writer.submit(entry)
    await writer.close()
    await task
    return writer


#: where Debian installs each PostgreSQL major version's server binaries (``initdb``, ``pg_ctl``).
POSTGRES_BIN_GLOB = "/usr/lib/postgresql/*/bin"


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's ``bin`` folder (Debian's ``postgresql``), else one on ``PATH``."""
    found = sorted(Path("/").glob(POSTGRES_BIN_GLOB.lstrip("/")),
                   key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    for folder in reversed(found):
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path and shutil.which("initdb") else None


class PostgresServer:
    """A throw-away PostgreSQL cluster: ``initdb`` in ``folder``, ``pg_ctl start`` on a free loopback port with
    its Unix socket in the same folder, trust authentication for the superuser ``smdrd``.

    PostgreSQL refuses to run as root; under root (CI) the cluster runs as ``nobody`` (``runuser``), and the
    folder is made theirs. `url` is a ``postgresql://`` URL for the database `create_database` makes.
    """

    user = "smdrd"

    def __init__(self, folder: Path, *, bin_dir: Path | None = None) -> None:
        self.folder = folder
        found = bin_dir or postgres_bin()
        if found is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        self.bin_dir: Path = found
        self.data = folder / "data"
        self.host = "127.0.0.1"
        self.port = free_port()
        self.log_path = folder / "postgres.log"

    def _run(self, *args: str) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "nobody", "--", *command]
        result = subprocess.run(command, capture_output=True, check=False, timeout=120)
        if result.returncode != 0:
            log = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): "
                               f"{result.stderr.decode(errors='replace')[-2000:]}\n{log}")

    def start(self) -> None:
        """``initdb`` (once) and start the server; returns when it accepts connections."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(self.folder, 65534, 65534)  # nobody: initdb and the server write here
            self.folder.chmod(0o755)
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8",
                      "--locale=C", "--no-sync")
        # fsync off: a test cluster has nothing to keep across a machine crash, and commits cost no disk flush;
        # a crash of the server alone (`stop("immediate")`) still loses no committed transaction.
        options = (f"-c listen_addresses={self.host} -c port={self.port} -c unix_socket_directories={self.folder} "
                   "-c fsync=off -c full_page_writes=off -c max_connections=100")
        self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data), "-l", str(self.log_path),
                  "-o", options)

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop`` (``fast``: a clean stop; ``immediate``: a crash)."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-w", "-D", str(self.data), "-m", mode)

    def url(self, database: str = "postgres") -> str:
        """The URL of ``database`` over the Unix socket (no password: trust)."""
        return f"postgresql://{self.user}@/{database}?host={self.folder}&port={self.port}"

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """A new database ``name``, empty or a copy of ``template`` (a database nobody is connected to); its URL."""
        import psycopg

        copy = f' TEMPLATE "{template}"' if template else ""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"{copy}')
        return self.url(name)
