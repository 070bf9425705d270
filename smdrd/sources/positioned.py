"""Reading a file whose position the journal keeps: what the followed ``file`` source and the ``spool`` source
share (`smdrd.sources.file`, `smdrd.sources.spool`).

A file is fed to its stream a chunk at a time, each chunk cut at its last line end, and that end is marked
(`smdrd.sources.base.Stream.mark`): the journal writer saves the position with that line, in the same
transaction. So a stop between two chunks leaves no piece of a line behind, and the next start resumes at the
last committed line (`resume`). The position is kept up to date also when a stop cancels a read: the chunk under
way is fed whole (`feed_whole`), and a position that did not count it would send the restart back over its lines.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from smdrd.framing import LINE_ENDS, last_line_end
from smdrd.journal import HEAD_BYTES, FilePosition
from smdrd.sources.base import SourceStatus, Stream
from smdrd.sources.streams import CHUNK, feed_whole

__all__ = ["OpenFile", "feed_lines", "resume"]


@dataclass(slots=True)
class OpenFile:
    """A file being read: the source and path its position is saved under, its descriptor and identity, how far
    it was fed (``pos``), where its last complete line fed ends (``boundary``), its first bytes, its stream."""

    source: str
    path: str
    fd: int
    dev: int
    ino: int
    pos: int
    stream: Stream
    boundary: int = 0
    head: bytes = b""

    def mark(self, offset: int) -> FilePosition:
        """Mark ``offset`` (the end of a complete line, or of the tail a close journalled) on the stream."""
        if len(self.head) < HEAD_BYTES and offset > len(self.head):  # a file that was shorter than a head
            self.head = os.pread(self.fd, HEAD_BYTES, 0)
        position = FilePosition(self.source, self.path, self.dev, self.ino, offset, offset - self.boundary,
                                self.head)
        self.stream.mark(position)
        return position


async def feed_lines(f: OpenFile, status: SourceStatus, *, whole: bool) -> None:
    """Feed ``f`` from ``f.pos`` until a read returns nothing, marking each chunk's last line end.

    Complete lines only, unless ``whole`` (a file that is complete, or going away): then its last line is fed
    ended or not. A line still being written is read again, whole, once its end is there. A line longer than a
    chunk is fed as it comes (the framer journals it as too long)."""
    loop = asyncio.get_running_loop()
    while True:
        # In a thread: a file on a slow disk or NFS must not stall the other sources' event loop.
        data = await loop.run_in_executor(None, os.pread, f.fd, CHUNK, f.pos)
        end = last_line_end(data)
        if end and (len(data) == CHUNK or not whole):
            data = data[:end]
        elif not end and len(data) < CHUNK and not whole:
            data = b""  # only a line being written: wait for its end
        if not data:
            return
        status.saw_data(len(data))
        try:
            await feed_whole(f.stream, data)
        finally:  # cancelled too: feed_whole fed the chunk whole before raising
            f.pos += len(data)
            if end:
                f.boundary = f.pos - len(data) + min(end, len(data))
        if end:
            f.mark(f.boundary)


def resume(saved: FilePosition, fd: int, size: int, head: bytes) -> tuple[int, str | None]:
    """Where to read on the file ``saved`` names (same device and inode, opened as ``fd``, ``size`` bytes, first
    bytes ``head``), and why not there: ``"truncated"`` (shorter than the position) or ``"replaced"`` (other first
    bytes: a reused inode), both read from the start.

    A position after an unended last line that was journalled as it stood (``tail``), and that the file has since
    written on: a line shorter than a chunk (a complete file's last line, fed whole) is read again whole, the
    record it now is; one longer (fed as it came, already journalled as too long) is skipped to its end, as
    reading it from its start would journal it twice.
    """
    if size < saved.offset:
        return 0, "truncated"
    if head[:len(saved.head)] != saved.head:
        return 0, "replaced"
    offset = saved.offset
    if saved.tail and offset < size and os.pread(fd, 1, offset) not in LINE_ENDS:
        offset = offset - saved.tail if saved.tail < CHUNK else _after_line(fd, offset, size)
    return offset, None


def _after_line(fd: int, offset: int, size: int) -> int:
    """Where the line that goes on at ``offset`` ends (just after its line end), or ``size`` when it does not
    end yet; read a chunk at a time."""
    while offset < size:
        data = os.pread(fd, CHUNK, offset)
        if not data:
            break
        ends = [i for i in (data.find(end) for end in LINE_ENDS) if i >= 0]
        if ends:
            return offset + min(ends) + 1
        offset += len(data)
    return size
