"""The directory on PostgreSQL (`smdrd.store.api.DirectoryStore`): extension names, departments, dated
memberships, as `smdrd.store.sqlite.directory` keeps them. Names are learnt from the PBX in the journal writer's
batch transaction (`LEARN_NAME`) and edited by people; departments and memberships are replaced as a whole, only
over the version they were read at, each change with its audit entry in one transaction."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from smdrd.store import directory_rows as rows
from smdrd.store.api import (
    Actor,
    DirectoryConflict,
    DirectoryDepartment,
    DirectoryExtension,
    DirectoryMembership,
    DirectorySnapshot,
    ExtensionNames,
)
from smdrd.store.directory_rows import name_rows, replace_rows
from smdrd.store.mapping import clean_name, iso_day
from smdrd.store.postgres.reports import ReadAdapter
from smdrd.store.postgres.side import PgSide

__all__ = ["LEARN_NAME", "LEARN_SITE_NAME", "PgDirectory"]

#: ``(number, name, at)`` and ``(number, name, at, site)``: the SQLite store's statements
#: (`smdrd.store.sqlite.directory`) in psycopg's placeholders.
LEARN_NAME = rows.LEARN_NAME.replace("?", "%s")
LEARN_SITE_NAME = rows.LEARN_SITE_NAME.replace("?", "%s")
_SET_SITE_EDITED = rows.SET_SITE_EDITED.replace("?", "%s")

# Extensions the directory knows: named, named exactly by a membership (a range names none), or seen in calls.
_KNOWN = """
    WITH known (number) AS (
        SELECT number FROM directory_extensions
        UNION SELECT spec FROM directory_memberships WHERE spec !~ '^[0-9][0-9-]*-[0-9][0-9-]*$'
        UNION SELECT extension FROM rollup_monthly WHERE extension <> ''
    )
    SELECT {what} FROM known AS k LEFT JOIN directory_extensions AS e ON e.number = k.number
    WHERE %(needle)s = '' OR strpos(lower(k.number), %(needle)s) > 0
          OR strpos(lower(coalesce(e.name, '')), %(needle)s) > 0 OR strpos(lower(coalesce(e.site, '')), %(needle)s) > 0
    """


class PgDirectory(PgSide):
    """One connection to the database at ``url`` (migrated if need be), used from one thread at a time."""

    # ---- names ----

    def names(self, numbers: Iterable[str] | None = None) -> ExtensionNames:
        if numbers is None:
            return ExtensionNames(self.all("SELECT number, name, site FROM directory_extensions"))
        wanted = list(dict.fromkeys(numbers))
        return ExtensionNames(self.all("SELECT number, name, site FROM directory_extensions WHERE number = ANY(%s)",
                                       (wanted,)))

    def learn_names(self, names: Iterable[tuple[str, str]], *, at: int, site: str = "") -> int:
        rows = name_rows(((number, name, site) for number, name in names), at)
        changed = 0
        with self.write() as conn, conn.cursor() as cur:
            for row in rows:
                cur.execute(LEARN_SITE_NAME, row)
                changed += cur.rowcount
        return changed

    def extensions(self, search: str = "", *, limit: int = 100,
                   offset: int = 0) -> tuple[list[DirectoryExtension], int]:
        args: dict[str, Any] = {"needle": search.strip().lower(), "limit": limit, "offset": offset}
        total = self.one(_KNOWN.format(what="count(*)"), args)
        rows = self.all(
            _KNOWN.format(what="k.number, coalesce(e.name, ''), coalesce(e.name_source, ''), "
                               "coalesce(e.updated_at, 0), coalesce(e.site, '')")
            + ' ORDER BY k.number ~ \'[^0-9]\' OR k.number = \'\', length(k.number), k.number COLLATE "C", '
              'e.site COLLATE "C" NULLS FIRST LIMIT %(limit)s OFFSET %(offset)s', args)
        return ([DirectoryExtension(r[0], r[1], r[2], int(r[3]), r[4]) for r in rows],
                int(total[0]) if total else 0)

    def set_name(self, number: str, name: str, *, at: int, actor: Actor, site: str = "") -> tuple[str, str]:
        name = clean_name(name)
        with self.write() as conn:
            row = self.one("SELECT name FROM directory_extensions WHERE number = %s AND site = %s FOR UPDATE",
                           (number, site))
            before = "" if row is None else str(row[0])
            if name:
                conn.execute(_SET_SITE_EDITED, (number, name, at, site))
            else:
                conn.execute("DELETE FROM directory_extensions WHERE number = %s AND site = %s", (number, site))
            where = {"site": site} if site else {}
            self.audit("extension.name", number, at=at, actor=actor, before={"name": before, **where},
                       after={"name": name, **where})
        return before, name

    # ---- departments and memberships ----

    def version(self) -> int:
        row = self.one("SELECT version FROM directory_version WHERE id = 1")
        return int(row[0]) if row else 0

    def snapshot(self) -> DirectorySnapshot:
        with self.conn.transaction():  # one consistent read
            self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            version = self.version()
            departments = tuple(
                DirectoryDepartment(name, parent, None if budget is None else Decimal(budget))
                for name, parent, budget in self.all(
                    "SELECT name, parent, budget FROM directory_departments ORDER BY position, name"))
            memberships = tuple(
                DirectoryMembership(dep, spec, iso_day(first), iso_day(last), site)
                for dep, spec, first, last, site in self.all(
                    "SELECT department, spec, valid_from, valid_until, site FROM directory_memberships ORDER BY id"))
        return DirectorySnapshot(departments, memberships, version)

    def replace(self, departments: Sequence[DirectoryDepartment], memberships: Sequence[DirectoryMembership], *,
                expected_version: int, at: int, actor: Actor, action: str, target: str,
                before: dict[str, Any] | None, after: dict[str, Any] | None,
                renamed: dict[str, str] | None = None, names: Iterable[tuple[str, ...]] = ()) -> int:
        with self.write() as conn, conn.cursor() as cur:
            # The version row locked first: a second replace waits here, then sees the new version.
            row = self.one("SELECT version FROM directory_version WHERE id = 1 FOR UPDATE")
            if row is None or int(row[0]) != expected_version:
                raise DirectoryConflict("the directory was changed by someone else meanwhile; nothing was "
                                        "changed: look at it again and redo the change")
            replace_rows(ReadAdapter(conn), departments, memberships, renamed=renamed or {}, names=names, at=at)
            cur.execute("UPDATE directory_version SET version = version + 1 WHERE id = 1 RETURNING version")
            bumped = cur.fetchone()
            self.audit(action, target, at=at, actor=actor, before=before, after=after)
        return int(bumped[0]) if bumped else 0
