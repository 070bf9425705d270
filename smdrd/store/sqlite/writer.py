"""The one task that writes the journal: entries in, batched commits out.

Sources submit entries without waiting (`JournalWriter.submit` is synchronous and cheap); the writer commits
when the oldest pending entry is ``commit_interval`` old or ``batch_rows`` are pending, whichever comes first.
One batch is one transaction, so a line and the calls parsed from it are committed together or not at all.

Line ids are assigned inside the write transaction (``BEGIN IMMEDIATE`` holds SQLite's write lock), so a
``smdrd import`` running beside the daemon cannot collide with it. A failed commit (disk full, database
locked past the busy timeout) is rolled back and retried with backoff: entries stay pending, and sources wait
on `wait_capacity` once ``max_pending`` is reached. Nothing received is dropped.

A followed file's position (`submit_position`, `smdrd.journal.FilePosition`) is queued behind the entries
submitted before it and saved in the transaction that commits the last of them: the saved position and the
journal never disagree, whenever the process dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import aiosqlite
import structlog

from smdrd.backoff import Backoff
from smdrd.journal import DUPLICATE, ERROR, FilePosition, JournalEntry
from smdrd.notify import notify
from smdrd.parsing import extension_names
from smdrd.store.mapping import clean_name
from smdrd.store.sqlite.directory import LEARN_NAME
from smdrd.store.sqlite.rollups import ROLL_UP
from smdrd.store.sqlite.rows import (
    CALL_COLUMNS,
    FORGET_POSITION,
    INSERT_CALL,
    INSERT_LINE,
    LAST_IDS,
    LOAD_POSITIONS,
    OUTBOX_INSERT,
    SAVE_POSITION,
    PreparedEntry,
    alert_row,
    line_row,
    position_changes,
    position_from_row,
    unprepared,
)
from smdrd.store.sqlite.schema import LOCAL_SITE, PRAGMAS, SCHEMA_VERSION, migrate, name_local_site

log = structlog.get_logger(__name__)

#: how much longer systemd is asked to wait for the start while the schema is upgraded (one hour).
MIGRATION_TIMEOUT_USEC = 3_600_000_000



#: calls per duplicate lookup (three bound parameters each): well under SQLite's limit whatever the batch size.
_IN_CHUNK = 500
#: where a call's identity is in a writer's call row (``line_id`` first, then `CALL_COLUMNS`).
_UID, _SOURCE, _START_UTC = (1 + CALL_COLUMNS.index(c) for c in ("uid", "source", "start_utc"))
_INT64 = (-(2**63), 2**63 - 1)
#: extension names remembered as written (beyond, the memory starts again: a name is at worst written twice).
_MAX_NAMES = 50_000


def unwritable(exc: BaseException) -> bool:
    """``exc`` says the database cannot be written right now (locked, full, read-only, I/O error, gone): retry
    the same batch later. Any other error (a value the schema or the driver refuses, text it cannot encode, an
    integer beyond 64 bits) belongs to one entry, which is then stored as an ``error`` line instead."""
    return isinstance(exc, sqlite3.OperationalError | sqlite3.InternalError | OSError) \
        or type(exc) is sqlite3.DatabaseError


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def _text(value: object) -> str:
    """Text that SQLite's driver can always encode (lone surrogates replaced)."""
    return str(value).encode("utf-8", "replace").decode("utf-8")


def _int64(value: object) -> bool:
    return type(value) is int and _INT64[0] <= value <= _INT64[1]


@dataclass(slots=True)
class WriterStats:
    """Counters for metrics and logs."""

    lines: int = 0
    calls: int = 0
    duplicates: int = 0
    commits: int = 0
    failures: int = 0
    last_commit_seconds: float = 0.0


async def _save_positions(db: aiosqlite.Connection, positions: list[FilePosition]) -> None:
    """Save ``positions`` (delete the forgotten ones) in the transaction open on ``db``."""
    rows, gone = position_changes(positions, time.time_ns() // 1000)
    if rows:
        await db.executemany(SAVE_POSITION, rows)
    if gone:
        await db.executemany(FORGET_POSITION, gone)


def _in_transaction(db: aiosqlite.Connection) -> bool:
    return bool(db.in_transaction)


def _migrate_file(path: str, site: str | None) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in PRAGMAS:
            conn.execute(pragma)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if 0 < version < SCHEMA_VERSION:
            # An upgrade may rebuild the calls table (migration 5): on a large database that outlasts systemd's
            # start timeout, so ask for more time, and say what is happening.
            log.warning("journal.migrating", path=path, from_version=version, to_version=SCHEMA_VERSION)
            notify(f"EXTEND_TIMEOUT_USEC={MIGRATION_TIMEOUT_USEC}",
                   f"STATUS=upgrading the database schema from version {version} to {SCHEMA_VERSION}")
        migrate(conn)
        if site is not None:
            name_local_site(conn, site)
    finally:
        conn.close()


class JournalWriter:
    """Batching SQLite writer. Use as ``await w.open()``, ``asyncio.create_task(w.run())``, ``await w.close()``."""

    def __init__(
        self,
        path: Path | str,
        *,
        commit_interval: float = 0.1,
        batch_rows: int = 5000,
        max_pending: int = 100_000,
        on_commit: Callable[[list[JournalEntry], float], None] | None = None,
        site: str | None = None,
    ) -> None:
        self.path = Path(path)
        #: ``[site] name``: given, it names the database's own site (`LOCAL_SITE`) at `open`.
        self.site = site
        self.commit_interval = commit_interval
        self.batch_rows = batch_rows
        self.max_pending = max_pending
        self.on_commit = on_commit
        self.stats = WriterStats()
        self._pending: deque[tuple[float, PreparedEntry]] = deque()
        self._db: aiosqlite.Connection | None = None
        self._wake = asyncio.Event()
        self._capacity = asyncio.Event()
        self._capacity.set()
        self._closing = False
        self._urgent = False
        self._idle = asyncio.Event()
        self._idle.set()
        #: the extension names the PBX gave (as it gave them), as last written: written again only when changed.
        self._names: dict[str, str] = {}
        #: file positions queued, each with how many entries had been submitted before it (`submit_position`).
        self._positions: deque[tuple[int, FilePosition]] = deque()
        #: entries submitted and entries committed since the writer was made: a queued position is saved with
        #: the commit that takes `_committed` to its count.
        self._submitted = 0
        self._committed = 0
        #: how many of the queued positions (the first ones) the commit under way writes (`_covered`).
        self._writing = 0
        #: the positions saved, by (source, path): read at `open`, kept as positions are committed.
        self.positions: dict[tuple[str, str], FilePosition] = {}
        #: the positions last marked by sources in this process, by (source, path) (None: forgotten).
        self._fed: dict[tuple[str, str], FilePosition | None] = {}

    @property
    def pending(self) -> int:
        """Entries received but not yet committed."""
        return len(self._pending)

    async def open(self) -> None:
        """Open the database (creating its folder), set the pragmas and migrate the schema."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(_migrate_file, str(self.path), self.site)
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        for pragma in PRAGMAS:
            await self._db.execute(pragma)
        self._loaded(await self._db.execute_fetchall(LOAD_POSITIONS))

    def _loaded(self, rows: Iterable[Sequence[object]]) -> None:
        """Keep the saved positions read at `open` (``file_positions`` rows)."""
        for row in rows:
            position = position_from_row(tuple(row))
            if position is not None:
                self.positions[(position.source, position.path)] = position

    def saved_position(self, source: str, path: str) -> FilePosition | None:
        """Where a source that starts now resumes ``source``'s file ``path``: where its lines were last fed in
        this process (`note_position`: committed, or on their way to a commit that will save it), else where
        the database says they were committed to; ``None`` if never (or forgotten)."""
        key = (source, path)
        return self._fed[key] if key in self._fed else self.positions.get(key)

    def saved_paths(self, source: str) -> list[str]:
        """The files ``source`` has a position of (`saved_position`)."""
        known = {path for (s, path) in self.positions if s == source}
        for (s, path), position in self._fed.items():
            if s == source:
                (known.add if position is not None else known.discard)(path)
        return sorted(known)

    def note_position(self, position: FilePosition) -> None:
        """A source marked ``position`` (or forgot it). A source restarted in this process (a reload, a restart
        after a failure) resumes there, not at the last committed position: the lines between are already fed,
        on their way to the journal, and reading them again would journal them twice."""
        self._fed[(position.source, position.path)] = None if position.forgotten else position

    def submit_position(self, position: FilePosition) -> None:
        """Save ``position`` with the entries submitted so far: in the transaction that commits the last of them
        (at once, in a transaction of its own, when they are all committed already); a forgotten one
        (`FilePosition.forget`) deletes the saved one then. Never blocks."""
        self._positions.append((self._submitted, position))
        self._idle.clear()
        if not self._pending:
            self._wake.set()

    def _covered(self, entries: int) -> list[FilePosition]:
        """The positions to save with the next ``entries`` pending entries: the last queued for each file. A
        commit's `_commit` asks once, before it writes; `_done` then takes exactly those off the queue (one
        queued while the commit was under way waits for the next)."""
        upto = self._committed + entries
        latest: dict[tuple[str, str], FilePosition] = {}
        self._writing = 0
        for count, position in self._positions:
            if count > upto:
                break
            latest[(position.source, position.path)] = position
            self._writing += 1
        return list(latest.values())

    def submit(self, entry: JournalEntry | PreparedEntry) -> None:
        """Queue ``entry`` for the next commit. Never blocks; see `wait_capacity` for backpressure."""
        prepared = entry if type(entry) is PreparedEntry else unprepared(entry)  # type: ignore[arg-type]
        entry = prepared.entry
        self._pending.append((time.monotonic(), prepared))
        self._submitted += 1
        self._idle.clear()
        if entry.alerts:
            # An alert is published only once its call is committed: don't let it wait out the interval.
            self._urgent = True
        if len(self._pending) == 1 or len(self._pending) >= self.batch_rows or entry.alerts:
            self._wake.set()
        if len(self._pending) >= self.max_pending:
            self._capacity.clear()

    async def wait_capacity(self) -> None:
        """Wait until fewer than ``max_pending`` entries are pending (sources call this after feeding)."""
        if not self._capacity.is_set():
            await self._capacity.wait()

    async def flushed(self) -> None:
        """Wait until everything submitted so far is committed."""
        await self._idle.wait()

    async def run(self) -> None:
        """Commit batches until `close` is called and everything is written."""
        failures = 0
        # Retries of a database that cannot be written (locked, full): quick at first, at most every 5 s.
        backoff = Backoff(0.05, 5.0, floor=0.05)
        while True:
            if not self._pending and not self._positions:
                self._idle.set()
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            # Only positions (their entries committed already): saved at once, in a transaction of their own.
            oldest = self._pending[0][0] if self._pending else -self.commit_interval
            wait = oldest + self.commit_interval - time.monotonic()
            if wait > 0 and len(self._pending) < self.batch_rows and not self._closing and not self._urgent:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                continue
            self._urgent = False
            batch = [self._pending[i][1] for i in range(min(self.batch_rows, len(self._pending)))]
            try:
                await self._commit_batch(batch)
            except Exception as exc:
                if not unwritable(exc):
                    raise  # _commit_batch stores every entry it can: this is a bug, and the daemon says so
                failures += 1
                self.stats.failures += 1
                delay = backoff.next_delay()
                log.warning("journal.commit_failed", error=str(exc), pending=len(self._pending),
                            retry_in=round(delay, 2), failures=failures)
                await self._recover()
                await asyncio.sleep(delay)
                continue
            if failures:
                log.info("journal.commit_recovered", after_failures=failures)
                failures = 0
                backoff.reset()

    async def _commit_batch(self, batch: list[PreparedEntry]) -> None:
        """Commit ``batch`` (the head of the pending queue) in one transaction, or entry by entry when one of
        its entries holds something the database refuses. Raises only when the database is unwritable
        (`unwritable`); what was committed before that is off the queue, so a retry never doubles it."""
        started = time.monotonic()
        try:
            stored, calls, duplicates = await self._commit(batch)
        except Exception as exc:
            if unwritable(exc):
                raise
            # Not transient: one entry holds a value the schema or the driver refuses. Retrying the batch would
            # stall the journal for good, so commit entry by entry and journal the bad one as an error line.
            log.error("journal.bad_entry_in_batch", error=_describe(exc), entries=len(batch))
            for entry in batch:
                started = time.monotonic()
                self._done(*await self._commit_entry(entry), started)
            return
        self._done(stored, calls, duplicates, started)

    def _done(self, stored: list[JournalEntry], calls: int, duplicates: int, started: float) -> None:
        """``stored`` (as committed, with ``calls`` calls) were the head of the queue: take them off it, count
        them, tell the listener."""
        for _ in stored:
            self._pending.popleft()
        self._committed += len(stored)
        for _ in range(self._writing):  # saved by that commit (`_covered`)
            position = self._positions.popleft()[1]
            if position.forgotten:
                self.positions.pop((position.source, position.path), None)
            else:
                self.positions[(position.source, position.path)] = position
        self._writing = 0
        if not stored:
            return  # a commit of positions only: no line to count or to tell about
        elapsed = time.monotonic() - started
        self.stats.commits += 1
        self.stats.lines += len(stored)
        self.stats.duplicates += duplicates
        self.stats.calls += calls  # a re-sent call is not counted again
        self.stats.last_commit_seconds = elapsed
        if len(self._pending) < self.max_pending:
            self._capacity.set()
        if self.on_commit is not None:
            try:
                self.on_commit(stored, elapsed)
            except Exception:  # a listener's bug must not stop the journal (it is committed already)
                log.exception("journal.commit_listener_failed")

    async def _commit_entry(self, prepared: PreparedEntry) -> tuple[list[JournalEntry], int, int]:
        """Commit one entry, keeping as much of it as the database accepts: the whole entry; else the line and
        its calls without their alerts; else the line alone as an ``error`` line with its raw bytes and the
        reason. Raises only when the database is unwritable."""
        try:
            return await self._commit([prepared])
        except Exception as exc:
            if unwritable(exc):
                raise
            reason = _describe(exc)
        entry = prepared.entry
        if entry.alerts:
            entry = replace(entry, alerts=(), error=f"could not store the call's alerts: {reason}")
            try:
                return await self._commit([PreparedEntry(entry, prepared.call_rows)])
            except Exception as exc:
                if unwritable(exc):
                    raise
                reason = _describe(exc)
        log.error("journal.entry_stored_as_error", source=_text(entry.source), reason=reason)
        entry = replace(entry, calls=(), alerts=(), status=ERROR,
                        error=f"could not store what was parsed from this line: {reason}")
        try:
            return await self._commit([PreparedEntry(entry, ())])
        except Exception as exc:
            if unwritable(exc):
                raise
        # Even the line's own fields are refused (text the driver cannot encode, a time out of range): keep the
        # raw bytes with fields that cannot fail.
        raw: object = entry.raw
        entry = replace(
            entry, source=_text(entry.source), peer=_text(entry.peer), format=_text(entry.format),
            received_at=entry.received_at if _int64(entry.received_at) else time.time_ns() // 1000,
            raw=bytes(raw) if isinstance(raw, bytes | bytearray | memoryview) else _text(raw).encode(),
            error=_text(entry.error)[:2000])
        return await self._commit([PreparedEntry(entry, ())])

    async def _commit(self, batch: list[PreparedEntry]) -> tuple[list[JournalEntry], int, int]:
        """One transaction: the lines, their calls and alerts. Returns the entries as stored (a re-sent call
        taken out of its entry, a line all of whose calls were re-sent marked ``duplicate``), how many calls
        were stored and how many were re-sent."""
        db = self._db
        if db is None:
            raise sqlite3.OperationalError("the journal database is not open (reconnecting)")
        positions = self._covered(len(batch))
        await db.execute("BEGIN IMMEDIATE")
        names: dict[str, str] = {}
        dup_uids: dict[int, set[str]] = {}
        first = 1
        try:
            if batch:  # else only positions, whose lines are committed already
                # Each statement is a round trip to the connection's thread and a wakeup of the loop: one here.
                row = next(iter(await db.execute_fetchall(LAST_IDS)), None)
                first = (row[0] if row else 0) + 1
                calls_before: int = row[1] if row else 0
                line_rows: list[tuple[object, ...]] = []
                call_rows: list[tuple[object, ...]] = []
                alert_rows: list[tuple[object, ...]] = []
                for i, p in enumerate(batch):
                    line_id = first + i
                    e = p.entry
                    line_rows.append(line_row(line_id, e))
                    rows = p.rows()
                    if rows:
                        call_rows.extend((line_id, *r) for r in rows)
                    if e.alerts:
                        alert_rows.extend(alert_row(a) for a in e.alerts)
                await db.executemany(INSERT_LINE, line_rows)
                if call_rows:
                    # The cursor's rowcount counts the rows this statement inserted (a re-sent call is ignored).
                    inserted = (await db.executemany(INSERT_CALL, call_rows)).rowcount
                    if inserted < len(call_rows):
                        dup_uids = await self._find_duplicates(db, call_rows)
                    if inserted:
                        for statement in ROLL_UP:
                            await db.execute(statement, (calls_before,))
                if alert_rows:
                    await db.executemany(OUTBOX_INSERT, alert_rows)
                names = self._new_names(batch)
                if names:
                    now = int(time.time())
                    await db.executemany(LEARN_NAME, [(ext, name, now) for ext, given in names.items()
                                                      if (name := clean_name(given))])
            if positions:
                await _save_positions(db, positions)
            await db.execute("COMMIT")
        except BaseException:
            # SQLite has already rolled back by itself after some failures (disk full, I/O error): a ROLLBACK
            # then raises "no transaction is active", which would hide the error that says what went wrong.
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    await db.execute("ROLLBACK")
            raise
        if not batch:
            return [], 0, 0
        self._remember_names(names)
        stored = [p.entry for p in batch]
        duplicates = 0
        for line_id, uids in dup_uids.items():
            # Listeners (metrics, alerts) see what was stored: a re-sent call is not counted again.
            e = stored[line_id - first]
            kept = tuple(c for c in e.calls if c.uid not in uids)
            stored[line_id - first] = replace(e, calls=kept) if kept else replace(
                e, status=DUPLICATE, calls=(), alerts=())
            duplicates += len(uids)
        return stored, len(call_rows) - duplicates, duplicates

    def _remember_names(self, names: dict[str, str]) -> None:
        """Note ``names`` as written (after their commit)."""
        if names:
            if len(self._names) > _MAX_NAMES:
                self._names.clear()
            self._names.update(names)

    def _new_names(self, batch: list[PreparedEntry]) -> dict[str, str]:
        """The extension names the PBX gave in ``batch`` that differ from those last written (the directory
        keeps them; an edited name stays, `LEARN_NAME`)."""
        found: dict[str, str] = {}
        known = self._names
        for p in batch:
            calls = p.entry.calls
            if calls:
                for ext, given in extension_names(c.record for c in calls):
                    if known.get(ext) != given:  # as the PBX gave it: cleaned only when it changed
                        found[ext] = given
        return found

    async def _recover(self) -> None:
        """After a failed commit: make sure the connection is out of its transaction, or open a fresh one.

        If even ROLLBACK failed, the connection would stay inside the transaction and every retry would fail
        with "cannot start a transaction within a transaction": the writer would be stuck for good.
        """
        db = self._db
        if db is None or not _in_transaction(db):
            return
        with contextlib.suppress(sqlite3.Error):
            await db.execute("ROLLBACK")
        if not _in_transaction(db):  # asked again: the ROLLBACK may have ended it
            return
        log.warning("journal.reconnecting", reason="the connection could not leave its failed transaction")
        with contextlib.suppress(sqlite3.Error, OSError):
            await db.close()
        self._db = None
        try:
            self._db = await aiosqlite.connect(self.path, isolation_level=None)
            for pragma in PRAGMAS:
                await self._db.execute(pragma)
        except (sqlite3.Error, OSError) as exc:  # the next failed commit tries again
            log.warning("journal.reconnect_failed", error=str(exc))

    @staticmethod
    async def _find_duplicates(db: aiosqlite.Connection, call_rows: list[tuple[object, ...]]) -> dict[int, set[str]]:
        """The uids, by line id, of the calls that were stored already (a re-sent buffer, or the same line twice
        in this batch): their identity (start, site, source, uid: the ``calls_start`` index) belongs to another
        line. Lines all of whose calls are such are marked ``duplicate`` in this transaction."""
        keys = list({(row[_START_UTC], row[_SOURCE], row[_UID]) for row in call_rows})
        owner: dict[tuple[object, ...], int] = {}
        for i in range(0, len(keys), _IN_CHUNK):
            chunk = keys[i:i + _IN_CHUNK]
            # VALUES first (CROSS JOIN keeps that order): one seek of the identity index per re-sent call.
            async with db.execute(
                    f"SELECT c.start_utc, c.source, c.uid, c.line_id "
                    f"FROM (VALUES {', '.join(['(?, ?, ?)'] * len(chunk))}) AS v CROSS JOIN calls AS c "
                    f"ON c.start_utc = v.column1 AND c.site_id = {LOCAL_SITE} AND c.source = v.column2 "
                    f"AND c.uid = v.column3", [value for key in chunk for value in key]) as cur:
                owner.update({(start, source, uid): line_id async for start, source, uid, line_id in cur})
        dup_uids: dict[int, set[str]] = {}
        calls_of_line: Counter[int] = Counter()
        for row in call_rows:
            line_id = int(str(row[0]))
            calls_of_line[line_id] += 1
            if owner.get((row[_START_UTC], row[_SOURCE], row[_UID])) != line_id:
                dup_uids.setdefault(line_id, set()).add(str(row[_UID]))
        whole = [(line_id,) for line_id, dups in dup_uids.items() if len(dups) == calls_of_line[line_id]]
        await db.executemany(f"UPDATE lines SET status = '{DUPLICATE}' WHERE id = ?", whole)
        return dup_uids

    async def close(self, give_up_after: float | None = None) -> bool:
        """Commit everything pending, then close the database. The `run` task ends.

        Args:
            give_up_after: seconds to keep retrying when commits keep failing (a full disk at shutdown);
                ``None`` waits for as long as it takes.

        Returns:
            True when everything was committed; False when that time passed with entries still pending
            (they are counted in the log: the caller exits non-zero so that the failure is seen).
        """
        self._closing = True
        self._wake.set()
        try:
            await asyncio.wait_for(self._idle.wait(), give_up_after)
        except TimeoutError:
            log.error("journal.close_abandoned", pending=len(self._pending), waited_seconds=give_up_after,
                      reason="commits kept failing at shutdown (disk full or database locked)")
            return False
        await self.close_connection()
        return True

    async def close_connection(self) -> None:
        """Close the database connection (after `close` gave up: cancel the `run` task first)."""
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error, OSError):
                await self._db.close()
            self._db = None
