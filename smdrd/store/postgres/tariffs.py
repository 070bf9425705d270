"""The tariff's versions on PostgreSQL (`smdrd.store.api.TariffStore`), for ``[tariff] source = "database"``, as
`smdrd.store.sqlite.tariffs` keeps them: one JSON document per version, never changed or deleted once saved (the
table's trigger refuses it), each save with its audit entry in one transaction."""

from __future__ import annotations

import json
from typing import Any

from smdrd.store.api import Actor, TariffConflict, TariffVersion, TariffVersionInfo
from smdrd.store.mapping import TARIFF_FIELDS, rule_count, tariff_info, tariff_text
from smdrd.store.postgres.side import PgSide

__all__ = ["PgTariffs"]

_INFO = f"SELECT {', '.join(TARIFF_FIELDS)} FROM tariff_versions"
#: saves of one database take turns (the version they were made on is checked, then the next one written).
_ONE_SAVE = "SELECT pg_advisory_xact_lock(1397244997)"


class PgTariffs(PgSide):
    """One connection to the database at ``url`` (migrated if need be), used from one thread at a time."""

    def _one(self, where: str, args: tuple[Any, ...]) -> TariffVersion | None:
        row = self.one(f"SELECT {', '.join(TARIFF_FIELDS)}, document FROM tariff_versions {where}", args)
        return None if row is None else TariffVersion(tariff_info(row), json.loads(row[5]))

    def current(self) -> TariffVersion | None:
        return self._one("ORDER BY version DESC LIMIT 1", ())

    def version(self, number: int) -> TariffVersion | None:
        return self._one("WHERE version = %s", (number,))

    def versions(self, limit: int = 50) -> list[TariffVersionInfo]:
        return [tariff_info(r) for r in self.all(f"{_INFO} ORDER BY version DESC LIMIT %s", (limit,))]

    def save(self, document: dict[str, Any], *, expected: int | None, at: int, actor: Actor, note: str,
             action: str, target: str, before: dict[str, Any] | None,
             after: dict[str, Any] | None) -> TariffVersionInfo:
        with self.write() as conn:
            conn.execute(_ONE_SAVE)
            latest = self.one("SELECT coalesce(max(version), 0) FROM tariff_versions")
            current = int(latest[0]) if latest else 0
            if expected is not None and current != expected:
                raise TariffConflict(f"the tariff was saved as version {current} since version {expected} was "
                                     f"read; reload and make the change again")
            row = self.one("INSERT INTO tariff_versions (created_at, actor, note, rules, document) "
                           "VALUES (%s, %s, %s, %s, %s) RETURNING version",
                           (at, actor.name, note, rule_count(document), tariff_text(document)))
            assert row is not None
            number = int(row[0])
            self.audit(action, target, at=at, actor=actor, before=before, after={**(after or {}), "version": number})
        return TariffVersionInfo(number, at, actor.name, note, rule_count(document))
