"""The TCP sources (`smdrd.sources.tcp`) over real loopback sockets, with a fake PBX on the other end."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from smdrd.config import TcpClientSource, TcpServerSource
from smdrd.errors import SmdrdError
from smdrd.framing import Framer
from smdrd.sources.base import Source, SourceStatus
from smdrd.sources.factory import build_source
from smdrd.sources.handshakes import Handshake, register
from smdrd.sources.streams import read_stream, resolve_handshake, stream_pair
from smdrd.sources.tcp import TcpClient, TcpServer
from smdrd.testing import CollectedStream, CollectingIngest, free_port

TIMEOUT = 5.0


# --- helpers (also used by the serial and file tests) ---------------------------------------------------


def make_lines(n: int, tag: str = "") -> list[bytes]:
    """``n`` distinct SMDR-looking lines."""
    return [
        f"2024/03/{i % 28 + 1:02d} 09:{i % 60:02d}:00,00:01:{i % 60:02d},{200 + i % 50},O,"
        f"0044207946{i:04d},{tag}{i}".encode()
        for i in range(n)
    ]


def chunked(data: bytes, rng: random.Random, largest: int = 700) -> list[bytes]:
    """``data`` cut at random places into chunks of 1 to ``largest`` bytes."""
    out = []
    pos = 0
    while pos < len(data):
        size = rng.randint(1, largest)
        out.append(data[pos : pos + size])
        pos += size
    return out


async def wait_until(predicate: Callable[[], bool], within: float = TIMEOUT, what: str = "") -> None:
    """Poll ``predicate`` until it holds; fail the test after ``within`` seconds."""
    async with asyncio.timeout(within):
        # polling on purpose: the state observed belongs to the code under test, which signals nothing
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    assert predicate(), what


@contextlib.asynccontextmanager
async def running(source: Source) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``source`` for the duration of the block, then cancel it and wait for it to finish."""
    task = asyncio.create_task(source.run(), name=f"source-{source.name}")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, TIMEOUT)


# --- a fake PBX that listens (for tcp-client) -----------------------------------------------------------


class FakePbx:
    """A PBX in listen mode: sends each line once, only to the clients connected at that moment."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.server: asyncio.Server | None = None
        self.clients: list[asyncio.StreamWriter] = []
        self.connected = asyncio.Event()

    async def start(self) -> None:
        self.connected.clear()
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.clients.append(writer)
        self.connected.set()

    async def send(self, data: bytes, rng: random.Random | None = None) -> None:
        for writer in self.clients:
            for chunk in chunked(data, rng) if rng else [data]:
                writer.write(chunk)
                await writer.drain()

    async def stop(self) -> None:
        """Stop listening and drop every client, as a rebooting PBX does."""
        assert self.server is not None
        self.server.close()
        for writer in self.clients:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        self.clients.clear()
        await self.server.wait_closed()
        self.server = None


def client_config(port: int, **overrides: Any) -> TcpClientSource:
    fields: dict[str, Any] = {
        "name": "pbx",
        "kind": "tcp-client",
        "format": "avaya-ipo",
        "host": "127.0.0.1",
        "port": port,
        "reconnect_min": 0.01,
        "reconnect_max": 0.05,
        "connect_timeout": 2.0,
        **overrides,
    }
    return TcpClientSource(**fields)


def server_config(**overrides: Any) -> TcpServerSource:
    fields: dict[str, Any] = {
        "name": "pbx-in",
        "kind": "tcp-server",
        "format": "avaya-ipo",
        "listen": "127.0.0.1:0",
        **overrides,
    }
    return TcpServerSource(**fields)


# --- tcp-client -----------------------------------------------------------------------------------------


async def test_client_receives_every_line_in_order_whatever_the_chunking() -> None:
    """A user would see call records missing, doubled or garbled when the PBX's writes split lines."""
    pbx = FakePbx(free_port())
    await pbx.start()
    ingest = CollectingIngest()
    source = build_source(client_config(pbx.port), ingest)
    assert isinstance(source, TcpClient)
    lines = make_lines(2000)
    async with running(source):
        await asyncio.wait_for(pbx.connected.wait(), TIMEOUT)
        await pbx.send(b"\r\n".join(lines) + b"\r\n", random.Random(1))
        await wait_until(lambda: len(ingest.lines) >= len(lines))
        assert source.status.connected
        assert source.status.bytes_read == sum(len(line) + 2 for line in lines)
    await pbx.stop()
    assert ingest.lines == lines
    assert len(ingest.streams) == 1
    assert ingest.streams[0].peer == f"127.0.0.1:{pbx.port}"


async def test_client_reconnects_after_the_pbx_restarts_and_misses_nothing() -> None:
    """A user would lose the calls made after a PBX reboot (or count some twice) until smdrd restarted."""
    pbx = FakePbx(free_port())
    ingest = CollectingIngest()
    source = build_source(client_config(pbx.port), ingest)
    rng = random.Random(2)
    sent: list[bytes] = []
    async with running(source):
        for round_ in range(6):  # the first start, then five restarts
            await pbx.start()
            await asyncio.wait_for(pbx.connected.wait(), TIMEOUT)
            batch = make_lines(150, tag=f"r{round_}-")
            await pbx.send(b"\n".join(batch) + b"\n", rng)
            sent += batch
            # stop at once: what was sent before the FIN must still arrive
            await pbx.stop()
            await wait_until(lambda: not source.status.connected, what="source noticed the drop")
            await asyncio.sleep(0.03)  # let it try (and fail) a connect or two while the PBX is down
        await wait_until(lambda: len(ingest.lines) >= len(sent))
    assert ingest.lines == sent
    assert len(ingest.streams) == 6
    assert all(stream.closed for stream in ingest.streams)
    assert source.status.connections == 6
    assert source.status.reconnects == 5
    assert source.status.last_error is not None  # the refused connects while the PBX was down


async def test_client_journals_an_unterminated_last_line_when_the_pbx_disconnects() -> None:
    """A user would lose the last call record of a PBX that closes without a final line end."""
    pbx = FakePbx(free_port())
    await pbx.start()
    ingest = CollectingIngest()
    source = build_source(client_config(pbx.port), ingest)
    async with running(source):
        await asyncio.wait_for(pbx.connected.wait(), TIMEOUT)
        await pbx.send(b"first\r\nsecond without end")
        await pbx.stop()
        await wait_until(lambda: bool(ingest.streams) and ingest.streams[0].closed)
    assert ingest.lines == [b"first", b"second without end"]


async def test_client_sets_tcp_keepalive() -> None:
    """A user would see a PBX that vanished without closing its connection never reconnected."""
    pbx = FakePbx(free_port())
    await pbx.start()
    source = TcpClient(client_config(pbx.port, keepalive=True), CollectingIngest())
    async with running(source):
        await asyncio.wait_for(pbx.connected.wait(), TIMEOUT)
        # the PBX side sees the client's socket options only indirectly; read them on the client's socket
        client_sockets = [
            s for s in _sockets_of(source) if s.getpeername()[1] == pbx.port
        ]
        assert client_sockets, "the source's socket was not found"
        assert client_sockets[0].getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        if hasattr(socket, "TCP_KEEPIDLE"):
            assert client_sockets[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 60
    await pbx.stop()


def _sockets_of(source: Source) -> list[socket.socket]:
    """The TCP sockets the event loop's transports hold (to inspect the source's options)."""
    import gc

    found = []
    for obj in gc.get_objects():
        try:
            transport = isinstance(obj, asyncio.Transport)
        except ReferenceError:  # a weakref.proxy whose object is gone (an earlier test's daemon)
            continue
        if transport and not obj.is_closing():
            sock = obj.get_extra_info("socket")
            if sock is not None and sock.family == socket.AF_INET and sock.type == socket.SOCK_STREAM:
                with contextlib.suppress(OSError):
                    sock.getpeername()
                    found.append(sock)
    return found


async def test_client_cancel_drains_what_was_already_sent() -> None:
    """A user would lose the calls that were in flight when systemd stopped smdrd (SIGTERM)."""
    pbx = FakePbx(free_port())
    await pbx.start()
    ingest = CollectingIngest()
    source = build_source(client_config(pbx.port), ingest)
    lines = make_lines(500)
    task = asyncio.create_task(source.run())
    await asyncio.wait_for(pbx.connected.wait(), TIMEOUT)
    await wait_until(lambda: source.status.connected)
    await pbx.send(b"\n".join(lines) + b"\nunterminated tail", random.Random(3))
    task.cancel()  # at once: most of it is still in the socket buffers
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, TIMEOUT)
    await pbx.stop()
    assert ingest.lines == [*lines, b"unterminated tail"]
    assert ingest.streams[0].closed
    assert not source.status.connected


async def test_client_connect_timeout_is_retried() -> None:
    """A user would see a source hang forever on a PBX address that drops SYNs."""
    # a listening socket with a full backlog never completes new handshakes quickly; simpler and reliable:
    # an unroutable TEST-NET address, with a tiny timeout
    ingest = CollectingIngest()
    source = build_source(
        client_config(9, host="192.0.2.1", connect_timeout=0.05, reconnect_min=0.01, reconnect_max=0.02),
        ingest,
    )
    async with running(source):
        await wait_until(lambda: source.status.last_error is not None, what="a failure was recorded")
    assert not source.status.connected
    assert source.status.connections == 0
    assert ingest.streams == []


# --- tcp-server -----------------------------------------------------------------------------------------


async def _listening(source: Source) -> int:
    assert isinstance(source, TcpServer)
    await wait_until(lambda: source.address is not None, what="the server listens")
    assert source.address is not None
    return source.address[1]


async def test_server_receives_every_line_in_order_whatever_the_chunking() -> None:
    """A user would see call records missing, doubled or garbled from a PBX that pushes to smdrd."""
    ingest = CollectingIngest()
    source = build_source(server_config(), ingest)
    assert isinstance(source, TcpServer)
    lines = make_lines(2000)
    async with running(source):
        port = await _listening(source)
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for chunk in chunked(b"\r\n".join(lines) + b"\r\n", random.Random(4)):
            writer.write(chunk)
            await writer.drain()
        await wait_until(lambda: len(ingest.lines) >= len(lines))
        assert source.status.connected
        writer.close()
        await writer.wait_closed()
        await wait_until(lambda: not source.status.connected, what="the peer's departure was noticed")
    assert ingest.lines == lines
    local = writer.get_extra_info("sockname")
    assert ingest.streams[0].peer == f"127.0.0.1:{local[1]}"
    assert ingest.streams[0].closed


async def test_a_server_of_a_login_format_sends_no_password_to_whoever_connects() -> None:
    """A tcp-server whose format logs in where smdrd connects (Panasonic) ran that login on every connection:
    a stranger that said ``Password:`` was sent ``SMDR`` and the PBX's password."""
    ingest = CollectingIngest()
    source = build_source(server_config(format="panasonic", format_options={"password": "S3cretPw"}), ingest)
    async with running(source):
        port = await _listening(source)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"Password: \r\nrecord one\r\n")
        await writer.drain()
        await wait_until(lambda: b"record one" in ingest.lines)
        with contextlib.suppress(TimeoutError):
            sent = await asyncio.wait_for(reader.read(100), 0.5)
            assert sent == b"", sent
        writer.close()
        await writer.wait_closed()
    assert ingest.lines == [b"Password: ", b"record one"]


async def test_server_takes_several_peers_at_once_each_its_own_stream() -> None:
    """A user with two PBXs pushing to one port would see their records mixed into each other's lines."""
    ingest = CollectingIngest()
    source = build_source(server_config(), ingest)
    async with running(source):
        port = await _listening(source)
        peers = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        await wait_until(lambda: source.status.connections == 3)
        expected = {}
        rng = random.Random(5)
        # interleave the peers' writes, each split mid-line
        pending = []
        for i, (_, writer) in enumerate(peers):
            lines = make_lines(300, tag=f"p{i}-")
            expected[writer.get_extra_info("sockname")[1]] = lines
            pending.append((writer, chunked(b"\n".join(lines) + b"\n", rng, 90)))
        while any(chunks for _, chunks in pending):
            for writer, chunks in pending:
                if chunks:
                    writer.write(chunks.pop(0))
                    await writer.drain()
        await wait_until(lambda: len(ingest.lines) >= 900)
        assert source.status.connected
        for _, writer in peers:
            writer.close()
        await wait_until(lambda: not source.status.connected)
    by_port = {int(stream.peer.rsplit(":", 1)[1]): stream.lines for stream in ingest.streams}
    assert by_port == expected


async def test_server_refuses_a_peer_outside_the_allow_list() -> None:
    """A user would see records from any host on the network accepted as the PBX's."""
    ingest = CollectingIngest()
    source = build_source(server_config(allowed_peers=["10.9.9.9"]), ingest)
    async with running(source):
        port = await _listening(source)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"forged record\n")
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""  # closed by smdrd
        writer.close()
        await wait_until(lambda: source.status.refused == 1)
    assert ingest.streams == []
    assert source.status.connections == 0


async def test_server_accepts_a_peer_inside_the_allow_list() -> None:
    """A user would see the PBX's own records refused when its network is allowed."""
    ingest = CollectingIngest()
    source = build_source(server_config(allowed_peers=["127.0.0.0/8"]), ingest)
    async with running(source):
        port = await _listening(source)
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"allowed record\n")
        await writer.drain()
        await wait_until(lambda: ingest.lines == [b"allowed record"])
        writer.close()
    assert source.status.refused == 0


async def test_server_enforces_max_connections() -> None:
    """A user would see a misbehaving device open connections until smdrd runs out of file descriptors."""
    ingest = CollectingIngest()
    source = build_source(server_config(max_connections=2), ingest)
    async with running(source):
        port = await _listening(source)
        first = await asyncio.open_connection("127.0.0.1", port)
        second = await asyncio.open_connection("127.0.0.1", port)
        await wait_until(lambda: source.status.connections == 2)
        third_reader, third_writer = await asyncio.open_connection("127.0.0.1", port)
        with contextlib.suppress(ConnectionResetError):
            assert await asyncio.wait_for(third_reader.read(), TIMEOUT) == b""
        assert source.status.refused == 1
        # the two admitted ones still work
        for i, (_, writer) in enumerate((first, second)):
            writer.write(b"line %d\n" % i)
            await writer.drain()
        await wait_until(lambda: sorted(ingest.lines) == [b"line 0", b"line 1"])
        # a slot freed is a slot to take again
        first[1].close()
        await wait_until(lambda: sum(not s.closed for s in ingest.streams) == 1)
        _, fourth_writer = await asyncio.open_connection("127.0.0.1", port)
        fourth_writer.write(b"line 4\n")
        await fourth_writer.drain()
        await wait_until(lambda: b"line 4" in ingest.lines)
        for writer in (second[1], third_writer, fourth_writer):
            writer.close()
    assert source.status.refused == 1
    assert source.status.connections == 3


async def test_server_cancel_drains_every_peer() -> None:
    """A user would lose the records PBXs had pushed just before smdrd was stopped."""
    ingest = CollectingIngest()
    source = build_source(server_config(), ingest)
    assert isinstance(source, TcpServer)
    task = asyncio.create_task(source.run())
    port = await _listening(source)
    expected = []
    writers = []
    for _ in range(2):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writers.append(writer)
    await wait_until(lambda: len(ingest.streams) == 2)
    for i, writer in enumerate(writers):
        lines = make_lines(400, tag=f"p{i}-")
        expected.append([*lines, b"tail %d" % i])
        writer.write(b"\n".join(lines) + b"\ntail %d" % i)
        await writer.drain()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, TIMEOUT)
    ports = [w.get_extra_info("sockname")[1] for w in writers]
    by_port = {int(s.peer.rsplit(":", 1)[1]): s.lines for s in ingest.streams}
    assert [by_port[p] for p in ports] == expected
    assert all(s.closed for s in ingest.streams)
    assert not source.status.connected
    for writer in writers:
        writer.close()


class SlowStream(CollectedStream):
    """A stream whose journal is behind: every feed waits a little (backpressure)."""

    async def feed(self, data: bytes) -> None:
        await asyncio.sleep(0.01)
        await super().feed(data)


async def test_bytes_received_before_a_connection_error_are_all_fed() -> None:
    """A user would lose the records that arrived just before a reset or an unplugged serial adapter."""
    loop = asyncio.get_running_loop()
    reader, _ = stream_pair(loop)
    stream = SlowStream("peer", Framer(100))
    # what the transport does: bytes arrive while the journal is busy, then the connection is lost
    reader.feed_data(b"one\ntwo\n")
    reader.set_exception(ConnectionResetError(104, "Connection reset by peer"))
    status = SourceStatus("pbx", "tcp-server")
    with pytest.raises(ConnectionResetError):
        await read_stream(reader, stream, status)
    assert stream.lines == [b"one", b"two"]
    assert stream.closed
    assert status.bytes_read == 8


async def test_server_survives_a_connection_reset() -> None:
    """A user would see smdrd stop taking a PBX's records after the PBX once reset its connection."""
    ingest = CollectingIngest()
    source = TcpServer(server_config(), ingest)
    async with running(source):
        port = await _listening(source)
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"before reset\n")
        await writer.drain()
        await wait_until(lambda: ingest.lines == [b"before reset"])
        sock = writer.get_extra_info("socket")
        # SO_LINGER with a zero timeout: closing sends a RST instead of a FIN
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
        await wait_until(lambda: ingest.streams[0].closed and not source.status.connected)
        assert source.status.last_error is not None
        assert "ConnectionResetError" in source.status.last_error
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"after reset\n")
        await writer.drain()
        await wait_until(lambda: ingest.lines == [b"before reset", b"after reset"])
        writer.close()
    assert source.status.reconnects == 1


# --- tcp-server admission: idle and unknown connections never lock the PBX out (issue 11, finding 11) ----


async def _connect_from(local: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the source from ``local`` (127.0.0.2, 127.0.0.3...: Linux routes all of 127/8 to lo,
    so each is a distinct peer for the allow-list)."""
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(local, 0))


async def _closed_by_smdrd(reader: asyncio.StreamReader) -> bool:
    """True once smdrd has closed the connection (end of stream, or a reset)."""
    try:
        return await asyncio.wait_for(reader.read(), TIMEOUT) == b""
    except ConnectionResetError:
        return True


async def _idle_past(seconds: float) -> None:
    """Let connections go idle for at least ``seconds`` (a longer wait only makes them idler: no timing
    assertion depends on it)."""
    await asyncio.sleep(seconds * 1.5)


async def test_an_allowed_pbx_gets_in_past_a_cap_full_of_idle_connections_and_its_lines_are_journalled(
        tmp_path: Any) -> None:
    """Four idle connections used to fill max_connections and lock the PBX out until they went away. Now
    strangers are refused without taking a slot, and at the cap the connection idle longest makes room: the
    PBX's lines reach the journal (a real daemon, a real SQLite file)."""
    from smdrd.daemon import Daemon
    from tests.test_daemon import lines as call_lines
    from tests.test_daemon import settings, wait_for_rows

    port = free_port()
    daemon = Daemon(settings(tmp_path, [{
        "name": "push", "kind": "tcp-server", "format": "avaya-ipo", "listen": f"127.0.0.1:{port}",
        "allowed_peers": ["127.0.0.2", "127.0.0.4"], "max_connections": 3, "idle_timeout": 0.3,
    }]), features=())
    task = asyncio.create_task(daemon.run())
    await daemon.ready.wait()
    source = daemon.sources["push"].source
    assert isinstance(source, TcpServer)
    await _listening(source)
    # an allowed device that opens connections and never uses them (or a PBX's stale ones after a reboot)
    idle = [await _connect_from("127.0.0.4", port) for _ in range(3)]
    await wait_until(lambda: source.status.connections == 3)
    # strangers are refused at once and take no slot
    strangers = [await _connect_from("127.0.0.3", port) for _ in range(5)]
    for reader, _ in strangers:
        assert await _closed_by_smdrd(reader)
    assert source.status.refused == 5
    await _idle_past(0.3)
    sent = call_lines(200)
    _, pbx = await _connect_from("127.0.0.2", port)
    pbx.write(b"".join(line + b"\r\n" for line in sent))
    await pbx.drain()
    rows = await wait_for_rows(tmp_path, len(sent))
    assert rows == sent
    assert source.idle_closed == 1
    assert sum([await _closed_by_smdrd(r) for r, _ in idle[:1]]) == 1, "the longest idle one made room"
    pbx.close()
    for _, writer in idle + strangers:
        writer.close()
    daemon.request_stop()
    assert await asyncio.wait_for(task, 30) == 0
    assert source.status.refused == 5


async def test_without_an_allow_list_the_longest_idle_connection_makes_room_and_keeps_its_bytes() -> None:
    """With an empty allow-list anyone may connect; connections that went quiet cannot hold every slot, and
    what one sent before it was closed is still journalled (its unterminated tail as a last line)."""
    ingest = CollectingIngest()
    source = TcpServer(server_config(max_connections=2, idle_timeout=0.3), ingest)
    async with running(source):
        port = await _listening(source)
        first = await _connect_from("127.0.0.3", port)
        first[1].write(b"half a line from the first")
        await first[1].drain()
        second = await _connect_from("127.0.0.3", port)
        second[1].write(b"half a line from the second")
        await second[1].drain()
        await wait_until(lambda: len(ingest.streams) == 2 and all(s.framer for s in ingest.streams))
        await _idle_past(0.3)
        second[1].write(b", finished\n")  # the second is active again: the first is the one idle longest
        await second[1].drain()
        await wait_until(lambda: b"half a line from the second, finished" in ingest.lines)
        _, pbx = await _connect_from("127.0.0.2", port)
        pbx.write(b"the pbx's record\n")
        await pbx.drain()
        await wait_until(lambda: b"the pbx's record" in ingest.lines)
        assert await _closed_by_smdrd(first[0])
        await wait_until(lambda: b"half a line from the first" in ingest.lines, what="its tail was kept")
        for _, writer in (first, second, (None, pbx)):
            writer.close()
    assert source.idle_closed == 1 and source.status.refused == 0


async def test_clients_trickling_an_endless_line_cannot_hold_every_slot_against_the_pbx() -> None:
    """Four connections each sending a byte every 0.05 s, never a line end, were never idle (idleness counted
    from the last byte): at max_connections the PBX was refused and its record lost. Idleness now counts from
    the last line end, so one of them makes room; its bytes are still journalled."""
    ingest = CollectingIngest()
    source = TcpServer(server_config(max_connections=4, idle_timeout=0.3), ingest)
    async with running(source):
        port = await _listening(source)
        drips = [await _connect_from("127.0.0.3", port) for _ in range(4)]

        async def trickle() -> None:
            while True:
                for _, writer in drips:
                    if not writer.is_closing():
                        writer.write(b"x")
                await asyncio.sleep(0.05)

        dripping = asyncio.create_task(trickle())
        try:
            await wait_until(lambda: source.status.connections == 4)
            await _idle_past(0.3)
            _, pbx = await _connect_from("127.0.0.2", port)
            pbx.write(b"the pbx's record\n")
            await pbx.drain()
            await wait_until(lambda: b"the pbx's record" in ingest.lines)
        finally:
            dripping.cancel()
        assert source.idle_closed >= 1 and source.status.refused == 0
        await wait_until(lambda: any(line.startswith(b"xxx") for line in ingest.lines), what="its bytes were kept")
        for _, writer in (*drips, (None, pbx)):
            writer.close()


async def test_without_an_allow_list_a_connection_that_sends_nothing_is_closed_after_idle_timeout() -> None:
    """A stranger that connects and says nothing is closed after idle_timeout; a peer that sent a line stays."""
    ingest = CollectingIngest()
    source = TcpServer(server_config(idle_timeout=0.2), ingest)
    async with running(source):
        port = await _listening(source)
        silent_reader, silent = await _connect_from("127.0.0.3", port)
        _, talker = await _connect_from("127.0.0.2", port)
        talker.write(b"one\n")
        await talker.drain()
        assert await _closed_by_smdrd(silent_reader)
        await _idle_past(0.2)
        talker.write(b"two\n")
        await talker.drain()
        await wait_until(lambda: ingest.lines == [b"one", b"two"])
        assert len(ingest.streams) == 2 and not ingest.streams[1].closed, "the talker kept its connection"
        silent.close()
        talker.close()
    assert source.idle_closed == 1


async def test_an_allowed_peer_that_is_quiet_is_never_closed_for_it() -> None:
    """A listed PBX that connects and is quiet all night keeps its connection (only the cap can close an idle
    one, and only to admit another)."""
    ingest = CollectingIngest()
    source = TcpServer(server_config(allowed_peers=["127.0.0.2"], idle_timeout=0.2), ingest)
    async with running(source):
        port = await _listening(source)
        _, pbx = await _connect_from("127.0.0.2", port)
        await wait_until(lambda: len(ingest.streams) == 1)
        await _idle_past(0.5)
        pbx.write(b"morning record\n")
        await pbx.drain()
        await wait_until(lambda: ingest.lines == [b"morning record"])
        assert len(ingest.streams) == 1 and not ingest.streams[0].closed
        pbx.close()
    assert source.idle_closed == 0


async def test_a_cap_full_of_active_connections_still_refuses() -> None:
    """The cap still bounds descriptors: when every slot sent data within idle_timeout, a new one is refused."""
    ingest = CollectingIngest()
    source = TcpServer(server_config(max_connections=1, idle_timeout=3600), ingest)
    async with running(source):
        port = await _listening(source)
        _, busy = await _connect_from("127.0.0.2", port)
        busy.write(b"busy\n")
        await busy.drain()
        await wait_until(lambda: ingest.lines == [b"busy"])
        late_reader, late = await _connect_from("127.0.0.3", port)
        assert await _closed_by_smdrd(late_reader)
        busy.close()
        late.close()
    assert source.status.refused == 1 and source.idle_closed == 0


async def test_a_tcp_server_open_to_every_host_is_a_warning_at_start() -> None:
    """An empty allow-list on a non-loopback address is logged loudly when the source starts listening."""
    from structlog.testing import capture_logs

    for listen, peers, warned in (("0.0.0.0:0", [], True), ("0.0.0.0:0", ["127.0.0.2"], False),
                                  ("127.0.0.1:0", [], False)):
        source = TcpServer(server_config(listen=listen, allowed_peers=peers), CollectingIngest())
        with capture_logs() as logs:
            async with running(source):
                await _listening(source)
        found = [e for e in logs if e["event"] == "source.open_to_everyone"]
        assert bool(found) is warned, (listen, peers)
        if warned:
            assert found[0]["log_level"] == "warning" and "allowed_peers" in found[0]["problem"]


# --- handshakes and the factory -------------------------------------------------------------------------


@register
class _LoginHandshake(Handshake):
    """A test PBX login: send a password, wait for OK; whatever came with the OK belongs to the records."""

    name = "test-login"

    async def start(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None) -> bytes:
        assert writer is not None
        writer.write(b"LOGIN secret\r\n")
        await writer.drain()
        data = b""
        while b"OK\r\n" not in data:
            chunk = await reader.read(100)
            if not chunk:
                raise SmdrdError("PBX closed during login")
            data += chunk
        return data.split(b"OK\r\n", 1)[1]

    def framer(self, max_line: int) -> Framer:
        return Framer(16)  # a distinctive limit, to see that the source used this framer


async def test_client_runs_the_handshake_and_feeds_its_leftover_bytes_first() -> None:
    """A user with a PBX that needs a login (Panasonic) would get no records, or lose the first one."""
    port = free_port()
    got_login = asyncio.Event()

    async def pbx(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert await reader.readline() == b"LOGIN secret\r\n"
        got_login.set()
        writer.write(b"OK\r\nfirst\r\nsec")  # the first record rides along with the OK
        await writer.drain()
        writer.write(b"ond\r\n" + b"x" * 40 + b"\r\n")
        await writer.drain()

    server = await asyncio.start_server(pbx, "127.0.0.1", port)
    ingest = CollectingIngest()
    source = build_source(client_config(port, handshake="test-login"), ingest)
    async with running(source):
        await asyncio.wait_for(got_login.wait(), TIMEOUT)
        await wait_until(lambda: bool(ingest.streams) and len(ingest.streams[0].oversized) == 1)
    server.close()
    assert ingest.lines == [b"first", b"second"]
    assert ingest.streams[0].oversized[0].limit == 16


def test_handshake_defaults_and_errors() -> None:
    """A user would see a typo in a handshake name ignored, or a broken format plugin stop the transport."""
    assert resolve_handshake(client_config(1)).name == "none"  # avaya-ipo needs no login
    assert resolve_handshake(client_config(1, format="no-such-format")).name == "none"
    assert resolve_handshake(client_config(1, handshake="test-login")).name == "test-login"
    with pytest.raises(SmdrdError, match="unknown handshake"):
        resolve_handshake(client_config(1, handshake="no-such-handshake"))


def test_factory_builds_each_kind(tmp_path: Any) -> None:
    """A user's configured source would be started as the wrong kind, or not at all."""
    from smdrd.config import FileSource, SerialSource
    from smdrd.sources.file import FileReader
    from smdrd.sources.serial import SerialPort

    ingest = CollectingIngest()
    assert type(build_source(client_config(1), ingest)) is TcpClient
    assert type(build_source(server_config(), ingest)) is TcpServer
    serial = SerialSource(name="s", kind="serial", format="avaya-ipo", device="/dev/ttyS0")
    assert type(build_source(serial, ingest)) is SerialPort
    file = FileSource(name="f", kind="file", format="avaya-ipo", path=str(tmp_path))
    source = build_source(file, ingest)
    assert type(source) is FileReader
    assert source.status.kind == "file"
    assert source.status.name == "f"

    class Odd:
        name = "odd"
        kind = "carrier-pigeon"

    with pytest.raises(SmdrdError, match="carrier-pigeon"):
        build_source(Odd(), ingest)
