"""The ``spool`` source: a directory a PBX drops its CDR files into (Cisco Unified CM's billing server over SFTP:
``cdr_<cluster>_<node>_<YYYYMMDDHHMM>_<seq>``, one per interval), every file read once, as it arrives.

Every ``poll_interval`` seconds the directory is listed (no inotify: the same on NFS, in containers, on any
kernel); the regular files whose names match ``pattern`` are candidates. A file is read once it has settled: its
size and modification time unchanged for ``settle`` seconds of watching, and last modified at least ``settle``
seconds ago (an SFTP server writes an upload in place, under its final name). Settled files are read in
``order``: by name (CUCM's names carry the time), or by modification time, then name.

Each file is its own stream (its parser's state, such as CUCM's names line, is the file's), read from its start
to its end, then closed. It resumes as a followed ``file`` does (`smdrd.sources.file`): each chunk marks the end
of its last complete line (`smdrd.sources.base.Stream.mark`), saved by the journal writer with that line, in the
same transaction; the end of the file is marked after the stream's close. So a file killed mid-way is read on
from its last committed line at the next start, and a file read to its end is never read again, kept or not
(same device, inode and first bytes; a file replaced under the same name is read from its start). A file that
grows after it was read (unusual for a spool) is read on from where it ended, on a new stream.

``after`` says what becomes of a file read to its end: ``keep`` (the default), ``delete``, or ``move:<dir>`` (a
relative directory is inside the spool directory; made when missing). Never before every line of it is committed:
the source waits until the saved position reaches the file's size, and leaves a file that grew meanwhile alone.
A file that leaves the directory (deleted, moved, by smdrd or anyone) has its position forgotten
(`smdrd.sources.base.Ingest.forget_position`), so the positions remembered are those of the files present;
``ignore_older`` (seconds) bounds that for a directory whose files are kept: an older file is not read, and the
position of a read one is forgotten once it is that old.

Errors (the directory or a file unreadable, a move or delete refused) are logged throttled, and retried at the
next look; the source never gives up on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import os
import shutil
import stat
import time
from dataclasses import dataclass

import structlog

from smdrd.backoff import LogThrottle, log_throttled
from smdrd.framing import Framer
from smdrd.journal import HEAD_BYTES, FilePosition
from smdrd.sources.base import Ingest, Source
from smdrd.sources.config import SpoolSource
from smdrd.sources.positioned import OpenFile, feed_lines, resume
from smdrd.sources.streams import describe

log = structlog.get_logger(__name__)


def _utf8_name(path: str) -> bool:
    """Whether ``path`` can be saved as text (a name that is not UTF-8 comes from the OS with surrogates, which
    no database takes: its position would stop the journal writer)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(slots=True)
class _Seen:
    """A file of the directory as last listed, and how far this source has read it."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    #: when (monotonic) its size and modification time were first seen as they are.
    stable_since: float
    #: the last position marked (this run) or saved (an earlier run) for it; ``None``: nothing read yet.
    position: FilePosition | None = None
    #: its identity and first bytes were checked against ``position`` in this run.
    verified: bool = False


class SpoolReader(Source):
    """``spool``: read each file that lands in a directory once, when it has settled."""

    kind = "spool"
    config: SpoolSource

    def __init__(self, config: SpoolSource, ingest: Ingest) -> None:
        super().__init__(config, ingest)
        self._throttle = LogThrottle()
        self._seen: dict[str, _Seen] = {}
        #: files read to their end whose ``after`` waits for their last line's commit: path -> size read.
        self._after: dict[str, int] = {}
        #: files this run marked a position for (which may not be committed yet).
        self._marked: set[str] = set()
        #: files left unread as older than ``ignore_older`` (logged once each).
        self._old: set[str] = set()
        #: files deleted or moved after they were read, since the source started.
        self.files_removed = 0

    async def run(self) -> None:
        """Look at the directory every ``poll_interval`` seconds until cancelled."""
        self._forget_gone_while_stopped()
        while True:
            await self.scan()
            await asyncio.sleep(self.config.poll_interval)

    async def scan(self) -> None:
        """One look: forget what left, read every settled file not read to its end, then apply ``after`` to
        the files whose lines are all committed."""
        listing = await asyncio.get_running_loop().run_in_executor(None, self._list)
        if listing is None:
            return
        now, mono = time.time(), time.monotonic()
        for path in [p for p in self._seen if p not in listing]:
            del self._seen[path]
            self._after.pop(path, None)
            self._forget(path, "left the directory")
        ready: list[tuple[str, os.stat_result, _Seen]] = []
        for path, st in listing.items():
            seen = self._observe(path, st, mono)
            if self._ignored(path, st, seen, now):
                continue
            settled = mono - seen.stable_since >= self.config.settle and now - st.st_mtime >= self.config.settle
            if settled and st.st_size and not self._complete(seen, st):  # an empty file: not written yet
                ready.append((path, st, seen))
        if self.config.order == "mtime":
            ready.sort(key=lambda r: (r[1].st_mtime_ns, os.path.basename(r[0])))
        else:
            ready.sort(key=lambda r: (os.path.basename(r[0]), r[1].st_mtime_ns))
        for path, st, seen in ready:
            await self._read(path, st, seen)
        self._apply_after()

    # -- the directory ------------------------------------------------------------------------------------------

    def _list(self) -> dict[str, os.stat_result] | None:
        """The regular files matching ``pattern`` (by path, with their ``stat``), or ``None`` when the directory
        cannot be listed (logged, throttled)."""
        folder, pattern = self.config.path, self.config.pattern
        out: dict[str, os.stat_result] = {}
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if not fnmatch.fnmatchcase(entry.name, pattern):
                        continue
                    if not _utf8_name(entry.path):  # its position could not be saved: left alone, said once
                        if entry.path not in self._old:
                            self._old.add(entry.path)
                            log.warning("source.spool_file_name_unreadable", source=self.name,
                                        name=entry.path.encode("utf-8", "backslashreplace").decode("ascii",
                                                                                                    "replace"),
                                        consequence="not read: rename it with a name in UTF-8")
                        continue
                    try:
                        st = entry.stat()  # follows a symlink: a link to a file is that file
                    except OSError:
                        continue  # gone between the listing and the stat
                    if stat.S_ISREG(st.st_mode):
                        out[entry.path] = st
        except OSError as exc:
            self.status.connected = False
            self.status.failed(exc)
            log_throttled(log, self._throttle, "source.spool_unreadable", key="directory", source=self.name,
                          path=folder, error=describe(exc))
            return None
        if not self.status.connected:
            self.status.connected = True
            self.status.connections += 1
            failures = self._throttle.reset("directory")
            log.info("source.spool_watching", source=self.name, path=folder, pattern=pattern, files=len(out),
                     **({"after_failures": failures} if failures else {}))
        return out

    def _observe(self, path: str, st: os.stat_result, mono: float) -> _Seen:
        """The file's `_Seen`, its settle clock restarted when its identity, size or modification time changed."""
        seen = self._seen.get(path)
        if seen is None:
            saved = self.ingest.saved_position(path)
            if saved is not None and (saved.dev, saved.ino) != (st.st_dev, st.st_ino):
                saved = None  # another file under that name: read from its start
            seen = self._seen[path] = _Seen(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, mono, saved)
        elif (seen.dev, seen.ino, seen.size, seen.mtime_ns) != (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns):
            if (seen.dev, seen.ino) != (st.st_dev, st.st_ino):
                seen.dev, seen.ino, seen.position, seen.verified = st.st_dev, st.st_ino, None, False
                self._after.pop(path, None)
            seen.size, seen.mtime_ns, seen.stable_since = st.st_size, st.st_mtime_ns, mono
        return seen

    def _complete(self, seen: _Seen, st: os.stat_result) -> bool:
        """True when the file was read to its end and checked to be the file read (nothing left to read)."""
        return seen.verified and seen.position is not None and seen.position.offset == st.st_size

    def _ignored(self, path: str, st: os.stat_result, seen: _Seen, now: float) -> bool:
        """True for a file older than ``ignore_older``: never read when nothing of it was, and its position
        forgotten when it was read to its end (a kept file)."""
        limit = self.config.ignore_older
        if not limit or now - st.st_mtime <= limit:
            return False
        if seen.position is None:
            if path not in self._old:
                self._old.add(path)
                log.debug("source.spool_file_ignored", source=self.name, path=path, reason="older than ignore_older")
            return True
        if self._complete(seen, st) and self.config.after == "keep":
            saved = self.ingest.committed_position(path)
            if saved is not None and saved.offset >= st.st_size:  # committed: forgetting cannot re-read it
                seen.position, seen.verified = None, False
                self._old.add(path)
                self._forget(path, "older than ignore_older")
            return True
        return False  # begun, or waiting for its after: finished first

    def _forget_gone_while_stopped(self) -> None:
        """Forget the saved positions of files that left the directory while smdrd was stopped."""
        folder = os.path.normpath(self.config.path)
        for path in self.ingest.saved_paths():
            if os.path.dirname(os.path.normpath(path)) == folder and not os.path.lexists(path):
                self._forget(path, "left the directory while stopped")

    def _forget(self, path: str, why: str) -> None:
        if self.ingest.saved_position(path) is not None or path in self._marked:
            self.ingest.forget_position(path)
            log.debug("source.spool_position_forgotten", source=self.name, path=path, reason=why)
        self._marked.discard(path)
        if path not in self._seen:
            self._old.discard(path)

    # -- reading ------------------------------------------------------------------------------------------------

    async def _read(self, path: str, st: os.stat_result, seen: _Seen) -> None:
        """Read ``path`` from where it was left to its end, as one stream."""
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            self._file_failed(path, exc)
            return
        try:
            opened = os.fstat(fd)
            if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
                return  # replaced since the listing: settled again first
            head = os.pread(fd, HEAD_BYTES, 0)
            start = self._start(path, seen, fd, opened.st_size, head)
            seen.verified = True
            self._throttle.reset(path)
            if start == opened.st_size and seen.position is not None and seen.position.offset == start:
                self._read_whole(path, seen, opened.st_size, fresh=False)
                return
            log.debug("source.spool_file_opened", source=self.name, path=path, size=opened.st_size, offset=start)
            reading = OpenFile(self.name, path, fd, opened.st_dev, opened.st_ino, start,
                               self.ingest.open_stream(path, Framer(self.config.max_line_length)), start, head)
            try:
                await feed_lines(reading, self.status, whole=True)  # settled: its last line is complete
            finally:
                await reading.stream.close()
                seen.position = reading.mark(reading.pos)  # with the unterminated tail, if any
                self._marked.add(path)
            self._read_whole(path, seen, reading.pos, fresh=True)
        except OSError as exc:
            self._file_failed(path, exc)
        finally:
            os.close(fd)

    def _start(self, path: str, seen: _Seen, fd: int, size: int, head: bytes) -> int:
        """Where to read the file from: its start, unless ``seen.position`` is this file's (first bytes too)."""
        saved = seen.position
        if saved is None:
            return 0
        offset, why = resume(saved, fd, size, head) if (saved.dev, saved.ino) == (seen.dev, seen.ino) \
            else (0, "replaced")
        if why is not None:
            log.info("source.spool_file_replaced", source=self.name, path=path, size=size,
                     saved_offset=saved.offset)
            seen.position = None
        return offset

    def _read_whole(self, path: str, seen: _Seen, size: int, *, fresh: bool) -> None:
        """The file is read to its end (``fresh``: by this call): count it, and queue its ``after``."""
        if fresh:
            self.status.files_read += 1
            self.status.last_file = path
            log.debug("source.spool_file_read", source=self.name, path=path, bytes=size)
        if self.config.after != "keep":
            self._after[path] = size

    def _file_failed(self, path: str, exc: OSError) -> None:
        self.status.failed(exc)
        log_throttled(log, self._throttle, "source.spool_file_unreadable", key=path, source=self.name, path=path,
                      error=describe(exc))

    # -- after ----------------------------------------------------------------------------------------------

    def _apply_after(self) -> None:
        """Delete or move each file read to its end whose last line is committed."""
        for path, size in list(self._after.items()):
            saved = self.ingest.committed_position(path)
            if saved is None or saved.offset < size:
                continue  # not committed yet
            try:
                st = os.stat(path)
            except FileNotFoundError:
                del self._after[path]
                continue  # gone already: forgotten at the next listing
            except OSError as exc:
                self._after_failed(path, exc)
                continue
            if (st.st_dev, st.st_ino) != (saved.dev, saved.ino) or st.st_size != saved.offset:
                del self._after[path]  # replaced or grown since: read (again) first
                continue
            try:
                target = self._remove(path)
            except OSError as exc:
                self._after_failed(path, exc)
                continue
            del self._after[path]
            self._seen.pop(path, None)
            self.files_removed += 1
            self._throttle.reset(("after", path))
            log.debug("source.spool_file_done", source=self.name, path=path, after=self.config.after.split(":")[0],
                      **({"moved_to": target} if target else {}))
            self._forget(path, "removed after it was read")

    def _remove(self, path: str) -> str | None:
        """Delete ``path`` or move it into ``after``'s directory; returns where it went (``None``: deleted)."""
        target_dir = self.config.move_to
        if target_dir is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            return None
        os.makedirs(target_dir, exist_ok=True)
        target = os.path.join(target_dir, os.path.basename(path))
        shutil.move(path, target)  # a rename, or a copy and a delete across file systems
        return target

    def _after_failed(self, path: str, exc: OSError) -> None:
        self.status.failed(exc)
        log_throttled(log, self._throttle, "source.spool_after_failed", key=("after", path), source=self.name,
                      path=path, after=self.config.after, error=describe(exc))
