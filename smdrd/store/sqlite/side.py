"""`SideConnection`: a feature's own connection to the database, beside the journal writer's.

For what people change from the console or the shell (users, the directory, the tariff...): created and
migrated if need be, shareable across threads (used from one at a time: the console hands it to a worker
thread), with `SideConnection.write` for one immediate transaction and `SideConnection.audit` for the audit
entry written inside it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from smdrd.store.api import Actor
from smdrd.store.mapping import audit_text
from smdrd.store.sqlite.schema import connect

__all__ = ["SideConnection"]


class SideConnection:
    """One connection to the database at ``path`` (created and migrated if needed)."""

    def __init__(self, path: Path | str) -> None:
        connect(str(path)).close()  # created and migrated
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        for pragma in ("PRAGMA foreign_keys = ON", "PRAGMA busy_timeout = 5000"):
            self.conn.execute(pragma)

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed at the end, rolled back on any error."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def audit(self, action: str, target: str, *, at: int, actor: Actor, before: dict[str, Any] | None,
              after: dict[str, Any] | None) -> None:
        """An audit log entry (inside the caller's transaction, so it exists exactly when the change does)."""
        self.conn.execute(
            "INSERT INTO audit_log (at, actor, address, action, target, before, after) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (at, actor.name, actor.address, action, target, audit_text(before), audit_text(after)))
