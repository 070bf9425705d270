"""The ``file`` source: a capture read once, a log followed like ``tail -F``, or standard input (``-``).

Following polls every ``poll_interval`` seconds (no inotify: it works the same on NFS, in containers and on
any kernel). Each file is its own stream. A rotated file (the path now names another inode) is read to its end
before the new one is opened from its start; a truncated one (shorter than what was read) is read again from
the start; a missing one is waited for. Reads go by explicit offsets (``pread``) in chunks, so a huge file
never sits in memory at once, and a cancelled read never advances the position past what was fed.

Limits of polling, as with ``tail -F``: a file truncated and refilled past the old position between two polls
looks merely appended to, and a writer that keeps writing to the old file after the new one appeared is not
followed there.

Never here: framing, parsing or storing, and never writing to or deleting the followed files.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from dataclasses import dataclass

import structlog

from smdrd.backoff import LogThrottle, log_throttled
from smdrd.errors import SmdrdError
from smdrd.framing import Framer
from smdrd.sources.base import Ingest, Source, Stream
from smdrd.sources.config import FileSource
from smdrd.sources.streams import CHUNK, describe, feed_whole, read_stream, stream_pair

log = structlog.get_logger(__name__)

STDIN_PEER = "<stdin>"


@dataclass(slots=True)
class _Open:
    """A followed file: its descriptor, identity, how far it was fed, and its stream."""

    fd: int
    dev: int
    ino: int
    pos: int
    stream: Stream


class FileReader(Source):
    """``file``: read a file once, follow it, or read standard input."""

    kind = "file"
    config: FileSource

    def __init__(self, config: FileSource, ingest: Ingest) -> None:
        super().__init__(config, ingest)
        self._throttle = LogThrottle()

    async def run(self) -> None:
        """Read once (and return), or follow until cancelled."""
        if self.config.path == "-":
            await self._read_stdin()
        elif self.config.follow:
            await self._follow()
        else:
            await self._read_once()

    def _framer(self) -> Framer:
        return Framer(self.config.max_line_length)

    async def _read_once(self) -> None:
        path = self.config.path
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            self.status.failed(exc)
            raise SmdrdError(f"source {self.name}: cannot read {path}: {exc.strerror}") from exc
        try:
            await self._read_fd(fd, path, os.lseek(fd, 0, os.SEEK_CUR))
        finally:
            os.close(fd)

    async def _read_fd(self, fd: int, peer: str, pos: int) -> None:
        """Feed a regular file from ``pos`` to its end as one stream."""
        self._started()
        stream = self.ingest.open_stream(peer, self._framer())
        try:
            pos = await self._feed_to_end(fd, pos, stream)
        finally:
            self.status.connected = False
            await stream.close()
        log.info("source.finished", source=self.name, path=peer, bytes=pos)

    async def _read_stdin(self) -> None:
        if sys.stdin is None:
            raise SmdrdError(f"source {self.name}: path is '-' but there is no standard input")
        fd = sys.stdin.fileno()
        if stat.S_ISREG(os.fstat(fd).st_mode):  # `smdrd ... < capture.smdr`: no pipe transport for files
            await self._read_fd(fd, STDIN_PEER, os.lseek(fd, 0, os.SEEK_CUR))
            return
        loop = asyncio.get_running_loop()
        reader, protocol = stream_pair(loop)
        # A duplicate, because closing the transport closes its file, and fd 0 should stay ours to the end.
        pipe = os.fdopen(os.dup(fd), "rb", buffering=0)  # the transport owns it and closes it
        transport, _ = await loop.connect_read_pipe(lambda: protocol, pipe)
        self._started()
        try:
            stream = self.ingest.open_stream(STDIN_PEER, self._framer())
            await read_stream(reader, stream, self.status)
        finally:
            self.status.connected = False
            transport.close()
        log.info("source.finished", source=self.name, path=STDIN_PEER, bytes=self.status.bytes_read)

    def _started(self) -> None:
        self.status.connected = True
        self.status.connections += 1

    async def _feed_to_end(self, fd: int, pos: int, stream: Stream) -> int:
        """Feed ``fd`` from ``pos`` until a read returns nothing; returns the new position."""
        loop = asyncio.get_running_loop()
        while True:
            # In a thread: a file on a slow disk or NFS must not stall the other sources' event loop.
            data = await loop.run_in_executor(None, os.pread, fd, CHUNK, pos)
            if not data:
                return pos
            self.status.saw_data(len(data))
            await feed_whole(stream, data)
            pos += len(data)

    async def _follow(self) -> None:
        current: _Open | None = None
        first = True
        try:
            while True:
                if current is None:
                    current = self._open_followed(at_end=first and not self.config.from_start)
                    first = False
                    if current is None:
                        await asyncio.sleep(self.config.poll_interval)
                        continue
                current.pos = await self._feed_to_end(current.fd, current.pos, current.stream)
                change = self._change(current)
                if change == "rotated":
                    # the writer may have added to the old file before it moved to the new one
                    current.pos = await self._feed_to_end(current.fd, current.pos, current.stream)
                    await self._release(current, change)
                    current = None
                    continue
                if change == "truncated":
                    await current.stream.close()
                    current.stream = self.ingest.open_stream(self.config.path, self._framer())
                    current.pos = 0
                    self._changed(change)
                    continue
                await asyncio.sleep(self.config.poll_interval)
        finally:
            if current is not None:
                await self._release(current, None)

    def _open_followed(self, *, at_end: bool) -> _Open | None:
        path = self.config.path
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            self.status.failed(exc)
            log_throttled(log, self._throttle, "source.file_unavailable", source=self.name, path=path,
                          error=describe(exc))
            return None
        st = os.fstat(fd)
        failures = self._throttle.reset()
        self._started()
        log.info("source.file_opened", source=self.name, path=path, at_end=at_end, size=st.st_size,
                 **({"after_failures": failures} if failures else {}))
        pos = st.st_size if at_end else 0
        return _Open(fd, st.st_dev, st.st_ino, pos, self.ingest.open_stream(path, self._framer()))

    def _change(self, current: _Open) -> str | None:
        """``"rotated"``, ``"truncated"`` or ``None``, judged after reading to the end."""
        try:
            st = os.stat(self.config.path)
        except FileNotFoundError:
            return None  # moved away, its successor not there yet: keep reading the old one meanwhile
        if (st.st_dev, st.st_ino) != (current.dev, current.ino):
            return "rotated"
        if os.fstat(current.fd).st_size < current.pos:
            return "truncated"
        return None

    async def _release(self, current: _Open, change: str | None) -> None:
        try:
            await current.stream.close()
        finally:
            os.close(current.fd)
            self.status.connected = False
        if change is not None:
            self._changed(change)

    def _changed(self, change: str) -> None:
        self.status.reconnects += 1
        log.info(f"source.file_{change}", source=self.name, path=self.config.path)
