"""The database cannot take writes for a while: locked by another program, or the disk full. Lines wait in the
daemon (bounded by max_pending_rows) and are written when it clears; nothing is lost and the daemon lives on."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from smdrd.testing import DaemonProcess, free_port, tcp_server_source
from tests.faults.conftest import Ledger, base_config, ipo_lines, push_lines, scaled, stored_lines, wait_stored

pytestmark = pytest.mark.faults

#: the daemon's SQLite busy timeout (smdrd.store.sqlite.schema.PRAGMAS): a lock held longer fails a commit.
BUSY_TIMEOUT = 5.0


def _hold(db: Path, how: str, seconds: float, held: threading.Event) -> None:
    conn = sqlite3.connect(db, isolation_level=None, timeout=30)
    try:
        if how == "reader":
            conn.execute("BEGIN")
            conn.execute("SELECT count(*) FROM lines").fetchone()  # a read transaction: a long report
        else:
            conn.execute(f"BEGIN {how.upper()}")
        held.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
    finally:
        conn.close()


@pytest.mark.parametrize("how", ["immediate", "exclusive", "reader"])
async def test_database_locked_for_seconds_lines_wait_and_nothing_is_lost(
        tmp_path: Path, daemons: list[DaemonProcess], how: str) -> None:
    """Another program holds the database (a writer's BEGIN IMMEDIATE or EXCLUSIVE, longer than the 5 s busy
    timeout; or a long read transaction) while 300 lines a second stream in. The daemon's commits fail and are
    retried (a writer lock) or carry on (a reader: WAL), every line is journalled once, in order, and the
    daemon stays up. A user running a backup script or a long report would see calls missing, or the daemon
    dead."""
    port = free_port()
    d = DaemonProcess(tmp_path, base_config(tmp_path, [tcp_server_source("push", port)]))
    daemons.append(d)
    d.start()
    d.wait_event("source.listening")
    ledger = Ledger("push")
    hold = scaled(7, 6) + 0.0
    lines = ipo_lines(int(300 * (hold + 4)), seed=41)
    sender = asyncio.create_task(push_lines(port, lines, 300, ledger))
    await asyncio.sleep(1.5)
    held = threading.Event()
    holder = asyncio.create_task(asyncio.to_thread(_hold, d.db, how, hold, held))
    await asyncio.to_thread(held.wait, 10)
    before = len(stored_lines(d.db, "push"))
    await asyncio.sleep(hold - 1.0)
    during = len(stored_lines(d.db, "push"))
    await holder
    await sender
    await wait_stored(d.db, "push", len(ledger.written), within=40)
    assert d.alive(), d.log_text()[-3000:]
    failures = d.events("journal.commit_failed")
    print(f"{how}: held {hold:.0f} s; {len(failures)} failed commits, stored {before} -> {during} while held")
    if how == "reader":
        assert during > before, "a reader must not stop the journal (WAL)"
    else:
        assert failures, "the lock was not felt: the scenario did not inject its fault"
        assert d.events("journal.commit_recovered")
    await d.aterminate()
    ledger.check(d.db)
    d.assert_clean_log()


# --- disk full ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def small_filesystem(folder: Path, size_mib: int) -> Iterator[Path]:
    """A tmpfs of ``size_mib`` mounted on ``folder`` (root only); skips the test where mounting is refused."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(folder)],
                             capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip()}); the rlimit variant runs")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(path: Path) -> int:
    """Write ``path`` until the filesystem is full; return its size."""
    block = b"\0" * 65536
    written = 0
    with path.open("wb", buffering=0) as fh:
        for size in (65536, 4096, 512):
            with contextlib.suppress(OSError):
                while True:
                    written += fh.write(block[:size])
    return written


@pytest.mark.parametrize("how", ["tmpfs", "rlimit"])
async def test_disk_full_lines_wait_and_are_written_when_space_returns(
        tmp_path: Path, daemons: list[DaemonProcess], how: str) -> None:
    """The disk fills up while 300 lines a second stream in: commits fail ("database or disk is full") and are
    retried, the daemon stays up and keeps reading, and when space returns every line is journalled once, in
    order. ``tmpfs``: a real full filesystem (a small tmpfs, filled with a ballast file that is then deleted).
    ``rlimit``: where mounting is not allowed, the daemon's file-size limit (RLIMIT_FSIZE, lowered and then
    raised again with prlimit) makes its writes fail the same way without root. A user whose /var filled up
    would see calls lost, or the daemon crash-looping."""
    port = free_port()
    folder = tmp_path / "db"
    ledger = Ledger("push")
    with contextlib.ExitStack() as stack:
        if how == "tmpfs":
            stack.enter_context(small_filesystem(folder, 16))
        else:
            folder.mkdir()
        config = base_config(folder, [tcp_server_source("push", port)])
        d = DaemonProcess(tmp_path, config)
        daemons.append(d)
        d.start()
        d.wait_event("source.listening")
        sender = asyncio.create_task(push_lines(port, ipo_lines(300 * scaled(10, 7), seed=51), 300, ledger))
        await asyncio.sleep(1.0)
        ballast = folder / "ballast"
        if how == "tmpfs":
            filled = await asyncio.to_thread(_fill, ballast)
            print(f"tmpfs filled with a {filled / 2**20:.1f} MiB ballast file")
        else:
            sizes = [p.stat().st_size for p in (d.db, d.log, Path(f"{d.db}-wal")) if p.exists()]
            limit = max(sizes) + 128 * 1024
            resource.prlimit(d.pid, resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
            print(f"the daemon's file-size limit set to {limit / 1024:.0f} KiB")
        await d.await_event("journal.commit_failed", 2, within=30)
        await asyncio.sleep(1.0)
        assert d.alive(), d.log_text()[-3000:]
        stalled = len(stored_lines(d.db, "push"))
        if how == "tmpfs":
            ballast.unlink()
        else:
            resource.prlimit(d.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        await sender
        await wait_stored(d.db, "push", len(ledger.written), within=40)
        failures = d.events("journal.commit_failed")
        print(f"{how}: {len(failures)} failed commits ({failures[0]['error']!r}); {stalled} lines stored when "
              f"space returned, then all {len(ledger.written)}")
        assert d.events("journal.commit_recovered")
        await d.aterminate()
        ledger.check(d.db)
        d.assert_clean_log()
