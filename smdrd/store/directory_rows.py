"""The directory's rows in SQL both stores speak (``?`` placeholders; `smdrd.store.postgres.directory` puts its
own in their place): the extension names a PBX gives and people edit, and the replacement of the departments
and memberships as a whole (`smdrd.store.api.DirectoryStore.replace`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from smdrd.store.api import DirectoryDepartment, DirectoryMembership
from smdrd.store.mapping import clean_name
from smdrd.store.planner import ReadConnection

__all__ = ["LEARN_NAME", "LEARN_SITE_NAME", "SET_EDITED", "SET_SITE_EDITED", "name_rows", "replace_rows"]

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
