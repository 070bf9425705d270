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
from smdrd.store.mapping import TARIFF_FIELDS, rule_count, tariff_info, tariff_text
from smdrd.store.sqlite.accounts import SqliteAccounts

_INFO = f"SELECT {', '.join(TARIFF_FIELDS)} FROM tariff_versions"


class SqliteTariffs:
    """One connection to the database at ``path`` (created and migrated if needed), usable from one thread at a
    time, not necessarily the one that opened it."""

    def __init__(self, path: Path | str) -> None:
        self._accounts = SqliteAccounts(path)  # the same connection set-up, and its audit log
        self.conn: sqlite3.Connection = self._accounts.conn

    def close(self) -> None:
        self._accounts.close()

    def _one(self, where: str, args: tuple[Any, ...]) -> TariffVersion | None:
        row = self.conn.execute(f"SELECT {', '.join(TARIFF_FIELDS)}, document FROM tariff_versions {where}",
                                args).fetchone()
        if row is None:
            return None
        return TariffVersion(tariff_info(row), json.loads(row[5]))

    def current(self) -> TariffVersion | None:
        return self._one("ORDER BY version DESC LIMIT 1", ())

    def version(self, number: int) -> TariffVersion | None:
        return self._one("WHERE version = ?", (number,))

    def versions(self, limit: int = 50) -> list[TariffVersionInfo]:
        rows = self.conn.execute(f"{_INFO} ORDER BY version DESC LIMIT ?", (limit,)).fetchall()
        return [tariff_info(r) for r in rows]

    def save(self, document: dict[str, Any], *, expected: int | None, at: int, actor: Actor, note: str,
             action: str, target: str, before: dict[str, Any] | None,
             after: dict[str, Any] | None) -> TariffVersionInfo:
        text = tariff_text(document)
        with self._accounts._write() as conn:
            latest = conn.execute("SELECT coalesce(max(version), 0) FROM tariff_versions").fetchone()[0]
            if expected is not None and int(latest) != expected:
                raise TariffConflict(f"the tariff was saved as version {latest} since version {expected} was read; "
                                     f"reload and make the change again")
            cur = conn.execute("INSERT INTO tariff_versions (created_at, actor, note, rules, document) "
                               "VALUES (?, ?, ?, ?, ?)", (at, actor.name, note, rule_count(document), text))
            number = int(cur.lastrowid or 0)
            self._accounts._audit(conn, action, target, at, actor, before=before,
                                  after={**(after or {}), "version": number})
        return TariffVersionInfo(number, at, actor.name, note, rule_count(document))
