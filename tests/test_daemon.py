"""The daemon end to end: real loopback sockets, a real SQLite file, real signals to a real process."""

from __future__ import annotations

import asyncio
import random
import signal
import socket
import sqlite3
import time
from pathlib import Path

import pytest

from smdrd.config import Settings
from smdrd.simulator import serve
from smdrd.testing import (
    DaemonProcess,
    config_toml,
    daemon_config,
    free_port,
    open_connection_retry,
    running_daemon,
    tcp_client_source,
    tcp_server_source,
)

LINE = ("2017/07/01 08:30:22,00:01:01,0,217,O,600988600,0600988600,,0,{id},0,E217,GRZYBEK,T9005,Line 5.0,"
        "0,0,,,,,,,,,,,U,GRZYBEK,,192.168.0.201,20806,192.168.0.201,20809")


def lines(n: int, start: int = 1_000_000) -> list[bytes]:
    return [LINE.format(id=start + i).encode() for i in range(n)]


def settings(tmp_path: Path, sources: list[dict[str, object]], **db: object) -> Settings:
    return Settings.model_validate(daemon_config(tmp_path, sources, database={"commit_interval_ms": 20, **db}))


def journal(tmp_path: Path) -> list[bytes]:
    conn = sqlite3.connect(tmp_path / "smdrd.db")
    try:
        return [r[0] for r in conn.execute("SELECT raw FROM lines ORDER BY id")]
    finally:
        conn.close()


async def wait_for_rows(tmp_path: Path, n: int, within: float = 10.0) -> list[bytes]:
    deadline = time.monotonic() + within
    rows: list[bytes] = []
    while time.monotonic() < deadline:
        if (tmp_path / "smdrd.db").exists():
            rows = journal(tmp_path)
            if len(rows) >= n:
                return rows
        await asyncio.sleep(0.05)
    return rows


@pytest.mark.parametrize("worker", [False, True], ids=["on-the-loop", "parse-in-worker"])
async def test_tcp_server_source_journals_every_line_byte_for_byte(tmp_path: Path, worker: bool) -> None:
    """N lines pushed by a PBX in random chunk sizes become exactly N journal rows, byte for byte, and N calls,
    whether they are parsed on the event loop (the default) or in the pipeline worker process."""
    port = free_port()
    sent = lines(3000)
    data = b"".join(line + b"\r\n" for line in sent)
    async with running_daemon(settings(tmp_path, [tcp_server_source("push", port)], parse_in_worker=worker)):
        _, writer = await open_connection_retry("127.0.0.1", port)
        rng = random.Random(5)
        i = 0
        while i < len(data):
            n = rng.randint(1, 3000)
            writer.write(data[i:i + n])
            i += n
            if rng.random() < 0.2:
                await writer.drain()
        await writer.drain()
        assert await wait_for_rows(tmp_path, len(sent)) == sent
        writer.close()
    conn = sqlite3.connect(tmp_path / "smdrd.db")
    assert conn.execute("SELECT count(*) FROM calls").fetchone()[0] == len(sent)


async def test_tcp_client_source_journals_every_line_byte_for_byte(tmp_path: Path) -> None:
    """The other direction: the daemon connects to the PBX, which writes N lines in random chunk sizes."""
    sent = lines(3000, start=3_000_000)
    data = b"".join(line + b"\r\n" for line in sent)
    done = asyncio.Event()

    async def pbx(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        rng = random.Random(11)
        i = 0
        while i < len(data):
            n = rng.randint(1, 5000)
            writer.write(data[i:i + n])
            await writer.drain()
            i += n
        await done.wait()
        writer.close()

    server = await asyncio.start_server(pbx, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with running_daemon(settings(tmp_path, [tcp_client_source("ipo", port)])):
        rows = await wait_for_rows(tmp_path, len(sent))
        done.set()
    server.close()
    assert rows == sent


async def test_tcp_client_survives_five_pbx_restarts_without_loss_or_doubles(tmp_path: Path) -> None:
    """The PBX (the simulator in listen mode) stops and starts five times; every line it wrote is journalled
    once. Like a real PBX, it holds lines while no collector is connected."""
    port = free_port()
    expected: list[bytes] = []
    source = tcp_client_source("ipo", port, reconnect_min=0.05, reconnect_max=0.2)
    async with running_daemon(settings(tmp_path, [source])) as daemon:
        for round_ in range(6):
            batch = lines(200, start=2_000_000 + round_ * 1000)
            expected += batch
            ready = asyncio.Event()
            pbx = asyncio.create_task(serve("127.0.0.1", port, iter(b.decode() for b in batch), rate=2000,
                                            ready=ready))
            assert await asyncio.wait_for(pbx, 20) == len(batch)
            await wait_for_rows(tmp_path, len(expected))
        rows = await wait_for_rows(tmp_path, len(expected))
    assert rows == expected
    assert daemon.writer.stats.duplicates == 0


async def test_garbage_is_journalled_with_its_error_and_the_daemon_carries_on(tmp_path: Path) -> None:
    port = free_port()
    garbage = bytes(random.Random(1).randrange(256) for _ in range(2000)).replace(b"\n", b"").replace(
        b"\r", b"").replace(b"\0", b"").replace(b"\x0c", b"")
    async with running_daemon(settings(tmp_path, [tcp_server_source("push", port, max_line_length=4096)])):
        _, writer = await open_connection_retry("127.0.0.1", port)
        writer.write(garbage + b"\r\n")
        writer.write(b"M" * 1_000_000)  # a 1 MB line with no newline...
        writer.write(b"\r\n" + lines(1)[0] + b"\r\n")  # ...and a good call after it
        await writer.drain()
        rows = await wait_for_rows(tmp_path, 3)
    assert rows[0] == garbage and rows[1] == b"M" * 4096 and rows[2] == lines(1)[0]
    conn = sqlite3.connect(tmp_path / "smdrd.db")
    statuses = [r[0] for r in conn.execute("SELECT status FROM lines ORDER BY id")]
    assert statuses == ["error", "error", "parsed"]


# --- the real process: signals and systemd notifications --------------------------------------------------

def pbx_daemon(tmp_path: Path, *sources: dict[str, object]) -> DaemonProcess:
    """A real ``smdrd run`` (`smdrd.testing.DaemonProcess`) on the shared test configuration with ``sources``."""
    return DaemonProcess(tmp_path, daemon_config(tmp_path, sources))


@pytest.mark.slow
def test_sigterm_mid_stream_commits_every_line_read_and_exits_zero(
        tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    """Lines stream in at 1,000 per second; SIGTERM: every line sent before it is committed, and the daemon
    exits 0 on its own while the PBX still holds its connection open. (How long the stop takes is a figure for
    ``bench/lifecycle.py``; the 30 s here only stops a hung test.)"""
    port = free_port()
    d = pbx_daemon(tmp_path, tcp_server_source("pbx", port))
    daemons.append(d.start())
    d.wait_port(port)
    sent = lines(5000)
    sock = socket.create_connection(("127.0.0.1", port))
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < 2.0:
        due = int((time.monotonic() - t0) * 1000)
        while n < due:
            sock.sendall(sent[n] + b"\r\n")
            n += 1
        time.sleep(0.002)
    assert d.proc is not None
    d.proc.send_signal(signal.SIGTERM)
    # the PBX's connection stays open: the daemon must not wait for it
    assert d.proc.wait(timeout=30) == 0, d.log_text()[-4000:]
    sock.close()
    rows = journal(tmp_path)
    assert rows == sent[:n], f"{len(rows)} journalled of {n} sent"
    stopped = d.events("daemon.stopped")
    assert stopped and stopped[0]["lines"] == len(rows)


@pytest.mark.slow
def test_sighup_restarts_changed_sources_only_and_rejects_a_bad_file(
        tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    port, port2 = free_port(), free_port()
    one = tcp_server_source("a", port)
    d = pbx_daemon(tmp_path, one)
    daemons.append(d.start())
    assert d.proc is not None
    d.wait_port(port)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(lines(1)[0] + b"\r\n")
    # Add a source: "a" keeps its connection.
    d.config_path.write_text(config_toml(daemon_config(tmp_path, [one, tcp_server_source("b", port2)])))
    d.proc.send_signal(signal.SIGHUP)
    d.wait_port(port2)
    sock.sendall(lines(1, start=5)[0] + b"\r\n")
    # A broken file is rejected; both sources keep running.
    d.config_path.write_text("[site\n")
    d.proc.send_signal(signal.SIGHUP)
    d.wait_event("daemon.reload_rejected")
    sock.sendall(lines(1, start=9)[0] + b"\r\n")
    socket.create_connection(("127.0.0.1", port2)).close()
    asyncio.run(wait_for_rows(tmp_path, 3, within=30))  # stop once read, not after a guess at how long that takes
    d.terminate()
    reloaded = d.events("daemon.reloaded")
    assert reloaded and reloaded[0]["added"] == ["b"] and reloaded[0]["unchanged"] == ["a"]
    rejected = d.events("daemon.reload_rejected")
    assert rejected and "not valid TOML" in str(rejected[0]["reason"])
    assert journal(tmp_path) == [lines(1)[0], lines(1, start=5)[0], lines(1, start=9)[0]]


@pytest.mark.slow
def test_systemd_notifications(tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    """With NOTIFY_SOCKET set: READY=1 once started, WATCHDOG=1 pings, STOPPING=1 on SIGTERM."""
    sock_path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(sock_path))
    listener.settimeout(15)
    d = pbx_daemon(tmp_path, tcp_server_source("a", free_port()))
    daemons.append(d.start(env={"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "200000"}))
    messages = [listener.recv(4096).decode() for _ in range(3)]
    assert any("READY=1" in m for m in messages)
    assert any("WATCHDOG=1" in m for m in messages)
    assert d.proc is not None
    d.proc.send_signal(signal.SIGTERM)
    seen = ""
    while "STOPPING=1" not in seen:
        seen = listener.recv(4096).decode()
    assert d.proc.wait(timeout=30) == 0
    listener.close()
