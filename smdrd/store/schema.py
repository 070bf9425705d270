"""The database schema, as numbered migrations applied at start (``PRAGMA user_version``).

A migration is appended, never edited: databases in the field have run the old ones. Each runs in one
transaction with the version bump, so a crash mid-migration leaves the previous version intact.
"""

from __future__ import annotations

import sqlite3

from smdrd.errors import SmdrdError

MIGRATIONS: tuple[str, ...] = (
    # 1: the journal of raw lines, and the calls parsed from them.
    """
    CREATE TABLE lines (
        id          INTEGER PRIMARY KEY,
        source      TEXT    NOT NULL,
        peer        TEXT    NOT NULL DEFAULT '',
        received_at INTEGER NOT NULL,           -- UTC, microseconds since the Unix epoch
        format      TEXT    NOT NULL,
        raw         BLOB    NOT NULL,           -- the bytes as received, line end removed
        status      TEXT    NOT NULL,           -- parsed | held | skipped | error | duplicate
        error       TEXT                        -- why it failed, for status = error
    );
    CREATE INDEX lines_received ON lines (received_at);
    CREATE INDEX lines_errors ON lines (status) WHERE status = 'error';

    CREATE TABLE calls (
        id          INTEGER PRIMARY KEY,
        line_id     INTEGER NOT NULL REFERENCES lines (id),
        uid         TEXT    NOT NULL UNIQUE,    -- format + digest of the record's line: re-sent lines count once
        source      TEXT    NOT NULL,
        format      TEXT    NOT NULL,
        call_key    TEXT    NOT NULL,           -- shared by every leg of one call
        leg         INTEGER NOT NULL,
        start       TEXT    NOT NULL,           -- ISO 8601, the PBX's local time with its UTC offset
        start_utc   INTEGER NOT NULL,           -- seconds since the Unix epoch, for range queries
        duration    INTEGER NOT NULL,           -- talk seconds
        ring        INTEGER,
        direction   TEXT    NOT NULL,
        extension   TEXT    NOT NULL,
        number      TEXT    NOT NULL,
        trunk       TEXT    NOT NULL,
        account     TEXT    NOT NULL,
        auth_code   TEXT    NOT NULL,
        call_id     TEXT    NOT NULL,
        answered    INTEGER NOT NULL,
        transfer    TEXT    NOT NULL,
        extra       TEXT    NOT NULL,           -- JSON object of vendor-only fields
        e164        TEXT,
        call_class  TEXT,
        rule        TEXT,
        prefix      TEXT,
        cost_micros INTEGER,                    -- the cost in millionths of the currency unit: exact, summable
        currency    TEXT
    );
    CREATE INDEX calls_start ON calls (start_utc);
    CREATE INDEX calls_extension ON calls (extension, start_utc);
    CREATE INDEX calls_key ON calls (call_key);
    CREATE INDEX calls_line ON calls (line_id);
    """,
    # 2: reserved for the report rollups (issue: reports).
    "SELECT 1;",
    # 3: reserved for the alert outbox (issue: alerts).
    "SELECT 1;",
)

SCHEMA_VERSION = len(MIGRATIONS)

PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",  # WAL + NORMAL: durable across process crashes, fast commits
    "PRAGMA foreign_keys = ON",
    "PRAGMA busy_timeout = 5000",
)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema of ``conn`` up to date; return the version it is now at.

    Raises:
        SmdrdError: the database was written by a newer smdrd.
    """
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise SmdrdError(f"database schema version {version} is newer than this smdrd knows "
                         f"({SCHEMA_VERSION}); upgrade smdrd")
    for number in range(version + 1, SCHEMA_VERSION + 1):
        script = MIGRATIONS[number - 1]
        conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
    return SCHEMA_VERSION


def connect(path: str) -> sqlite3.Connection:
    """A synchronous connection with smdrd's pragmas and an up-to-date schema (for the CLI and tests)."""
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in PRAGMAS:
        conn.execute(pragma)
    migrate(conn)
    return conn
