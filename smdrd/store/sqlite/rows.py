"""The SQLite store's statements for the rows of `smdrd.store.rows` (lines, calls, outbox alerts)."""

from __future__ import annotations

from smdrd.store.rows import (
    CALL_COLUMNS,
    POSITION_COLUMNS,
    CallRow,
    PreparedEntry,
    alert_row,
    call_row,
    encode_extra,
    line_row,
    position_changes,
    position_from_row,
    position_row,
    prepare,
    unprepared,
)

__all__ = ["CALL_COLUMNS", "FORGET_POSITION", "INSERT_CALL", "INSERT_CALL_NUMBERED", "INSERT_LINE", "LAST_IDS",
           "LOAD_POSITIONS", "OUTBOX_INSERT", "SAVE_POSITION", "CallRow", "PreparedEntry", "alert_row", "call_row",
           "encode_extra", "line_row", "position_changes", "position_from_row", "position_row", "prepare", "unprepared"]

INSERT_LINE = ("INSERT INTO lines (id, source, peer, received_at, format, raw, status, error) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
INSERT_CALL = (f"INSERT OR IGNORE INTO calls (line_id, {', '.join(CALL_COLUMNS)}) "
               f"VALUES (?, {', '.join('?' * len(CALL_COLUMNS))})")
#: `INSERT_CALL` with the call's id given: ``smdrd reparse`` numbers rebuilt calls above every id there was.
INSERT_CALL_NUMBERED = (f"INSERT OR IGNORE INTO calls (id, line_id, {', '.join(CALL_COLUMNS)}) "
                        f"VALUES (?, ?, {', '.join('?' * len(CALL_COLUMNS))})")
#: ``(highest lines.id, highest calls.id)`` (0 when empty), read at the start of a write transaction: new lines
#: are numbered after the first, and the calls above the second are the batch `rollups.ROLL_UP` adds.
LAST_IDS = "SELECT (SELECT coalesce(max(id), 0) FROM lines), (SELECT coalesce(max(id), 0) FROM calls)"
#: an alert's outbox row is ``(alert_id, rule, severity, created_at, payload)``; a known id is ignored.
OUTBOX_INSERT = ("INSERT OR IGNORE INTO alert_outbox (alert_id, rule, severity, created_at, payload) "
                 "VALUES (?, ?, ?, ?, ?)")
#: a followed file's position (`position_row`), replacing the one saved before for its source and path.
SAVE_POSITION = (f"INSERT INTO file_positions ({', '.join(POSITION_COLUMNS)}) "
                 f"VALUES ({', '.join('?' * len(POSITION_COLUMNS))}) ON CONFLICT (source, path) DO UPDATE SET "
                 + ", ".join(f"{c} = excluded.{c}" for c in POSITION_COLUMNS[2:]))
#: a forgotten position (`smdrd.journal.FilePosition.forgotten`): its row goes.
FORGET_POSITION = "DELETE FROM file_positions WHERE source = ? AND path = ?"
#: every saved position, read when the writer opens (`position_from_row`).
LOAD_POSITIONS = f"SELECT {', '.join(POSITION_COLUMNS)} FROM file_positions"
