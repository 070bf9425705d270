"""The journal's ``error`` lines, read back for ``smdrd errors`` (`smdrd.store.api.JournalErrors`).

Read-only, on its own connection to an existing database; one read transaction, so the count and the lines
agree while the daemon keeps writing. The partial index ``lines_errors`` keeps this cheap however many lines
parsed well.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from smdrd.store.api import ErrorLine
from smdrd.store.sqlite.backup import open_existing


class SqliteJournalErrors:
    """`smdrd.store.api.JournalErrors` on a read-only connection."""

    def __init__(self, path: Path) -> None:
        self.conn: sqlite3.Connection = open_existing(path)
        self.conn.execute("BEGIN")

    def error_lines(self, lo: int, hi: int, source: str | None, limit: int) -> tuple[list[ErrorLine], int]:
        where = "status = 'error' AND received_at >= ? AND received_at < ?" + (" AND source = ?" if source else "")
        params: list[object] = [lo * 1_000_000, hi * 1_000_000] + ([source] if source else [])
        total = int(self.conn.execute(f"SELECT count(*) FROM lines WHERE {where}", params).fetchone()[0])
        sql = (f"SELECT id, source, peer, received_at, format, raw, coalesce(error, '') FROM lines WHERE {where} "
               "ORDER BY id")
        rows = self.conn.execute(sql + (" LIMIT ?" if limit else ""), [*params, limit] if limit else params)
        return [ErrorLine(i, s, p, r, f, bytes(raw), e) for i, s, p, r, f, raw, e in rows], total

    def close(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")
        self.conn.close()
