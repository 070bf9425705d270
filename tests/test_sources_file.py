"""The file source (`smdrd.sources.file`): captures read once, logs followed like ``tail -F``, and stdin."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smdrd.config import FileSource
from smdrd.errors import SmdrdError
from smdrd.framing import Framer
from smdrd.sources.factory import build_source
from smdrd.sources.file import STDIN_PEER, FileReader
from smdrd.testing import CollectingIngest
from tests.test_sources_tcp import TIMEOUT, make_lines, running, wait_until

POLL = 0.01


def file_config(path: str | Path, **overrides: Any) -> FileSource:
    fields: dict[str, Any] = {
        "name": "capture",
        "kind": "file",
        "format": "avaya-ipo",
        "path": str(path),
        "poll_interval": POLL,
        **overrides,
    }
    return FileSource(**fields)


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as fh:
        fh.write(data)


def joined(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\n" for line in lines)


# --- read once ------------------------------------------------------------------------------------------


async def test_read_once_reads_a_large_file_and_finishes(tmp_path: Path) -> None:
    """A user importing a capture bigger than one read would see records missing or cut at chunk edges."""
    path = tmp_path / "capture.smdr"
    lines = make_lines(5000)  # about 300 KB: several 64 KiB reads
    path.write_bytes(b"\r\n".join(lines) + b"\r\nlast line without end")
    ingest = CollectingIngest()
    source = build_source(file_config(path), ingest)
    assert isinstance(source, FileReader)
    await asyncio.wait_for(source.run(), TIMEOUT)  # returns by itself: a capture is finite
    assert ingest.lines == [*lines, b"last line without end"]
    assert len(ingest.streams) == 1
    assert ingest.streams[0].peer == str(path)
    assert ingest.streams[0].closed
    assert source.status.bytes_read == path.stat().st_size
    assert not source.status.connected


_PIECES = st.sampled_from([b"ab", b"\r\n", b"\n", b"\x0c", b"x" * 50])


@settings(max_examples=40, deadline=None)
@given(content=st.binary(max_size=3000) | st.lists(_PIECES).map(b"".join))
def test_read_once_frames_exactly_like_the_framer(content: bytes) -> None:
    """A user would see a file import disagree with the same bytes arriving over TCP."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.smdr"
        path.write_bytes(content)
        ingest = CollectingIngest()
        asyncio.run(FileReader(file_config(path), ingest).run())
    framer = Framer(8192)
    expected = [f for f in framer.feed(content) + framer.close() if isinstance(f, bytes)]
    assert ingest.lines == expected


async def test_read_once_reports_a_missing_file(tmp_path: Path) -> None:
    """A user who mistyped a capture's path would see nothing happen, with no error saying why."""
    source = FileReader(file_config(tmp_path / "nope.smdr"), CollectingIngest())
    with pytest.raises(SmdrdError, match=r"nope\.smdr"):
        await source.run()
    assert source.status.last_error is not None


# --- follow ---------------------------------------------------------------------------------------------


async def test_follow_through_appends_rotation_and_truncation(tmp_path: Path) -> None:
    """A user whose PBX log is rotated or truncated would see calls missed or counted twice."""
    path = tmp_path / "pbx.log"
    sent: list[bytes] = []

    def write(lines: list[bytes], target: Path = path, split: bool = False) -> None:
        data = joined(lines)
        if split:  # a writer that flushes mid-line
            cut = len(data) // 2 + 3
            append(target, data[:cut])
            append(target, data[cut:])
        else:
            append(target, data)
        sent.extend(lines)

    write(make_lines(100, "initial-"))
    ingest = CollectingIngest()
    source = build_source(file_config(path, follow=True, from_start=True), ingest)
    async with running(source) as task:
        await wait_until(lambda: len(ingest.lines) == 100)
        for i in range(3):
            write(make_lines(50, f"append{i}-"), split=True)
            await asyncio.sleep(POLL * 2)
        await wait_until(lambda: len(ingest.lines) == len(sent))

        # rotation: the file is renamed, its writer adds a little more to it, then a new file appears
        os.rename(path, tmp_path / "pbx.log.1")
        write(make_lines(20, "late-to-old-"), target=tmp_path / "pbx.log.1")
        write(make_lines(30, "new-file-"))
        await wait_until(lambda: len(ingest.lines) == len(sent))
        assert source.status.reconnects == 1

        # truncation (logrotate's copytruncate): the file shrinks, then grows again from the start
        big = len(ingest.lines)
        os.truncate(path, 0)
        write(make_lines(5, "after-truncate-"))
        await wait_until(lambda: len(ingest.lines) == big + 5)
        write(make_lines(10, "after-truncate-more-"))
        await wait_until(lambda: len(ingest.lines) == len(sent))
        await asyncio.sleep(POLL * 5)  # and nothing more turns up on later polls
        assert not task.done()
    assert ingest.lines == sent
    assert len(ingest.streams) == 3  # the first file, the new one, the new one again after truncation
    assert all(stream.closed for stream in ingest.streams)
    assert source.status.reconnects == 2
    assert [s.peer for s in ingest.streams] == [str(path)] * 3


async def test_follow_from_the_end_skips_what_was_there(tmp_path: Path) -> None:
    """A user restarting smdrd on a log it has already imported would see every old call counted again."""
    path = tmp_path / "pbx.log"
    path.write_bytes(joined(make_lines(100, "old-")))
    ingest = CollectingIngest()
    source = build_source(file_config(path, follow=True, from_start=False), ingest)
    async with running(source):
        await wait_until(lambda: source.status.connected)
        new = make_lines(10, "new-")
        append(path, joined(new))
        await wait_until(lambda: len(ingest.lines) >= 10)
        await asyncio.sleep(POLL * 3)
    assert ingest.lines == new


async def test_follow_waits_for_a_missing_file_and_reads_it_from_the_start(tmp_path: Path) -> None:
    """A user whose PBX creates its log only after smdrd starts would never see those calls."""
    path = tmp_path / "later.log"
    ingest = CollectingIngest()
    source = build_source(file_config(path, follow=True, from_start=False), ingest)
    async with running(source):
        await wait_until(lambda: source.status.last_error is not None)
        assert not source.status.connected
        lines = make_lines(20)
        path.write_bytes(joined(lines))  # new since smdrd started: all of it is news
        await wait_until(lambda: len(ingest.lines) >= 20)
    assert ingest.lines == lines


async def test_follow_keeps_reading_a_moved_file_until_its_successor_appears(tmp_path: Path) -> None:
    """A user would lose the records a PBX wrote between moving its log away and creating the next one."""
    path = tmp_path / "pbx.log"
    path.write_bytes(b"one\n")
    ingest = CollectingIngest()
    source = build_source(file_config(path, follow=True), ingest)
    async with running(source):
        await wait_until(lambda: ingest.lines == [b"one"])
        os.rename(path, tmp_path / "pbx.log.1")
        await asyncio.sleep(POLL * 3)
        append(tmp_path / "pbx.log.1", b"two\n")
        await wait_until(lambda: ingest.lines == [b"one", b"two"])
        path.write_bytes(b"three\n")
        await wait_until(lambda: ingest.lines == [b"one", b"two", b"three"])


async def test_follow_stop_leaves_a_line_being_written_for_the_next_start(tmp_path: Path) -> None:
    """A record the PBX is half-way through when smdrd stops is not journalled in pieces: the stop saves the
    position after the last complete line, and the next start reads the record whole once it is finished."""
    path = tmp_path / "pbx.log"
    path.write_bytes(b"complete\nhalf a rec")
    ingest = CollectingIngest()
    source = build_source(file_config(path, follow=True), ingest)
    async with running(source):
        await wait_until(lambda: ingest.lines == [b"complete"])
        await asyncio.sleep(0.2)  # polled again: the unfinished line waits for its end
    assert ingest.lines == [b"complete"]
    assert ingest.streams[0].closed and not source.status.connected
    saved = ingest.streams[0].marks[-1]
    assert (saved.offset, saved.tail) == (len(b"complete\n"), 0)
    with path.open("ab") as fh:
        fh.write(b"ord\n")
    again = CollectingIngest(positions={str(path): saved})
    async with running(build_source(file_config(path, follow=True), again)):
        await wait_until(lambda: again.lines == [b"half a record"])


async def test_a_rotated_files_unfinished_last_line_is_journalled_when_it_is_let_go(tmp_path: Path) -> None:
    """A file rotated away is read to its very end: its last line, ended or not, is journalled before the new
    file is followed (nothing is left behind in a file smdrd no longer reads)."""
    path = tmp_path / "pbx.log"
    path.write_bytes(b"complete\nlast, unended")
    ingest = CollectingIngest()
    source = build_source(file_config(path, follow=True), ingest)
    async with running(source):
        await wait_until(lambda: ingest.lines == [b"complete"])
        path.rename(tmp_path / "pbx.log.1")
        path.write_bytes(b"new file\n")
        await wait_until(lambda: ingest.lines == [b"complete", b"last, unended", b"new file"])


# --- standard input -------------------------------------------------------------------------------------


async def test_stdin_pipe_is_read_to_its_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """A user piping a capture into smdrd (``cat x | smdrd import -``) would see records missing."""
    read_fd, write_fd = os.pipe()
    monkeypatch.setattr(sys, "stdin", os.fdopen(read_fd, "r"))
    lines = make_lines(3000)
    ingest = CollectingIngest()
    source = build_source(file_config("-"), ingest)

    def producer() -> None:
        with os.fdopen(write_fd, "wb") as fh:
            for i in range(0, len(lines), 100):
                fh.write(joined(lines[i : i + 100]))
                fh.flush()

    async with asyncio.timeout(TIMEOUT):
        await asyncio.gather(source.run(), asyncio.to_thread(producer))
    assert ingest.lines == lines
    assert ingest.streams[0].peer == STDIN_PEER
    assert ingest.streams[0].closed
    assert not sys.stdin.closed  # the source read a duplicate and left standard input itself alone
    sys.stdin.close()


_CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    from smdrd.config import FileSource
    from smdrd.sources.factory import build_source
    from smdrd.testing import CollectingIngest
    import structlog, logging
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    ingest = CollectingIngest()
    config = FileSource(name="stdin", kind="file", format="avaya-ipo", path="-")
    asyncio.run(build_source(config, ingest).run())
    print(json.dumps([line.decode() for line in ingest.lines]))
    """
)


@pytest.mark.parametrize("kind", ["pipe", "regular file"])
def test_stdin_in_a_real_process(tmp_path: Path, kind: str) -> None:
    """A user running ``smdrd ... -`` with a pipe or a redirected file would see it fail or hang."""
    lines = make_lines(500)
    data = joined(lines) + b"tail"
    if kind == "pipe":
        result = subprocess.run([sys.executable, "-c", _CHILD], input=data, capture_output=True, timeout=30,
                                check=False)
    else:
        capture = tmp_path / "capture.smdr"
        capture.write_bytes(data)
        with capture.open("rb") as stdin:
            result = subprocess.run([sys.executable, "-c", _CHILD], stdin=stdin, capture_output=True,
                                    timeout=30, check=False)
    assert result.returncode == 0, result.stderr.decode()
    assert json.loads(result.stdout) == [line.decode() for line in lines] + ["tail"]
