"""Bulk loading for ``smdrd import``: compact row batches made where the lines are parsed, committed by plain
``sqlite3`` in one thread.

The live writer (`smdrd.store.sqlite.writer.JournalWriter`) queues one object per line and commits through
aiosqlite; for a backfill of millions of lines that cost more than the inserts themselves (rebuilding entries
from pickles, one Python object per line held in a queue, an aiosqlite hop per statement, the garbage collector
walking millions of young tuples). Here the parsing process maps each `JournalEntry` to bare tuples once
(`RowBatch`), the tuples cross to the committing process in one message per batch, and `BulkWriter` commits them
with one ``executemany`` per table.

The fast path only handles the common case: every call new, every value accepted. A batch holding a call
stored already (a re-import), a value the database refuses, or a database that is locked or full is rolled back
and `BulkWriter.commit` returns ``False``; the caller then hands the same batch, as entries (`RowBatch.entries`),
to the `JournalWriter`, which marks duplicates, stores a refused entry as an ``error`` line and retries a locked
database. So the rules for what gets stored live in one place, and the fast path can never store something the
live path would not.
"""

from __future__ import annotations

import contextlib
import gc
import marshal
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from smdrd.journal import Alert, JournalEntry
from smdrd.parsing import extension_names
from smdrd.store.mapping import clean_name
from smdrd.store.sqlite.directory import LEARN_NAME
from smdrd.store.sqlite.rollups import ROLL_UP
from smdrd.store.sqlite.rows import (
    INSERT_CALL,
    INSERT_LINE,
    LAST_IDS,
    OUTBOX_INSERT,
    CallRow,
    PreparedEntry,
    alert_row,
    call_row,
)
from smdrd.store.sqlite.schema import PRAGMAS, migrate

__all__ = ["IMPORT_PRAGMAS", "BulkWriter", "LineFields", "RowBatch"]

log = structlog.get_logger(__name__)

#: What the import's own connection sets after `PRAGMAS`: a bulk load of 20,000-line transactions, not the daemon's
#: many small commits. ``synchronous`` stays ``NORMAL``: in WAL mode a commit is not synced anyway (only a
#: checkpoint is), so ``OFF`` would save little here, and it lets a power cut during a checkpoint corrupt the whole
#: database, the daemon's calls with it. ``locking_mode = EXCLUSIVE`` is not set: the daemon may be writing beside.
IMPORT_PRAGMAS = (
    # 64 MiB of page cache instead of SQLite's 2 MiB: the pages where the calls indexes and the seven rollups
    # take their new rows stay in memory from one batch to the next instead of being read back.
    "PRAGMA cache_size = -65536",
    # A checkpoint after 64 MiB of WAL instead of 4 MiB (every commit of a 20,000-line batch): a page that every
    # batch rewrites (a rollup's or an index's inner pages) is copied back once per checkpoint, not per commit.
    # Nothing is less durable: a committed batch is in the WAL, which SQLite replays after any crash, whenever
    # the last checkpoint ran; the WAL file only grows that much larger while the import runs.
    "PRAGMA wal_autocheckpoint = 16384",
)

#: a ``lines`` row without its id, in `INSERT_LINE` order after the id: the writer numbers lines at commit.
LineFields = tuple[str, str, int, str, bytes, str, "str | None"]


@dataclass(slots=True)
class RowBatch:
    """Journal entries as the rows they are stored as, ready to cross to another process.

    Attributes:
        lines: one `LineFields` per entry, in order.
        calls: ``(index of its line in lines, calls row)`` per call.
        alerts: ``(index of its line, Alert)`` per alert (import has no alert rules; kept for completeness).
    """

    lines: list[LineFields] = field(default_factory=list)
    calls: list[tuple[int, CallRow]] = field(default_factory=list)
    alerts: list[tuple[int, Alert]] = field(default_factory=list)
    #: the extension names the PBX gave in these calls (the directory learns them, `LEARN_NAME`).
    names: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.lines)

    def __reduce__(self) -> tuple[Callable[..., RowBatch], tuple[object, ...]]:
        # The rows are plain tuples of str, int, bytes and None: marshal writes them about five times faster than
        # pickle (which memoises every object), in the parsing process that is half of the import's work. The
        # alerts (objects; import has none) and a batch marshal refuses go the pickle way.
        try:
            return (_unmarshal, (marshal.dumps((self.lines, self.calls, self.names)), self.alerts))
        except ValueError:
            return (RowBatch, (self.lines, self.calls, self.alerts, self.names))

    def add(self, e: JournalEntry) -> None:
        """Append ``e`` as rows (the calls mapped by `call_row`, as the live writer maps them at commit)."""
        index = len(self.lines)
        self.lines.append((e.source, e.peer, e.received_at, e.format, e.raw, e.status, e.error))
        if e.calls:
            source = e.source
            self.calls.extend([(index, call_row(c, source)) for c in e.calls])
            for extension, name in extension_names(c.record for c in e.calls):
                self.names[extension] = name
        if e.alerts:
            self.alerts.extend([(index, a) for a in e.alerts])

    def entries(self) -> list[PreparedEntry]:
        """The batch as the `JournalWriter` queues entries (for the slow path): each entry without its call
        objects, with its call rows (`PreparedEntry.call_rows` then says what is stored)."""
        rows: dict[int, list[CallRow]] = {}
        for index, row in self.calls:
            rows.setdefault(index, []).append(row)
        alerts: dict[int, list[Alert]] = {}
        for index, alert in self.alerts:
            alerts.setdefault(index, []).append(alert)
        return [PreparedEntry(JournalEntry(*line, calls=(), alerts=tuple(alerts.get(i, ()))),
                              tuple(rows.get(i, ())))
                for i, line in enumerate(self.lines)]


def _unmarshal(rows: bytes, alerts: list[tuple[int, Alert]]) -> RowBatch:
    lines, calls, names = marshal.loads(rows)  # written by RowBatch.__reduce__, in the import's worker
    return RowBatch(lines, calls, alerts, names)


class BulkWriter:
    """Commits `RowBatch`es with plain ``sqlite3`` from the calling thread (one connection, one thread).

    Line ids are assigned inside the write transaction, as the live writer does, so an import running beside
    the daemon cannot collide with it.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        #: lines and calls committed by the fast path.
        self.lines = 0
        self.calls = 0

    def open(self) -> None:
        """Open (creating the folder) and migrate the database."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None)
        for pragma in PRAGMAS + IMPORT_PRAGMAS:
            conn.execute(pragma)
        migrate(conn)
        self._conn = conn

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None

    def commit(self, batch: RowBatch) -> bool:
        """Commit ``batch`` in one transaction; ``False`` (and nothing committed) when it needs the live writer's
        care: a call stored already, a value the database refuses, or a database that cannot be written now."""
        conn = self._conn
        if conn is None:
            raise RuntimeError("BulkWriter.commit before open")
        # The rows below are millions of short-lived, acyclic tuples: a collection pass finds nothing to free.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            conn.execute("BEGIN IMMEDIATE")
            last_line, calls_before = conn.execute(LAST_IDS).fetchone()
            first: int = last_line + 1
            conn.executemany(INSERT_LINE, _numbered(first, batch.lines))
            calls = batch.calls
            if calls:
                # rowcount counts the rows this statement inserted: fewer than sent means a call is stored
                # already, which only the live writer's duplicate handling may resolve.
                inserted = conn.executemany(INSERT_CALL, [(first + i, *row) for i, row in calls]).rowcount
                if inserted != len(calls):
                    conn.execute("ROLLBACK")
                    return False
                for statement in ROLL_UP:
                    conn.execute(statement, (calls_before,))
            if batch.alerts:
                conn.executemany(OUTBOX_INSERT, [alert_row(a) for _, a in batch.alerts])
            if batch.names:
                now = int(time.time())
                conn.executemany(LEARN_NAME, [(ext, name, now) for ext, given in batch.names.items()
                                              if (name := clean_name(given))])
            conn.execute("COMMIT")
        except (sqlite3.Error, OSError, ValueError, TypeError, OverflowError) as exc:
            log.debug("import.bulk_commit_fell_back", error=f"{type(exc).__name__}: {exc}"[:300])
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            return False
        finally:
            if was_enabled:
                gc.enable()
        self.lines += len(batch.lines)
        self.calls += len(calls)
        return True


def _numbered(first: int, lines: Sequence[LineFields]) -> Iterator[tuple[object, ...]]:
    """``lines`` as ``lines`` rows numbered from ``first`` (a generator: executemany binds them one by one)."""
    for i, line in enumerate(lines, first):
        yield (i, *line)
