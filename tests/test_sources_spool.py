"""The spool source (`smdrd.sources.spool`): a directory a PBX drops CDR files into (Cisco Unified CM over SFTP),
each file read once when it has settled, as its own stream, then kept, deleted or moved.

Real files in a temporary directory, built from the real CUCM files in tests/fixtures/cisco-cucm/ (each file's
records given call ids of their own, so that every line is distinct), read by the source into a
`CollectingIngest` whose marks count as committed at once (or not, to hold ``after`` back)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from smdrd.config import SpoolSource
from smdrd.framing import Framer
from smdrd.journal import FilePosition
from smdrd.sources.base import FramerLike
from smdrd.sources.factory import build_source
from smdrd.sources.spool import SpoolReader
from smdrd.testing import CollectedStream, CollectingIngest, DaemonProcess, daemon_config
from tests.test_sources_tcp import running, wait_until

FIXTURES = Path(__file__).parent / "fixtures" / "cisco-cucm"
POLL = 0.01


def cucm_file(n: int, fixture: str = "cdr.smdr") -> bytes:
    """A real CUCM CDR file (names line, types line, records) whose records carry call ids of file ``n``'s own."""
    names, types, *records = (FIXTURES / fixture).read_bytes().splitlines(keepends=True)
    out = [names, types]
    for record in records:
        fields = record.split(b",", 3)
        fields[2] = str(int(fields[2]) + 1000 * n).encode()  # globalCallID_callId
        out.append(b",".join(fields))
    return b"".join(out)


def records(data: bytes) -> list[bytes]:
    return data.splitlines()


def spool_config(path: Path, **overrides: Any) -> SpoolSource:
    fields: dict[str, Any] = {"name": "cucm", "kind": "spool", "format": "cisco-cucm", "path": str(path),
                              "pattern": "cdr_*", "poll_interval": POLL, "settle": 0, **overrides}
    return SpoolSource(**fields)


def name(n: int) -> str:
    return f"cdr_StandAloneCluster_01_2025041816{n // 60 % 60:02d}_{n:04d}"


def source(path: Path, ingest: CollectingIngest, **overrides: Any) -> SpoolReader:
    built = build_source(spool_config(path, **overrides), ingest)
    assert isinstance(built, SpoolReader)
    return built


class SlowStream(CollectedStream):
    """A stream whose journal writer is slow: each chunk takes a while to be taken."""

    async def feed(self, data: bytes) -> None:
        await super().feed(data)
        await asyncio.sleep(0.05)


class SlowIngest(CollectingIngest):
    def open_stream(self, peer: str, framer: FramerLike | None = None) -> CollectedStream:
        stream = SlowStream(peer, framer or Framer(self.max_line), saved=self.positions)
        self.streams.append(stream)
        return stream


def per_file(ingest: CollectingIngest) -> dict[str, list[bytes]]:
    """Every line journalled, by file name (streams of one file joined in order)."""
    out: dict[str, list[bytes]] = {}
    for stream in ingest.streams:
        out.setdefault(os.path.basename(stream.peer), []).extend(stream.lines)
    return out


# --- reading ---------------------------------------------------------------------------------------------------


async def test_files_arriving_over_time_are_each_read_once_in_name_order(tmp_path: Path) -> None:
    """CUCM drops a file a minute: each is read once, whole, as its own stream (its names line first), in the
    order of the names (their time), whatever order they landed in; files not matching the pattern (CMR) and
    sub-directories are left alone."""
    spool = tmp_path / "cucm"
    spool.mkdir()
    (spool / "cmr_StandAloneCluster_01_202504181600_0001").write_bytes((FIXTURES / "cmr.smdr").read_bytes())
    (spool / "cdr_not_a_file").mkdir()
    for n in (2, 0, 1):  # already there at the start, written out of order
        (spool / name(n)).write_bytes(cucm_file(n))
    ingest = CollectingIngest(commit_marks=True)
    reader = source(spool, ingest)
    async with running(reader):
        await wait_until(lambda: len(ingest.streams) == 3 and all(s.closed for s in ingest.streams))
        for n in (3, 4):  # arriving while it runs
            (spool / name(n)).write_bytes(cucm_file(n))
            await wait_until(partial(lambda count: len(ingest.streams) == count and ingest.streams[-1].closed,
                                     n + 1))
        await asyncio.sleep(POLL * 20)  # more looks: nothing is read again
    assert [os.path.basename(s.peer) for s in ingest.streams] == [name(n) for n in range(5)]
    assert per_file(ingest) == {name(n): records(cucm_file(n)) for n in range(5)}
    assert reader.status.files_read == 5
    assert reader.status.last_file == str(spool / name(4))
    assert reader.status.connected
    for n in range(5):  # each file's end saved, as the writer would commit it
        position, data = ingest.positions[str(spool / name(n))], cucm_file(n)
        assert position.offset == len(data)
        assert position.tail == len(data) - data.rfind(b"\n") - 1  # the file's last line has no line end


async def test_mtime_order_reads_the_oldest_first(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    for n, age in ((0, 10), (1, 30), (2, 20)):
        path = spool / name(n)
        path.write_bytes(cucm_file(n))
        then = time.time() - age
        os.utime(path, (then, then))
    ingest = CollectingIngest(commit_marks=True)
    async with running(source(spool, ingest, order="mtime")):
        await wait_until(lambda: len(ingest.streams) == 3 and ingest.streams[-1].closed)
    assert [os.path.basename(s.peer) for s in ingest.streams] == [name(1), name(2), name(0)]


async def test_a_file_being_uploaded_slowly_is_not_read_until_it_has_settled(tmp_path: Path) -> None:
    """An SFTP server writes the upload in place under its final name: reading it then would journal half a
    file (and its last record cut). A file is read once its size and time have stood still for ``settle``."""
    spool = tmp_path / "spool"
    spool.mkdir()
    data = cucm_file(7)
    path = spool / name(7)
    ingest = CollectingIngest(commit_marks=True)
    async with running(source(spool, ingest, settle=0.4)):
        with path.open("wb") as fh:
            for i in range(0, len(data), 997):  # a slow upload: a piece every 0.1 s, for over a second
                fh.write(data[i:i + 997])
                fh.flush()
                written = time.monotonic()
                await asyncio.sleep(0.1)
                assert ingest.streams == [], "read while it was still being written"
        await wait_until(lambda: bool(ingest.streams) and ingest.streams[0].closed, within=5)
        assert time.monotonic() - written >= 0.35
    assert per_file(ingest) == {name(7): records(data)}


async def test_an_empty_file_is_left_until_it_has_bytes(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / name(1)).touch()
    ingest = CollectingIngest(commit_marks=True)
    async with running(source(spool, ingest, after="delete")):
        await asyncio.sleep(POLL * 20)
        assert ingest.streams == [] and (spool / name(1)).exists()
        (spool / name(1)).write_bytes(cucm_file(1))
        await wait_until(lambda: not (spool / name(1)).exists())
    assert per_file(ingest) == {name(1): records(cucm_file(1))}


async def test_a_file_that_grows_after_it_was_read_is_read_on_from_its_end(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    path = spool / name(0)
    first = cucm_file(0) + b"\n"
    more = records(cucm_file(1))[2:]
    path.write_bytes(first)
    ingest = CollectingIngest(commit_marks=True)
    async with running(source(spool, ingest)):
        await wait_until(lambda: len(ingest.streams) == 1 and ingest.streams[0].closed)
        with path.open("ab") as fh:
            fh.write(b"".join(line + b"\n" for line in more))
        await wait_until(lambda: len(ingest.streams) == 2 and ingest.streams[1].closed)
    assert ingest.streams[1].lines == more
    assert per_file(ingest) == {name(0): records(first) + more}


async def test_a_restart_resumes_mid_file_and_never_reads_a_finished_file_again(tmp_path: Path) -> None:
    """The saved positions (as committed before a kill): a file finished is not read again, though kept; a
    file half read is read on from its last committed line; a file replaced under a finished one's name (another
    inode) is read whole; positions of files gone while stopped are forgotten."""
    spool = tmp_path / "spool"
    spool.mkdir()
    finished, half, replaced = (spool / name(n) for n in range(3))
    for n, path in enumerate((finished, half, replaced)):
        path.write_bytes(cucm_file(n))
    st = [p.stat() for p in (finished, half)]
    half_lines = records(cucm_file(1))
    cut = len(b"\n".join(half_lines[:3])) + 1  # names, types and the first record committed
    ingest = CollectingIngest(commit_marks=True, positions={
        str(finished): FilePosition("cucm", str(finished), st[0].st_dev, st[0].st_ino, st[0].st_size, 0,
                                    cucm_file(0)[:64]),
        str(half): FilePosition("cucm", str(half), st[1].st_dev, st[1].st_ino, cut, 0, cucm_file(1)[:64]),
        str(replaced): FilePosition("cucm", str(replaced), 1, 1, 5, 0, b"other"),
        str(spool / "cdr_gone"): FilePosition("cucm", str(spool / "cdr_gone"), 1, 2, 50, 0, b"gone"),
    })
    async with running(source(spool, ingest)):
        await wait_until(lambda: len(ingest.streams) == 2 and ingest.streams[-1].closed)
        await asyncio.sleep(POLL * 20)
    assert per_file(ingest) == {name(1): half_lines[3:], name(2): records(cucm_file(2))}
    assert ingest.forgotten == [str(spool / "cdr_gone")]


async def test_a_stop_mid_file_leaves_no_line_half_read(tmp_path: Path) -> None:
    """A file larger than one read, stopped while it is read: the position saved is the end of the last line
    fed whole, and a restart from it journals the rest: together, every line once."""
    spool = tmp_path / "spool"
    spool.mkdir()
    names, types, record = records(cucm_file(0))[:3]
    lines = [names, types] + [record.replace(b"25449", str(100000 + i).encode(), 1) for i in range(400)]
    data = b"".join(line + b"\n" for line in lines)
    assert len(data) > 3 * 64 * 1024
    (spool / name(0)).write_bytes(data)
    first = SlowIngest(commit_marks=True)
    async with running(source(spool, first)):
        await wait_until(lambda: bool(first.streams) and len(first.streams[0].lines) > 2)
    assert first.streams[0].closed
    saved = first.positions[str(spool / name(0))]
    assert saved.tail == 0 and saved.offset < len(data)
    again = CollectingIngest(commit_marks=True, positions=dict(first.positions))
    async with running(source(spool, again)):
        await wait_until(lambda: bool(again.streams) and again.streams[-1].closed)
    assert first.lines + again.lines == lines


async def test_an_unreadable_directory_is_reported_and_watched_again(tmp_path: Path) -> None:
    spool = tmp_path / "not-yet"
    ingest = CollectingIngest(commit_marks=True)
    reader = source(spool, ingest)
    async with running(reader):
        await wait_until(lambda: reader.status.last_error is not None)
        assert not reader.status.connected
        spool.mkdir()
        (spool / name(0)).write_bytes(cucm_file(0))
        await wait_until(lambda: len(ingest.streams) == 1 and ingest.streams[0].closed)
        assert reader.status.connected


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
async def test_an_unreadable_file_is_skipped_and_read_when_it_can_be(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    locked = spool / name(0)
    locked.write_bytes(cucm_file(0))
    locked.chmod(0)
    (spool / name(1)).write_bytes(cucm_file(1))
    ingest = CollectingIngest(commit_marks=True)
    reader = source(spool, ingest)
    async with running(reader):
        await wait_until(lambda: len(ingest.streams) == 1 and ingest.streams[0].closed)
        assert "Permission" in (reader.status.last_error or "")
        locked.chmod(0o644)
        await wait_until(lambda: len(ingest.streams) == 2 and ingest.streams[1].closed)
    assert per_file(ingest) == {name(1): records(cucm_file(1)), name(0): records(cucm_file(0))}


# --- after ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("after", ["delete", "move:done", "move:{tmp}/archive"])
async def test_after_removes_a_file_only_once_its_last_line_is_committed(tmp_path: Path, after: str) -> None:
    """Deleting (or moving) a file on reading it would lose its lines if smdrd died before they were committed:
    the file stays until the saved position reaches its size, then goes, and its position is forgotten."""
    spool = tmp_path / "spool"
    spool.mkdir()
    after = after.format(tmp=tmp_path)
    path = spool / name(0)
    path.write_bytes(cucm_file(0))
    ingest = CollectingIngest()  # marks not committed: the writer is behind
    reader = source(spool, ingest, after=after)
    async with running(reader):
        await wait_until(lambda: bool(ingest.streams) and ingest.streams[0].closed)
        await asyncio.sleep(POLL * 20)
        assert path.exists(), "removed before its lines were committed"
        last = ingest.streams[0].marks[-1]
        assert last.offset == len(cucm_file(0))
        ingest.positions[str(path)] = last  # the writer commits
        await wait_until(lambda: not path.exists())
        await asyncio.sleep(POLL * 10)
    assert ingest.forgotten == [str(path)]
    assert str(path) not in ingest.positions
    assert reader.files_removed == 1
    if after.startswith("move:"):
        target = Path(reader.config.move_to or "") / name(0)
        assert target.read_bytes() == cucm_file(0)
    assert len(ingest.streams) == 1


async def test_after_applies_at_the_start_to_a_file_finished_before_a_stop(tmp_path: Path) -> None:
    """Killed after the commit and before the delete: the file is deleted at the next start, not read."""
    spool = tmp_path / "spool"
    spool.mkdir()
    path = spool / name(0)
    path.write_bytes(cucm_file(0))
    st = path.stat()
    ingest = CollectingIngest(commit_marks=True, positions={str(path): FilePosition(
        "cucm", str(path), st.st_dev, st.st_ino, st.st_size, 0, cucm_file(0)[:64])})
    async with running(source(spool, ingest, after="delete")):
        await wait_until(lambda: not path.exists())
    assert ingest.streams == []


def test_config_keys_are_checked_by_name() -> None:
    """check-config names the key: a bad ``after``, a pattern with a directory, a move into the spool itself."""
    def problem(**overrides: Any) -> str:
        with pytest.raises(ValidationError) as exc:
            spool_config(Path("/var/spool/smdrd/cucm"), **overrides)
        errors = exc.value.errors()
        return f"{errors[0]['loc'][-1]}: {errors[0]['msg']}"

    assert problem(after="archive").startswith("after: ")
    assert problem(after="move:").startswith("after: ")
    assert "spool directory itself" in problem(after="move:.")
    assert "spool directory itself" in problem(after="move:/var/spool/smdrd/cucm/")
    assert problem(pattern="cucm/cdr_*").startswith("pattern: ")
    assert problem(settle=-1).startswith("settle: ")
    assert problem(order="size").startswith("order: ")
    assert spool_config(Path("/s"), after=" move: done ").move_to == "/s/done"
    assert spool_config(Path("/s")).after == "keep"


# --- ignore_older ---------------------------------------------------------------------------------------------


async def test_ignore_older_leaves_old_files_unread_and_forgets_read_ones(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    old, fresh = spool / name(0), spool / name(1)
    old.write_bytes(cucm_file(0))
    then = time.time() - 3600
    os.utime(old, (then, then))
    fresh.write_bytes(cucm_file(1))
    ingest = CollectingIngest(commit_marks=True)
    async with running(source(spool, ingest, ignore_older=60)):
        await wait_until(lambda: len(ingest.streams) == 1 and ingest.streams[0].closed)
        os.utime(fresh, (then, then))  # it ages past ignore_older: its position goes, it is not read again
        await wait_until(lambda: ingest.forgotten == [str(fresh)])
        await asyncio.sleep(POLL * 20)
    assert per_file(ingest) == {name(1): records(cucm_file(1))}
    assert ingest.positions == {}


# --- whatever the arrival order and sizes ------------------------------------------------------------------------


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(range(6)), pieces=st.lists(st.integers(1, 3), min_size=6, max_size=6),
       stop_after=st.integers(0, 6), after=st.sampled_from(["keep", "delete", "move:done"]))
def test_every_line_once_whatever_the_arrival(tmp_path_factory: pytest.TempPathFactory, order: list[int],
                                              pieces: list[int], stop_after: int, after: str) -> None:
    """Files land in any order, some written in several pieces; the source is stopped part way and started
    again from the positions committed: each file's lines are journalled once, each file read in one go or
    resumed, and with delete or move every file ends up gone from the spool."""
    spool = tmp_path_factory.mktemp("spool")
    data = {n: cucm_file(n, "csvutil-2016-01.smdr" if n % 2 else "cdr.smdr") for n in range(6)}

    async def land(n: int) -> None:
        path = spool / name(n)
        body = data[n]
        step = -(-len(body) // pieces[n])
        with path.open("wb") as fh:
            for i in range(0, len(body), step):
                fh.write(body[i:i + step])
                fh.flush()
                await asyncio.sleep(0.005)

    async def run() -> list[CollectingIngest]:
        runs = [CollectingIngest(commit_marks=True)]
        async with running(source(spool, runs[0], settle=0.05, after=after)):
            for n in order[:stop_after]:
                await land(n)
            await asyncio.sleep(0.02)
        runs.append(CollectingIngest(commit_marks=True, positions=dict(runs[0].positions)))
        async with running(source(spool, runs[1], settle=0.05, after=after)):
            for n in order[stop_after:]:
                await land(n)
            await wait_until(lambda: sum(len(r.lines) for r in runs) == sum(len(records(d)) for d in data.values())
                             and all(s.closed for r in runs for s in r.streams)
                             and (after == "keep" or not any(spool.glob("cdr_*"))), within=10)
        return runs

    runs = asyncio.run(run())
    got: dict[str, list[bytes]] = {}
    for ingest in runs:
        for stream in ingest.streams:
            got.setdefault(os.path.basename(stream.peer), []).extend(stream.lines)
    assert got == {name(n): records(data[n]) for n in range(6)}
    calls = Counter(line for r in runs for line in r.lines if line.startswith(b"1,"))
    assert set(calls.values()) == {1}
    if after == "move:done":
        assert sorted(p.name for p in (spool / "done").iterdir()) == sorted(name(n) for n in range(6))


# --- a real daemon, killed mid-directory --------------------------------------------------------------------------


def big_cucm_file(n: int, calls: int = 150) -> bytes:
    """A real CUCM file's names and types lines, then ``calls`` records of its own (several reads' worth)."""
    names, types, record = records(cucm_file(0))[:3]
    fields = record.split(b",", 3)
    rows = [b",".join([*fields[:2], str(1_000_000 + n * 10_000 + i).encode(), fields[3]]) for i in range(calls)]
    return b"".join(line + b"\n" for line in [names, types, *rows])


def journalled(database: Path | str) -> list[tuple[bytes, str]]:
    """``(raw, status)`` of every line the spool source journalled, in journal order (not flushed markers)."""
    sql = "SELECT raw, status FROM lines WHERE source = {} AND status <> 'flushed' ORDER BY id"
    if isinstance(database, str):
        import psycopg

        with psycopg.connect(database) as conn:
            return [(bytes(r[0]), str(r[1])) for r in conn.execute(sql.format("%s"), ("cucm",)).fetchall()]
    if not database.exists():
        return []
    lite = sqlite3.connect(database)
    try:
        return [(bytes(r[0]), str(r[1])) for r in lite.execute(sql.format("?"), ("cucm",)).fetchall()]
    finally:
        lite.close()


@pytest.mark.parametrize("after", ["keep", "delete"])
def test_sigkill_mid_directory_then_restart_neither_loses_nor_doubles(
        tmp_path: Path, any_database: Path | str, daemons: list[DaemonProcess], after: str) -> None:
    """CUCM drops a file every so often (each uploaded in two writes) while the daemon is killed (SIGKILL: no
    shutdown, commits cut short) twice and started again: every record of every file is journalled once, none
    marked duplicate, and with ``after = "delete"`` every file ends up deleted, none before its lines were
    committed (else a record would be missing)."""
    spool = tmp_path / "cucm"
    spool.mkdir()
    files = {name(n): big_cucm_file(n) for n in range(24)}
    db = {"url": any_database} if isinstance(any_database, str) else {"path": str(any_database)}
    config = daemon_config(tmp_path, [{"name": "cucm", "kind": "spool", "format": "cisco-cucm",
                                       "path": str(spool), "pattern": "cdr_*", "poll_interval": 0.05,
                                       "settle": 0.1, "after": after}], database=db)
    d = DaemonProcess(tmp_path, config)
    daemons.append(d)
    done = threading.Event()

    def cucm() -> None:
        for file_name, body in files.items():
            with (spool / file_name).open("wb") as fh:
                fh.write(body[:len(body) // 2])
                fh.flush()
                time.sleep(0.03)
                fh.write(body[len(body) // 2:])
            time.sleep(0.08)
        done.set()

    d.start(within=60)
    uploader = threading.Thread(target=cucm)
    uploader.start()
    try:
        for _ in range(2):
            time.sleep(0.9)
            d.kill()  # SIGKILL
            time.sleep(0.3)  # down for a while: CUCM goes on uploading
            d.start(within=60)
    finally:
        uploader.join()
    assert done.is_set()
    expected = [line for body in files.values() for line in records(body) if line.startswith(b"1,")]
    deadline = time.monotonic() + 60
    while sum(raw.startswith(b"1,") for raw, _ in journalled(any_database)) < len(expected) or (
            after == "delete" and any(spool.glob("cdr_*"))):
        assert time.monotonic() < deadline, d.log_text()[-3000:]
        assert d.alive(), d.log_text()[-3000:]
        time.sleep(0.1)
    time.sleep(0.5)  # a few more looks: nothing is read again
    d.terminate()
    stored = journalled(any_database)
    calls = Counter(raw for raw, _ in stored if raw.startswith(b"1,"))
    assert sorted(calls) == sorted(expected)
    assert set(calls.values()) == {1}, "a record journalled twice"
    assert "duplicate" not in {status for _, status in stored}
    if after == "keep":
        assert sorted(p.name for p in spool.iterdir()) == sorted(files)
    d.assert_clean_log()


async def test_a_file_whose_name_is_not_utf8_is_left_alone_and_the_writer_goes_on(tmp_path: Path) -> None:
    """A file named ``cdr_bad_\\xff`` had its position saved under a name no database takes: the journal writer
    stopped on it, nothing else was committed, and the restarted daemon read the file again, for ever."""
    from smdrd.config import Settings
    from smdrd.ingest import Hooks, SourceIngest
    from smdrd.store.sqlite.writer import JournalWriter

    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / name(1)).write_bytes(cucm_file(1))
    spool.joinpath(os.fsdecode(b"cdr_bad_\xff")).write_bytes(cucm_file(2))
    writer = JournalWriter(tmp_path / "j.db", commit_interval=0.02)
    await writer.open()
    writing = asyncio.create_task(writer.run())
    site = Settings.model_validate({"site": {"timezone": "UTC", "country": "US"}}).site
    ingest = SourceIngest(name="cucm", format="cisco-cucm", site=site, writer=writer, hooks=Hooks())
    config = SpoolSource(name="cucm", kind="spool", format="cisco-cucm", path=str(spool), pattern="cdr_*",
                         poll_interval=0.05, settle=0)
    async with running(build_source(config, ingest)):
        await wait_until(lambda: writer.positions.get(("cucm", str(spool / name(1)))) is not None)
        await asyncio.sleep(0.3)  # more looks at the directory
        assert not writing.done(), writing.exception() if writing.done() else None
    await writer.close()
    await writing
    conn = sqlite3.connect(tmp_path / "j.db")
    try:
        peers = {row[0] for row in conn.execute("SELECT DISTINCT peer FROM lines")}
    finally:
        conn.close()
    assert peers == {str(spool / name(1))}
