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
from smdrd.store.mapping import MAX_NAME_CHARS, clean_name, iso_day
from smdrd.store.planner import ReadConnection
from smdrd.store.sqlite.side import SideConnection

__all__ = ["LEARN_NAME", "LEARN_SITE_NAME", "MAX_NAME_CHARS", "SET_EDITED", "SET_SITE_EDITED", "SqliteDirectory",
           "name_rows", "replace_rows"]

#: ``(number, name, at, site)``: a name the PBX of ``site`` gave an extension (``''``: this box's own PBX, the
#: name for every site that has none of its own); replaces only an earlier PBX name that differs.
LEARN_SITE_NAME = (
    "INSERT INTO directory_extensions (number, name, name_source, updated_at, site) VALUES (?, ?, 'pbx', ?, ?) "
    "ON CONFLICT (number, site) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at "
    "WHERE directory_extensions.name_source = 'pbx' AND directory_extensions.name <> excluded.name")

#: ``(number, name, at)``: `LEARN_SITE_NAME` for this box's own journal writers (the site-less name).
LEARN_NAME = LEARN_SITE_NAME.replace("?, ?)", "?, '')", 1)

#: ``(number, name, at, site)``: a name a person (or an import) gave an extension: it replaces any other.
SET_SITE_EDITED = (
    "INSERT INTO directory_extensions (number, name, name_source, updated_at, site) VALUES (?, ?, 'edited', ?, ?) "
    "ON CONFLICT (number, site) DO UPDATE SET name = excluded.name, name_source = 'edited', "
    "updated_at = excluded.updated_at")

#: ``(number, name, at)``: `SET_SITE_EDITED` of the site-less name.
SET_EDITED = SET_SITE_EDITED.replace("?, ?)", "?, '')", 1)

def name_rows(names: Iterable[tuple[str, ...]], at: int) -> list[tuple[str, str, int, str]]:
    """``(number, name[, site])`` as `LEARN_SITE_NAME` / `SET_SITE_EDITED` rows, the names cleaned, the empty
    ones left out."""
    return [(number, name, at, rest[0] if rest else "")
            for number, given, *rest in names if number and (name := clean_name(given))]


_BUMP = "UPDATE directory_version SET version = version + 1 WHERE id = 1"


def replace_rows(conn: ReadConnection, departments: Sequence[DirectoryDepartment],
                 memberships: Sequence[DirectoryMembership], *, renamed: dict[str, str],
                 names: Iterable[tuple[str, ...]], at: int) -> None:
    """Make the directory's rows these, inside the caller's transaction, in SQL both stores speak (``?``
    placeholders; `smdrd.store.postgres.directory` runs it through its adapter): `DirectoryStore.replace`."""
    conn.execute("DELETE FROM directory_memberships")
    conn.execute("UPDATE directory_departments SET parent = NULL")
    conn.execute("DELETE FROM directory_departments")
    conn.executemany("INSERT INTO directory_departments (name, parent, budget, position) VALUES (?, NULL, ?, ?)",
                     [(d.name, None if d.budget is None else str(d.budget), i) for i, d in enumerate(departments)])
    conn.executemany("UPDATE directory_departments SET parent = ? WHERE name = ?",
                     [(d.parent, d.name) for d in departments if d.parent is not None])
    conn.executemany(
        "INSERT INTO directory_memberships (department, spec, valid_from, valid_until, site) VALUES (?, ?, ?, ?, ?)",
        [(m.department, m.spec, m.valid_from and m.valid_from.isoformat(),
          m.valid_until and m.valid_until.isoformat(), m.site) for m in memberships])
    for old, new in renamed.items():
        # A manager of both keeps one assignment.
        conn.execute("DELETE FROM user_departments WHERE department = ? AND user_id IN "
                     "(SELECT user_id FROM user_departments WHERE department = ?)", (old, new))
        conn.execute("UPDATE user_departments SET department = ? WHERE department = ?", (new, old))
    conn.executemany(
        SET_SITE_EDITED + " WHERE directory_extensions.name <> excluded.name "
        "OR directory_extensions.name_source <> 'edited'", name_rows(names, at))

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
