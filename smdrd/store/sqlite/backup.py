"""Online backup, verification and restore of the SQLite journal, with SQLite's own backup API.

`backup` copies a database while the daemon keeps writing: the copy is one read transaction (one step of the
backup API over the whole file), which in WAL mode neither blocks the writer nor is restarted by its commits,
so the copy is the database exactly as it was at one commit. The copy is made in a private (0600) temporary
file beside the destination, switched to a self-contained rollback-journal file, verified (`summarise`),
synced, and only then renamed into place: a backup file that exists is complete, readable by its owner only
(it holds every call), and one that `restore` accepts.

Verification (`summarise`) is ``PRAGMA integrity_check``, ``PRAGMA foreign_key_check`` and the **whole schema**:
every table (columns with type, not-null, default and key; ``WITHOUT ROWID``/``STRICT``; foreign keys), index
(unique, partial, its columns), trigger and view, compared with a reference made by running this version's
migrations (`smdrd.store.sqlite.schema.MIGRATIONS`) on a fresh in-memory database, and the SQL text of each object
compared token by token (comments and spacing aside). Anything more, less or different is refused, and the
reason names it. A file holds the schema of exactly one ``user_version``: a newer one than this smdrd writes
is refused; an older one must match that version's migrations exactly, and is then brought up to date by the
same migrations the daemon runs at start.

`restore` never touches the live database before the candidate has passed: it copies the candidate into a
private temporary file beside the live one, verifies *that copy* (a candidate changed after the check cannot
slip through), migrates the copy if it is older, verifies it again, and only then writes it into the live
database through the backup API, in one transaction, after `database_in_use` has checked that no daemon has it
open. Writing through SQLite rather than renaming the file keeps its inode, owner and permissions, keeps a
daemon running under ``--force`` on the same file, and never marries an old ``-wal`` to new pages.

Plain, synchronous ``sqlite3``: the CLI calls it directly, the daemon would call it in a thread. Never here:
writing to the source of a backup or to a restore's candidate, or replacing a database file behind SQLite's
back (a rename under a WAL would marry the old WAL to the new file).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import os
import re
import sqlite3
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from smdrd.errors import SmdrdError
from smdrd.store.sqlite.schema import MIGRATIONS, PRAGMAS, SCHEMA_VERSION, migrate

#: the byte of the ``-shm`` file on which every connection to a WAL database holds a shared lock for as long
#: as it is open (SQLite's unix VFS: ``UNIX_SHM_DMS``, 120 + 8 lock slots). A write lock on it succeeds only
#: when no other process has the database open.
_SHM_DMS_BYTE = 128

#: files that hold every call (backups, restore's private copy, a database restore creates): owner only.
PRIVATE_MODE = 0o600

#: SQLite's own planner statistics (``ANALYZE``): not part of smdrd's schema, and dropped from the copies made
#: here (a backup, a restore's private copy) so that what reaches a live database is smdrd's schema only.
_PLANNER_STATISTICS = ("sqlite_stat1", "sqlite_stat2", "sqlite_stat3", "sqlite_stat4")

#: at most this many differences are listed in one refusal (the count of the rest follows).
_MAX_LISTED = 12


class BackupError(SmdrdError):
    """A backup or restore could not be made, or a file is not a sound smdrd database; says which and why."""


@dataclass(frozen=True, slots=True)
class DatabaseSummary:
    """What a verified database holds. ``migrated_from``: the schema version a restored backup had, when
    restore brought it up to date."""

    path: Path
    schema_version: int
    lines: int
    calls: int
    last_line_id: int
    size_bytes: int
    migrated_from: int | None = None


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


# --- the schema: what this version's migrations create, and how a file differs from it ---------------------

_SQL_TOKEN = re.compile(
    r"""(?P<skip>\s+|--[^\n]*|/\*.*?(?:\*/|\Z))
      | (?P<literal>'(?:[^']|'')*'?|"(?:[^"]|"")*"?|`(?:[^`]|``)*`?|\[[^\]]*\]?)
      | (?P<word>[A-Za-z0-9_$\x80-\U0010ffff]+)
      | (?P<other>.)""",
    re.VERBOSE | re.DOTALL)


def normalise_sql(sql: str | None) -> tuple[str, ...]:
    """The tokens of ``sql`` as SQLite reads them: comments and spacing dropped, keywords and bare names in
    lower case (SQLite ignores their case), string literals and quoted names exactly as written."""
    if sql is None:
        return ()
    out: list[str] = []
    for m in _SQL_TOKEN.finditer(sql):
        kind = m.lastgroup
        if kind == "skip":
            continue
        out.append(m.group().lower() if kind == "word" else m.group())
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Column:
    """One column as ``PRAGMA table_xinfo`` describes it."""

    name: str
    type: str
    notnull: bool
    default: str | None
    pk: int
    hidden: int


@dataclass(frozen=True, slots=True)
class SchemaObject:
    """One row of ``sqlite_schema``, its SQL normalised (`normalise_sql`)."""

    type: str
    name: str
    table: str
    sql: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Schema:
    """Everything SQLite says about a database's schema; compared whole by `schema_differences`."""

    version: int
    encoding: str
    objects: dict[tuple[str, str], SchemaObject] = field(default_factory=dict)
    columns: dict[str, tuple[Column, ...]] = field(default_factory=dict)
    #: per table: ``(type, without_rowid, strict)`` from ``PRAGMA table_list``
    table_kinds: dict[str, tuple[object, ...]] = field(default_factory=dict)
    foreign_keys: dict[str, tuple[tuple[object, ...], ...]] = field(default_factory=dict)
    #: per index: ``(unique, origin, partial)`` from ``PRAGMA index_list`` and its ``PRAGMA index_xinfo`` rows
    indexes: dict[str, tuple[object, ...]] = field(default_factory=dict)


def read_schema(conn: sqlite3.Connection, detail_for: Iterable[str] | None = None) -> Schema:
    """Read the schema of ``conn``; the per-table details only for the tables ``detail_for`` (default: all).

    A caller comparing a foreign file asks details only of the tables smdrd knows: a table SQLite cannot
    describe (a virtual table of an unknown module) is then reported as unexpected rather than failing.
    """
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    encoding: str = conn.execute("PRAGMA encoding").fetchone()[0]
    objects = {
        (kind, name): SchemaObject(kind, name, table, normalise_sql(sql))
        for kind, name, table, sql in conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_schema")
    }
    tables = sorted(name for kind, name in objects if kind == "table")
    wanted = set(tables if detail_for is None else detail_for) & set(tables)
    schema = Schema(version, encoding, objects)
    for table in sorted(wanted):
        schema.columns[table] = tuple(
            Column(name, ctype, bool(notnull), default, pk, hidden)
            for _, name, ctype, notnull, default, pk, hidden in conn.execute(
                "SELECT * FROM pragma_table_xinfo(?) ORDER BY cid", (table,)))
        kinds = conn.execute("SELECT type, wr, strict FROM pragma_table_list(?) WHERE schema = 'main'",
                             (table,)).fetchall()
        schema.table_kinds[table] = tuple(kinds[0]) if kinds else ()
        schema.foreign_keys[table] = tuple(tuple(row) for row in conn.execute(
            "SELECT * FROM pragma_foreign_key_list(?) ORDER BY id, seq", (table,)))
        for name, unique, origin, partial in conn.execute(
                'SELECT name, "unique", origin, partial FROM pragma_index_list(?)', (table,)):
            xinfo = tuple(tuple(row) for row in conn.execute(
                "SELECT * FROM pragma_index_xinfo(?) ORDER BY seqno", (name,)))
            schema.indexes[name] = (table, unique, origin, partial, xinfo)
    return schema


@functools.cache
def reference_schema(version: int = SCHEMA_VERSION) -> Schema:
    """The schema this smdrd's migrations 1 to ``version`` create, read from a fresh in-memory database."""
    if not 1 <= version <= SCHEMA_VERSION:
        raise ValueError(f"no schema version {version} (this smdrd has 1 to {SCHEMA_VERSION})")
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        for number in range(1, version + 1):
            conn.executescript(f"BEGIN;\n{MIGRATIONS[number - 1]}\nPRAGMA user_version = {number};\nCOMMIT;")
        return read_schema(conn)
    finally:
        conn.close()


def _where(obj: SchemaObject) -> str:
    return f" on table `{obj.table}`" if obj.type in ("index", "trigger") else ""


def schema_differences(found: Schema, expected: Schema) -> list[str]:
    """Every way ``found`` differs from ``expected``, each said as a person can read it (empty: identical)."""
    out: list[str] = []
    if found.encoding != expected.encoding:
        out.append(f"text encoding {found.encoding}, smdrd's is {expected.encoding}")
    for key in sorted(found.objects.keys() - expected.objects.keys()):
        obj = found.objects[key]
        out.append(f"unexpected {obj.type} `{obj.name}`{_where(obj)}")
    for key in sorted(expected.objects.keys() - found.objects.keys()):
        obj = expected.objects[key]
        out.append(f"missing {obj.type} `{obj.name}`{_where(obj)}")
    for key in sorted(found.objects.keys() & expected.objects.keys()):
        got, want = found.objects[key], expected.objects[key]
        specific = len(out)
        if got.type == "table":
            out.extend(_table_differences(found, expected, got.name))
        elif got.type == "index":
            if got.table != want.table:
                out.append(f"index `{got.name}` is on table `{got.table}`, smdrd's is on `{want.table}`")
            elif found.indexes.get(got.name) != expected.indexes.get(got.name):
                out.append(f"index `{got.name}` on table `{got.table}` has other columns, uniqueness or "
                           "condition than smdrd's")
        elif got.table != want.table:
            out.append(f"{got.type} `{got.name}` is on table `{got.table}`, smdrd's is on `{want.table}`")
        if len(out) == specific and got.sql != want.sql:
            out.append(f"{got.type} `{got.name}`{_where(got)} is not defined as smdrd defines it")
    return out


def _table_differences(found: Schema, expected: Schema, table: str) -> list[str]:
    out: list[str] = []
    got_cols = {c.name: c for c in found.columns.get(table, ())}
    want_cols = {c.name: c for c in expected.columns.get(table, ())}
    out.extend(f"table `{table}` lacks column `{name}`" for name in want_cols if name not in got_cols)
    out.extend(f"table `{table}` has an unexpected column `{name}`" for name in got_cols if name not in want_cols)
    for name in (n for n in want_cols if n in got_cols):
        got, want = got_cols[name], want_cols[name]
        for label, a, b in (("type", got.type, want.type), ("NOT NULL", got.notnull, want.notnull),
                            ("default", got.default, want.default), ("primary key position", got.pk, want.pk),
                            ("hidden/generated", got.hidden, want.hidden)):
            if a != b:
                out.append(f"column `{table}.{name}`: {label} is {a!r}, smdrd's is {b!r}")
    if not out and list(got_cols) != list(want_cols):
        out.append(f"table `{table}` has its columns in another order than smdrd's")
    if found.table_kinds.get(table) != expected.table_kinds.get(table):
        out.append(f"table `{table}` differs from smdrd's in kind (WITHOUT ROWID, STRICT or virtual)")
    if found.foreign_keys.get(table) != expected.foreign_keys.get(table):
        out.append(f"table `{table}` has other foreign keys than smdrd's")
    return out


def _refusal(name: object, version: int, problems: list[str]) -> str:
    listed = "; ".join(problems[:_MAX_LISTED])
    if len(problems) > _MAX_LISTED:
        listed += f"; and {len(problems) - _MAX_LISTED} more"
    writes = "" if version == SCHEMA_VERSION else f"; this smdrd writes {SCHEMA_VERSION}"
    return f"{name}: not the schema smdrd's migrations create for version {version}{writes}: {listed}"


def summarise(conn: sqlite3.Connection, path: Path, *, name: object = None) -> DatabaseSummary:
    """Verify ``conn`` (integrity, foreign keys, the whole schema against `reference_schema`) and count what it
    holds. Messages name ``name`` (default ``path``): a private copy is reported by the file it was made from.

    Raises:
        BackupError: the database is damaged, is not an smdrd database, is from a newer smdrd, or its schema
            is not exactly what smdrd's migrations create for its ``user_version``.
    """
    who = path if name is None else name
    try:
        conn.execute("PRAGMA trusted_schema = OFF")  # a foreign file's SQL functions never run with privilege
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check(20)")]
        if problems != ["ok"]:
            raise BackupError(f"{who}: integrity check failed: " + "; ".join(problems))
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        if version < 1:
            raise BackupError(f"{who}: not an smdrd database (user_version {version}: no smdrd schema)")
        if version > SCHEMA_VERSION:
            raise BackupError(f"{who}: schema version (user_version) {version} is newer than this smdrd writes "
                              f"({SCHEMA_VERSION}); restore it with the smdrd version that made it")
        expected = reference_schema(version)
        found = read_schema(conn, detail_for=expected.columns)
        differences = schema_differences(found, expected)
        if differences:
            raise BackupError(_refusal(who, version, differences))
        orphans = conn.execute('SELECT "table", parent, count(*) FROM pragma_foreign_key_check '
                               'GROUP BY 1, 2 ORDER BY 1, 2').fetchall()
        if orphans:
            raise BackupError(f"{who}: foreign key check failed: " + "; ".join(
                f"{n} row(s) of `{table}` refer to a missing row of `{parent}`" for table, parent, n in orphans))
        lines, last = conn.execute("SELECT count(*), coalesce(max(id), 0) FROM lines").fetchone()
        calls = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{who}: not a readable SQLite database: {exc}") from None
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


# --- files ----------------------------------------------------------------------------------------------------

def _fsync_path(path: Path, *, directory: bool = False) -> None:
    fd = os.open(path, (os.O_RDONLY | os.O_DIRECTORY) if directory else os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _private_temp(folder: Path, prefix: str) -> Path:
    """A new empty file in ``folder``, mode 0600 whatever the umask (SQLite gives its journal the same)."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=prefix)
    try:
        os.fchmod(fd, PRIVATE_MODE)
    finally:
        os.close(fd)
    return Path(name)


def _remove_database_files(path: Path) -> None:
    for suffix in ("", "-journal", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()


def _drop_planner_statistics(conn: sqlite3.Connection) -> None:
    """Drop SQLite's ``ANALYZE`` statistics from a copy made here (never from a live database)."""
    present = {row[0] for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    for table in _PLANNER_STATISTICS:
        if table in present:
            conn.execute(f"DROP TABLE {table}")


def backup(source: Path, destination: Path, *, overwrite: bool = False) -> BackupResult:
    """Copy the database ``source`` to ``destination`` consistently, while others may be writing to it.

    Args:
        source: the live database.
        destination: the backup file to write (a self-contained SQLite file, no ``-wal``, mode 0600).
        overwrite: replace ``destination`` if it exists.

    Raises:
        BackupError: the source is missing or damaged, the destination exists (without ``overwrite``) or is
            the source itself, or the copy failed its verification (`summarise`).
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
    src = open_existing(source)
    try:
        tmp = _private_temp(destination.parent, f".{destination.name}.tmp-")
    except OSError as exc:
        src.close()
        raise BackupError(f"{destination.parent}: cannot write a backup there: {exc.strerror}") from None
    try:
        dst = sqlite3.connect(tmp, isolation_level=None)
        try:
            # One step over every page: a single read transaction, hence a snapshot at one commit. In WAL mode
            # the daemon's commits go on meanwhile; several smaller steps would restart on each of them.
            src.backup(dst, pages=-1)
            dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file, openable read-only
            _drop_planner_statistics(dst)
            summary = summarise(dst, tmp, name=f"backup of {source}")
        finally:
            dst.close()
        _fsync_path(tmp)
        os.replace(tmp, destination)
    except sqlite3.Error as exc:
        _remove_database_files(tmp)
        raise BackupError(f"backup of {source} failed: {exc}") from None
    except BaseException:
        _remove_database_files(tmp)
        raise
    finally:
        src.close()
    _fsync_path(destination.parent, directory=True)
    copy = DatabaseSummary(destination, summary.schema_version, summary.lines, summary.calls,
                           summary.last_line_id, summary.size_bytes)
    return BackupResult(source, copy, time.monotonic() - started)


def _stage(backup_file: Path, folder: Path, target_name: str) -> tuple[Path, DatabaseSummary]:
    """Copy ``backup_file`` into a private file in ``folder``, verify the copy, bring an older schema up to
    date and verify again. Returns the copy (the caller removes it) and its summary.

    Raises:
        BackupError: the backup cannot be read, or fails verification (named by ``backup_file``).
    """
    try:
        staged = _private_temp(folder, f".{target_name}.restore-")
    except OSError as exc:
        raise BackupError(f"{folder}: cannot write a private copy of the backup there: {exc.strerror}") from None
    try:
        try:
            src = sqlite3.connect(_uri(backup_file, "ro"), uri=True, isolation_level=None)
            try:
                dst = sqlite3.connect(staged, isolation_level=None)
                try:
                    src.backup(dst, pages=-1)
                finally:
                    dst.close()
            finally:
                src.close()
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"{backup_file}: not a readable SQLite database: {exc}") from None
        conn = sqlite3.connect(staged, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = DELETE")
            _drop_planner_statistics(conn)
            summary = summarise(conn, staged, name=backup_file)
            if summary.schema_version < SCHEMA_VERSION:
                # The exact schema of an older smdrd: the same migrations the daemon runs at start, on our copy.
                older = summary.schema_version
                migrate(conn)
                summary = summarise(conn, staged, name=f"{backup_file} (migrated from version {older})")
                summary = DatabaseSummary(summary.path, summary.schema_version, summary.lines, summary.calls,
                                          summary.last_line_id, summary.size_bytes, migrated_from=older)
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"{backup_file}: cannot prepare it for restore: {exc}") from None
        finally:
            conn.close()
    except BaseException:
        _remove_database_files(staged)
        raise
    return staged, summary


def _write_into(staged: Path, target: Path) -> DatabaseSummary:
    """Write the verified private copy ``staged`` into the database ``target`` (created 0600 if missing) in
    one transaction of the backup API, and verify the result."""
    created = not target.exists()
    if created:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE_MODE)
        try:
            os.fchmod(fd, PRIVATE_MODE)
        finally:
            os.close(fd)
    try:
        src = sqlite3.connect(staged, isolation_level=None)
        try:
            dst = sqlite3.connect(_uri(target, "rw"), uri=True, isolation_level=None)
            try:
                page_size: int = dst.execute("PRAGMA page_size").fetchone()[0]
                if src.execute("PRAGMA page_size").fetchone()[0] != page_size:
                    # The backup API cannot change a WAL database's page size: give our copy the target's.
                    src.execute(f"PRAGMA page_size = {int(page_size)}")
                    src.execute("VACUUM")
                for pragma in PRAGMAS:
                    dst.execute(pragma)
                # The backup API writes through SQLite's locks and WAL, in one transaction, so a daemon started
                # afterwards (or one still running, with --force) sees the restored pages and never an old WAL
                # replayed over them.
                src.backup(dst, pages=-1)
                dst.execute("PRAGMA journal_mode = WAL")
                result = summarise(dst, target)
                dst.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        if created:
            _remove_database_files(target)
        raise BackupError(f"restore into {target} failed: {exc}") from None
    except BaseException:
        if created:
            _remove_database_files(target)
        raise
    if created and os.geteuid() == 0:
        # Run as root for a service user: hand the new file to the owner of its folder, as the daemon needs.
        st = target.parent.stat()
        os.chown(target, st.st_uid, st.st_gid)
    return result


def restore(backup_file: Path, target: Path, *, force: bool = False) -> DatabaseSummary:
    """Replace the contents of the database ``target`` with the backup ``backup_file``, once a private copy of
    it has passed verification (module docstring). ``target`` is not touched before then.

    Args:
        backup_file: a file written by `backup` (or any sound smdrd database of this or an older version).
        target: the daemon's database; created (mode 0600, with its folder) if missing.
        force: restore even though a running process has ``target`` open.

    Returns:
        The restored database's summary; ``migrated_from`` says when the backup had an older schema.

    Raises:
        BackupError: the backup is damaged, not an smdrd database, or its schema is not exactly smdrd's (the
            reason names what differs); or ``target`` is in use (without ``force``); or the restore failed.
    """
    backup_file = backup_file.absolute()
    target = target.absolute()
    if not backup_file.is_file():
        raise BackupError(f"{backup_file}: no such file")
    if target.exists() and backup_file.samefile(target):
        raise BackupError(f"{backup_file}: that is the database itself")
    target.parent.mkdir(parents=True, exist_ok=True)
    staged, checked = _stage(backup_file, target.parent, target.name)
    try:
        if not force and database_in_use(target):
            raise BackupError(f"{target}: the database is open in another process (is the daemon running? stop "
                              "it first: systemctl stop smdrd), or pass --force")
        result = _write_into(staged, target)
    finally:
        _remove_database_files(staged)
    if result.calls != checked.calls or result.lines != checked.lines:
        raise BackupError(f"restore into {target} is incomplete: {result.lines} lines, {result.calls} calls "
                          f"instead of {checked.lines} and {checked.calls}")
    return DatabaseSummary(result.path, result.schema_version, result.lines, result.calls, result.last_line_id,
                           result.size_bytes, migrated_from=checked.migrated_from)
