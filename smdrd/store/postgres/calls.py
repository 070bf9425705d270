"""The console's call reads on PostgreSQL (`smdrd.store.api.CallReader`): the reads both stores share
(`smdrd.store.call_reads.CallReads`: a keyset page of ``calls_start_numbers`` or ``calls_extension``, one call,
its legs, its journal lines) through the adapter that speaks PostgreSQL's placeholders, with its own test for
"contains" and its TEMP schema. Only reads (PostgreSQL refuses a TEMP table, a manager's departments, in a
read-only transaction, so the connection is not made read-only)."""

from __future__ import annotations

from smdrd.store.call_reads import CallReads
from smdrd.store.postgres.connect import connect
from smdrd.store.postgres.reports import POSTGRES, ReadAdapter

__all__ = ["PgCalls"]


class PgCalls(CallReads):
    """`smdrd.store.api.CallReader` on one connection of its own (used from one thread at a time)."""

    contains = "strpos({haystack}, ?) > 0"
    temp = POSTGRES.temp

    def __init__(self, url: str) -> None:
        self.conn = connect(url)
        super().__init__(ReadAdapter(self.conn))

    def close(self) -> None:
        self.conn.close()
