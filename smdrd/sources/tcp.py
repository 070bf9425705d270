"""TCP sources: smdrd connects to the PBX (``tcp-client``) or the PBX connects to smdrd (``tcp-server``).

The byte pumping they share with serial ports and files is in `smdrd.sources.streams`.

Never here: framing, parsing or storing (the stream does that), and no read timeout on a connection that has
sent data: a PBX that is quiet all night is normal, and TCP keepalive is what notices a peer that is gone. A
``tcp-server`` uses ``idle_timeout`` only so that idle connections can never lock the PBX out: at
``max_connections`` the connection idle longest (if idle that long) makes room for the new one, and with an
empty ``allowed_peers`` a connection that never sends a byte is closed after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from dataclasses import dataclass
from typing import Any

import structlog

from smdrd.backoff import Backoff, LogThrottle, log_throttled
from smdrd.framing import LINE_ENDS
from smdrd.journal import FilePosition
from smdrd.section import parse_hostport
from smdrd.sources.base import Ingest, Source, Stream
from smdrd.sources.config import TcpClientSource, TcpServerSource, open_to_everyone_warning
from smdrd.sources.handshakes import Handshake
from smdrd.sources.streams import (
    CONNECTION_ERRORS,
    LossTolerantReader,
    close_writer,
    describe,
    format_peer,
    log_in,
    read_stream,
    resolve_handshake,
    stream_pair,
)

log = structlog.get_logger(__name__)

#: TCP keepalive: first probe after this many idle seconds, then every KEEPALIVE_INTERVAL, giving up after
#: KEEPALIVE_COUNT unanswered probes; a PBX that vanished without a FIN is noticed within about two minutes.
KEEPALIVE_IDLE = 60
KEEPALIVE_INTERVAL = 10
KEEPALIVE_COUNT = 5
#: a tcp-server has no connect_timeout of its own; a peer gets this long to finish its handshake (seconds).
SERVER_HANDSHAKE_TIMEOUT = 10.0
#: how many distinct peer addresses a tcp-server remembers, to log a peer's first connection at info level.
_SEEN_PEERS_MAX = 256


#: the kernel's receive buffer for a PBX connection (Linux doubles it for its own bookkeeping). What sits there
#: when the daemon is killed is lost with it, and autotuning would let it grow to megabytes under a flood; 64 KiB
#: is still far more than any PBX sends between two reads.
RECEIVE_BUFFER = 64 * 1024


def limit_receive_buffer(sock: socket.socket | None) -> None:
    """Cap ``sock``'s kernel receive buffer at `RECEIVE_BUFFER` (turns off autotuning, which grows it to MBs)."""
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)


def set_keepalive(sock: socket.socket | None) -> None:
    """Turn on TCP keepalive with short probes, where the platform has the knobs."""
    if sock is None:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL),
        ("TCP_KEEPCNT", KEEPALIVE_COUNT),
    ):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


class TcpClient(Source):
    """``tcp-client``: keep one connection to the PBX open, reconnecting with backoff whenever it drops."""

    kind = "tcp-client"
    config: TcpClientSource

    def __init__(self, config: TcpClientSource, ingest: Ingest) -> None:
        super().__init__(config, ingest)
        self._throttle = LogThrottle()
        self._backoff = Backoff(config.reconnect_min, config.reconnect_max)

    @property
    def peer(self) -> str:
        return format_peer((self.config.host, self.config.port))

    async def run(self) -> None:
        handshake = resolve_handshake(self.config)
        log.info("source.starting", source=self.name, kind=self.kind, peer=self.peer,
                 handshake=handshake.name)
        while True:
            try:
                await self._connect_and_read(handshake)
                self._trouble("source.disconnected", None)
            except CONNECTION_ERRORS as exc:
                self._trouble("source.connection_failed", exc)
            await asyncio.sleep(self._backoff.next_delay())

    async def _connect_and_read(self, handshake: type[Handshake]) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        reader, protocol = stream_pair(loop)
        async with asyncio.timeout(cfg.connect_timeout):
            transport, _ = await loop.create_connection(lambda: protocol, cfg.host, cfg.port)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        try:
            limit_receive_buffer(writer.get_extra_info("socket"))
            if cfg.keepalive:
                set_keepalive(writer.get_extra_info("socket"))
            self._connected()
            hs = handshake(cfg)
            first = await log_in(hs, reader, writer, within=cfg.connect_timeout, ingest=self.ingest,
                                 peer=self.peer, max_line=cfg.max_line_length)
            stream = self.ingest.open_stream(self.peer, hs.framer(cfg.max_line_length))
            await read_stream(reader, stream, self.status, first)
        finally:
            self.status.connected = False
            if self._backoff.disconnected():
                self._throttle.reset()  # it was up long enough: the next failure is news again
            await close_writer(writer)

    def _connected(self) -> None:
        status = self.status
        status.connected = True
        status.connections += 1
        if status.connections > 1:
            status.reconnects += 1
        self._backoff.connected()
        fields: dict[str, Any] = {"source": self.name, "peer": self.peer}
        if self._throttle.active():
            # how long the trouble lasted, without resetting it: a PBX that accepts and drops at once keeps
            # its reminders throttled (the backoff, not a reset, paces this line then)
            fields["after_failures"] = self._throttle.count()
        log.info("source.connected", **fields)

    def _trouble(self, event: str, exc: BaseException | None) -> None:
        self.status.failed(exc)
        log_throttled(log, self._throttle, event, source=self.name, peer=self.peer, error=describe(exc))


@dataclass(eq=False, slots=True)
class _Connection:
    """One admitted tcp-server connection, as the admission and idle rules see it."""

    task: asyncio.Task[Any]
    peer: str
    opened: float  # time.monotonic()
    #: when its last byte arrived (``None``: it has sent nothing yet).
    last_byte: float | None = None
    #: when its last line end arrived (``None``: none yet). Idleness is counted from it, not from the last byte:
    #: a client that trickles a byte now and then and never ends a line would otherwise never be idle, and a few
    #: such could hold every slot against the PBX.
    last_line: float | None = None
    #: feeds in progress: a connection held back by the journal is busy, not idle.
    feeding: int = 0

    def idle_for(self, now: float) -> float:
        if self.feeding:
            return 0.0
        return now - (self.last_line if self.last_line is not None else self.opened)


class _Watched:
    """A `Stream` that notes on its connection when bytes arrive (for the idle rules)."""

    def __init__(self, stream: Stream, conn: _Connection) -> None:
        self._stream = stream
        self._conn = conn

    async def feed(self, data: bytes) -> None:
        conn = self._conn
        conn.last_byte = time.monotonic()
        ended = any(end in data for end in LINE_ENDS)
        if ended:
            conn.last_line = conn.last_byte
        conn.feeding += 1
        try:
            await self._stream.feed(data)
        finally:
            conn.feeding -= 1
            conn.last_byte = time.monotonic()
            if ended:
                conn.last_line = conn.last_byte

    async def close(self) -> None:
        await self._stream.close()

    def mark(self, position: FilePosition) -> None:
        self._stream.mark(position)


class TcpServer(Source):
    """``tcp-server``: accept PBX connections on ``listen``, each connection its own stream.

    Admission, so that no idle or unknown connection can lock the PBX out:

    - a peer outside a non-empty ``allowed_peers`` is closed at once (counted in ``status.refused``), so only
      listed peers ever hold a slot;
    - at ``max_connections``, the connection idle longest is closed to admit the new one if it has been idle
      (no byte) for ``idle_timeout``: a PBX that reconnects after a reboot gets in past its own stale
      connection; only when every slot is busy is the new connection refused;
    - with an empty ``allowed_peers`` (anyone may connect: a loud warning at start), a connection that has sent
      no byte ``idle_timeout`` after connecting is closed, so strangers cannot sit on slots.

    Built on ``loop.create_server`` with the same factory `asyncio.start_server` uses, but with a
    `LossTolerantReader`, so bytes that arrive just before a reset are not lost.
    """

    kind = "tcp-server"
    config: TcpServerSource

    def __init__(self, config: TcpServerSource, ingest: Ingest) -> None:
        super().__init__(config, ingest)
        self._throttle = LogThrottle()
        #: every connection task still running (closed ones included until they finish), for the stop.
        self._peers: set[asyncio.Task[Any]] = set()
        #: the connections that hold a slot (one closed for idleness leaves at once).
        self._slots: dict[asyncio.Task[Any], _Connection] = {}
        self._seen: set[str] = set()
        self._closing = False
        #: connections closed for idleness (to admit another, or silent strangers).
        self.idle_closed = 0
        #: the address actually listened on, once listening (tests bind port 0 and read it here).
        self.address: tuple[str, int] | None = None

    async def run(self) -> None:
        # Only a handshake set on the source: a format's own login (Panasonic, Mitel 5000) is for a PBX that
        # smdrd connects to, and would send the PBX's password to whoever connected here.
        handshake = resolve_handshake(self.config, format_default=False)
        server = await self._listen(handshake)
        try:
            await asyncio.Future()  # serve until cancelled
        finally:
            self._closing = True
            server.close()
            await self._close_peers()
            self.address = None

    async def _listen(self, handshake: type[Handshake]) -> asyncio.Server:
        host, port = parse_hostport(self.config.listen)
        loop = asyncio.get_running_loop()

        async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await self._handle(reader, writer, handshake)
            except asyncio.CancelledError:
                # Only `_close_peers` and the idle rules cancel this task, after which the connection is
                # drained and closed. Ending it normally matters: Python 3.11's StreamReaderProtocol
                # done-callback calls ``task.exception()`` on it, which raises for a cancelled task and logs an
                # "Exception in callback ... CancelledError" traceback at every stop with a PBX connected (3.12
                # checks ``task.cancelled()`` first).
                return

        def factory() -> asyncio.StreamReaderProtocol:
            return asyncio.StreamReaderProtocol(LossTolerantReader(loop=loop), connected, loop=loop)

        # Another process may hold the port for a while (an old smdrd still draining): retry, quietly.
        backoff = Backoff(1.0, 30.0)
        while True:
            try:
                server = await loop.create_server(factory, host, port, reuse_address=True)
            except OSError as exc:
                self.status.failed(exc)
                log_throttled(log, self._throttle, "source.listen_failed", key="listen", source=self.name,
                              listen=self.config.listen, error=describe(exc))
                await asyncio.sleep(backoff.next_delay())
                continue
            self._throttle.reset("listen")
            for listening in server.sockets:  # accepted connections inherit it from the start
                limit_receive_buffer(listening)
            sockname = server.sockets[0].getsockname()
            self.address = (sockname[0], sockname[1])
            log.info("source.listening", source=self.name, kind=self.kind, listen=format_peer(sockname),
                     handshake=handshake.name)
            if self.config.open_to_everyone:
                log.warning("source.open_to_everyone", source=self.name, listen=self.config.listen,
                            problem=open_to_everyone_warning(self.config))
            return server

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, handshake: type[Handshake]
    ) -> None:
        address = writer.get_extra_info("peername")
        peer = format_peer(address)
        ip = str(address[0]) if isinstance(address, tuple) else peer
        task = asyncio.current_task()
        assert task is not None  # a connection callback always runs in its own task
        reason = self._admit(ip)
        if reason is not None:
            self.status.refused += 1
            log_throttled(log, self._throttle, "source.peer_refused", key=("refused", reason, ip),
                          source=self.name, peer=peer, reason=reason)
            await close_writer(writer)
            return
        conn = _Connection(task, peer, time.monotonic())
        self._peers.add(task)
        self._slots[task] = conn
        silent: asyncio.TimerHandle | None = None
        if not self.config.allowed_peers:
            silent = asyncio.get_running_loop().call_later(self.config.idle_timeout, self._close_if_silent, conn)
        try:
            await self._serve(conn, ip, reader, writer, handshake)
        finally:
            if silent is not None:
                silent.cancel()
            self._peers.discard(task)
            self._slots.pop(task, None)
            self.status.connected = bool(self._peers)

    def _admit(self, ip: str) -> str | None:
        """``None`` to admit a connection from ``ip`` (making room if need be), else why it is refused."""
        if self._closing:
            return "shutting down"
        if not self.config.peer_allowed(ip):
            return "not in allowed_peers"
        if len(self._slots) < self.config.max_connections:
            return None
        now = time.monotonic()
        idle = [c for c in self._slots.values() if c.idle_for(now) >= self.config.idle_timeout]
        if not idle:
            return "max_connections reached"  # every connection sent data within idle_timeout
        self._close_idle(max(idle, key=lambda c: c.idle_for(now)), "to admit a new connection at max_connections")
        return None

    def _close_if_silent(self, conn: _Connection) -> None:
        if conn.task in self._slots and conn.last_byte is None and not conn.feeding:
            self._close_idle(conn, "sent nothing within idle_timeout (allowed_peers is empty)")

    def _close_idle(self, conn: _Connection, why: str) -> None:
        """Free ``conn``'s slot now and close it (what it sent is still drained into its stream)."""
        self._slots.pop(conn.task, None)
        self.idle_closed += 1
        log_throttled(log, self._throttle, "source.idle_connection_closed", key=("idle", why), source=self.name,
                      peer=conn.peer, reason=why, idle_seconds=round(conn.idle_for(time.monotonic()), 1))
        conn.task.cancel()

    async def _serve(
        self,
        conn: _Connection,
        ip: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        handshake: type[Handshake],
    ) -> None:
        peer = conn.peer
        set_keepalive(writer.get_extra_info("socket"))
        limit_receive_buffer(writer.get_extra_info("socket"))
        self._note_connection(peer, ip)
        started = time.monotonic()
        try:
            hs = handshake(self.config)
            first = await log_in(hs, reader, writer, within=SERVER_HANDSHAKE_TIMEOUT, ingest=self.ingest,
                                 peer=peer, max_line=self.config.max_line_length)
            stream = self.ingest.open_stream(peer, hs.framer(self.config.max_line_length))
            await read_stream(reader, _Watched(stream, conn), self.status, first)
        except CONNECTION_ERRORS as exc:
            self.status.failed(exc)
            log_throttled(log, self._throttle, "source.peer_lost", key=("lost", ip), source=self.name,
                          peer=peer, error=describe(exc))
        else:
            # Some PBXs (3CX) open a connection per record, so a clean close is routine: debug only.
            log.debug("source.peer_closed", source=self.name, peer=peer,
                      seconds=round(time.monotonic() - started, 3))
        finally:
            await close_writer(writer)

    def _note_connection(self, peer: str, ip: str) -> None:
        status = self.status
        status.connected = True
        status.connections += 1
        if ip in self._seen:
            status.reconnects += 1
            log.debug("source.peer_connected", source=self.name, peer=peer)
            return
        if len(self._seen) < _SEEN_PEERS_MAX:
            self._seen.add(ip)
        log.info("source.peer_connected", source=self.name, peer=peer)

    async def _close_peers(self) -> None:
        peers = list(self._peers)
        for task in peers:
            task.cancel()  # each drains its connection and closes its stream (see `read_stream`)
        await asyncio.gather(*peers, return_exceptions=True)
        self.status.connected = False
