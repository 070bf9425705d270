"""The console's call reads in SQLite (`smdrd.store.api.CallReader`): the reads of `smdrd.store.call_reads` on one
read-only connection (the journal cannot be changed through it).
"""

from __future__ import annotations

from pathlib import Path

from smdrd.store.call_reads import CallReads
from smdrd.store.sqlite.reports import connect_readonly

__all__ = ["SqliteCalls"]


class SqliteCalls(CallReads):
    """`smdrd.store.api.CallReader` on one read-only connection (used from one thread at a time)."""

    def __init__(self, path: str | Path) -> None:
        self.conn = connect_readonly(path)
        super().__init__(self.conn)

    def close(self) -> None:
        self.conn.close()
