"""The journal: every line stored raw with its outcome, committed in batches, re-sent lines counted once."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from smdrd.cli import main
from smdrd.config import SiteConfig
from smdrd.core import ERROR, PARSED, SKIPPED, Entry, process_frame
from smdrd.framing import Oversized
from smdrd.ingest import Hooks, SourceIngest
from smdrd.parsers.avaya_ipo import AvayaIPOfficeParser
from smdrd.parsing import Parser
from smdrd.record import CallRecord
from smdrd.store.sqlite.schema import SCHEMA_VERSION, connect
from smdrd.store.sqlite.writer import JournalWriter

FIXTURES = Path(__file__).parent / "fixtures"
SAMPLE = FIXTURES / "avaya-ipo" / "ipo500-2017-07.smdr"
LINE = (b"2017/07/01 08:30:22,00:01:01,0,217,O,600988600,0600988600,,0,1005727,0,E217,GRZYBEK,T9005,Line 5.0,"
        b"0,0,,,,,,,,,,,U,GRZYBEK,,192.168.0.201,20806,192.168.0.201,20809")


def frame(raw: bytes | Oversized, parser: Parser | None = None) -> Entry:
    return process_frame(raw, parser or AvayaIPOfficeParser(), "utf-8", source="s", peer="p", received_at=1)


class Exploding(Parser):
    name = "exploding"
    description = "a parser with a bug"

    def parse(self, line: str) -> Sequence[CallRecord] | None:
        raise ZeroDivisionError("oops")


def test_outcomes_of_one_line() -> None:
    assert frame(LINE).status == PARSED and len(frame(LINE).calls) == 1
    assert frame(b"DATETIME,DURATION,RING").status == SKIPPED
    bad = frame(b"garbage \xff\xfe")
    assert bad.status == ERROR and bad.raw == b"garbage \xff\xfe" and "at least 17" in (bad.error or "")


def test_oversized_line_is_an_error_entry_with_its_head() -> None:
    e = frame(Oversized(b"x" * 10, 10))
    assert e.status == ERROR and e.raw == b"x" * 10 and "longer than 10 bytes" in (e.error or "")


def test_a_parser_bug_costs_no_line() -> None:
    e = frame(LINE, Exploding())
    assert e.status == ERROR and e.raw == LINE and "ZeroDivisionError" in (e.error or "")


async def eventually(check: Callable[[], bool], within: float = 30.0) -> None:
    """Wait until ``check()`` holds; ``within`` only stops a hung test."""
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met"
        await asyncio.sleep(0.01)


async def make_writer(path: Path, **kw: float) -> tuple[JournalWriter, asyncio.Task[None]]:
    w = JournalWriter(path, **kw)  # type: ignore[arg-type]
    await w.open()
    return w, asyncio.create_task(w.run())


async def test_lines_are_committed_by_the_interval_timer_byte_for_byte(tmp_path: Path) -> None:
    """51 lines, far fewer than ``batch_rows``, and no `close`: only the commit interval's timer can commit
    them, so a writer that waits for a full batch or a stop hangs here (the 30 s only stops a hung test)."""
    db = tmp_path / "j.db"
    w, task = await make_writer(db, commit_interval=0.05)
    raws = [LINE.replace(b"1005727", str(1005727 + i).encode()) for i in range(50)] + [b"\xff\x00bad"]
    for raw in raws:
        w.submit(frame(raw))
    await asyncio.wait_for(w.flushed(), 30)
    conn = sqlite3.connect(db)
    assert [r[0] for r in conn.execute("SELECT raw FROM lines ORDER BY id")] == raws
    assert conn.execute("SELECT count(*) FROM calls").fetchone()[0] == 50
    assert conn.execute("SELECT status, error IS NOT NULL FROM lines WHERE id = 51").fetchone() == ("error", 1)
    await w.close()
    await task


async def test_re_sent_lines_are_journalled_but_counted_once(tmp_path: Path) -> None:
    """A PBX re-sending its buffer after a reconnect must not double the calls."""
    db = tmp_path / "j.db"
    w, task = await make_writer(db, commit_interval=0.01)
    w.submit(frame(LINE))
    await w.flushed()
    w.submit(frame(LINE))
    w.submit(frame(LINE + b"\r"))  # the same record with a stray line end byte
    await w.close()
    await task
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM calls").fetchone()[0] == 1
    assert [r[0] for r in conn.execute("SELECT status FROM lines ORDER BY id")] == [
        "parsed", "duplicate", "duplicate"]
    assert w.stats.duplicates == 2 and w.stats.calls == 1


async def test_backpressure_when_pending_rows_reach_the_limit(tmp_path: Path) -> None:
    w = JournalWriter(tmp_path / "j.db", commit_interval=0.01, max_pending=100)
    await w.open()
    for i in range(100):
        w.submit(frame(LINE.replace(b"1005727", str(i).encode())))
    waiter = asyncio.create_task(w.wait_capacity())
    await asyncio.sleep(0.05)
    assert not waiter.done(), "sources must wait while 100 rows are pending"
    task = asyncio.create_task(w.run())
    await asyncio.wait_for(waiter, 30)  # released by the commits alone; 30 s only stops a hung test
    await w.close()
    await task


async def test_a_locked_database_delays_commits_but_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    w, task = await make_writer(db, commit_interval=0.01)
    blocker = sqlite3.connect(db, isolation_level=None, timeout=0)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    w._db and await w._db.execute("PRAGMA busy_timeout = 50")
    for i in range(20):
        w.submit(frame(LINE.replace(b"1005727", str(i).encode())))
    await eventually(lambda: w.stats.failures >= 1)  # the writer tried, and met the lock
    assert w.pending == 20
    blocker.execute("COMMIT")
    await asyncio.wait_for(w.flushed(), 10)
    assert sqlite3.connect(db).execute("SELECT count(*) FROM calls").fetchone()[0] == 20
    await w.close()
    await task


def test_schema_migrations_set_user_version(tmp_path: Path) -> None:
    conn = connect(str(tmp_path / "m.db"))
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    connect(str(tmp_path / "m.db"))  # idempotent


async def test_ingest_stream_journals_every_line_of_a_chunked_stream(tmp_path: Path) -> None:
    db = tmp_path / "j.db"
    w, task = await make_writer(db, commit_interval=0.01)
    ingest = SourceIngest(name="pbx", format="avaya-ipo", site=SiteConfig(timezone="Europe/Warsaw"), writer=w,
                          hooks=Hooks())
    stream = ingest.open_stream("127.0.0.1:5000")
    data = SAMPLE.read_bytes()
    for i in range(0, len(data), 777):
        await stream.feed(data[i:i + 777])
    await stream.close()
    await w.close()
    await task
    conn = sqlite3.connect(db)
    n_lines = len([ln for ln in data.splitlines() if ln.strip()])
    assert conn.execute("SELECT count(*) FROM lines").fetchone()[0] == n_lines
    assert conn.execute("SELECT count(*) FROM lines WHERE status = 'error'").fetchone()[0] == 0
    assert ingest.counters.skipped == 1 and ingest.counters.errors == 0
    start = conn.execute("SELECT start FROM calls ORDER BY id LIMIT 1").fetchone()[0]
    assert start == "2017-07-01T08:13:24+02:00"


def test_import_of_the_real_sample_parses_every_record(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """The IPO 500 capture imports whole; its collector header is skipped, not counted as an error."""
    db = tmp_path / "imp.db"
    assert main(["import", "--format", "avaya-ipo", "--database", str(db), str(SAMPLE)]) == 0
    err = capsys.readouterr().err
    assert "0 errors" in err and "1 skipped" in err
    conn = sqlite3.connect(db)
    records = sum(1 for ln in SAMPLE.read_bytes().splitlines() if ln.strip()) - 1
    assert conn.execute("SELECT count(*) FROM calls").fetchone()[0] == records
    # Importing the same file again adds no call.
    assert main(["import", "--format", "avaya-ipo", "--database", str(db), str(SAMPLE)]) == 0
    assert f"{records} already stored" in capsys.readouterr().err
    assert conn.execute("SELECT count(*) FROM calls").fetchone()[0] == records


def test_import_counts_garbage_as_errors_and_keeps_it(tmp_path: Path) -> None:
    src = tmp_path / "mixed.log"
    shutil.copy(SAMPLE, src)
    with src.open("ab") as fh:
        fh.write(b"\r\n\x8f\xff random \x00 bytes\r\n" + b"A" * 2_000_000 + b"\r\n")
    db = tmp_path / "imp.db"
    assert main(["import", "-q", "--format", "avaya-ipo", "--database", str(db), str(src)]) == 1
    conn = sqlite3.connect(db)
    errors = conn.execute("SELECT raw, error FROM lines WHERE status = 'error' ORDER BY id").fetchall()
    assert [raw for raw, _ in errors[:2]] == [b"\x8f\xff random ", b" bytes"]  # NUL ends a line
    assert "longer than" in errors[2][1]


@pytest.mark.parametrize(("fmt", "name"), [("cisco-cucm", "cdr"), ("avaya-ipo", "ipo500-2017-07")])
def test_multi_leg_calls_are_counted_once(tmp_path: Path, fmt: str, name: str) -> None:
    """A call with recording legs (Cisco) or transfer segments (IP Office) is stored leg by leg under one
    call key, and the report rollups count it once."""
    db = tmp_path / "legs.db"
    assert main(["import", "-q", "--format", fmt, "--database", str(db),
                 str(FIXTURES / fmt / f"{name}.smdr")]) == 0
    conn = sqlite3.connect(db)
    keys, legs = conn.execute("SELECT count(DISTINCT call_key), count(*) FROM calls").fetchone()
    assert legs > keys  # some calls have several legs...
    assert conn.execute("SELECT sum(calls) FROM rollup_daily").fetchone()[0] == keys  # ...counted once
    if fmt == "cisco-cucm":
        assert (keys, legs) == (1, 3)
        kinds = [r[0] for r in conn.execute("SELECT json_extract(extra, '$.leg_type') FROM calls ORDER BY leg")]
        assert kinds[1:] == ["recording", "recording"]


async def test_a_stop_that_cannot_commit_gives_up_and_says_so(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM while commits keep failing (a full disk, a lock that never goes): the daemon does not hang
    until systemd kills it; it gives up after STOP_COMMIT_TIMEOUT, logs what is lost and exits 1."""
    import smdrd.daemon as daemon_module
    from smdrd.config import Settings
    from smdrd.daemon import Daemon

    monkeypatch.setattr(daemon_module, "STOP_COMMIT_TIMEOUT", 0.5)
    db = tmp_path / "stuck.db"
    settings = Settings.model_validate({"database": {"path": str(db), "commit_interval_ms": 10},
                                        "http": {"enabled": False}})
    daemon = Daemon(settings, features=())
    task = asyncio.create_task(daemon.run())
    await daemon.ready.wait()
    blocker = sqlite3.connect(db, isolation_level=None, timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")  # nothing can be written any more
    assert daemon.writer._db is not None
    await daemon.writer._db.execute("PRAGMA busy_timeout = 20")
    daemon.writer.submit(frame(LINE))
    await asyncio.sleep(0.2)
    daemon.request_stop()
    assert await asyncio.wait_for(task, 30) == 1  # without the give-up it waits forever; 30 s stops that
    blocker.execute("ROLLBACK")


def test_parallel_import_stores_exactly_what_the_in_process_import_stores(tmp_path: Path) -> None:
    """The worker process runs the same pipeline: the journals are the same, row for row (bar receive times)."""
    src = tmp_path / "mixed.log"
    shutil.copy(SAMPLE, src)
    with src.open("ab") as fh:
        fh.write(b"\r\nnot smdr\r\n")
    tables = {}
    for mode in ("parallel", "in-process"):
        db = tmp_path / f"{mode}.db"
        extra = ["--in-process"] if mode == "in-process" else []
        assert main(["import", "-q", "--format", "avaya-ipo", "--database", str(db), *extra, str(src)]) == 1
        conn = sqlite3.connect(db)
        tables[mode] = (
            conn.execute("SELECT id, source, peer, format, raw, status, error FROM lines ORDER BY id").fetchall(),
            conn.execute("SELECT line_id, uid, call_key, leg, start, duration, extension, number, cost_micros "
                         "FROM calls ORDER BY id").fetchall(),
        )
    assert tables["parallel"] == tables["in-process"]
    assert len(tables["parallel"][0]) == 1444


def test_the_import_worker_sends_its_last_lines_in_small_batches(tmp_path: Path) -> None:
    """What the worker holds when it reads the last chunk of the last file goes at once, and the rest in batches
    of `TAIL_BATCH` lines (the import ends with a small commit, not a whole batch's): every line, once, in order."""
    import multiprocessing
    import threading

    from smdrd.cli.import_ import TAIL_BATCH, WORKER_CHUNK, _parse_files
    from smdrd.config import TariffConfig

    sample = SAMPLE.read_bytes().rstrip(b"\r\n") + b"\n"
    src = tmp_path / "long.log"
    src.write_bytes(sample * 12)  # three chunks: the first two's lines fit in one 20,000-line batch
    assert 2 * WORKER_CHUNK < src.stat().st_size < 3 * WORKER_CHUNK
    receiver, sender = multiprocessing.Pipe(duplex=False)
    got: list[tuple[str, object]] = []

    def read() -> None:
        while True:
            got.append(receiver.recv())
            if got[-1][0] in {"done", "error"}:
                return

    reader = threading.Thread(target=read)
    reader.start()
    _parse_files(sender, {"files": [str(src)], "format": "avaya-ipo", "source": "import", "encoding": None,
                          "year": None, "options": {}, "site": SiteConfig().model_dump(mode="json"),
                          "tariff": TariffConfig().model_dump(mode="json"), "version": None, "base_dir": None,
                          "batch": 20_000})
    reader.join(30)
    batches = [payload for kind, payload in got if kind == "rows"]
    sizes = [len(b) for b in batches]  # type: ignore[arg-type]
    assert sizes[0] > TAIL_BATCH and len(sizes) >= 3 and max(sizes[1:]) <= TAIL_BATCH, sizes
    raws = [line[4] for b in batches for line in b.lines]  # type: ignore[attr-defined]
    assert raws == [ln for ln in (sample * 12).splitlines() if ln]


_DIE_AFTER_COMMITS = """
import os, sys
from smdrd.core import process_frame
from smdrd.framing import Framer
from smdrd.parsers.avaya_ipo import AvayaIPOfficeParser
from smdrd.store.sqlite.bulk import BulkWriter, RowBatch
writer = BulkWriter(sys.argv[1])
writer.open()
framer, parser = Framer(1 << 20), AvayaIPOfficeParser()
frames = framer.feed(open(sys.argv[2], "rb").read()) + framer.close()
for i in range(0, len(frames), 400):
    batch = RowBatch()
    for f in frames[i:i + 400]:
        batch.add(process_frame(f, parser, "utf-8", source="import", peer=sys.argv[2], received_at=0))
    assert writer.commit(batch)
os._exit(0)  # killed: no close, so no checkpoint; the batches are only in the WAL
"""


def test_an_import_killed_after_its_commits_keeps_them_and_a_reimport_adds_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The import's connection checkpoints rarely (`IMPORT_PRAGMAS`): what it committed before it died is in the
    WAL, and opening the database replays it whole, rollups in step; importing the file again adds no call."""
    import subprocess
    import sys

    from smdrd.store.sqlite.rollups import ROLLUPS, backfill_sql

    db = tmp_path / "killed.db"
    subprocess.run([sys.executable, "-c", _DIE_AFTER_COMMITS, str(db), str(SAMPLE)], check=True)
    assert db.with_name("killed.db-wal").stat().st_size > 0
    conn = connect(str(db))
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    lines = sum(1 for ln in SAMPLE.read_bytes().splitlines() if ln.strip())
    calls = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
    assert conn.execute("SELECT count(*) FROM lines").fetchone()[0] == lines and calls == lines - 1
    for rollup in ROLLUPS:  # each rollup equals a recomputation from the calls
        if rollup.finer is None:
            conn.execute(f"CREATE TEMP TABLE fresh AS SELECT * FROM {rollup.table} WHERE 0")
            conn.execute(backfill_sql(rollup).replace(f"INTO {rollup.table}", "INTO temp.fresh"))
            assert sorted(conn.execute("SELECT * FROM temp.fresh")) == sorted(
                conn.execute(f"SELECT * FROM {rollup.table}")), rollup.table
            conn.execute("DROP TABLE temp.fresh")
    conn.close()
    assert main(["import", "--format", "avaya-ipo", "--database", str(db), str(SAMPLE)]) == 0
    assert f"{calls} already stored" in capsys.readouterr().err
    assert sqlite3.connect(db).execute("SELECT count(*) FROM calls").fetchone()[0] == calls


#: Avaya CM: two finished calls, then a "G" ring record that the parser holds for the call's own record, which
#: this file never brings: the end of the file releases it as a call of its own (an unanswered ring).
HELD_AT_THE_END = (
    "112026 0004 00169 7    9 9003    011442077934843        309             001           0     0\r\n"
    "112026 0010 00355 7    9 9005         2126462740        217             001           0     0\r\n"
    "112026 0020 00008 G                          205 2127141456         001               0     0\r\n")


@pytest.mark.parametrize("mode", [[], ["--in-process"]])
def test_a_call_released_at_the_end_of_a_file_is_stored_once_when_the_file_is_imported_again(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], mode: list[str]) -> None:
    """The released call's uid came from the stream (its peer and the time it ended), so every import of the same
    file stored it again. Now it is a digest of the call itself, and the second import finds it stored."""
    data = tmp_path / "cm.txt"
    data.write_text(HELD_AT_THE_END)
    db = tmp_path / "cm.db"
    command = ["import", "--format", "avaya-cm", "--database", str(db), "--year", "2026", *mode, str(data)]
    assert main(command) == 0
    assert main(command) == 0
    assert "3 already stored" in capsys.readouterr().err.splitlines()[-1]
    conn = sqlite3.connect(db)
    assert sorted(conn.execute("SELECT extension, duration, ring FROM calls")) == [
        ("205", 0, 8), ("217", 355, None), ("309", 169, None)]
    assert conn.execute("SELECT sum(calls) FROM rollup_days").fetchone() == (3,)
    conn.close()


def test_a_worker_failure_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A problem the parser process meets (here a broken rate deck) ends the import with its message."""
    (tmp_path / "rates.csv").write_text("name,prefix,rate\nBad,44x,0.01\n")
    config = tmp_path / "smdrd.toml"
    config.write_text(f'[database]\npath = "{tmp_path / "x.db"}"\n[tariff]\ndecks = ["rates.csv"]\n')
    assert main(["import", "-q", "--format", "avaya-ipo", "--config", str(config), str(SAMPLE)]) == 2
    assert "rates.csv:2" in capsys.readouterr().err


def test_the_call_feed_never_carries_the_authorisation_code() -> None:
    """The MQTT call payload was zip(CALL_COLUMNS, row), which published authorisation codes."""
    import dataclasses

    from smdrd.journal import RatedCall

    entry = frame(LINE)
    call = entry.calls[0]
    secret = dataclasses.replace(call, record=dataclasses.replace(call.record, auth_code="4321"))
    assert isinstance(secret, RatedCall)
    payload = secret.to_json("pbx")
    assert "auth_code" not in payload and "4321" not in str(payload)
    assert payload["uid"] == call.uid and payload["source"] == "pbx" and payload["number"] == call.record.number


def test_an_in_process_import_that_fails_half_way_commits_what_it_read_and_ends(tmp_path: Path) -> None:
    """A file that goes between the command's check and its turn (a log rotated away) raised out of the import
    with the writer still open: the first file's calls were never committed, and the process waited at exit for
    the database's thread for ever."""
    import subprocess
    import sys

    db, gone = tmp_path / "half.db", tmp_path / "rotated-away.txt"
    script = f"""
import argparse, asyncio
from smdrd.cli.import_ import import_files
from smdrd.config import Settings
settings = Settings.model_validate({{"database": {{"path": {str(db)!r}}}}})
args = argparse.Namespace(files=[{str(SAMPLE)!r}, {str(gone)!r}], batch=1000, source="import", format="avaya-ipo",
                          encoding=None, year=None, quiet=True)
asyncio.run(import_files(settings, args))
"""
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1 and "FileNotFoundError" in done.stderr, done.stderr[-2000:]
    conn = sqlite3.connect(db)
    expected = sum(1 for line in SAMPLE.read_bytes().splitlines() if line.strip())
    assert conn.execute("SELECT count(*) FROM lines").fetchone()[0] == expected
    conn.close()
