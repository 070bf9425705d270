"""The ``file`` source: a capture read once, a log followed like ``tail -F``, or standard input (``-``).

Following polls every ``poll_interval`` seconds (no inotify: it works the same on NFS, in containers and on
any kernel). Each file is its own stream. A rotated file (the path now names another inode) is read to its end
before the new one is opened from its start; a truncated one (shorter than what was read) is read again from
the start; a missing one is waited for. Reads go by explicit offsets (``pread``) in chunks, so a huge file
never sits in memory at once, and a cancelled read never advances the position past what was fed.

A followed file resumes where its journalled lines end: each chunk read marks (`smdrd.sources.base.Stream.mark`)
the end of its last complete line, which the journal writer saves with that line, in the same transaction
(``file_positions``). At the next start the file, if it is the same one (device, inode and first bytes) and no
shorter, is read from there; a file truncated meanwhile is read from its start; a file rotated meanwhile has
the rest of the old one read first when it is still beside it under a name that starts with the followed one's
(``pbx.log.1``, ``pbx.log-20250101``: not compressed), then the new one from its start. ``from_start`` applies
only when nothing was saved. Only complete lines are read from a followed file: a last line still being written
waits for its end (also across a stop: it is read whole at the next start), and only a file let go (rotated
away) has its unended last line journalled as it is.

Limits of polling, as with ``tail -F``: a file truncated and refilled past the old position between two polls
(or while smdrd was stopped, keeping its first bytes) looks merely appended to, and a writer that keeps writing
to the old file after the new one appeared is not followed there.

Never here: framing, parsing or storing, and never writing to or deleting the followed files.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys

import structlog

from smdrd.backoff import LogThrottle, log_throttled
from smdrd.errors import SmdrdError
from smdrd.framing import Framer
from smdrd.journal import HEAD_BYTES, FilePosition
from smdrd.sources.base import Ingest, Source, Stream
from smdrd.sources.config import FileSource
from smdrd.sources.positioned import OpenFile, feed_lines, resume
from smdrd.sources.streams import CHUNK, describe, feed_whole, read_stream, stream_pair

log = structlog.get_logger(__name__)

STDIN_PEER = "<stdin>"


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
        """Feed ``fd`` from ``pos`` until a read returns nothing (a file read once); returns the new position."""
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
        current: OpenFile | None = None
        attempts = 0
        opened = False
        try:
            while True:
                if current is None:
                    current = await self._open_followed(resume=not opened, at_start=attempts == 0)
                    attempts += 1
                    if current is None:
                        await asyncio.sleep(self.config.poll_interval)
                        continue
                    opened = True
                await feed_lines(current, self.status, whole=False)
                change = self._change(current)
                if change == "rotated":
                    # the writer may have added to the old file before it moved to the new one (its last line,
                    # ended or not: the file is let go)
                    await feed_lines(current, self.status, whole=True)
                    await self._release(current, change)
                    current = None
                    continue
                if change == "truncated":
                    await current.stream.close()
                    current.stream = self.ingest.open_stream(self.config.path, self._framer())
                    current.pos = current.boundary = 0
                    current.head = os.pread(current.fd, HEAD_BYTES, 0)
                    current.mark(0)  # saved at once: a restart must not take the refilled file as grown
                    self._changed(change)
                    continue
                await asyncio.sleep(self.config.poll_interval)
        finally:
            if current is not None:
                await self._release(current, None)

    async def _open_followed(self, *, resume: bool, at_start: bool) -> OpenFile | None:
        """Open the followed file: at its saved position when it is the first one opened since the start
        (``resume``; the rest of a file rotated away meanwhile read first), else from its start, or from its end
        when nothing was saved, ``from_start`` is false and it is there at the start (``at_start``: one that
        appears later is all news); ``None`` while it is missing."""
        path = self.config.path
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            self.status.failed(exc)
            log_throttled(log, self._throttle, "source.file_unavailable", source=self.name, path=path,
                          error=describe(exc))
            return None
        try:
            st = os.fstat(fd)
            head = os.pread(fd, HEAD_BYTES, 0)
        except OSError:
            os.close(fd)
            raise
        failures = self._throttle.reset()
        self._started()
        pos, resumed = 0, None
        if resume:
            saved = self.ingest.saved_position(path)
            if saved is None:
                pos = 0 if self.config.from_start or not at_start else st.st_size
            elif (saved.dev, saved.ino) == (st.st_dev, st.st_ino):
                pos, resumed = self._resume_at(saved, fd, st.st_size, head)
            else:
                log.info("source.file_rotated_while_stopped", source=self.name, path=path)
                await self._read_rotated_away(saved)
        log.info("source.file_opened", source=self.name, path=path, at_end=pos == st.st_size and pos > 0,
                 size=st.st_size, offset=pos, **({"resumed": resumed} if resumed is not None else {}),
                 **({"after_failures": failures} if failures else {}))
        current = OpenFile(self.name, path, fd, st.st_dev, st.st_ino, pos,
                           self.ingest.open_stream(path, self._framer()), pos, head)
        current.mark(pos)  # the file now followed, and from where: saved even before a line arrives
        return current

    def _resume_at(self, saved: FilePosition, fd: int, size: int, head: bytes) -> tuple[int, bool]:
        """Where to read the file ``saved`` names (same identity) from, and whether that is a resumption."""
        offset, why = resume(saved, fd, size, head)
        if why == "truncated":
            log.info("source.file_truncated_while_stopped", source=self.name, path=self.config.path, size=size,
                     saved_offset=saved.offset)
        elif why == "replaced":
            log.info("source.file_replaced_while_stopped", source=self.name, path=self.config.path,
                     reason="same inode, other first bytes")
        elif offset != saved.offset:
            log.info("source.file_tail_continued", source=self.name, path=self.config.path,
                     moved=offset - saved.offset)
        return offset, why is None

    async def _read_rotated_away(self, saved: FilePosition) -> None:
        """Journal the rest of the file ``saved`` names, if it is still beside the followed path (a rotated
        log: ``pbx.log.1``): what its writer added before it was rotated while smdrd was stopped."""
        path = self.config.path
        folder, base = os.path.split(path)
        try:
            names = [n for n in os.listdir(folder or ".") if n.startswith(base) and n != base]
        except OSError:
            return
        for name in names:
            old = os.path.join(folder, name)
            try:
                st = os.stat(old, follow_symlinks=False)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) != (saved.dev, saved.ino) or not stat.S_ISREG(st.st_mode):
                continue
            try:
                fd = os.open(old, os.O_RDONLY)
            except OSError:
                return
            try:
                head = os.pread(fd, HEAD_BYTES, 0)
                offset, resumed = self._resume_at(saved, fd, os.fstat(fd).st_size, head)
                if not resumed:
                    return
                log.info("source.file_rotated_rest", source=self.name, path=path, rotated_to=old, offset=offset)
                rest = OpenFile(self.name, path, fd, st.st_dev, st.st_ino, offset,
                                self.ingest.open_stream(path, self._framer()), offset, saved.head)
                await feed_lines(rest, self.status, whole=True)
                await rest.stream.close()
                rest.mark(rest.pos)
            finally:
                os.close(fd)
            return

    def _change(self, current: OpenFile) -> str | None:
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

    async def _release(self, current: OpenFile, change: str | None) -> None:
        try:
            await current.stream.close()
            current.mark(current.pos)  # with the unterminated tail, if any, the close journalled
        finally:
            os.close(current.fd)
            self.status.connected = False
        if change is not None:
            self._changed(change)

    def _changed(self, change: str) -> None:
        self.status.reconnects += 1
        log.info(f"source.file_{change}", source=self.name, path=self.config.path)
