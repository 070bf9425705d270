"""Every stored call of a time range, read from SQLite as named fields (`smdrd.store.api.CallExport`).

The fields are the ``calls`` table's own columns (read from the table, so columns added by later migrations
follow). One read transaction spans the export: it is one consistent snapshot while the daemon keeps writing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from smdrd.errors import SmdrdError
from smdrd.store.sqlite.backup import open_existing


class SqliteCallExport:
    """`smdrd.store.api.CallExport` on a read-only connection to an existing database."""

    def __init__(self, path: Path) -> None:
        self.conn: sqlite3.Connection = open_existing(path)
        self.conn.execute("BEGIN")

    def columns(self) -> list[str]:
        names = [row[1] for row in self.conn.execute("PRAGMA table_info(calls)")]
        if not names:
            raise SmdrdError("the database has no calls table (is it an smdrd database?)")
        return names

    def rows(self, start: int | None, end: int | None) -> Iterator[dict[str, Any]]:
        where, params = [], []
        if start is not None:
            where.append("start_utc >= ?")
            params.append(start)
        if end is not None:
            where.append("start_utc < ?")
            params.append(end)
        sql = "SELECT * FROM calls" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY start_utc, id"
        cur = self.conn.execute(sql, params)
        names = [d[0] for d in cur.description]
        for values in cur:
            yield dict(zip(names, values, strict=True))

    def close(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("COMMIT")
        self.conn.close()
