"""``smdrd backup`` and ``smdrd restore``: real daemon processes, real SQLite files, the real command line.

The commands run as subprocesses (`CLI`: ``python -m smdrd``), as a user runs them.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from smdrd.testing import DaemonProcess, daemon_config, free_port, tcp_server_source
from tests.test_daemon import lines

CLI = [sys.executable, "-m", "smdrd"]

def smdrd(*args: str | Path, check: bool = False) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=60, check=False)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def pbx_daemon(folder: Path, port: int) -> DaemonProcess:
    """A real ``smdrd run`` on the shared test configuration (`smdrd.testing.daemon_config`) with one tcp-server
    source, "pbx", on ``port``: started, and listening."""
    d = DaemonProcess(folder, daemon_config(folder, [tcp_server_source("pbx", port)])).start()
    d.wait_port(port)
    return d


def count(db: Path, table: str = "calls") -> int:
    conn = sqlite3.connect(db)
    try:
        n: int = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        return n
    finally:
        conn.close()


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def wait_calls(db: Path, n: int, within: float = 15.0) -> int:
    deadline = time.monotonic() + within
    stored = 0
    while time.monotonic() < deadline:
        stored = count(db) if db.exists() else 0
        if stored >= n:
            return stored
        time.sleep(0.05)
    raise AssertionError(f"{stored} calls stored, expected {n}")


class Streamer(threading.Thread):
    """Sends lines to the daemon at ``rate`` lines a second until stopped (a PBX in busy hour)."""

    def __init__(self, port: int, rate: int = 1000, start_id: int = 1_000_000) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.rate = rate
        self.start_id = start_id
        self.sent = 0
        self.halt = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        while not self.halt.is_set():
            due = int((time.monotonic() - t0) * self.rate)
            if due > self.sent:
                batch = lines(due - self.sent, start=self.start_id + self.sent)
                self.sock.sendall(b"".join(b + b"\r\n" for b in batch))
                self.sent = due
            time.sleep(0.002)
        self.sock.close()


def imported_db(folder: Path, n: int, start: int = 1_000_000) -> Path:
    """A database holding ``n`` calls, written by ``smdrd import`` (the daemon's own pipeline)."""
    feed = folder / f"feed-{start}.txt"
    feed.write_bytes(b"".join(b + b"\r\n" for b in lines(n, start=start)))
    db = folder / "smdrd.db"
    proc = subprocess.run([sys.executable, "-m", "smdrd", "import", "-q", "-f", "avaya-ipo", "--database",
                           str(db), str(feed)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return db


@pytest.mark.slow
def test_backup_while_1000_lines_a_second_stream_in_holds_every_call_committed_before_it(
        tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    """A backup taken in busy hour opens cleanly and holds every call that was committed when it started,
    byte for byte; the daemon keeps committing during the backup, and loses nothing."""
    port = free_port()
    d = pbx_daemon(tmp_path, port)
    daemons.append(d)
    feeder = Streamer(port)
    feeder.start()
    wait_calls(d.db, 1500)
    # Everything committed up to now must be in the backup, exactly as stored.
    before = query(d.db, "SELECT * FROM calls ORDER BY id")
    lines_before = query(d.db, "SELECT * FROM lines ORDER BY id")
    backup_file = tmp_path / "backup.db"
    result = smdrd("backup", backup_file, "--config", d.config_path, check=True)
    during = count(d.db)
    time.sleep(0.5)
    feeder.halt.set()
    feeder.join()
    sent = feeder.sent
    wait_calls(d.db, sent)
    d.terminate()

    assert "integrity ok" in result.stdout
    assert not list(tmp_path.glob(".backup.db.tmp-*")), "the temporary copy was left behind"
    assert not Path(f"{backup_file}-wal").exists(), "a backup is one self-contained file"
    assert query(backup_file, "PRAGMA integrity_check") == [("ok",)]
    assert query(backup_file, "PRAGMA journal_mode") == [("delete",)]
    copied = query(backup_file, "SELECT * FROM calls ORDER BY id")
    assert len(copied) >= len(before)
    assert copied[:len(before)] == before
    assert query(backup_file, "SELECT * FROM lines ORDER BY id")[:len(lines_before)] == lines_before
    # A consistent snapshot: every call in the copy has its line, and nothing is half there.
    assert query(backup_file, "SELECT count(*) FROM calls WHERE line_id NOT IN (SELECT id FROM lines)") == [(0,)]
    assert len(copied) <= during
    # The stream went on while the backup ran, and every line sent arrived.
    assert query(d.db, "SELECT count(*) FROM lines") == [(sent,)]


def test_backup_refuses_to_overwrite_a_file_or_the_database_itself(tmp_path: Path) -> None:
    """`smdrd backup` onto an existing file (or the database) fails and says why, without touching it."""
    db = imported_db(tmp_path, 20)
    existing = tmp_path / "old.db"
    existing.write_bytes(b"keep me")
    proc = smdrd("backup", existing, "--database", db)
    assert proc.returncode != 0 and "already exists" in proc.stderr and "--force" in proc.stderr
    assert existing.read_bytes() == b"keep me"
    proc = smdrd("backup", db, "--database", db, "--force")
    assert proc.returncode != 0 and "database itself" in proc.stderr
    assert query(db, "SELECT count(*) FROM calls") == [(20,)]
    smdrd("backup", existing, "--database", db, "--force", check=True)
    assert query(existing, "SELECT count(*) FROM calls") == [(20,)]


def test_backup_of_a_missing_database_names_it(tmp_path: Path) -> None:
    proc = smdrd("backup", tmp_path / "b.db", "--database", tmp_path / "nope.db")
    assert proc.returncode != 0 and "nope.db" in proc.stderr
    assert not (tmp_path / "nope.db").exists(), "a backup must never create the database it reads"


@pytest.mark.slow
def test_restore_is_refused_while_the_daemon_runs_then_works_once_it_is_stopped(
        tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    """The documented procedure: stop, restore, start. Restoring under a running daemon is refused (the
    database is unchanged); after the restore the database is the backup exactly, and the daemon, started
    again, carries on after it."""
    port = free_port()
    d = pbx_daemon(tmp_path, port)
    daemons.append(d)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"".join(b + b"\r\n" for b in lines(100)))
        wait_calls(d.db, 100)
        backup_file = tmp_path / "backup.db"
        smdrd("backup", backup_file, "--config", d.config_path, check=True)
        sock.sendall(b"".join(b + b"\r\n" for b in lines(50, start=2_000_000)))
        wait_calls(d.db, 150)

    refused = smdrd("restore", backup_file, "--config", d.config_path)
    assert refused.returncode != 0
    assert "daemon" in refused.stderr and "--force" in refused.stderr, refused.stderr
    assert query(d.db, "SELECT count(*) FROM calls") == [(150,)]

    d.terminate()
    restored = smdrd("restore", backup_file, "--config", d.config_path, check=True)
    assert "100 calls" in restored.stdout
    assert query(d.db, "SELECT * FROM calls ORDER BY id") == query(backup_file, "SELECT * FROM calls ORDER BY id")
    assert query(d.db, "PRAGMA integrity_check") == [("ok",)]

    again = pbx_daemon(tmp_path, port)
    daemons.append(again)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"".join(b + b"\r\n" for b in lines(10, start=3_000_000)))
        wait_calls(again.db, 110)
    again.terminate()
    assert query(again.db, "SELECT count(*), max(id) FROM lines") == [(110, 110)]
    assert query(again.db, "PRAGMA integrity_check") == [("ok",)]


@pytest.mark.slow
def test_restore_with_force_under_a_running_daemon_keeps_the_database_sound(
        tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    """--force restores under a running daemon; the daemon's next lines land after the restored ones and
    the file stays sound (no old WAL replayed over the restored pages)."""
    db = imported_db(tmp_path, 30)
    backup_file = tmp_path / "backup.db"
    smdrd("backup", backup_file, "--database", db, check=True)
    port = free_port()
    d = pbx_daemon(tmp_path, port)
    daemons.append(d)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"".join(b + b"\r\n" for b in lines(20, start=2_000_000)))
        wait_calls(d.db, 50)
        smdrd("restore", backup_file, "--database", d.db, "--force", check=True)
        assert query(d.db, "SELECT count(*) FROM calls") == [(30,)]
        sock.sendall(b"".join(b + b"\r\n" for b in lines(5, start=3_000_000)))
        wait_calls(d.db, 35)
    d.terminate()
    assert query(d.db, "PRAGMA integrity_check") == [("ok",)]
    assert query(d.db, "SELECT count(*) FROM lines") == [(35,)]


def test_restore_verifies_the_backup_first_and_leaves_the_database_alone_if_it_is_bad(tmp_path: Path) -> None:
    """A damaged or foreign file is refused with the reason; the live database is not touched."""
    db = imported_db(tmp_path, 200)
    good = tmp_path / "good.db"
    smdrd("backup", good, "--database", db, check=True)
    live_before = db.read_bytes()

    damaged = tmp_path / "damaged.db"
    data = bytearray(good.read_bytes())
    page = 4096
    for offset in range(2 * page, len(data) - page, page):  # scribble over every page's header but the first
        data[offset:offset + 16] = b"\xff" * 16
    damaged.write_bytes(bytes(data))
    proc = smdrd("restore", damaged, "--database", db)
    assert proc.returncode != 0
    assert "damaged.db" in proc.stderr and ("integrity" in proc.stderr or "malformed" in proc.stderr), proc.stderr

    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    proc = smdrd("restore", foreign, "--database", db)
    assert proc.returncode != 0 and "not an smdrd database" in proc.stderr

    text = tmp_path / "notes.txt"
    text.write_text("not a database at all\n" * 100)
    proc = smdrd("restore", text, "--database", db)
    assert proc.returncode != 0 and "notes.txt" in proc.stderr
    assert db.read_bytes() == live_before


def test_restore_into_a_missing_database_creates_it(tmp_path: Path) -> None:
    """A new box: restoring last night's backup where no database exists yet."""
    db = imported_db(tmp_path, 25)
    backup_file = tmp_path / "backup.db"
    smdrd("backup", backup_file, "--database", db, check=True)
    target = tmp_path / "new" / "state" / "smdrd.db"
    smdrd("restore", backup_file, "--database", target, check=True)
    assert query(target, "SELECT count(*) FROM calls") == [(25,)]
    assert query(target, "PRAGMA journal_mode") == [("wal",)]
    assert not Path(f"{target}-wal").exists() or os.path.getsize(f"{target}-wal") == 0
