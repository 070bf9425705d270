"""Online backup, verification and restore of the SQLite journal, with SQLite's own backup API.

`backup` copies a database while the daemon keeps writing: the copy is one read transaction (one step of the
backup API over the whole file), which in WAL mode neither blocks the writer nor is restarted by its commits,
so the copy is the database exactly as it was at one commit. The copy is made in a temporary file beside the
destination, switched to a self-contained rollback-journal file, checked with ``PRAGMA integrity_check``,
synced, and only then renamed into place: a backup file that exists is complete.

`restore` writes a verified backup into the live database file through the same API (so the file keeps its
inode, owner and permissions, and SQLite's locks and WAL stay coherent), after `database_in_use` has checked
that no daemon has it open.

Plain, synchronous ``sqlite3``: the CLI calls it directly, the daemon would call it in a thread. Never here:
writing to the source of a backup, or replacing a database file behind SQLite's back (a rename under a WAL
would marry the old WAL to the new file).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from smdrd.errors import SmdrdError
from smdrd.store.schema import PRAGMAS, SCHEMA_VERSION

#: the byte of the ``-shm`` file on which every connection to a WAL database holds a shared lock for as long
#: as it is open (SQLite's unix VFS: ``UNIX_SHM_DMS``, 120 + 8 lock slots). A write lock on it succeeds only
#: when no other process has the database open.
_SHM_DMS_BYTE = 128


class BackupError(SmdrdError):
    """A backup or restore could not be made, or a file is not a sound smdrd database; says which and why."""


@dataclass(frozen=True, slots=True)
class DatabaseSummary:
    """What a verified database holds."""

    path: Path
    schema_version: int
    lines: int
    calls: int
    last_line_id: int
    size_bytes: int


@dataclass(frozen=True, slots=True)
class BackupResult:
    """A finished backup: the copy's summary and how long it took."""

    source: Path
    copy: DatabaseSummary
    seconds: float


def _uri(path: Path, mode: str) -> str:
    # URI form so that mode=rw never creates a missing file, and so odd characters in paths are quoted.
    from urllib.parse import quote

    return f"file:{quote(str(path.absolute()))}?mode={mode}"


def open_existing(path: Path, *, write: bool = False) -> sqlite3.Connection:
    """Open an existing database without ever creating one.

    Reads use a read-write connection when the file and its folder are writable, so the last connection to
    close cleans up the ``-wal`` and ``-shm`` files; otherwise read-only.

    Raises:
        BackupError: the file does not exist or cannot be opened.
    """
    if not path.is_file():
        raise BackupError(f"{path}: no such database file")
    writable = os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
    if write and not writable:
        raise BackupError(f"{path}: not writable by this user (run as the service's user or root)")
    try:
        conn = sqlite3.connect(_uri(path, "rw" if writable else "ro"), uri=True, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 5000")
    except sqlite3.Error as exc:
        raise BackupError(f"{path}: cannot open: {exc}") from None
    return conn


def database_in_use(path: Path) -> bool:
    """Whether another process (a running daemon) has the WAL database ``path`` open.

    Probes SQLite's own lock: every connection holds a shared lock on one byte of the ``-shm`` file while it
    is open. Must be called before this process opens a connection to ``path`` itself: POSIX locks belong to
    the process, and closing the probe's descriptor would drop that connection's locks.
    """
    shm = Path(f"{path}-shm")
    try:
        fd = os.open(shm, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False  # no connection has the database open in WAL mode: the last one removes the -shm file
    except PermissionError:
        return True  # without write access the lock cannot be probed: assume the worst
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, _SHM_DMS_BYTE)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            return True
        raise
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, _SHM_DMS_BYTE)
        return False
    finally:
        os.close(fd)


def summarise(conn: sqlite3.Connection, path: Path) -> DatabaseSummary:
    """Check ``conn`` with ``PRAGMA integrity_check`` and smdrd's schema, and count what it holds.

    Raises:
        BackupError: the database is damaged, is not an smdrd database, or is from a newer smdrd.
    """
    try:
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check(20)")]
        if problems != ["ok"]:
            raise BackupError(f"{path}: integrity check failed: " + "; ".join(problems))
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if version < 1 or not {"lines", "calls"} <= tables:
            raise BackupError(f"{path}: not an smdrd database (no journal tables)")
        if version > SCHEMA_VERSION:
            raise BackupError(f"{path}: schema version {version} is newer than this smdrd knows "
                              f"({SCHEMA_VERSION}); restore it with a newer smdrd")
        lines, last = conn.execute("SELECT count(*), coalesce(max(id), 0) FROM lines").fetchone()
        calls = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path}: not a readable SQLite database: {exc}") from None
    return DatabaseSummary(path, version, lines, calls, last, path.stat().st_size)


def verify(path: Path) -> DatabaseSummary:
    """Open ``path`` read-only and `summarise` it.

    Raises:
        BackupError: see `summarise`; or the file is missing.
    """
    if not path.is_file():
        raise BackupError(f"{path}: no such file")
    try:
        conn = sqlite3.connect(_uri(path, "ro"), uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise BackupError(f"{path}: cannot open: {exc}") from None
    try:
        return summarise(conn, path)
    finally:
        conn.close()


def _fsync_path(path: Path, *, directory: bool = False) -> None:
    fd = os.open(path, (os.O_RDONLY | os.O_DIRECTORY) if directory else os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup(source: Path, destination: Path, *, overwrite: bool = False) -> BackupResult:
    """Copy the database ``source`` to ``destination`` consistently, while others may be writing to it.

    Args:
        source: the live database.
        destination: the backup file to write (a self-contained SQLite file, no ``-wal``).
        overwrite: replace ``destination`` if it exists.

    Raises:
        BackupError: the source is missing or damaged, the destination exists (without ``overwrite``) or is
            the source itself, or the copy failed its integrity check.
    """
    started = time.monotonic()
    destination = destination.absolute()
    if destination.exists():
        if source.exists() and destination.samefile(source):
            raise BackupError(f"{destination}: that is the database itself; back up to another file")
        if not overwrite:
            raise BackupError(f"{destination}: already exists (pass --force to replace it)")
    if not destination.parent.is_dir():
        raise BackupError(f"{destination.parent}: no such folder")
    tmp = destination.with_name(f".{destination.name}.tmp-{os.getpid()}")
    src = open_existing(source)
    try:
        dst = sqlite3.connect(tmp, isolation_level=None)
        try:
            # One step over every page: a single read transaction, hence a snapshot at one commit. In WAL mode
            # the daemon's commits go on meanwhile; several smaller steps would restart on each of them.
            src.backup(dst, pages=-1)
            dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file, openable read-only
            summary = summarise(dst, tmp)
        finally:
            dst.close()
    except sqlite3.Error as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise BackupError(f"backup of {source} failed: {exc}") from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    finally:
        src.close()
    _fsync_path(tmp)
    os.replace(tmp, destination)
    _fsync_path(destination.parent, directory=True)
    copy = DatabaseSummary(destination, summary.schema_version, summary.lines, summary.calls,
                           summary.last_line_id, summary.size_bytes)
    return BackupResult(source, copy, time.monotonic() - started)


def restore(backup_file: Path, target: Path, *, force: bool = False) -> DatabaseSummary:
    """Replace the contents of the database ``target`` with the verified backup ``backup_file``.

    Args:
        backup_file: a file written by `backup` (or any sound smdrd database).
        target: the daemon's database; created (with its folder) if missing.
        force: restore even though a running process has ``target`` open.

    Raises:
        BackupError: the backup is damaged or not an smdrd database, or ``target`` is in use (without
            ``force``), or the restore failed.
    """
    checked = verify(backup_file)
    target = target.absolute()
    if target.exists() and backup_file.absolute().samefile(target):
        raise BackupError(f"{backup_file}: that is the database itself")
    if not force and database_in_use(target):
        raise BackupError(f"{target}: the database is open in another process (is the daemon running? stop it "
                          "first: systemctl stop smdrd), or pass --force")
    created = not target.exists()
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        src = sqlite3.connect(_uri(backup_file.absolute(), "ro"), uri=True, isolation_level=None)
        dst = sqlite3.connect(target, isolation_level=None)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open for restore: {exc}") from None
    try:
        for pragma in PRAGMAS:
            dst.execute(pragma)
        # The backup API writes through SQLite's locks and WAL, so a daemon started afterwards (or one still
        # running, with --force) sees the restored pages and never an old WAL replayed over them.
        src.backup(dst, pages=-1)
        dst.execute("PRAGMA journal_mode = WAL")
        result = summarise(dst, target)
        dst.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as exc:
        raise BackupError(f"restore into {target} failed: {exc}") from None
    finally:
        src.close()
        dst.close()
    if created and os.geteuid() == 0:
        # Run as root for a service user: hand the new file to the owner of its folder, as the daemon needs.
        st = target.parent.stat()
        os.chown(target, st.st_uid, st.st_gid)
    if result.calls != checked.calls or result.lines != checked.lines:
        raise BackupError(f"restore into {target} is incomplete: {result.lines} lines, {result.calls} calls "
                          f"instead of {checked.lines} and {checked.calls}")
    return result
