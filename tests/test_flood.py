"""A flood against a real daemon's tcp-server source: memory stays bounded and allowed peers lose nothing.

Peers "not allowed" on one loopback box: the source listens on 0.0.0.0 with ``allowed_peers = ["127.0.0.1"]``
and the refused clients bind their end to 127.0.0.2 (all of 127.0.0.0/8 is loopback on Linux) before
connecting. Peak memory is the daemon's ``VmHWM`` from ``/proc/<pid>/status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
import time
from pathlib import Path

import pytest

from smdrd.testing import DaemonProcess, daemon_config, free_port, tcp_server_source
from tests.test_daemon import lines

#: What bounds memory under a flood is ``[database] max_pending_rows``: when the journal writer falls behind,
#: up to that many parsed rows wait in memory (about 1.9 KB each), then sources stop reading (backpressure).
#: Measured here (Python 3.11, x86-64, 2 CPUs; see the test's output with -s): 60 MiB at start (49 before the
#: HTTP server moved to aiohttp); at the flood's peak 141 MiB with the default max_pending_rows = 5000 and
#: 327 MiB with 100000: a pending line is about 2.7 KB since entries hold typed calls (`smdrd.journal`: the
#: record with its vendor extras as a dict) where they held row tuples (about 2.1 KB, 272 MiB). The rest of the
#: peak is the 100 MB line's reads and 25 connections' buffers. Bounds in MiB:
MEMORY_BOUNDS_MIB = {5_000: 165, 100_000: 380}

ALLOWED_SENDERS = 24
LINES_EACH = 4000
REFUSED = 25
BLOB_BYTES = 100 * 1024 * 1024


def vm_hwm_mib(pid: int) -> float:
    """The peak resident set size of ``pid`` in MiB."""
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmHWM:"):
            return int(row.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


async def connect(port: int, source_ip: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source_ip, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=sock)


async def send_lines(port: int, batch: list[bytes]) -> None:
    _, writer = await connect(port, "127.0.0.1")
    data = b"".join(line + b"\r\n" for line in batch)
    for i in range(0, len(data), 64 * 1024):
        writer.write(data[i:i + 64 * 1024])
        await writer.drain()
    writer.close()
    await writer.wait_closed()


async def send_blob(port: int, tail: bytes) -> None:
    """100 MB without a line end, then a line end and one good line."""
    _, writer = await connect(port, "127.0.0.1")
    chunk = b"M" * (1024 * 1024)
    for _ in range(BLOB_BYTES // len(chunk)):
        writer.write(chunk)
        await writer.drain()
    writer.write(b"\r\n" + tail + b"\r\n")
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def refused_client(port: int, batch: list[bytes]) -> bool:
    """Connect from 127.0.0.2 and try to send; True if the daemon closed the connection."""
    reader, writer = await connect(port, "127.0.0.2")
    with contextlib.suppress(ConnectionError):
        writer.write(b"".join(line + b"\r\n" for line in batch))
        await writer.drain()
    try:
        closed = await asyncio.wait_for(reader.read(1), 10) == b""
    except ConnectionError:
        closed = True
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    return closed


def journal(db: Path) -> list[tuple[bytes, str, str]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT raw, status, peer FROM lines ORDER BY id").fetchall()
    finally:
        conn.close()


async def wait_lines(db: Path, n: int, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        conn = sqlite3.connect(db)
        try:
            if conn.execute("SELECT count(*) FROM lines").fetchone()[0] >= n:
                return
        finally:
            conn.close()
        await asyncio.sleep(0.1)
    raise AssertionError(f"fewer than {n} lines journalled within {within} s")


def flood_daemon(folder: Path, port: int, max_connections: int, max_pending_rows: int = 100_000) -> DaemonProcess:
    """The shared test configuration with one tcp-server source, "flood", open on every address but taking
    lines from 127.0.0.1 only; started, and listening."""
    source = tcp_server_source("flood", port, listen=f"0.0.0.0:{port}", allowed_peers=["127.0.0.1"],
                               max_connections=max_connections)
    config = daemon_config(folder, [source], database={"max_pending_rows": max_pending_rows})
    d = DaemonProcess(folder, config).start()
    d.wait_port(port)
    return d


@pytest.mark.slow
@pytest.mark.parametrize("max_pending_rows", sorted(MEMORY_BOUNDS_MIB))
async def test_flood_of_50_clients_and_a_100_mb_line_keeps_memory_bounded_and_loses_no_allowed_line(
        tmp_path: Path, daemons: list[DaemonProcess], max_pending_rows: int) -> None:
    """25 allowed peers (one of them sending 100 MB without a line end) and 25 peers outside the allow-list,
    all at once: every line of the allowed peers is journalled, the over-long one as an error holding its
    first 8192 bytes, no byte of a refused peer is stored, and the daemon's peak memory stays under the
    bound for its max_pending_rows. A user would see the daemon killed by the OOM killer, or calls missing."""
    bound = MEMORY_BOUNDS_MIB[max_pending_rows]
    port = free_port()
    d = flood_daemon(tmp_path, port, 64, max_pending_rows)
    daemons.append(d)
    start_mib = vm_hwm_mib(d.pid)
    batches = [lines(LINES_EACH, start=1_000_000 + i * LINES_EACH) for i in range(ALLOWED_SENDERS)]
    tail = lines(1, start=9_000_000)[0]
    refused_batches = [lines(100, start=5_000_000 + i * 100) for i in range(REFUSED)]
    started = time.monotonic()
    results = await asyncio.gather(
        *(send_lines(port, b) for b in batches),
        send_blob(port, tail),
        *(refused_client(port, b) for b in refused_batches),
    )
    expected = ALLOWED_SENDERS * LINES_EACH + 2
    await wait_lines(d.db, expected)
    took = time.monotonic() - started
    peak_mib = vm_hwm_mib(d.pid)
    refusals = d.events("source.peer_refused")
    d.terminate()
    print(f"\nflood: {expected} lines + {BLOB_BYTES >> 20} MB in {took:.1f} s; VmHWM {start_mib:.0f} MiB at "
          f"start, {peak_mib:.0f} MiB at peak with max_pending_rows = {max_pending_rows} (bound {bound} MiB)")

    assert all(results[-REFUSED:]), "a peer outside allowed_peers was not disconnected"
    assert refusals and all(e["reason"] == "not in allowed_peers" for e in refusals)
    assert all(str(e["peer"]).startswith("127.0.0.2:") for e in refusals)
    rows = journal(d.db)
    assert len(rows) == expected
    assert all(peer.startswith("127.0.0.1:") for _, _, peer in rows), "a refused peer's line was stored"
    stored = {raw for raw, status, _ in rows if status == "parsed"}
    assert stored == {line for batch in batches for line in batch} | {tail}
    errors = [(raw, status) for raw, status, _ in rows if status != "parsed"]
    assert errors == [(b"M" * 8192, "error")]
    assert peak_mib < bound, f"peak memory {peak_mib:.0f} MiB"


@pytest.mark.slow
async def test_connections_beyond_max_connections_are_closed_and_the_first_ones_keep_working(
        tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    """With max_connections = 8, a ninth to twelfth connection are closed at once (and logged), while the
    eight open ones keep delivering; when one of the eight leaves, a new peer is accepted again."""
    port = free_port()
    d = flood_daemon(tmp_path, port, 8)
    daemons.append(d)
    held = []
    for _ in range(8):
        held.append(await connect(port, "127.0.0.1"))
        await asyncio.sleep(0.05)  # each is registered before the next arrives
    d.wait_event("source.peer_connected")
    extra = []
    for _ in range(4):
        extra.append(await connect(port, "127.0.0.1"))
    for reader, _ in extra:
        assert await asyncio.wait_for(reader.read(1), 10) == b"", "a connection beyond the limit stayed open"
    for i, (_, writer) in enumerate(held):
        writer.write(lines(1, start=7_000_000 + i)[0] + b"\r\n")
        await writer.drain()
    await wait_lines(d.db, 8)
    held[0][1].close()
    await held[0][1].wait_closed()
    await asyncio.sleep(0.3)
    reader, writer = await connect(port, "127.0.0.1")
    writer.write(lines(1, start=7_100_000)[0] + b"\r\n")
    await writer.drain()
    await wait_lines(d.db, 9)
    for _, w in [*held[1:], (reader, writer)]:
        w.close()
    refusals = d.events("source.peer_refused")
    d.terminate()
    assert refusals and refusals[0]["reason"] == "max_connections reached"
    assert len(journal(d.db)) == 9
