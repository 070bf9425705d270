"""``smdrd restore`` verifies the whole schema of a private copy before it touches the live database, and every
copy of the calls (``smdrd backup``, a database restore creates) is readable by its owner only.

Real SQLite files and the real command line (`tests.test_backup.smdrd`); the hostile backups are genuine ones
altered the way an attacker (or a careless administrator) would alter them. A refused restore must leave the
live database byte for byte as it was, its ``-wal`` and ``-shm`` included: they are hashed before and after
while another connection holds the database open (so both exist and the ``-wal`` holds a commit), and the
restore is run with ``--force`` so that only the verification stands between the backup and the live file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from smdrd.store.sqlite.backup import BackupError, reference_schema, restore
from smdrd.store.sqlite.rollups import ROLLUPS, batch_sql
from smdrd.store.sqlite.schema import MIGRATIONS, SCHEMA_VERSION
from tests.test_backup import CLI, imported_db, query, smdrd

SMDRD_TABLES = ("lines", "calls", "rollup_daily", "rollup_hourly", "rollup_destinations", "alert_outbox")


def fingerprint(db: Path) -> dict[str, str | None]:
    """The SHA-256 of the database file and of its ``-wal`` and ``-shm`` (``None``: absent)."""
    out: dict[str, str | None] = {}
    for suffix in ("", "-wal", "-shm"):
        f = Path(f"{db}{suffix}")
        out[suffix or "db"] = hashlib.sha256(f.read_bytes()).hexdigest() if f.exists() else None
    return out


def altered(genuine: Path, to: Path, sql: str, user_version: int | None = None) -> Path:
    """A copy of the genuine backup with ``sql`` run on it (and ``user_version`` set)."""
    shutil.copyfile(genuine, to)
    conn = sqlite3.connect(to, isolation_level=None)
    try:
        conn.executescript(sql)
        if user_version is not None:
            conn.execute(f"PRAGMA user_version = {user_version}")
    finally:
        conn.close()
    return to


@pytest.fixture(scope="module")
def genuine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A backup made by ``smdrd backup`` of a database holding 40 calls."""
    folder = tmp_path_factory.mktemp("genuine")
    db = imported_db(folder, 40)
    backup_file = folder / "backup.db"
    smdrd("backup", backup_file, "--database", db, check=True)
    return backup_file


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Path]:
    """A live database with 30 calls of its own, held open by another connection with a commit in its WAL."""
    (tmp_path / "live").mkdir()
    db = imported_db(tmp_path / "live", 30, start=5_000_000)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA journal_mode = WAL")
    holder.execute("PRAGMA wal_autocheckpoint = 0")
    holder.execute("UPDATE lines SET error = 'a commit left in the WAL' WHERE id = 1")
    assert Path(f"{db}-wal").stat().st_size > 0 and Path(f"{db}-shm").exists()
    yield db
    holder.close()


# Each: what is done to a genuine backup, and a part of the reason `restore` must give.
HOSTILE = {
    "extra trigger": ("CREATE TRIGGER zero_costs AFTER INSERT ON calls BEGIN "
                      "UPDATE calls SET cost_micros = 0 WHERE id = NEW.id; END;",
                      None, "unexpected trigger `zero_costs` on table `calls`"),
    "trigger emptying the outbox": ("CREATE TRIGGER drain BEFORE INSERT ON lines BEGIN "
                                    "DELETE FROM alert_outbox; END;", None, "unexpected trigger `drain`"),
    "missing column": ("ALTER TABLE lines DROP COLUMN error;", None, "table `lines` lacks column `error`"),
    "extra column": ("ALTER TABLE calls ADD COLUMN bogus TEXT NOT NULL DEFAULT 'x';", None,
                     "table `calls` has an unexpected column `bogus`"),
    "view": ("CREATE VIEW v AS SELECT * FROM calls;", None, "unexpected view `v`"),
    "extra index": ("CREATE INDEX calls_number ON calls (number);", None,
                    "unexpected index `calls_number` on table `calls`"),
    "missing index": ("DROP INDEX calls_start;", None, "missing index `calls_start` on table `calls`"),
    "index made unique": ("DROP INDEX calls_key; CREATE UNIQUE INDEX calls_key ON calls (call_key);", None,
                          "index `calls_key` on table `calls`"),
    "partial index on another condition": (
        "DROP INDEX lines_errors; CREATE INDEX lines_errors ON lines (status) WHERE status = 'parsed';", None,
        "index `lines_errors` on table `lines` is not defined as smdrd defines it"),
    "trigger with another body": (
        "DROP TRIGGER calls_rollup_update; "
        "CREATE TRIGGER calls_rollup_update AFTER UPDATE ON calls BEGIN SELECT 1; END;", None,
        "trigger `calls_rollup_update` on table `calls` is not defined as smdrd defines it"),
    "extra table": ("CREATE TABLE extra (x);", None, "unexpected table `extra`"),
    "another default (writable_schema)": (
        "PRAGMA writable_schema = ON; UPDATE sqlite_schema SET sql = replace(sql, "
        "'peer        TEXT    NOT NULL DEFAULT ''''', 'peer TEXT NOT NULL DEFAULT ''x''') WHERE name = 'lines';",
        None, "column `lines.peer`: default is \"'x'\", smdrd's is \"''\""),
    "newer user_version": ("", SCHEMA_VERSION + 1,
                           f"user_version) {SCHEMA_VERSION + 1} is newer than this smdrd writes ({SCHEMA_VERSION})"),
    "older user_version on this version's schema": (
        "", SCHEMA_VERSION - 1, f"version {SCHEMA_VERSION - 1}; this smdrd writes {SCHEMA_VERSION}"),
    "user_version 0": ("", 0, "not an smdrd database"),
    "a call without its line": ("PRAGMA foreign_keys = OFF; DELETE FROM lines WHERE id = "
                                "(SELECT line_id FROM calls ORDER BY id LIMIT 1);", None,
                                "foreign key check failed: 1 row(s) of `calls` refer to a missing row of `lines`"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_restore_refuses_a_backup_whose_schema_is_not_smdrds_and_leaves_the_live_database_untouched(
        case: str, genuine: Path, live: Path, tmp_path: Path) -> None:
    sql, user_version, reason = HOSTILE[case]
    candidate = altered(genuine, tmp_path / "candidate.db", sql, user_version)
    before = fingerprint(live)
    proc = smdrd("restore", candidate, "--database", live, "--force")
    assert proc.returncode != 0, proc.stdout
    assert reason in proc.stderr and "candidate.db" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert fingerprint(live) == before
    assert not list(live.parent.glob(".smdrd.db.restore-*")), "the private copy was left behind"
    assert query(live, "SELECT count(*) FROM calls") == [(30,)]


def test_a_genuine_backup_still_restores_exactly(genuine: Path, tmp_path: Path) -> None:
    db = imported_db(tmp_path, 30, start=5_000_000)
    before = genuine.read_bytes()
    proc = smdrd("restore", genuine, "--database", db, check=True)
    assert "40 calls" in proc.stdout and "schema ok" in proc.stdout and "migrated" not in proc.stdout
    for table in SMDRD_TABLES:
        assert query(db, f"SELECT * FROM {table}") == query(genuine, f"SELECT * FROM {table}"), table
    assert query(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert genuine.read_bytes() == before, "restore never writes to the backup"
    assert not list(tmp_path.glob(".smdrd.db.restore-*"))


def test_a_backup_of_the_previous_schema_version_is_migrated_on_a_private_copy(
        genuine: Path, tmp_path: Path) -> None:
    """A backup made before an upgrade: exactly the schema of its version, brought up to date by the same
    migrations the daemon runs, on the private copy (the backup file itself is never written)."""
    old = tmp_path / "old.db"
    conn = sqlite3.connect(old, isolation_level=None)
    for number in range(1, SCHEMA_VERSION):
        conn.executescript(f"BEGIN;\n{MIGRATIONS[number - 1]}\nPRAGMA user_version = {number};\nCOMMIT;")
    conn.execute("ATTACH ? AS g", (str(genuine),))
    cols = ", ".join(row[1] for row in conn.execute("PRAGMA main.table_info(calls)"))  # the older version's
    conn.executescript("BEGIN; INSERT INTO main.lines SELECT * FROM g.lines; "
                       f"INSERT INTO main.calls ({cols}) SELECT {cols} FROM g.calls;")
    for statement in batch_sql(ROLLUPS):  # what the previous version's writers ran after their inserts (its
        # rollups are this version's: migration 11 added no rollup)
        conn.execute(statement, (0,))
    conn.execute("COMMIT")
    conn.execute("DETACH g")
    conn.close()
    before = old.read_bytes()
    db = imported_db(tmp_path, 30, start=5_000_000)
    proc = smdrd("restore", old, "--database", db, check=True)
    assert f"migrated from version {SCHEMA_VERSION - 1} to {SCHEMA_VERSION}" in proc.stdout, proc.stdout
    assert old.read_bytes() == before
    assert query(db, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    for table in SMDRD_TABLES:
        # A column the previous version had not is not known for its calls (checked below).
        shown = cols if table == "calls" else "*"
        assert query(db, f"SELECT {shown} FROM {table}") == query(genuine, f"SELECT {shown} FROM {table}"), table
    added = [row[1] for row in query(db, "PRAGMA table_info(calls)") if row[1] not in cols.split(", ")]
    for column in added:  # e.g. the tariff version of each call, when the previous version had it not
        assert {v for (v,) in query(db, f"SELECT DISTINCT {column} FROM calls")} <= {None}, column


def test_planner_statistics_and_another_page_size_do_not_stop_a_genuine_restore(
        genuine: Path, tmp_path: Path) -> None:
    """``ANALYZE`` run on the database and a file of another page size are still genuine backups: the
    statistics (SQLite's, not smdrd's) are dropped from the private copy, and the copy takes the live
    database's page size (the backup API cannot change a WAL database's)."""
    candidate = altered(genuine, tmp_path / "analysed.db", "ANALYZE; PRAGMA page_size = 8192; VACUUM;")
    assert query(candidate, "PRAGMA page_size") == [(8192,)]
    db = imported_db(tmp_path, 30, start=5_000_000)
    smdrd("restore", candidate, "--database", db, check=True)
    assert query(db, "SELECT count(*) FROM calls") == [(40,)]
    assert query(db, "SELECT name FROM sqlite_schema WHERE name LIKE 'sqlite_stat%'") == []
    assert query(db, "PRAGMA integrity_check") == [("ok",)]


def _umask_run(umask: int, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=60, check=False,
                          umask=umask)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o000])
def test_backups_and_restored_databases_are_private_whatever_the_umask(umask: int, tmp_path: Path) -> None:
    """They hold every call: 0600, also when ``--force`` replaces a file that was world-readable."""
    db = imported_db(tmp_path, 10)
    fresh = tmp_path / "fresh.db"
    proc = _umask_run(umask, "backup", fresh, "--database", db)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600

    replaced = tmp_path / "replaced.db"
    replaced.write_bytes(b"old")
    replaced.chmod(0o644)
    proc = _umask_run(umask, "backup", replaced, "--database", db, "--force")
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(replaced.stat().st_mode) == 0o600

    new_db = tmp_path / "state" / "smdrd.db"
    proc = _umask_run(umask, "restore", fresh, "--database", new_db)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(new_db.stat().st_mode) == 0o600
    assert query(new_db, "SELECT count(*) FROM calls") == [(10,)]
    assert not [p for p in tmp_path.rglob(".*") if ".tmp-" in p.name or ".restore-" in p.name]


def test_the_reference_is_what_migrating_a_database_file_gives(tmp_path: Path) -> None:
    """The reference schema (migrations on a fresh in-memory database) is exactly what `migrate` leaves in a
    real file, and it is not vacuous: it holds every table, index and trigger."""
    from smdrd.store.sqlite.backup import read_schema, schema_differences
    from smdrd.store.sqlite.schema import connect

    conn = connect(str(tmp_path / "x.db"))
    try:
        found = read_schema(conn)
    finally:
        conn.close()
    reference = reference_schema()
    assert schema_differences(found, reference) == []
    kinds = {kind for kind, _ in reference.objects}
    assert {"table", "index", "trigger"} <= kinds
    assert set(SMDRD_TABLES) <= set(reference.columns)


# --- property: any extra schema object is refused --------------------------------------------------------

_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,11}", fullmatch=True).filter(
    lambda n: not n.startswith("sqlite") and n not in {o for _, o in reference_schema().objects})
_TABLES = st.sampled_from(SMDRD_TABLES)
_BODIES = st.sampled_from(["SELECT 1;", "DELETE FROM alert_outbox;", "UPDATE calls SET cost_micros = 0;",
                           "INSERT INTO lines (source, received_at, format, raw, status) "
                           "VALUES ('x', 0, 'x', x'', 'error');"])


@st.composite
def extra_objects(draw: st.DrawFn) -> str:
    name, table = draw(_NAMES), draw(_TABLES)
    kind = draw(st.sampled_from(["table", "view", "index", "unique index", "partial index", "trigger",
                                 "column", "temp-looking trigger"]))
    columns = {
        "lines": ["source", "status", "raw"], "calls": ["number", "uid", "cost_micros"],
        "rollup_daily": ["day", "calls"], "rollup_hourly": ["hour"], "rollup_destinations": ["country"],
        "alert_outbox": ["rule", "payload"],
    }[table]
    column = draw(st.sampled_from(columns))
    if kind == "table":
        return f"CREATE TABLE {name} (x {draw(st.sampled_from(['', 'TEXT', 'INTEGER PRIMARY KEY']))});"
    if kind == "view":
        return f"CREATE VIEW {name} AS SELECT * FROM {table};"
    if kind == "index":
        return f"CREATE INDEX {name} ON {table} ({column});"
    if kind == "unique index":
        return f"CREATE UNIQUE INDEX {name} ON {table} ({column}, rowid);" if table in (
            "lines", "calls", "alert_outbox") else f"CREATE INDEX {name} ON {table} ({column} DESC);"
    if kind == "partial index":
        return f"CREATE INDEX {name} ON {table} ({column}) WHERE {column} IS NOT NULL;"
    if kind == "column":
        return f"ALTER TABLE {table} ADD COLUMN {name} {draw(st.sampled_from(['', 'TEXT', 'BLOB DEFAULT 0']))};"
    when = draw(st.sampled_from(["BEFORE", "AFTER"]))
    event = draw(st.sampled_from(["INSERT", "DELETE", "UPDATE", f"UPDATE OF {column}"]))
    return f"CREATE TRIGGER {name} {when} {event} ON {table} BEGIN {draw(_BODIES)} END;"


@given(extra=st.lists(extra_objects(), min_size=1, max_size=3, unique=True))
def test_any_extra_schema_object_is_refused(extra: list[str], genuine: Path,
                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    folder = tmp_path_factory.mktemp("prop")
    live = folder / "smdrd.db"
    shutil.copyfile(genuine, live)
    before = fingerprint(live)
    candidate = folder / "candidate.db"
    shutil.copyfile(genuine, candidate)
    conn = sqlite3.connect(candidate, isolation_level=None)
    try:
        for statement in extra:
            try:
                conn.executescript(statement)
            except sqlite3.OperationalError:
                continue  # e.g. two draws naming the same object: the others are still extra
    finally:
        conn.close()
    schema = "SELECT type, name, sql FROM sqlite_schema ORDER BY 1, 2"
    assume(query(candidate, schema) != query(genuine, schema))  # something was added after all
    with pytest.raises(BackupError) as refused:
        restore(candidate, live, force=True)
    assert "candidate.db" in str(refused.value)
    assert fingerprint(live) == before
    assert not list(folder.glob(".smdrd.db.restore-*"))
    os.remove(candidate)
