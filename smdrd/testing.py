"""Test helpers for smdrd's own tests and for plugin authors: a collecting ingest, free ports, pty pairs.

Nothing here is used by the daemon itself.
"""

from __future__ import annotations

import asyncio
import os
import socket
import termios
import time
import tty
from collections.abc import Sequence
from dataclasses import dataclass, field

from smdrd.framing import Frame, Framer, Oversized, Skipped
from smdrd.sources.base import FramerLike


@dataclass
class CollectedStream:
    """A stream that frames what it is fed and keeps the lines (raw bytes) in memory."""

    peer: str
    framer: FramerLike
    lines: list[bytes] = field(default_factory=list)
    oversized: list[Oversized] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    closed: bool = False

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


@dataclass
class CollectingIngest:
    """An `Ingest` that keeps every stream, for testing sources without a database."""

    max_line: int = 8192
    streams: list[CollectedStream] = field(default_factory=list)

    def open_stream(self, peer: str, framer: FramerLike | None = None) -> CollectedStream:
        stream = CollectedStream(peer, framer or Framer(self.max_line))
        self.streams.append(stream)
        return stream

    @property
    def lines(self) -> list[bytes]:
        """Every line of every stream, stream by stream."""
        return [line for s in self.streams for line in s.lines]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


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
