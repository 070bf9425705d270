"""`PgSide`: a feature's own connection to the PostgreSQL store, beside the journal writer's (the counterpart of
`smdrd.store.sqlite.side.SideConnection`): for what people change from the console or the shell (users, the
directory, the tariff, the mail outbox...), with `PgSide.write` for one transaction and `PgSide.audit` for the
audit entry written inside it. Used from one thread at a time (psycopg's connection is safe to hand over)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from smdrd.store.api import Actor
from smdrd.store.mapping import audit_text
from smdrd.store.postgres.connect import connect

__all__ = ["AUDIT_INSERT", "PgSide"]

AUDIT_INSERT = ("INSERT INTO audit_log (at, actor, address, action, target, before, after) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s)")


class PgSide:
    """One autocommit connection to the database at ``url`` (its schema brought up to date)."""

    def __init__(self, url: str) -> None:
        self.conn: psycopg.Connection[Any] = connect(url)

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def write(self) -> Iterator[psycopg.Connection[Any]]:
        """One transaction: committed at the end, rolled back on any error."""
        with self.conn.transaction():
            yield self.conn

    def audit(self, action: str, target: str, *, at: int, actor: Actor, before: dict[str, Any] | None,
              after: dict[str, Any] | None) -> None:
        """An audit log entry (inside the caller's transaction, so it exists exactly when the change does)."""
        self.conn.execute(AUDIT_INSERT, (at, actor.name, actor.address, action, target, audit_text(before),
                                         audit_text(after)))

    def one(self, sql: str, params: Any = None) -> tuple[Any, ...] | None:
        """The first row of ``sql``, or None."""
        row: tuple[Any, ...] | None = self.conn.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        return list(self.conn.execute(sql, params).fetchall())
