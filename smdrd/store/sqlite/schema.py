"""The database schema, as numbered migrations applied at start (``PRAGMA user_version``).

A migration is appended, never edited: databases in the field have run the old ones. Each runs in one
transaction with the version bump, so a crash mid-migration leaves the previous version intact.
"""

from __future__ import annotations

import sqlite3

from smdrd.errors import SmdrdError
from smdrd.store import api
from smdrd.store.sqlite.regions import calls_region_sql, main_region_sql
from smdrd.store.sqlite.rollups import (
    ROLLUPS,
    ROLLUPS_V7,
    ROLLUPS_V8,
    ROLLUPS_V10,
    backfill_sql,
    create_table_sql,
    insert_trigger_sql,
    rekey_sql,
    unroll_trigger_sql,
    update_trigger_sql,
)

_TWO_DIGIT_CODES = (
    "'20', '27', '30', '31', '32', '33', '34', '36', '39', '40', '41', '43', '44', '45', '46', '47', '48', '49', "
    "'51', '52', '53', '54', '55', '56', '57', '58', '60', '61', '62', '63', '64', '65', '66', '81', '82', '84', "
    "'86', '90', '91', '92', '93', '94', '95', '98'"
)


def rollup_delta(row: str, sign: int) -> str:
    """SQL that adds (``sign`` 1) or takes away (-1) the call ``row`` (``NEW`` or ``OLD`` in a trigger) in the
    rollups of migration 2, exactly as its insert trigger adds it; rows left at zero by a subtraction go.

    Frozen history: it generates the text of migrations 4 and 5, which databases in the field hold. The rollups
    of this version are defined in `smdrd.store.sqlite.rollups`, and everything live is generated from there."""
    s = "" if sign > 0 else "-"
    r = row
    country = (f"CASE WHEN {r}.e164 IS NULL OR substr({r}.e164, 1, 1) <> '+' THEN '' "
               f"WHEN substr({r}.e164, 2, 1) IN ('1', '7') THEN substr({r}.e164, 2, 1) "
               f"WHEN substr({r}.e164, 2, 2) IN ({_TWO_DIGIT_CODES}) THEN substr({r}.e164, 2, 2) "
               f"ELSE substr({r}.e164, 2, 3) END")
    day = f"substr({r}.start, 1, 10)"
    cls, cur = f"coalesce({r}.call_class, '')", f"coalesce({r}.currency, '')"
    figures = f"{s}({r}.leg = 0), {s}{r}.duration, {s}coalesce({r}.cost_micros, 0)"
    upsert = ("ON CONFLICT DO UPDATE SET calls = calls + excluded.calls, duration = duration + excluded.duration, "
              "cost_micros = cost_micros + excluded.cost_micros;")
    tables = (
        ("rollup_daily", "day, extension, direction, call_class, trunk, currency",
         f"{day}, {r}.extension, {r}.direction, {cls}, {r}.trunk, {cur}"),
        ("rollup_hourly", "day, hour, trunk, direction, call_class, currency",
         f"{day}, CAST(substr({r}.start, 12, 2) AS INTEGER), {r}.trunk, {r}.direction, {cls}, {cur}"),
        ("rollup_destinations", "day, country, call_class, extension, direction, trunk, currency",
         f"{day}, {country}, {cls}, {r}.extension, {r}.direction, {r}.trunk, {cur}"),
    )
    out = []
    for table, keys, values in tables:
        out.append(f"INSERT INTO {table} ({keys}, calls, duration, cost_micros) VALUES ({values}, {figures}) "
                   f"{upsert}")
        if sign < 0:
            match = " AND ".join(f"{k} = {v}" for k, v in zip(keys.split(", "), _split_values(values), strict=True))
            out.append(f"DELETE FROM {table} WHERE {match} AND calls = 0 AND duration = 0 AND cost_micros = 0;")
    return "\n".join(out)


def _split_values(values: str) -> list[str]:
    """Split a VALUES list on its top-level commas (the CASE and function calls hold commas of their own)."""
    parts, depth, current = [], 0, ""
    for ch in values:
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        current += ch
    parts.append(current.strip())
    return parts


#: migration 4's trigger; migration 5 creates it again on the rebuilt ``calls`` table. Frozen: `rollup_delta`
#: must keep generating the same text, since databases in the field hold it and restore compares it.
_V4_UPDATE_TRIGGER = (
    "CREATE TRIGGER calls_rollup_update AFTER UPDATE OF start, extension, direction, call_class, trunk, currency, "
    "duration, cost_micros, e164, leg ON calls\nBEGIN\n"
    + rollup_delta("OLD", -1) + "\n" + rollup_delta("NEW", 1) + "\nEND;")

#: the site of every call a box's own journal writer stores (``sites`` row 1, named from ``[site] name``).
LOCAL_SITE = api.LOCAL_SITE

#: Migration 5: a call's identity is (start_utc, site, source, uid), unique in that order.
#:
#: Before, ``uid`` (format + digest of the line) was UNIQUE on its own: two sites (or two sources of one site)
#: sending the same bytes would merge in a central store, and every insert went to a random place of one
#: ever-growing index, so imports slowed as the table grew. With the start time first, new calls land at the end
#: of the index (a PBX reports calls in about the order they end), so an insert costs the same at 10M rows as at
#: 10k; a re-sent line has the same start, site, source and bytes, so it is still recognised.
#:
#: Sites are a table, and calls refer to one by number: a box's calls are all ``LOCAL_SITE``, whose name the
#: journal writer keeps equal to ``[site] name`` (so renaming the site in the config renames it here, and calls
#: stored before this migration belong to it without rewriting them). A central store adds one row per site.
#: ``calls`` is rebuilt (SQLite cannot drop a column's UNIQUE); its indexes keep their names, ``calls_start``
#: now being the unique identity, and its triggers are made again as they were.
IDENTITY_MIGRATION = """
    CREATE TABLE sites (
        id          INTEGER PRIMARY KEY,
        name        TEXT    NOT NULL            -- [site] name; '' until a journal writer that knows it opens
    );
    INSERT INTO sites (id, name) VALUES (1, '');

    CREATE TABLE calls_v5 (
        id          INTEGER PRIMARY KEY,
        line_id     INTEGER NOT NULL REFERENCES lines (id),
        uid         TEXT    NOT NULL,           -- format + digest of the line the call came from (smdrd.core)
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
        currency    TEXT,
        site_id     INTEGER NOT NULL DEFAULT 1 REFERENCES sites (id)
    );
    INSERT INTO calls_v5
    SELECT id, line_id, uid, source, format, call_key, leg, start, start_utc, duration, ring, direction,
           extension, number, trunk, account, auth_code, call_id, answered, transfer, extra, e164, call_class,
           rule, prefix, cost_micros, currency, 1
    FROM calls ORDER BY id;
    DROP TABLE calls;
    ALTER TABLE calls_v5 RENAME TO calls;

    -- The identity: start first, so that inserts append (re-sent lines are found by it: the journal writer).
    CREATE UNIQUE INDEX calls_start ON calls (start_utc, site_id, source, uid);
    CREATE INDEX calls_extension ON calls (extension, start_utc);
    CREATE INDEX calls_key ON calls (call_key);
    CREATE INDEX calls_line ON calls (line_id);
    """ + "CREATE TRIGGER calls_rollup AFTER INSERT ON calls\nBEGIN\n" + rollup_delta("NEW", 1) + "\nEND;\n" \
    + _V4_UPDATE_TRIGGER


def _region_migration() -> str:
    """Migration 10: ``calls.region``, and the destination rollups keyed by it (see `MIGRATIONS`)."""
    old = {r.table: r for r in ROLLUPS_V8}
    daily, monthly = (r for r in ROLLUPS_V10 if "region" in r.key and r not in ROLLUPS_V8)
    return "\n".join((
        "DROP TRIGGER calls_rollup_update;",
        "ALTER TABLE calls ADD COLUMN region TEXT NOT NULL DEFAULT '';  -- ISO 3166 region of e164, '' unknown",
        calls_region_sql(),
        f"ALTER TABLE {daily.table} RENAME TO {daily.table}_v9;",
        f"DROP TABLE {monthly.table};",
        create_table_sql(daily),
        rekey_sql(daily, f"{daily.table}_v9", old[daily.table].key, {"region": main_region_sql("o.country")}),
        f"DROP TABLE {daily.table}_v9;",
        "DROP TABLE temp.region_main;",
        create_table_sql(monthly),
        backfill_sql(monthly, ROLLUPS_V10),
        update_trigger_sql(ROLLUPS_V10),
    ))


#: Migration 11: people and rights (`smdrd.store.sqlite.accounts`): console users, the departments a manager
#: sees, server-side sessions and personal API tokens (both known only by a digest), and the audit log.
ACCOUNTS_MIGRATION = """
    CREATE TABLE users (
        id            INTEGER PRIMARY KEY,
        name          TEXT    NOT NULL UNIQUE COLLATE NOCASE,
        role          TEXT    NOT NULL CHECK (role IN ('admin', 'manager', 'viewer')),
        password_hash TEXT    NOT NULL,         -- Argon2id, encoded with its parameters and salt
        created_at    INTEGER NOT NULL,         -- UTC seconds
        failed_logins INTEGER NOT NULL DEFAULT 0,
        locked_until  INTEGER NOT NULL DEFAULT 0
    );
    -- The departments a manager sees (names from [[departments]]).
    CREATE TABLE user_departments (
        user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        department  TEXT    NOT NULL,
        PRIMARY KEY (user_id, department)
    ) WITHOUT ROWID;
    CREATE TABLE sessions (
        digest      TEXT    PRIMARY KEY,        -- SHA-256 of the session id; the id is only in the cookie
        user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        csrf        TEXT    NOT NULL,           -- the token every form of the session carries
        created_at  INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX sessions_user ON sessions (user_id);
    CREATE TABLE api_tokens (
        id           INTEGER PRIMARY KEY,
        user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        name         TEXT    NOT NULL,
        digest       TEXT    NOT NULL UNIQUE,   -- SHA-256 of the token; the token is shown once
        created_at   INTEGER NOT NULL,
        last_used_at INTEGER
    );
    CREATE INDEX api_tokens_user ON api_tokens (user_id);
    CREATE TABLE audit_log (
        id          INTEGER PRIMARY KEY,
        at          INTEGER NOT NULL,           -- UTC seconds
        actor       TEXT    NOT NULL,           -- a user's name, or cli:<login> from the shell
        address     TEXT    NOT NULL,           -- the client address ('' from the shell)
        action      TEXT    NOT NULL,           -- user.add, user.password, login.failed, token.create...
        target      TEXT    NOT NULL,
        before      TEXT,                       -- JSON object, never a secret
        after       TEXT
    );
    """

#: The directory in the database (`smdrd.store.sqlite.directory`): extensions with their display names and where
#: each name came from (``pbx``: learnt from the PBX's own name field as calls are stored, replaced when the PBX
#: sends another; ``edited``: set by a person or an import, never overwritten by the PBX), departments with
#: their parent and monthly budget, and dated memberships (``[[departments]]`` as rows, used when
#: ``[directory] source = "database"``). ``directory_version`` counts changes that move a call's department,
#: so a daemon notices an import made by another process.
DIRECTORY_MIGRATION = """
    CREATE TABLE directory_extensions (
        number      TEXT    PRIMARY KEY,        -- as the PBX writes it
        name        TEXT    NOT NULL,
        name_source TEXT    NOT NULL CHECK (name_source IN ('pbx', 'edited')),
        updated_at  INTEGER NOT NULL            -- UTC seconds
    ) WITHOUT ROWID;
    CREATE TABLE directory_departments (
        name        TEXT    PRIMARY KEY,
        parent      TEXT    REFERENCES directory_departments (name) ON UPDATE CASCADE,
        budget      TEXT,                       -- monthly budget, a decimal string; NULL: none
        position    INTEGER NOT NULL            -- the order departments are listed in
    );
    CREATE TABLE directory_memberships (
        id          INTEGER PRIMARY KEY,
        department  TEXT    NOT NULL REFERENCES directory_departments (name) ON UPDATE CASCADE ON DELETE CASCADE,
        spec        TEXT    NOT NULL,           -- an extension, or a numeric range LOW-HIGH
        valid_from  TEXT,                       -- site-local ISO date, inclusive; NULL: always
        valid_until TEXT                        -- inclusive; NULL: open-ended
    );
    CREATE INDEX directory_memberships_department ON directory_memberships (department);
    CREATE INDEX directory_memberships_spec ON directory_memberships (spec);
    CREATE TABLE directory_version (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        version     INTEGER NOT NULL
    );
    INSERT INTO directory_version (id, version) VALUES (1, 0);
    """

#: The tariff edited in the console (`smdrd.store.sqlite.tariffs`): every save is a new version, never changed
#: or deleted afterwards (the triggers refuse it), so an audit can say which version priced a call.
TARIFF_MIGRATION = """
    CREATE TABLE tariff_versions (
        version     INTEGER PRIMARY KEY,        -- 1, 2, 3... in the order saved
        created_at  INTEGER NOT NULL,           -- UTC seconds
        actor       TEXT    NOT NULL,           -- a user's name, or cli:<login> from the shell
        note        TEXT    NOT NULL DEFAULT '',
        rules       INTEGER NOT NULL,           -- how many rules the document holds
        document    TEXT    NOT NULL            -- JSON: {"mode", "bands", "rules"} as in [tariff]
    );
    CREATE TRIGGER tariff_versions_frozen BEFORE UPDATE ON tariff_versions
    BEGIN SELECT RAISE(ABORT, 'a tariff version is never changed: save a new one'); END;
    CREATE TRIGGER tariff_versions_kept BEFORE DELETE ON tariff_versions
    BEGIN SELECT RAISE(ABORT, 'tariff versions are kept'); END;
    """

#: The mail outbox (`smdrd.store.sqlite.mail`): each scheduled report and each alert digest is one row, made
#: once by its key (a report's schedule and period), sent with backoff and marked; report schedules made in the
#: console; how far each schedule and the alert mailer have planned; a user's e-mail address (budget alerts go
#: to their department's managers).
MAIL_MIGRATION = """
    CREATE TABLE mail_outbox (
        id              INTEGER PRIMARY KEY,
        key             TEXT    NOT NULL UNIQUE,    -- report:<schedule>:<first>:<last>, alerts:<ids>:<to>
        kind            TEXT    NOT NULL,           -- report | alerts
        owner           TEXT    NOT NULL,           -- config:<name>, db:<id>, alerts
        message_id      TEXT    NOT NULL,           -- the same on every attempt
        recipients      TEXT    NOT NULL,           -- JSON list of addresses
        subject         TEXT    NOT NULL,
        spec            TEXT    NOT NULL,           -- JSON: what to render when it is sent
        state           TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
        attempts        INTEGER NOT NULL DEFAULT 0,
        last_error      TEXT    NOT NULL DEFAULT '',
        created_at      INTEGER NOT NULL,           -- UTC seconds
        due_at          INTEGER NOT NULL,
        next_attempt_at INTEGER NOT NULL,
        sent_at         INTEGER
    );
    CREATE INDEX mail_outbox_pending ON mail_outbox (next_attempt_at) WHERE state = 'pending';
    CREATE INDEX mail_outbox_owner ON mail_outbox (owner, id);
    CREATE TABLE mail_cursors (
        name        TEXT    PRIMARY KEY,            -- schedule:<key> (UTC seconds), alerts (alert_outbox.id)
        position    INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE report_schedules (
        id          INTEGER PRIMARY KEY,
        name        TEXT    NOT NULL UNIQUE COLLATE NOCASE,
        owner       TEXT    NOT NULL,               -- the user who made it
        spec        TEXT    NOT NULL,               -- JSON, as [[reports.schedules]]
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    );
    ALTER TABLE users ADD COLUMN email TEXT NOT NULL DEFAULT '';
    """

#: The alerts inbox (`smdrd.store.sqlite.alert_inbox`): what people did with each raised alert of the outbox
#: (acknowledged by whom and when, snoozed until when and by whom). An alert with no row here is open until its
#: resolved event (``<id>:resolved`` in the outbox) arrives. Kept apart from the outbox, which the journal writer
#: fills and delivery marks, so neither ever waits for a person's click.
ALERT_STATES_MIGRATION = """
    CREATE TABLE alert_states (
        alert_id      TEXT    PRIMARY KEY,      -- alert_outbox.alert_id
        acked_by      TEXT,                     -- a user's name
        acked_at      INTEGER,                  -- UTC seconds
        snoozed_until INTEGER,                  -- UTC seconds
        snoozed_by    TEXT,
        snoozed_at    INTEGER
    ) WITHOUT ROWID;
    """

#: The console's call search by (part of) a number compares every call of the range (`smdrd.store.sqlite.calls`):
#: this index holds each call's start and numbers, so that scan reads a narrow index instead of whole rows (four
#: times faster on a million calls, bench/calls.py). Keyed by start first, new calls land at its end, as in
#: ``calls_start``: an insert costs the same at 10M rows as at 10k.
CALL_NUMBERS_MIGRATION = "CREATE INDEX calls_start_numbers ON calls (start_utc, number, e164);"

#: Which tariff priced each call (`smdrd.rating.Rating.tariff_version`): a saved version's number (``'5'``), or
#: ``'files:<digest>'`` for a tariff from the configuration's files; NULL for the calls stored before (and the
#: unrated ones), which the console calls "unknown version" until a re-rate sets it. Not in the rollups.
CALL_TARIFF_MIGRATION = "ALTER TABLE calls ADD COLUMN tariff_version TEXT;"

#: A department membership may name the site whose extensions it covers (``[site] name``: a store of several
#: sites); ``''``, as every membership stored before has, covers every site (`smdrd.reports.departments`).
DIRECTORY_SITES_MIGRATION = "ALTER TABLE directory_memberships ADD COLUMN site TEXT NOT NULL DEFAULT '';"

#: An extension's name is per site (``[site] name``): extension 201 of one site and of another are two people in a
#: store of several sites. ``''``, as every name stored before has (and every name a box's own writer learns),
#: is this box's name, and the name of the number at a site that has none of its own (`smdrd.store.api.ExtensionNames`).
#: The key is (number, site): a number's names across sites are one range of the index. The key's columns come
#: first: SQLite 3.40's integrity_check misreads a WITHOUT ROWID table whose key columns are not the leading ones
#: (it reports NULLs in the other columns), and `smdrd backup` runs it.
EXTENSION_SITES_MIGRATION = """
    CREATE TABLE directory_extensions_sited (
        number      TEXT    NOT NULL,
        site        TEXT    NOT NULL DEFAULT '',
        name        TEXT    NOT NULL,
        name_source TEXT    NOT NULL CHECK (name_source IN ('pbx', 'edited')),
        updated_at  INTEGER NOT NULL,
        PRIMARY KEY (number, site)
    ) WITHOUT ROWID;
    INSERT INTO directory_extensions_sited (number, name, name_source, updated_at, site)
        SELECT number, name, name_source, updated_at, '' FROM directory_extensions;
    DROP TABLE directory_extensions;
    ALTER TABLE directory_extensions_sited RENAME TO directory_extensions;
    """

#: A revision of a journal entry: a line whose calls ``smdrd rerate`` or ``smdrd reparse`` changed, for the site's
#: publisher to send the entry again as it is now (`smdrd.store.api.CallFeed.revisions`): a central store keeps
#: the highest revision of each line. Recorded only while someone publishes them (`smdrd.store.api.REVISION_FEED`);
#: pruned as that feed's cursor passes them. ``AUTOINCREMENT``: an id is never handed out twice, pruned or not.
ENTRY_REVISIONS_MIGRATION = """
    CREATE TABLE entry_revisions (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        line_id     INTEGER NOT NULL
    );
    """

#: The last site-local day whose calls retention has deleted, kept by retention itself (`smdrd.store.sqlite.retention`):
#: the call details of a range that starts on or before it may lack calls that the rollups (which retention never
#: touches) still count, so the call listing's totals must come from the details there
#: (`smdrd.store.planner`). The oldest stored call cannot tell this: a saved log imported after a prune brings
#: back calls older than every pruned day. One row at most. A database pruned before this table existed gets the
#: day before its oldest stored call, when its rollups go back further than that call, as that guess did.
RETENTION_HORIZON_MIGRATION = """
    CREATE TABLE retention_horizon (
        id              INTEGER PRIMARY KEY CHECK (id = 1),
        pruned_through  TEXT    NOT NULL  -- YYYY-MM-DD, site-local
    );
    INSERT INTO retention_horizon (id, pruned_through)
        SELECT 1, date(substr(o.start, 1, 10), '-1 day')
        FROM (SELECT start FROM calls ORDER BY start_utc LIMIT 1) AS o
        WHERE (SELECT min(day) FROM rollup_days) < substr(o.start, 1, 10)
        UNION ALL
        SELECT 1, (SELECT max(day) FROM rollup_days)
        WHERE NOT EXISTS (SELECT 1 FROM calls) AND EXISTS (SELECT 1 FROM rollup_days);
    """

#: How far each followed file's lines are journalled (`smdrd.journal.FilePosition`): written by the journal writer
#: in the transaction of the lines it covers, so a restart resumes there, neither losing nor doubling a line.
#: ``identity`` is the file's ``st_dev:st_ino`` (as text: an inode number may not fit a signed 64-bit integer).
FILE_POSITIONS_MIGRATION = """
    CREATE TABLE file_positions (
        source      TEXT    NOT NULL,
        path        TEXT    NOT NULL,
        identity    TEXT    NOT NULL,           -- 'dev:inode'
        byte_offset INTEGER NOT NULL,           -- bytes journalled: where the next line starts
        tail        INTEGER NOT NULL,           -- of which an unterminated last line (journalled at a stop)
        head        BLOB    NOT NULL,           -- the file's first bytes: a reused inode does not match
        saved_at    INTEGER NOT NULL,           -- UTC, microseconds since the Unix epoch
        PRIMARY KEY (source, path)
    ) WITHOUT ROWID;
    """

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
    # 2: report rollups, kept by a trigger as calls are inserted (see docs/reports.md). AFTER INSERT only: pruning
    # old call details must leave the totals alone. The site-local day is the first ten characters of `start`
    # (ISO local time with its offset). A call counts once, on its first leg (a transfer's later legs add only
    # their duration and cost). `country` is the E.164 country calling code: these codes are prefix-free
    # (1 and 7; the two-digit list below; every other one has three digits).
    """
    CREATE TABLE rollup_daily (
        day         TEXT    NOT NULL,           -- site-local date, YYYY-MM-DD
        extension   TEXT    NOT NULL,
        direction   TEXT    NOT NULL,
        call_class  TEXT    NOT NULL,           -- '' when the call was not rated
        trunk       TEXT    NOT NULL,
        currency    TEXT    NOT NULL,           -- '' when the call was not rated
        calls       INTEGER NOT NULL,           -- first legs only: a transferred call counts once
        duration    INTEGER NOT NULL,           -- talk seconds, every leg
        cost_micros INTEGER NOT NULL,           -- every leg
        PRIMARY KEY (day, extension, direction, call_class, trunk, currency)
    ) WITHOUT ROWID;

    CREATE TABLE rollup_hourly (
        day         TEXT    NOT NULL,
        hour        INTEGER NOT NULL,           -- site-local hour of the call's start, 0 to 23
        trunk       TEXT    NOT NULL,
        direction   TEXT    NOT NULL,
        call_class  TEXT    NOT NULL,
        currency    TEXT    NOT NULL,
        calls       INTEGER NOT NULL,
        duration    INTEGER NOT NULL,
        cost_micros INTEGER NOT NULL,
        PRIMARY KEY (day, trunk, hour, direction, call_class, currency)
    ) WITHOUT ROWID;

    CREATE TABLE rollup_destinations (
        day         TEXT    NOT NULL,
        country     TEXT    NOT NULL,           -- E.164 country calling code ('44'), '' when not in E.164
        call_class  TEXT    NOT NULL,
        extension   TEXT    NOT NULL,
        direction   TEXT    NOT NULL,
        trunk       TEXT    NOT NULL,
        currency    TEXT    NOT NULL,
        calls       INTEGER NOT NULL,
        duration    INTEGER NOT NULL,
        cost_micros INTEGER NOT NULL,
        PRIMARY KEY (day, country, call_class, extension, direction, trunk, currency)
    ) WITHOUT ROWID;

    CREATE TRIGGER calls_rollup AFTER INSERT ON calls
    BEGIN
        INSERT INTO rollup_daily (day, extension, direction, call_class, trunk, currency,
                                  calls, duration, cost_micros)
        VALUES (substr(NEW.start, 1, 10), NEW.extension, NEW.direction, coalesce(NEW.call_class, ''), NEW.trunk,
                coalesce(NEW.currency, ''), NEW.leg = 0, NEW.duration, coalesce(NEW.cost_micros, 0))
        ON CONFLICT DO UPDATE SET calls = calls + excluded.calls, duration = duration + excluded.duration,
                                  cost_micros = cost_micros + excluded.cost_micros;

        INSERT INTO rollup_hourly (day, hour, trunk, direction, call_class, currency, calls, duration, cost_micros)
        VALUES (substr(NEW.start, 1, 10), CAST(substr(NEW.start, 12, 2) AS INTEGER), NEW.trunk, NEW.direction,
                coalesce(NEW.call_class, ''), coalesce(NEW.currency, ''), NEW.leg = 0, NEW.duration,
                coalesce(NEW.cost_micros, 0))
        ON CONFLICT DO UPDATE SET calls = calls + excluded.calls, duration = duration + excluded.duration,
                                  cost_micros = cost_micros + excluded.cost_micros;

        INSERT INTO rollup_destinations (day, country, call_class, extension, direction, trunk, currency,
                                         calls, duration, cost_micros)
        VALUES (substr(NEW.start, 1, 10),
                CASE
                    WHEN NEW.e164 IS NULL OR substr(NEW.e164, 1, 1) <> '+' THEN ''
                    WHEN substr(NEW.e164, 2, 1) IN ('1', '7') THEN substr(NEW.e164, 2, 1)
                    WHEN substr(NEW.e164, 2, 2) IN (
                        '20', '27', '30', '31', '32', '33', '34', '36', '39', '40', '41', '43', '44', '45', '46',
                        '47', '48', '49', '51', '52', '53', '54', '55', '56', '57', '58', '60', '61', '62', '63',
                        '64', '65', '66', '81', '82', '84', '86', '90', '91', '92', '93', '94', '95', '98'
                    ) THEN substr(NEW.e164, 2, 2)
                    ELSE substr(NEW.e164, 2, 3)
                END,
                coalesce(NEW.call_class, ''), NEW.extension, NEW.direction, NEW.trunk, coalesce(NEW.currency, ''),
                NEW.leg = 0, NEW.duration, coalesce(NEW.cost_micros, 0))
        ON CONFLICT DO UPDATE SET calls = calls + excluded.calls, duration = duration + excluded.duration,
                                  cost_micros = cost_micros + excluded.cost_micros;
    END;

    -- Calls stored before this migration: roll them up once, the same way the trigger does.
    INSERT INTO rollup_daily
    SELECT substr(start, 1, 10), extension, direction, coalesce(call_class, ''), trunk, coalesce(currency, ''),
           sum(leg = 0), sum(duration), sum(coalesce(cost_micros, 0))
    FROM calls GROUP BY 1, 2, 3, 4, 5, 6;
    INSERT INTO rollup_hourly
    SELECT substr(start, 1, 10), CAST(substr(start, 12, 2) AS INTEGER), trunk, direction, coalesce(call_class, ''),
           coalesce(currency, ''), sum(leg = 0), sum(duration), sum(coalesce(cost_micros, 0))
    FROM calls GROUP BY 1, 2, 3, 4, 5, 6;
    INSERT INTO rollup_destinations
    SELECT substr(start, 1, 10),
           CASE
               WHEN e164 IS NULL OR substr(e164, 1, 1) <> '+' THEN ''
               WHEN substr(e164, 2, 1) IN ('1', '7') THEN substr(e164, 2, 1)
               WHEN substr(e164, 2, 2) IN (
                   '20', '27', '30', '31', '32', '33', '34', '36', '39', '40', '41', '43', '44', '45', '46',
                   '47', '48', '49', '51', '52', '53', '54', '55', '56', '57', '58', '60', '61', '62', '63',
                   '64', '65', '66', '81', '82', '84', '86', '90', '91', '92', '93', '94', '95', '98'
               ) THEN substr(e164, 2, 2)
               ELSE substr(e164, 2, 3)
           END,
           coalesce(call_class, ''), extension, direction, trunk, coalesce(currency, ''),
           sum(leg = 0), sum(duration), sum(coalesce(cost_micros, 0))
    FROM calls GROUP BY 1, 2, 3, 4, 5, 6, 7;
    """,
    # 3: the alert outbox: an alert is committed with the call that raised it, published later (QoS 1), and
    # marked delivered only once the broker has acknowledged it. Oldest first: `id` is the order of raising.
    """
    CREATE TABLE alert_outbox (
        id           INTEGER PRIMARY KEY,
        alert_id     TEXT    NOT NULL UNIQUE,   -- stable: rule + call uid (or source, period): never raised twice
        rule         TEXT    NOT NULL,
        severity     TEXT    NOT NULL,          -- warning | critical
        created_at   INTEGER NOT NULL,          -- UTC, microseconds since the Unix epoch
        payload      TEXT    NOT NULL,          -- the JSON object published (docs/alerts.md)
        delivered_at INTEGER                    -- when the broker acknowledged it; NULL while pending
    );
    CREATE INDEX alert_outbox_pending ON alert_outbox (id) WHERE delivered_at IS NULL;
    CREATE INDEX alert_outbox_created ON alert_outbox (created_at);
    """,
    # 4: rollups follow a call whose figures change (`smdrd rerate`): take the old figures away, add the new.
    # Deleting calls (retention) still leaves the rollups alone.
    _V4_UPDATE_TRIGGER,
    # 5: a call's identity is its start, site, source and line (see `IDENTITY_MIGRATION`).
    IDENTITY_MIGRATION,
    # 6: where each call feed (the MQTT call publisher) has got to in ``calls.id`` order: saved only after the
    # broker acknowledged every call up to it (`smdrd.store.sqlite.feed`).
    """
    CREATE TABLE feed_cursors (
        name        TEXT    PRIMARY KEY,
        position    INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # 7: the rollups as `smdrd.store.sqlite.rollups.ROLLUPS_V7` defines them: the monthly grain is added
    # (backfilled from the daily rollups, which still count pruned calls), and both triggers are made again
    # from that one definition.
    "DROP TRIGGER calls_rollup;\nDROP TRIGGER calls_rollup_update;\n"
    + "\n".join(create_table_sql(r) + "\n" + backfill_sql(r, ROLLUPS_V7) for r in ROLLUPS_V7 if r.finer)
    + "\n" + insert_trigger_sql(ROLLUPS_V7) + "\n" + update_trigger_sql(ROLLUPS_V7),
    # 8: `rollups.DAYS_TABLE` (a year's days report reads 365 x a few dozen rows, not one per extension and day),
    # and an index of the calls' later legs: with it, a call listing's totals come from the rollups plus the few
    # transfer legs of the range instead of a read of every call (`smdrd.store.planner.call_totals`).
    "DROP TRIGGER calls_rollup;\nDROP TRIGGER calls_rollup_update;\n"
    + "\n".join(create_table_sql(r) + "\n" + backfill_sql(r, ROLLUPS_V8) for r in ROLLUPS_V8 if r not in ROLLUPS_V7)
    + "\nCREATE INDEX calls_later_legs ON calls (start_utc) WHERE leg > 0;\n"
    + insert_trigger_sql(ROLLUPS_V8) + "\n" + update_trigger_sql(ROLLUPS_V8),
    # 9: new calls reach the rollups per batch, from whoever inserts them, in the same transaction
    # (`rollups.ROLL_UP`: one grouped upsert per rollup instead of seven upserts per call in a trigger program).
    # The update trigger stays: a re-rated call still moves, one row at a time.
    "DROP TRIGGER calls_rollup;",
    # 10: a call's destination country is its number's ISO 3166 region (`calls.region`, set where the call is
    # rated: +1 809 is DO, +44 7781 GG), no longer its calling code's main region (every NANP number was US).
    # Calls already stored get it from their e164 by a frozen prefix table (`regions.PREFIXES_V10`); the
    # destination rollups are keyed by region too (`rollups.ROLLUPS_V10`): rebuilt from the stored calls, plus
    # what the old rows count beyond them (calls retention pruned) under their code's main region, so every
    # figure stays; the monthly one is rebuilt from the daily one, and the update trigger made again.
    _region_migration(),
    # 11: users, sessions, API tokens and the audit log (see `ACCOUNTS_MIGRATION`).
    ACCOUNTS_MIGRATION,
    # the directory: extensions and their names, departments, dated memberships (see `DIRECTORY_MIGRATION`).
    DIRECTORY_MIGRATION,
    # the tariff's versions, when ``[tariff] source = "database"`` (see `TARIFF_MIGRATION`).
    TARIFF_MIGRATION,
    # the mail outbox, report schedules, e-mail cursors, users' e-mail addresses (see `MAIL_MIGRATION`).
    MAIL_MIGRATION,
    # what people did with each raised alert: acknowledged, snoozed (see `ALERT_STATES_MIGRATION`).
    ALERT_STATES_MIGRATION,
    # the console's search by number reads numbers from an index in start order (see `CALL_NUMBERS_MIGRATION`).
    CALL_NUMBERS_MIGRATION,
    # the version of the tariff that priced each call (see `CALL_TARIFF_MIGRATION`).
    CALL_TARIFF_MIGRATION,
    # a membership may name the site whose extension it is (see `DIRECTORY_SITES_MIGRATION`).
    DIRECTORY_SITES_MIGRATION,
    # an extension's name is per site, '' for this box and every site (see `EXTENSION_SITES_MIGRATION`).
    EXTENSION_SITES_MIGRATION,
    # lines whose calls a rerate or reparse changed, to publish again (see `ENTRY_REVISIONS_MIGRATION`).
    ENTRY_REVISIONS_MIGRATION,
    # the last day retention pruned, for the reports (see `RETENTION_HORIZON_MIGRATION`).
    RETENTION_HORIZON_MIGRATION,
    # where each followed file's journalled lines end, to resume there (see `FILE_POSITIONS_MIGRATION`).
    FILE_POSITIONS_MIGRATION,
)

#: created on its own connection by `smdrd reparse` only: calls it deletes (to rebuild them from the journal)
#: leave the rollups, where the rebuilt calls are added again.
UNROLL_ON_DELETE = unroll_trigger_sql(ROLLUPS)

SCHEMA_VERSION = len(MIGRATIONS)

PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",  # WAL + NORMAL: durable across process crashes, fast commits
    "PRAGMA foreign_keys = ON",
    "PRAGMA busy_timeout = 5000",
    "PRAGMA temp_store = MEMORY",  # the rollups' GROUP BY b-trees stay in memory
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


def name_local_site(conn: sqlite3.Connection, name: str) -> None:
    """Name the database's own site (`LOCAL_SITE`) after ``[site] name``: its calls keep their identity when the
    site is renamed, and calls stored before sites were recorded (migration 5) belong to it. Writes only when
    the name changes."""
    conn.execute("UPDATE sites SET name = ? WHERE id = ? AND name <> ?", (name, LOCAL_SITE, name))


def connect(path: str) -> sqlite3.Connection:
    """A synchronous connection with smdrd's pragmas and an up-to-date schema (for the CLI and tests)."""
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in PRAGMAS:
        conn.execute(pragma)
    migrate(conn)
    return conn
