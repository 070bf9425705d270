"""The tariff's versions in SQLite (`smdrd.store.api.TariffStore`), for ``[tariff] source = "database"``.

A version is one JSON document (the mode, the bands and the rules in order, as ``[tariff]`` writes them), never
changed or deleted once saved (the table's triggers refuse it). Each save writes its audit entry in the same
transaction. Times are UTC seconds, given by the caller.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from smdrd.store.api import Actor, TariffConflict, TariffVersion, TariffVersionInfo
from smdrd.store.sqlite.accounts import SqliteAccounts

_INFO = "SELECT version, created_at, actor, note, rules FROM tariff_versions"


def _info(row: tuple[Any, ...]) -> TariffVersionInfo:
    return TariffVersionInfo(int(row[0]), int(row[1]), str(row[2]), str(row[3]), int(row[4]))


class SqliteTariffs:
    """One connection to the database at ``path`` (created and migrated if needed), usable from one thread at a
    time, not necessarily the one that opened it."""

    def __init__(self, path: Path | str) -> None:
        self._accounts = SqliteAccounts(path)  # the same connection set-up, and its audit log
        self.conn: sqlite3.Connection = self._accounts.conn

    def close(self) -> None:
        self._accounts.close()

    def _one(self, where: str, args: tuple[Any, ...]) -> TariffVersion | None:
        row = self.conn.execute(f"SELECT version, created_at, actor, note, rules, document FROM tariff_versions "
                                f"{where}", args).fetchone()
        if row is None:
            return None
        return TariffVersion(_info(row), json.loads(row[5]))

    def current(self) -> TariffVersion | None:
        return self._one("ORDER BY version DESC LIMIT 1", ())

    def version(self, number: int) -> TariffVersion | None:
        return self._one("WHERE version = ?", (number,))

    def versions(self, limit: int = 50) -> list[TariffVersionInfo]:
        rows = self.conn.execute(f"{_INFO} ORDER BY version DESC LIMIT ?", (limit,)).fetchall()
        return [_info(r) for r in rows]

    def save(self, document: dict[str, Any], *, expected: int | None, at: int, actor: Actor, note: str,
             action: str, target: str, before: dict[str, Any] | None,
             after: dict[str, Any] | None) -> TariffVersionInfo:
        text = json.dumps(document, sort_keys=True, separators=(",", ":"))
        with self._accounts._write() as conn:
            latest = conn.execute("SELECT coalesce(max(version), 0) FROM tariff_versions").fetchone()[0]
            if expected is not None and int(latest) != expected:
                raise TariffConflict(f"the tariff was saved as version {latest} since version {expected} was read; "
                                     f"reload and make the change again")
            cur = conn.execute("INSERT INTO tariff_versions (created_at, actor, note, rules, document) "
                               "VALUES (?, ?, ?, ?, ?)", (at, actor.name, note, len(document.get("rules", ())), text))
            number = int(cur.lastrowid or 0)
            self._accounts._audit(conn, action, target, at, actor, before=before,
                                  after={**(after or {}), "version": number})
        return TariffVersionInfo(number, at, actor.name, note, len(document.get("rules", ())))
