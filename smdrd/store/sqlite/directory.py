"""The directory in SQLite (`smdrd.store.api.DirectoryStore`): extension names, departments, dated memberships.

Names are learnt from the PBX as calls are stored (`LEARN_NAME`, run by the journal writer in the calls'
transaction) and edited by people; an edited name is never overwritten by the PBX's. Departments and
memberships are replaced as a whole, only over the version they were read at (`DirectoryConflict` otherwise),
each change with its audit entry in the same transaction. Times are UTC seconds, given by the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from smdrd.store.api import (
    Actor,
    DirectoryConflict,
    DirectoryDepartment,
    DirectoryExtension,
    DirectoryMembership,
    DirectorySnapshot,
    ExtensionNames,
)
from smdrd.store.directory_rows import (
    LEARN_NAME,
    LEARN_SITE_NAME,
    SET_EDITED,
    SET_SITE_EDITED,
    name_rows,
    replace_rows,
)
from smdrd.store.mapping import MAX_NAME_CHARS, clean_name, iso_day
from smdrd.store.sqlite.side import SideConnection

__all__ = ["LEARN_NAME", "LEARN_SITE_NAME", "MAX_NAME_CHARS", "SET_EDITED", "SET_SITE_EDITED", "SqliteDirectory",
           "name_rows", "replace_rows"]

_BUMP = "UPDATE directory_version SET version = version + 1 WHERE id = 1"


# Extensions the directory knows: named, named exactly by a membership (a range names none), or seen in calls.
_KNOWN = """
    WITH known (number) AS (
        SELECT number FROM directory_extensions
        UNION SELECT spec FROM directory_memberships
              WHERE NOT (spec GLOB '[0-9]*-[0-9]*' AND spec NOT GLOB '*[^0-9-]*')
        UNION SELECT extension FROM rollup_monthly WHERE extension <> ''
    )
    SELECT {what} FROM known AS k LEFT JOIN directory_extensions AS e ON e.number = k.number
    WHERE ? = '' OR instr(lower(k.number), ?) > 0 OR instr(lower(coalesce(e.name, '')), ?) > 0
          OR instr(lower(coalesce(e.site, '')), ?) > 0
    """


class SqliteDirectory(SideConnection):
    """One connection to the database at ``path`` (created and migrated if needed), used from one thread at a
    time (not necessarily the one that opened it)."""

    # ---- names ----

    def names(self, numbers: Iterable[str] | None = None) -> ExtensionNames:
        if numbers is None:
            return ExtensionNames(self.conn.execute("SELECT number, name, site FROM directory_extensions"))
        wanted = list(dict.fromkeys(numbers))
        rows: list[tuple[str, str, str]] = []
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            rows += self.conn.execute(
                "SELECT number, name, site FROM directory_extensions "
                f"WHERE number IN ({', '.join('?' * len(chunk))})", chunk)
        return ExtensionNames(rows)

    def learn_names(self, names: Iterable[tuple[str, str]], *, at: int, site: str = "") -> int:
        rows = name_rows(((number, name, site) for number, name in names), at)
        with self.write() as conn:
            before = conn.total_changes
            conn.executemany(LEARN_SITE_NAME, rows)
            return conn.total_changes - before

    def extensions(self, search: str = "", *, limit: int = 100,
                   offset: int = 0) -> tuple[list[DirectoryExtension], int]:
        needle = search.strip().lower()
        args = (needle, needle, needle, needle)
        total = int(self.conn.execute(_KNOWN.format(what="count(*)"), args).fetchone()[0])
        rows = self.conn.execute(
            _KNOWN.format(what="k.number, coalesce(e.name, ''), coalesce(e.name_source, ''), "
                               "coalesce(e.updated_at, 0), coalesce(e.site, '')")
            + " ORDER BY k.number GLOB '*[^0-9]*' OR k.number = '', length(k.number), k.number, e.site "
              "LIMIT ? OFFSET ?",
            (*args, limit, offset)).fetchall()
        return [DirectoryExtension(r[0], r[1], r[2], int(r[3]), r[4]) for r in rows], total

    def set_name(self, number: str, name: str, *, at: int, actor: Actor, site: str = "") -> tuple[str, str]:
        name = clean_name(name)
        with self.write() as conn:
            row = conn.execute("SELECT name FROM directory_extensions WHERE number = ? AND site = ?",
                               (number, site)).fetchone()
            before = "" if row is None else str(row[0])
            if name:
                conn.execute(SET_SITE_EDITED, (number, name, at, site))
            else:
                conn.execute("DELETE FROM directory_extensions WHERE number = ? AND site = ?", (number, site))
            where = {"site": site} if site else {}
            self.audit("extension.name", number, at=at, actor=actor, before={"name": before, **where},
                       after={"name": name, **where})
        return before, name

    # ---- departments and memberships ----

    def version(self) -> int:
        return int(self.conn.execute("SELECT version FROM directory_version WHERE id = 1").fetchone()[0])

    def snapshot(self) -> DirectorySnapshot:
        self.conn.execute("BEGIN")  # one consistent read
        try:
            version = self.version()
            departments = tuple(
                DirectoryDepartment(name, parent, None if budget is None else Decimal(budget))
                for name, parent, budget in self.conn.execute(
                    "SELECT name, parent, budget FROM directory_departments ORDER BY position, name"))
            memberships = tuple(
                DirectoryMembership(dep, spec, iso_day(first), iso_day(last), site)
                for dep, spec, first, last, site in self.conn.execute(
                    "SELECT department, spec, valid_from, valid_until, site FROM directory_memberships ORDER BY id"))
        finally:
            self.conn.execute("COMMIT")
        return DirectorySnapshot(departments, memberships, version)

    def replace(self, departments: Sequence[DirectoryDepartment], memberships: Sequence[DirectoryMembership], *,
                expected_version: int, at: int, actor: Actor, action: str, target: str,
                before: dict[str, Any] | None, after: dict[str, Any] | None,
                renamed: dict[str, str] | None = None, names: Iterable[tuple[str, ...]] = ()) -> int:
        with self.write() as conn:
            if self.version() != expected_version:
                raise DirectoryConflict("the directory was changed by someone else meanwhile; nothing was "
                                        "changed: look at it again and redo the change")
            replace_rows(conn, departments, memberships, renamed=renamed or {}, names=names, at=at)
            conn.execute(_BUMP)
            self.audit(action, target, at=at, actor=actor, before=before, after=after)
            return self.version()
