"""A followed file resumes where its committed lines end (`smdrd.sources.file`, ``file_positions``): real files, a
real daemon (``smdrd run``) or a real journal writer, on SQLite and PostgreSQL.

The promise under test: every line the file holds is journalled once, whatever happens between two runs (lines
appended, the file rotated or truncated, the daemon killed mid-stream)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smdrd.journal import PARSED, FilePosition, JournalEntry
from smdrd.parsers.avaya_ipo import AvayaIPOfficeParser
from smdrd.simulator import Traffic, render_calls
from smdrd.store import journal_writer
from smdrd.testing import DaemonProcess, daemon_config

SOURCE = "pbx"


def ipo_lines(calls: int, seed: int) -> list[bytes]:
    """Realistic Avaya IP Office SMDR lines (each distinct: a re-read line would be a ``duplicate``)."""
    traffic = Traffic(seed=seed, country="PL", format="avaya-ipo")
    return [line.encode() for line in render_calls(AvayaIPOfficeParser, traffic, calls)]


def file_source(path: Path, **extra: Any) -> dict[str, Any]:
    return {"name": SOURCE, "kind": "file", "format": "avaya-ipo", "path": str(path), "follow": True,
            "poll_interval": 0.05, **extra}


def follower(folder: Path, database: Path | str, path: Path, **extra: Any) -> DaemonProcess:
    """A daemon following ``path`` into ``database`` (a SQLite file or a PostgreSQL URL)."""
    db = {"url": database} if isinstance(database, str) else {"path": str(database)}
    return DaemonProcess(folder, daemon_config(folder, [file_source(path, **extra)], database=db))


def journal(database: Path | str) -> list[tuple[bytes, str]]:
    """``(raw, status)`` of every journalled line of the source, in journal order (not flushed markers)."""
    sql = "SELECT raw, status FROM lines WHERE source = {} AND status <> 'flushed' ORDER BY id"
    if isinstance(database, str):
        import psycopg

        with psycopg.connect(database) as conn:
            return [(bytes(r[0]), str(r[1])) for r in conn.execute(sql.format("%s"), (SOURCE,)).fetchall()]
    if not database.exists():
        return []
    lite = sqlite3.connect(database)
    try:
        return [(bytes(r[0]), str(r[1])) for r in lite.execute(sql.format("?"), (SOURCE,)).fetchall()]
    finally:
        lite.close()


def wait_journalled(d: DaemonProcess, database: Path | str, n: int, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while len(journal(database)) < n:
        assert time.monotonic() < deadline, f"{len(journal(database))} of {n} lines:\n{d.log_text()[-3000:]}"
        assert d.alive(), d.log_text()[-3000:]
        time.sleep(0.05)


def settle(d: DaemonProcess, opened: int) -> None:
    """Wait until the daemon has opened the file ``opened`` times (this run's) and polled it a few times."""
    d.wait_event("source.file_opened", opened)
    time.sleep(0.5)


def finish(d: DaemonProcess, database: Path | str, n: int, *, opened: int, within: float = 30.0) -> None:
    """Wait until ``n`` lines are journalled and the daemon has polled on a while (nothing more comes), then
    stop it."""
    wait_journalled(d, database, n, within=within)
    settle(d, opened)
    d.terminate()


def append(path: Path, lines: list[bytes]) -> None:
    with path.open("ab") as fh:
        fh.write(b"".join(line + b"\r\n" for line in lines))


def assert_once(database: Path | str, expected: list[bytes]) -> None:
    """The journal holds exactly ``expected``, in order: none lost, none doubled, none marked duplicate."""
    stored = journal(database)
    doubled = [raw for raw, n in Counter(raw for raw, _ in stored).items() if n > 1]
    assert not doubled, f"{len(doubled)} line(s) journalled twice, such as {doubled[:2]}"
    assert [raw for raw, _ in stored] == expected
    assert "duplicate" not in {status for _, status in stored}


# --- the daemon, on both stores ---------------------------------------------------------------------------------


def test_restart_journals_only_the_lines_appended_while_down(
        tmp_path: Path, any_database: Path | str, daemons: list[DaemonProcess]) -> None:
    """With the default ``from_start = true`` a restart re-read the whole file: after two restarts a 21-line
    file left 21 parsed and 21 duplicate journal lines, and a large CDR file was read again at every start."""
    path = tmp_path / "cdr.log"
    lines = ipo_lines(40, seed=3)
    first, while_down = lines[:21], lines[21:]
    append(path, first)
    d = follower(tmp_path, any_database, path)
    daemons.append(d)
    d.start(within=60)
    wait_journalled(d, any_database, len(first))
    d.terminate()
    append(path, while_down)  # the PBX goes on writing while smdrd is stopped
    d.start(within=60)
    wait_journalled(d, any_database, len(lines))
    d.terminate()
    d.start(within=60)  # nothing new: nothing is read again
    settle(d, 3)
    d.terminate()
    d.assert_clean_log()
    assert_once(any_database, lines)
    resumed = d.events("source.file_opened")
    assert [e.get("resumed") for e in resumed] == [None, True, True]
    assert resumed[2]["offset"] == path.stat().st_size


def test_sigkill_mid_stream_then_restart_neither_loses_nor_doubles(
        tmp_path: Path, any_database: Path | str, daemons: list[DaemonProcess]) -> None:
    """The daemon is killed (SIGKILL: no shutdown, commits cut short) while a PBX keeps appending to the file,
    twice, and started again. The position is committed with the lines it covers, so the restart resumes at
    the last committed line: a crash between two commits neither skips nor re-journals a line."""
    path = tmp_path / "cdr.log"
    path.touch()
    lines = ipo_lines(1200, seed=11)
    d = follower(tmp_path, any_database, path)
    daemons.append(d)
    done = threading.Event()

    def pbx() -> None:  # bursts of lines, some cut mid-line between two writes (a writer's partial flush)
        for i in range(0, len(lines), 20):
            data = b"".join(line + b"\r\n" for line in lines[i:i + 20])
            with path.open("ab") as fh:
                fh.write(data[:len(data) // 2 + 7])
                fh.flush()
                time.sleep(0.002)
                fh.write(data[len(data) // 2 + 7:])
            time.sleep(0.04)
        done.set()

    d.start(within=60)
    writer = threading.Thread(target=pbx)
    writer.start()
    try:
        for _ in range(2):
            time.sleep(0.8)
            d.kill()  # SIGKILL
            time.sleep(0.3)  # down for a while: the PBX writes on
            d.start(within=60)
    finally:
        writer.join()
    assert done.is_set()
    finish(d, any_database, len(lines), opened=3, within=60)
    assert_once(any_database, lines)


def test_a_stop_in_the_middle_of_a_large_backlog_resumes_where_the_journal_ends(
        tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    """SIGTERM while a large file is being read from its start: the chunk under way is fed whole, but its end
    was not counted, so the position saved at the stop went back to before it and the restart journalled the
    chunk's lines a second time."""
    path = tmp_path / "cdr.log"
    lines = ipo_lines(30_000, seed=5)
    append(path, lines)
    database = tmp_path / "smdrd.db"
    d = follower(tmp_path, database, path)
    daemons.append(d)
    for _ in range(3):  # stops at different points of the backlog
        d.start(within=60)
        deadline = time.monotonic() + 60
        while not 0 < len(journal(database)) < len(lines) and time.monotonic() < deadline:
            time.sleep(0.01)
        d.terminate()
        if len(journal(database)) == len(lines):
            break
    d.start(within=60)
    finish(d, database, len(lines), opened=1, within=120)
    assert_once(database, lines)


def test_a_reload_that_restarts_the_source_mid_backlog_journals_each_line_once(
        tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    """A SIGHUP reload that changes the source restarts it at once, with lines it fed still on their way to the
    journal (in the parse worker, pending in the writer): resuming at the last committed position read those
    again (1,737 of 30,000 doubled in a review's run). It resumes where the old source's lines were fed."""
    import signal

    from smdrd.testing import config_toml

    path = tmp_path / "cdr.log"
    lines = ipo_lines(30_000, seed=5)
    append(path, lines)
    database = tmp_path / "smdrd.db"
    d = follower(tmp_path, database, path)
    daemons.append(d)
    d.start(within=60)
    deadline = time.monotonic() + 60
    while len(journal(database)) < 2000 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(journal(database)) < len(lines), "the backlog was read before the reload: no test"
    changed = daemon_config(tmp_path, [file_source(path, poll_interval=0.06)], database={"path": str(database)})
    d.config_path.write_text(config_toml(changed))
    d.send_signal(signal.SIGHUP)
    d.wait_event("daemon.reloaded")
    finish(d, database, len(lines), opened=2, within=120)
    assert_once(database, lines)


# --- the daemon, what happened to the file while it was down (SQLite) --------------------------------------------


def test_from_start_false_still_journals_lines_appended_while_down(
        tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    """``from_start = false`` skipped what was there at every start, so the lines a PBX wrote while smdrd was
    stopped (an upgrade, a reboot) were never journalled. It now decides only the very first start."""
    path = tmp_path / "cdr.log"
    db = tmp_path / "smdrd.db"
    old, seen, while_down = ipo_lines(30, seed=5)[:10], ipo_lines(30, seed=5)[10:20], ipo_lines(30, seed=5)[20:]
    append(path, old)
    d = follower(tmp_path, db, path, from_start=False)
    daemons.append(d)
    d.start()
    settle(d, 1)  # opened at its end, and that is saved before any line arrives
    append(path, seen)
    wait_journalled(d, db, len(seen))
    d.terminate()
    append(path, while_down)
    d.start()
    finish(d, db, len(seen) + len(while_down), opened=2)
    assert_once(db, seen + while_down)


def test_a_file_rotated_while_down_has_its_rest_read_then_the_new_file(
        tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    """logrotate ran while smdrd was stopped: the old file (written on before it was moved) is beside the new one
    as ``cdr.log.1``. Its unread rest is journalled, then the new file from its start; nothing twice."""
    path = tmp_path / "cdr.log"
    db = tmp_path / "smdrd.db"
    lines = ipo_lines(45, seed=7)
    read, late, new = lines[:15], lines[15:30], lines[30:]
    append(path, read)
    d = follower(tmp_path, db, path)
    daemons.append(d)
    d.start()
    wait_journalled(d, db, len(read))
    d.terminate()
    append(path, late)
    os.rename(path, tmp_path / "cdr.log.1")
    append(path, new)
    d.start()
    finish(d, db, len(lines), opened=2)
    assert_once(db, lines)
    assert d.events("source.file_rotated_rest")[0]["rotated_to"] == str(tmp_path / "cdr.log.1")


def test_a_file_truncated_while_down_is_read_again_from_its_start(
        tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    """copytruncate ran while smdrd was stopped: the file is shorter than the saved position, so what it holds
    now is all new and is read from its start (and the log says why)."""
    path = tmp_path / "cdr.log"
    db = tmp_path / "smdrd.db"
    lines = ipo_lines(30, seed=9)
    before, after = lines[:20], lines[20:]
    append(path, before)
    d = follower(tmp_path, db, path)
    daemons.append(d)
    d.start()
    wait_journalled(d, db, len(before))
    d.terminate()
    os.truncate(path, 0)
    append(path, after)
    d.start()
    finish(d, db, len(lines), opened=2)
    assert_once(db, lines)
    assert len(d.events("source.file_truncated_while_stopped")) == 1


def test_a_line_cut_off_at_a_stop_is_read_whole_when_the_file_writes_on(
        tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    """The PBX was half-way through a record when smdrd stopped: the piece stays in the file (not journalled as
    a line of its own), and at the next start the whole record is read (not its second half alone, which no
    parser could make a call of)."""
    path = tmp_path / "cdr.log"
    db = tmp_path / "smdrd.db"
    first, cut = ipo_lines(2, seed=13)
    path.write_bytes(first + b"\r\n" + cut[:30])
    d = follower(tmp_path, db, path)
    daemons.append(d)
    d.start()
    finish(d, db, 1, opened=1)
    assert [raw for raw, _ in journal(db)] == [first]
    with path.open("ab") as fh:
        fh.write(cut[30:] + b"\r\n")
    d.start()
    finish(d, db, 2, opened=2)
    stored = journal(db)
    assert [raw for raw, _ in stored] == [first, cut]
    assert stored[1][1] == PARSED


def test_a_stop_inside_a_line_too_long_does_not_journal_it_twice(
        tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    """A line longer than a read chunk is journalled as too long as soon as it is (its end not there yet); a
    stop then saved a position inside it, and the next start went back to its start and journalled it again."""
    path = tmp_path / "cdr.log"
    db = tmp_path / "smdrd.db"
    first, after = ipo_lines(2, seed=17)
    path.write_bytes(first + b"\r\n" + b"x" * 100_000)  # a hostile line still being written
    d = follower(tmp_path, db, path)
    daemons.append(d)
    d.start()
    finish(d, db, 2, opened=1)
    with path.open("ab") as fh:
        fh.write(b"\r\n" + after + b"\r\n")
    d.start()
    finish(d, db, 3, opened=2)
    stored = journal(db)
    assert [raw[:10] for raw, _ in stored] == [first[:10], b"x" * 10, after[:10]]
    assert [status for _, status in stored] == [PARSED, "error", PARSED]


# --- the journal writer, on both stores ---------------------------------------------------------------------------


def _entry(i: int) -> JournalEntry:
    return JournalEntry(SOURCE, "cdr.log", 1_700_000_000_000_000 + i, "avaya-ipo", f"line {i}".encode(), "skipped")


@settings(max_examples=15, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.integers(0, 4), st.booleans()), min_size=1, max_size=12),
       batch_rows=st.integers(1, 5))
def test_writer_saves_the_last_position_given_with_the_lines_before_it(
        any_database: Path | str, steps: list[tuple[int, bool]], batch_rows: int) -> None:
    """Whatever the batches (one line each, or many), the position saved is the last one given, only once the
    lines submitted before it are committed, and a reopened writer reads it back."""
    if isinstance(any_database, Path):
        any_database.unlink(missing_ok=True)
    else:
        import psycopg

        with psycopg.connect(any_database, autocommit=True) as conn:
            conn.execute("DELETE FROM file_positions")

    async def run() -> tuple[FilePosition | None, FilePosition | None, int]:
        writer = journal_writer(any_database, batch_rows=batch_rows, commit_interval=0.01)
        await writer.open()
        task = asyncio.create_task(writer.run())
        n = 0
        last: FilePosition | None = None
        for lines, mark in steps:
            for _ in range(lines):
                writer.submit(_entry(n))
                n += 1
            if mark:
                last = FilePosition(SOURCE, "/var/log/cdr.log", 2049, 2 ** 63 + n, n * 10, 0, b"head")
                writer.submit_position(last)
            await asyncio.sleep(0)
        await writer.close()
        await task
        again = journal_writer(any_database)
        await again.open()
        saved = again.saved_position(SOURCE, "/var/log/cdr.log")
        await again.close()
        return last, saved, n

    last, saved, _ = asyncio.run(run())
    assert saved == last


def test_a_position_is_saved_in_the_commit_of_its_lines(tmp_path: Path) -> None:
    """The position and the lines it covers are one transaction: when the writer has committed the position,
    the journal holds every line submitted before it (never a position ahead of the journal)."""
    db = tmp_path / "smdrd.db"
    seen: list[tuple[int, int]] = []

    async def run() -> None:
        writer = journal_writer(db, batch_rows=7, commit_interval=0.005)
        await writer.open()
        task = asyncio.create_task(writer.run())
        for i in range(200):
            writer.submit(_entry(i))
            writer.submit_position(FilePosition(SOURCE, "cdr.log", 1, 2, i + 1))
            if i % 9 == 0:
                await asyncio.sleep(0.002)
                conn = sqlite3.connect(db)
                try:
                    row = conn.execute("SELECT (SELECT count(*) FROM lines), "
                                       "(SELECT byte_offset FROM file_positions)").fetchone()
                finally:
                    conn.close()
                if row[1] is not None:
                    seen.append((row[0], row[1]))
        await writer.close()
        await task

    asyncio.run(run())
    assert seen
    assert all(lines == offset for lines, offset in seen), seen  # offset i + 1 is committed with line i


def test_a_forgotten_position_is_deleted_after_the_ones_before_it(any_database: Path | str) -> None:
    """A spool directory's file gone for good has its position forgotten (`FilePosition.forget`): deleted in
    order with the positions given before it, from the database and from the writer's memory; others stay."""
    if isinstance(any_database, str):
        import psycopg

        with psycopg.connect(any_database, autocommit=True) as conn:
            conn.execute("DELETE FROM file_positions")

    async def run() -> tuple[FilePosition | None, FilePosition | None, FilePosition | None]:
        writer = journal_writer(any_database, batch_rows=2, commit_interval=0.01)
        await writer.open()
        task = asyncio.create_task(writer.run())
        kept = FilePosition(SOURCE, "/spool/cdr_b", 1, 3, 30)
        writer.submit(_entry(0))
        writer.submit_position(FilePosition(SOURCE, "/spool/cdr_a", 1, 2, 10))
        writer.submit_position(kept)
        writer.submit(_entry(1))
        writer.submit_position(FilePosition(SOURCE, "/spool/cdr_a", 1, 2, 20))
        writer.submit_position(FilePosition.forget(SOURCE, "/spool/cdr_a"))
        await writer.flushed()
        in_memory = writer.saved_position(SOURCE, "/spool/cdr_a")
        await writer.close()
        await task
        again = journal_writer(any_database)
        await again.open()
        try:
            return in_memory, again.saved_position(SOURCE, "/spool/cdr_a"), again.saved_position(SOURCE, "/spool/cdr_b")
        finally:
            await again.close()

    in_memory, forgotten, kept = asyncio.run(run())
    assert in_memory is None and forgotten is None
    assert kept is not None and kept.offset == 30


def test_a_position_whose_path_is_not_utf8_is_saved_escaped_and_never_stops_the_writer(tmp_path: Path) -> None:
    """A spool file named ``cdr_\\xff`` (a name the OS gives with surrogates) had a position no database takes as
    text: the writer's commit failed on it for good. Positions are saved with such a path escaped."""
    import asyncio

    from smdrd.store.sqlite.writer import JournalWriter

    async def run() -> None:
        writer = JournalWriter(tmp_path / "j.db", commit_interval=0.01)
        await writer.open()
        task = asyncio.create_task(writer.run())
        writer.submit(_entry(1))
        odd = "/spool/cdr_" + b"\xff".decode("utf-8", "surrogateescape")
        writer.submit_position(FilePosition(SOURCE, odd, 1, 2, 10))
        writer.submit(_entry(2))
        await writer.close()
        await task
        assert writer.stats.lines == 2

    asyncio.run(run())
    conn = sqlite3.connect(tmp_path / "j.db")
    try:
        assert conn.execute("SELECT path FROM file_positions").fetchall() == [("/spool/cdr_\\xff",)]
    finally:
        conn.close()
