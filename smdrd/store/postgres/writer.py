"""The journal writer on PostgreSQL: the batching, back-pressure and retry of `smdrd.store.sqlite.writer`'s
`JournalWriter` (sources see the same object), with each batch committed to PostgreSQL.

One batch is one transaction: line ids reserved from the ``lines`` sequence, the lines copied in (``COPY``), the
calls copied into a TEMP table and moved by one statement that inserts them into ``calls`` (``ON CONFLICT DO
NOTHING`` on the identity: a re-sent call is no second call) and adds exactly the inserted ones to every rollup
(data-modifying CTEs over its ``RETURNING``), lines all of whose calls were re-sent marked ``duplicate``, the
alerts added to the outbox, the extension names the PBX gave learnt into the directory, and the followed files'
positions the batch completes saved. A lost server, a
shutdown, a full disk or a serialization failure is `Unwritable`: the writer keeps the batch and retries it with
backoff on a fresh connection.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import structlog

from smdrd.journal import DUPLICATE, FilePosition, JournalEntry
from smdrd.store.api import StoreUnavailable
from smdrd.store.mapping import clean_name
from smdrd.store.postgres.connect import aconnect, failure, redact
from smdrd.store.postgres.directory import LEARN_NAME
from smdrd.store.postgres.schema import LOCAL_SITE, roll_up_sql
from smdrd.store.rows import CALL_COLUMNS, POSITION_COLUMNS, PreparedEntry, alert_row, line_row, position_changes
from smdrd.store.sqlite.writer import JournalWriter

__all__ = ["PgJournalWriter", "Unwritable", "store_batch"]

log = structlog.get_logger(__name__)


class Unwritable(StoreUnavailable, ConnectionError):
    """PostgreSQL cannot take the batch now (gone, shutting down, full, a serialization failure): the writer
    keeps it and retries (an `OSError`, which is what `smdrd.store.sqlite.writer.unwritable` retries)."""


#: errors of the server or the link, not of one entry's values (SQLSTATE classes 08, 40, 53, 57, 58).
_TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError)

_COLUMNS = ("line_id", *CALL_COLUMNS)
_LINE_COLUMNS = ("id", "source", "peer", "received_at", "format", "raw", "status", "error")
_UID = CALL_COLUMNS.index("uid") + 1

#: writers of one database take turns (a daemon and an ``smdrd import``): ids are then committed in their order,
#: which the call feed's cursor relies on, as SQLite's single write lock gives.
ONE_WRITER = "SELECT pg_advisory_xact_lock(1397244996)"
RESERVE_LINE_IDS = "SELECT nextval(pg_get_serial_sequence('lines', 'id')) FROM generate_series(1, %s)"
COPY_LINES = f"COPY lines ({', '.join(_LINE_COLUMNS)}) FROM STDIN"
STAGING = (f"CREATE TEMP TABLE IF NOT EXISTS calls_in ON COMMIT DELETE ROWS AS "
           f"SELECT {', '.join(_COLUMNS)} FROM calls WITH NO DATA")
COPY_CALLS = f"COPY calls_in ({', '.join(_COLUMNS)}) FROM STDIN"
#: the staged calls into ``calls`` and, those actually inserted, into every rollup; returns them.
MOVE_CALLS = (
    f"WITH new AS (INSERT INTO calls ({', '.join(_COLUMNS)}) SELECT {', '.join(_COLUMNS)} FROM calls_in "
    f"ORDER BY line_id ON CONFLICT (start_utc, site_id, source, uid) DO NOTHING RETURNING *)"
    + "".join(f", r{i} AS ({sql})" for i, sql in enumerate(roll_up_sql("new")))
    + " SELECT line_id, uid FROM new")
MARK_DUPLICATES = f"UPDATE lines SET status = '{DUPLICATE}' WHERE id = ANY(%s)"
OUTBOX_INSERT = ("INSERT INTO alert_outbox (alert_id, rule, severity, created_at, payload) "
                 "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (alert_id) DO NOTHING")
NAME_SITE = "UPDATE sites SET name = %s WHERE id = %s AND name <> %s"
SAVE_POSITION = (f"INSERT INTO file_positions ({', '.join(POSITION_COLUMNS)}) "
                 f"VALUES ({', '.join(['%s'] * len(POSITION_COLUMNS))}) ON CONFLICT (source, path) DO UPDATE SET "
                 + ", ".join(f"{c} = excluded.{c}" for c in POSITION_COLUMNS[2:]))
FORGET_POSITION = "DELETE FROM file_positions WHERE source = %s AND path = %s"
LOAD_POSITIONS = f"SELECT {', '.join(POSITION_COLUMNS)} FROM file_positions"


async def save_positions(cur: psycopg.AsyncCursor[Any], positions: list[FilePosition]) -> None:
    """Save ``positions`` (`smdrd.journal.FilePosition`; delete the forgotten ones) in the transaction of
    ``cur``."""
    rows, gone = position_changes(positions, time.time_ns() // 1000)
    if rows:
        await cur.executemany(SAVE_POSITION, rows)
    if gone:
        await cur.executemany(FORGET_POSITION, gone)


async def store_batch(conn: psycopg.AsyncConnection[Any], batch: list[PreparedEntry],
                      names: dict[str, str] | None = None,
                      positions: list[FilePosition] | None = None) -> tuple[list[JournalEntry], int, int]:
    """Commit ``batch`` in one transaction on ``conn`` (autocommit mode), with the extension ``names`` the PBX
    gave (number -> name as given) and the followed files' ``positions`` it completes. Returns the entries as
    stored (a re-sent call taken out of its entry, a line all of whose calls were re-sent marked ``duplicate``),
    how many calls were stored and how many were re-sent."""
    if not batch:
        async with conn.transaction(), conn.cursor() as cur:
            await save_positions(cur, positions or [])
        return [], 0, 0
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute(ONE_WRITER)
        await cur.execute(RESERVE_LINE_IDS, (len(batch),))
        ids = sorted(int(r[0]) for r in await cur.fetchall())
        call_rows: list[tuple[object, ...]] = []
        alert_rows: list[tuple[object, ...]] = []
        async with cur.copy(COPY_LINES) as copy:
            for line_id, p in zip(ids, batch, strict=True):
                await copy.write_row(line_row(line_id, p.entry))
                call_rows.extend((line_id, *r) for r in p.rows())
                alert_rows.extend(alert_row(a) for a in p.entry.alerts)
        inserted: set[tuple[int, str]] = set()
        if call_rows:
            await cur.execute(STAGING)
            async with cur.copy(COPY_CALLS) as copy:
                for row in call_rows:
                    await copy.write_row(row)
            await cur.execute(MOVE_CALLS)
            inserted = {(int(line_id), str(uid)) for line_id, uid in await cur.fetchall()}
        resent: dict[int, set[str]] = {}
        if len(inserted) < len(call_rows):
            calls_of_line: Counter[int] = Counter()
            for row in call_rows:
                key = (int(str(row[0])), str(row[_UID]))
                calls_of_line[key[0]] += 1
                if key not in inserted:
                    resent.setdefault(key[0], set()).add(key[1])
            whole = [line_id for line_id, uids in resent.items() if len(uids) == calls_of_line[line_id]]
            if whole:
                await cur.execute(MARK_DUPLICATES, (whole,))
        if alert_rows:
            await cur.executemany(OUTBOX_INSERT, alert_rows)
        if names:
            now = int(time.time())
            await cur.executemany(LEARN_NAME, [(ext, name, now) for ext, given in names.items()
                                               if (name := clean_name(given))])
        await save_positions(cur, positions or [])
    stored = [p.entry for p in batch]
    position = {line_id: i for i, line_id in enumerate(ids)} if resent else {}
    for line_id, uids in resent.items():
        i = position[line_id]
        e = stored[i]
        kept = tuple(c for c in e.calls if c.uid not in uids)
        stored[i] = replace(e, calls=kept) if kept else replace(e, status=DUPLICATE, calls=(), alerts=())
    duplicates = sum(len(uids) for uids in resent.values())
    return stored, len(call_rows) - duplicates, duplicates


class PgJournalWriter(JournalWriter):
    """`JournalWriter` committing to the PostgreSQL database at ``url`` (created tables and all at `open`)."""

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(Path(), **options)
        self.url = url
        self._pg: psycopg.AsyncConnection[Any] | None = None

    async def open(self) -> None:
        """Connect, migrate the schema and name the local site."""
        self._pg = await aconnect(self.url)
        if self.site is not None:
            await self._pg.execute(NAME_SITE, (self.site, LOCAL_SITE, self.site))
        async with self._pg.cursor() as cur:
            await cur.execute(LOAD_POSITIONS)
            self._loaded(await cur.fetchall())

    async def _commit(self, batch: list[PreparedEntry]) -> tuple[list[JournalEntry], int, int]:
        conn = self._pg
        if conn is None or conn.closed:
            raise Unwritable(f"PostgreSQL at {redact(self.url)}: not connected (reconnecting)")
        names = self._new_names(batch)
        try:
            stored = await store_batch(conn, batch, names, self._covered(len(batch)))
        except _TRANSIENT as exc:
            raise Unwritable(failure(self.url, exc)) from exc
        self._remember_names(names)
        return stored

    async def _recover(self) -> None:
        """After a failed commit: a connection that is broken is replaced (the next retry uses the new one)."""
        conn = self._pg
        if conn is not None and not conn.closed and not conn.broken:
            return
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                await conn.close()
        self._pg = None
        try:
            self._pg = await aconnect(self.url, migrate=False)
        except StoreUnavailable as exc:  # the next failed commit tries again
            log.warning("journal.reconnect_failed", error=str(exc))

    async def close_connection(self) -> None:
        if self._pg is not None:
            with contextlib.suppress(psycopg.Error):
                await self._pg.close()
            self._pg = None
