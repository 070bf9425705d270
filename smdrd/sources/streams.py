"""Byte pumping shared by every connection-shaped source (TCP connections, serial ports, files, stdin).

Read a chunk, feed it to the stream, never read faster than the stream takes it (that is the backpressure);
on shutdown, take what is already waiting on the connection before closing the stream; name the handshake a
source uses. Never here: framing, parsing or storing (the stream does that), and no read or idle timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog

from smdrd.errors import SmdrdError
from smdrd.sources.base import Ingest, SourceStatus, Stream
from smdrd.sources.handshakes import Handshake, get_handshake

log = structlog.get_logger(__name__)

#: bytes asked for per read: large enough that a backlog drains quickly, small enough to bound memory.
CHUNK = 64 * 1024
#: on shutdown, stop draining a connection once it has been quiet this long (seconds) ...
DRAIN_QUIET = 0.1
#: ... or after this long in total (seconds), whichever comes first.
DRAIN_TOTAL = 1.0
#: how long closing a connection may take before it is left to the event loop (seconds).
_CLOSE_WAIT = 1.0

#: what ends a connection in the ordinary course of things (as opposed to a bug): the PBX went away, refused,
#: timed out or failed its login. These are logged and retried; anything else propagates to the daemon.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, TimeoutError, SmdrdError)


class LossTolerantReader(asyncio.StreamReader):
    """A `StreamReader` that hands out what it already holds before reporting a lost connection.

    The stock reader raises the error on the next ``read`` even when bytes received just before a reset (or
    before a USB serial adapter was pulled) are still in its buffer, and those bytes are lost. This one turns
    the error into end-of-stream, so every byte that arrived is read, and keeps the error in `lost_with`.
    """

    lost_with: BaseException | None = None

    def set_exception(self, exc: BaseException) -> None:
        self.lost_with = exc
        self.feed_eof()


def stream_pair(
    loop: asyncio.AbstractEventLoop,
) -> tuple[LossTolerantReader, asyncio.StreamReaderProtocol]:
    """A fresh `LossTolerantReader` and the protocol that fills it, for ``create_connection`` and friends."""
    reader = LossTolerantReader(loop=loop)
    return reader, asyncio.StreamReaderProtocol(reader, loop=loop)


def resolve_handshake(config: Any, *, format_default: bool = True) -> type[Handshake]:
    """The handshake class for a source: the configured one, else (optionally) its format's default.

    Args:
        config: the source's config model.
        format_default: when no handshake is configured, use the format's (``False``: ``"none"``).

    Raises:
        SmdrdError: the handshake name is unknown.
    """
    name = config.handshake
    if name is None and format_default:
        name = _format_handshake(config.format)
    return get_handshake(name or "none")


def _format_handshake(fmt: str) -> str:
    from smdrd.parsing import get_parser_class

    try:
        return get_parser_class(fmt).handshake
    except Exception:  # a format that cannot be loaded must not keep the transport from starting
        return "none"


async def feed_whole(stream: Stream, data: bytes) -> None:
    """Feed ``data`` to ``stream`` to the end, even when the task is cancelled meanwhile.

    A cancellation that landed inside ``stream.feed`` could leave a chunk half-journalled; instead the chunk
    is finished and the cancellation raised after it.
    """
    task = asyncio.ensure_future(stream.feed(data))
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


async def pump(reader: asyncio.StreamReader, stream: Stream, status: SourceStatus) -> None:
    """Read ``reader`` into ``stream`` until end of stream; one read at a time, each fed before the next.

    Raises:
        BaseException: the error that ended the connection (`LossTolerantReader.lost_with`), after every
            byte received before it was fed.
    """
    while data := await reader.read(CHUNK):
        status.saw_data(len(data))
        await feed_whole(stream, data)
    if isinstance(reader, LossTolerantReader) and reader.lost_with is not None:
        raise reader.lost_with


async def drain(
    reader: asyncio.StreamReader,
    stream: Stream,
    status: SourceStatus,
    *,
    quiet: float = DRAIN_QUIET,
    total: float = DRAIN_TOTAL,
) -> None:
    """On shutdown: feed what is still arriving, until ``quiet`` seconds without data or ``total`` in all."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + total
    while (left := deadline - loop.time()) > 0:
        try:
            async with asyncio.timeout(min(quiet, left)):
                data = await reader.read(CHUNK)
        except TimeoutError:
            return
        if not data:
            return
        status.saw_data(len(data))
        await feed_whole(stream, data)


async def read_stream(
    reader: asyncio.StreamReader, stream: Stream, status: SourceStatus, first: bytes = b""
) -> None:
    """Feed ``first`` and then the whole connection to ``stream``, and close the stream however it ends.

    On cancellation, what is already waiting is drained into the stream first (bounded by `drain`), so a
    SIGTERM loses no line the PBX had sent; then the cancellation propagates.
    """
    try:
        if first:
            status.saw_data(len(first))
            await feed_whole(stream, first)
        await pump(reader, stream, status)
    except asyncio.CancelledError:
        await drain(reader, stream, status)
        raise
    finally:
        await stream.close()


async def keep_handshake_bytes(hs: Handshake, ingest: Ingest, peer: str, max_line: int) -> None:
    """A handshake failed or was cancelled after reading: journal what it read (`Handshake.unconsumed`).

    A Panasonic that was already printing sends records before its prompt; a timeout or a SIGTERM during the
    login must not cost them. Call it from the handler of ``hs.start``'s failure, before re-raising.
    """
    data = hs.unconsumed()
    if not data:
        return
    stream = ingest.open_stream(peer, hs.framer(max_line))
    try:
        await feed_whole(stream, data)
    finally:
        await stream.close()


async def log_in(hs: Handshake, reader: asyncio.StreamReader, writer: asyncio.StreamWriter | None, *,
                 within: float, ingest: Ingest, peer: str, max_line: int) -> bytes:
    """Run ``hs.start`` within ``within`` seconds; if it fails or is cancelled (a timeout, a SIGTERM during the
    login), journal what it had read (`keep_handshake_bytes`) before the error goes on. Returns what `start`
    returns."""
    try:
        async with asyncio.timeout(within):
            return await hs.start(reader, writer)
    except BaseException:
        with contextlib.suppress(Exception):
            await asyncio.shield(keep_handshake_bytes(hs, ingest, peer, max_line))
        raise


async def close_writer(writer: asyncio.StreamWriter) -> None:
    """Close a connection, waiting briefly for it to finish; errors on the way out do not matter."""
    writer.close()
    with contextlib.suppress(Exception):
        async with asyncio.timeout(_CLOSE_WAIT):
            await writer.wait_closed()


def describe(exc: BaseException | None) -> str:
    """An error as one short line for logs and `SourceStatus.last_error`."""
    if exc is None:
        return "closed by peer"
    if isinstance(exc, UnicodeError):
        # Its text quotes the characters it could not encode, which may be a password's.
        return f"{type(exc).__name__}: text not representable in {getattr(exc, 'encoding', 'the encoding')}"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


def format_peer(address: Any) -> str:
    """``ip:port`` (``[ip]:port`` for IPv6) from a socket's peer address."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)
