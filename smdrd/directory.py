"""The directory's one source of truth (``[directory] source``), its changes and its CSV form.

With ``source = "files"`` (the default) departments and memberships are ``[[departments]]``'s. With
``source = "database"`` they are the rows of `smdrd.store.api.DirectoryStore`, edited in the console or by
``smdrd directory import``. Either way they become the same `DepartmentConfig` list: `resolve` gives every
command and the daemon the settings with the directory in force, so reports, budget alerts, metrics and the
managers' department scoping all resolve departments through `smdrd.reports.departments.Directory`, fed from
either source. Extension names are in the database whatever the source.

A change (`Change`) is computed here on a snapshot, checked with the configuration's own rules
(`department_problems`: unknown parents, cycles, ties), and written by the store only over the version it was
read at, with its audit entry. A problem a person can fix is a `DirectoryError` naming the field.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from smdrd.errors import SmdrdError
from smdrd.reports.config import UNASSIGNED, DepartmentConfig, MembershipConfig
from smdrd.reports.departments import department_problems, extension_sort_key
from smdrd.store.api import (
    Actor,
    DirectoryDepartment,
    DirectoryMembership,
    DirectorySnapshot,
    DirectoryStore,
    ExtensionNames,
)
from smdrd.store.mapping import MAX_NAME_CHARS

if TYPE_CHECKING:
    from smdrd.config import Settings
    from smdrd.daemon import Daemon

__all__ = [
    "CSV_COLUMNS",
    "DATABASE",
    "FILES",
    "Change",
    "DirectoryError",
    "add_department",
    "delete_department",
    "department_configs",
    "edit_department",
    "export_csv",
    "from_config",
    "move_extension",
    "read_csv",
    "resolve",
]

FILES = "files"
DATABASE = "database"

#: the CSV columns of ``smdrd directory import|export``, in order (``valid_from``/``valid_until`` ISO dates;
#: ``site``: the site whose extension it is, in a store of several sites, empty for every site; a file without
#: it imports as before).
CSV_COLUMNS = ("extension", "name", "department", "parent", "budget", "valid_from", "valid_until", "site")

#: the longest site name a membership may give (as ``[site] name``).
MAX_SITE_CHARS = 100

#: the longest department name (as in ``[[departments]]``).
MAX_DEPARTMENT_CHARS = 100


class DirectoryError(SmdrdError):
    """A change or a file the directory refuses: ``field`` says where (a form field, or ``line N, column C``)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


# ---- the source in force ----

def department_configs(snapshot: DirectorySnapshot) -> list[DepartmentConfig]:
    """The snapshot as ``[[departments]]`` would say it (every membership dated or not, in ``members``)."""
    members: dict[str, list[MembershipConfig]] = {d.name: [] for d in snapshot.departments}
    for m in snapshot.memberships:
        members.setdefault(m.department, []).append(
            MembershipConfig(extensions=[m.spec], valid_from=m.valid_from, valid_until=m.valid_until, site=m.site))
    return [DepartmentConfig(name=d.name, parent=d.parent, budget=d.budget, members=members.get(d.name, []))
            for d in snapshot.departments]


def from_config(departments: Sequence[DepartmentConfig]) -> tuple[list[DirectoryDepartment],
                                                                  list[DirectoryMembership]]:
    """``[[departments]]`` as directory rows (to copy a file's departments into the database)."""
    deps = [DirectoryDepartment(d.name, d.parent, d.budget) for d in departments]
    members = [DirectoryMembership(d.name, spec) for d in departments for spec in d.extensions]
    members += [DirectoryMembership(d.name, spec, m.valid_from, m.valid_until, m.site)
                for d in departments for m in d.members for spec in m.extensions]
    return deps, members


def read_snapshot(database: Path | str) -> DirectorySnapshot:
    """The directory in the database at ``database`` (empty when there is no SQLite file yet: none is made)."""
    from smdrd.store import is_url, open_store

    if not is_url(database) and not Path(database).exists():
        return DirectorySnapshot((), (), 0)

    store = open_store(database).directory()
    try:
        return store.snapshot()
    finally:
        store.close()


def resolve(settings: Settings, database: Path | str | None = None) -> Settings:
    """``settings`` with the directory in force: unchanged for ``source = "files"``; for ``"database"``, the
    departments and memberships stored in ``database`` (default: the configuration's, ``[database] url`` or
    ``path``)."""
    if settings.directory.source != DATABASE:
        return settings
    return with_snapshot(settings, read_snapshot(database or settings.database.target))


def with_snapshot(settings: Settings, snapshot: DirectorySnapshot) -> Settings:
    return settings.model_copy(update={"departments": department_configs(snapshot)})


def describe_source(settings: Settings) -> str:
    """Which source of the directory is in force, and what it holds (for ``check-config``)."""
    if settings.directory.source == FILES:
        return (f"directory: from the files ([directory] source = \"files\"): {len(settings.departments)} "
                "departments in [[departments]]")
    if not settings.database.present:
        return ("directory: from the database ([directory] source = \"database\"): the database does not exist "
                "yet; every extension is Unassigned until departments are added (smdrd directory import, or "
                "the console's Directory pages)")
    snap = read_snapshot(settings.database.target)
    ignored = (f"; the {len(settings.departments)} [[departments]] of the file are ignored"
               if settings.departments else "")
    return (f"directory: from the database ([directory] source = \"database\"): {len(snap.departments)} "
            f"departments, {len(snap.memberships)} memberships, version {snap.version}{ignored}")


#: how often a daemon looks whether the directory in the database changed (an import by another process).
WATCH_SECONDS = 2.0


async def watch(daemon: Daemon, interval: float = WATCH_SECONDS) -> None:
    """While ``[directory] source = "database"``: swap in the stored directory whenever its version moves
    (``smdrd directory import`` from the shell; the console swaps its own changes in at once)."""
    import asyncio

    from smdrd.store import open_store

    store: DirectoryStore | None = None
    seen: int | None = None
    try:
        while True:
            await asyncio.sleep(interval)
            settings = daemon.settings
            if settings.directory.source != DATABASE:
                seen = None
                continue
            if store is None:
                store = await asyncio.to_thread(open_store(settings.database.target).directory)
            version = await asyncio.to_thread(store.version)
            if version == seen:
                continue
            snapshot = await asyncio.to_thread(store.snapshot)
            seen = snapshot.version
            fresh = with_snapshot(settings, snapshot)
            if fresh.departments != settings.departments:
                daemon.use_directory(fresh, snapshot.version)
    finally:
        if store is not None:
            store.close()


# ---- changes ----

@dataclass(frozen=True, slots=True)
class Change:
    """A new directory to write over ``snapshot``, and what the audit log says of it."""

    departments: tuple[DirectoryDepartment, ...]
    memberships: tuple[DirectoryMembership, ...]
    action: str
    target: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    renamed: dict[str, str] = field(default_factory=dict)
    #: edited names set alongside: ``(number, name, site)``, ``''`` the site-less name.
    names: tuple[tuple[str, str, str], ...] = ()

    def check(self) -> None:
        """Raises `DirectoryError` when the departments contradict each other (the configuration's rules)."""
        configs = department_configs(DirectorySnapshot(self.departments, self.memberships, 0))
        problems = department_problems(configs)
        if problems:
            key, message = problems[0]
            raise DirectoryError(_field_of(key), message)

    def write(self, store: DirectoryStore, snapshot: DirectorySnapshot, *, at: int, actor: Actor) -> int:
        """Check, then write over ``snapshot``'s version (raises `DirectoryConflict` if it moved); the new
        version."""
        self.check()
        return store.replace(self.departments, self.memberships, expected_version=snapshot.version, at=at,
                             actor=actor, action=self.action, target=self.target, before=self.before,
                             after=self.after, renamed=self.renamed or None, names=self.names)


def _field_of(key: str) -> str:
    """A `department_problems` key (``departments[2].parent``) as the form field it is about."""
    m = re.fullmatch(r"departments\[\d+\]\.(\w+)", key)
    return m.group(1) if m else ""


def _department_view(d: DirectoryDepartment) -> dict[str, Any]:
    return {"name": d.name, "parent": d.parent, "budget": None if d.budget is None else str(d.budget)}


def _membership_view(m: DirectoryMembership) -> dict[str, Any]:
    return {"department": m.department, "extension": m.spec,
            "valid_from": m.valid_from.isoformat() if m.valid_from else None,
            "valid_until": m.valid_until.isoformat() if m.valid_until else None,
            **({"site": m.site} if m.site else {})}


def site_name(value: str, field_name: str = "site") -> str:
    """A membership's site as entered (``""``: every site), checked. Raises `DirectoryError`."""
    site = value.strip()
    if len(site) > MAX_SITE_CHARS:
        raise DirectoryError(field_name, f"at most {MAX_SITE_CHARS} characters")
    if any(not ch.isprintable() for ch in site):
        raise DirectoryError(field_name, "a site name has no control characters")
    return site


def department_name(value: str, field_name: str = "name") -> str:
    """A department name as entered, checked. Raises `DirectoryError`."""
    name = " ".join(value.split())
    if not name:
        raise DirectoryError(field_name, "enter a name")
    if not name.isprintable():
        raise DirectoryError(field_name, "a department name has no control characters")
    if len(name) > MAX_DEPARTMENT_CHARS:
        raise DirectoryError(field_name, f"at most {MAX_DEPARTMENT_CHARS} characters")
    if name.casefold() == UNASSIGNED.casefold():
        raise DirectoryError(field_name, f"{UNASSIGNED!r} is the name reports give extensions in no department")
    return name


def budget_of(value: str, field_name: str = "budget") -> Decimal | None:
    """A monthly budget as entered (``""``: none). Raises `DirectoryError`."""
    text = value.strip()
    if not text:
        return None
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise DirectoryError(field_name, f"expected an amount such as 250.00, got {text!r}") from None
    if not amount.is_finite() or amount < 0:
        raise DirectoryError(field_name, "expected an amount of 0 or more")
    if amount.as_tuple().exponent < -6 or amount >= Decimal(10) ** 12:  # type: ignore[operator]
        raise DirectoryError(field_name, "expected at most 6 decimals and less than 10^12")
    return amount


def _find(snapshot: DirectorySnapshot, name: str, field_name: str = "name") -> DirectoryDepartment:
    for d in snapshot.departments:
        if d.name == name:
            return d
    raise DirectoryError(field_name, f"there is no department {name!r}")


def _parent(snapshot: DirectorySnapshot, parent: str) -> str | None:
    parent = parent.strip()
    if not parent:
        return None
    return _find(snapshot, parent, "parent").name


def add_department(snapshot: DirectorySnapshot, name: str, parent: str = "", budget: str = "") -> Change:
    name = department_name(name)
    if any(d.name.casefold() == name.casefold() for d in snapshot.departments):
        raise DirectoryError("name", f"a department named {name!r} exists already")
    dep = DirectoryDepartment(name, _parent(snapshot, parent), budget_of(budget))
    return Change((*snapshot.departments, dep), snapshot.memberships, "department.add", name, None,
                  _department_view(dep))


def edit_department(snapshot: DirectorySnapshot, name: str, *, new_name: str, parent: str,
                    budget: str) -> Change:
    """Rename ``name`` and set its parent and budget (the memberships, sub-departments and managers follow a
    rename)."""
    old = _find(snapshot, name, "department")
    renamed = department_name(new_name)
    if renamed != name and any(d.name.casefold() == renamed.casefold() and d.name != name
                               for d in snapshot.departments):
        raise DirectoryError("name", f"a department named {renamed!r} exists already")
    new_parent = _parent(snapshot, parent)
    if new_parent == name:
        raise DirectoryError("parent", "a department cannot be its own parent")
    dep = DirectoryDepartment(renamed, new_parent, budget_of(budget))

    def follow(n: str | None) -> str | None:
        return renamed if n == name else n

    departments = tuple(dep if d.name == name else replace(d, parent=follow(d.parent)) for d in snapshot.departments)
    memberships = tuple(replace(m, department=renamed) if m.department == name else m for m in snapshot.memberships)
    return Change(departments, memberships, "department.change", name, _department_view(old),
                  _department_view(dep), renamed={name: renamed} if renamed != name else {})


def delete_department(snapshot: DirectorySnapshot, name: str) -> Change:
    """Delete ``name`` and its memberships (their extensions become `UNASSIGNED` unless another department has
    them). Refused while sub-departments roll up into it."""
    old = _find(snapshot, name, "department")
    children = [d.name for d in snapshot.departments if d.parent == name]
    if children:
        raise DirectoryError("department", f"{name!r} has sub-departments ({', '.join(children)}); move or "
                                           "delete them first")
    gone = [m for m in snapshot.memberships if m.department == name]
    return Change(tuple(d for d in snapshot.departments if d.name != name),
                  tuple(m for m in snapshot.memberships if m.department != name), "department.delete", name,
                  {**_department_view(old), "extensions": [_membership_view(m) for m in gone]}, None)


def move_extension(snapshot: DirectorySnapshot, extension: str, department: str, valid_from: date,
                   site: str = "") -> Change:
    """``extension`` (of the site named ``site``; ``""``: of every site) belongs to ``department`` from
    ``valid_from`` on: its own (exact) memberships of that site end the day before (those that start on or after
    it go), and a membership of ``department`` starts that day, so calls before it stay where they were and calls
    from it are billed to the new department. A range that covers the extension is left alone: the exact
    membership wins over it. ``department`` `UNASSIGNED` only ends the extension's own memberships (a range that
    covers it still counts)."""
    extension = extension.strip()
    if not extension:
        raise DirectoryError("extension", "enter an extension")
    site = site_name(site)
    target = None if department == UNASSIGNED else _find(snapshot, department, "department").name
    before_day = valid_from - timedelta(days=1)
    kept: list[DirectoryMembership] = []

    def own(m: DirectoryMembership) -> bool:
        return m.spec == extension and m.site == site

    before = [m for m in snapshot.memberships if own(m)]
    for m in snapshot.memberships:
        if not own(m) or (m.valid_until is not None and m.valid_until < valid_from):
            kept.append(m)
        elif m.valid_from is None or m.valid_from < valid_from:
            kept.append(replace(m, valid_until=before_day))
    if target is not None:
        kept.append(DirectoryMembership(target, extension, valid_from, None, site))
    after = [m for m in kept if own(m)]
    return Change(snapshot.departments, tuple(kept), "extension.move", f"{site}/{extension}" if site else extension,
                  {"memberships": [_membership_view(m) for m in before]},
                  {"memberships": [_membership_view(m) for m in after]})


def replace_all(snapshot: DirectorySnapshot, departments: Sequence[DirectoryDepartment],
                memberships: Sequence[DirectoryMembership], names: Sequence[tuple[str, str, str]], *,
                source: str) -> Change:
    """The whole directory replaced (an import from ``source``). The audit entry keeps what went (before) and
    what came (after): departments and memberships removed and added, and the names set, each list capped at
    `AUDIT_ITEMS` (with how many more)."""
    old_d = {_key(_department_view(d)): _department_view(d) for d in snapshot.departments}
    new_d = {_key(_department_view(d)): _department_view(d) for d in departments}
    old_m = {_key(_membership_view(m)): _membership_view(m) for m in snapshot.memberships}
    new_m = {_key(_membership_view(m)): _membership_view(m) for m in memberships}
    before = {"departments": _capped([v for k, v in old_d.items() if k not in new_d]),
              "memberships": _capped([v for k, v in old_m.items() if k not in new_m])}
    after = {"departments": _capped([v for k, v in new_d.items() if k not in old_d]),
             "memberships": _capped([v for k, v in new_m.items() if k not in old_m]),
             "names": _capped([{"extension": e, "name": n, **({"site": site} if site else {})}
                               for e, n, site in names])}
    return Change(tuple(departments), tuple(memberships), "directory.import", source, before, after,
                  names=tuple(names))


#: the most items of each kind an import's audit entry lists.
AUDIT_ITEMS = 500


def _key(view: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(sorted(view.items()))


def _capped(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"count": len(items), "items": items[:AUDIT_ITEMS]}


# ---- CSV ----

def export_csv(snapshot: DirectorySnapshot, names: Mapping[str, str]) -> Iterator[str]:
    """The directory as CSV lines (`CSV_COLUMNS`, through `smdrd.csvsafe`; ``site`` only when a membership or a
    name names one): a row per department (its parent and budget), a row per membership (with the extension's
    name at the membership's site, `ExtensionNames`), then the names on no membership's row, each with its site."""
    from smdrd.csvsafe import csv_text

    # Every name by (number, site): a plain mapping's are site-less.
    by_site = ({(n, ""): name for n, name in names.plain.items()}
               | {(n, site): name for (site, n), name in names.sites.items()}
               if isinstance(names, ExtensionNames) else {(n, ""): name for n, name in names.items()})
    # The site column only when a membership or a name names a site: a box's export is what it always was.
    sited = any(m.site for m in snapshot.memberships) or any(site for _, site in by_site)
    width = len(CSV_COLUMNS) if sited else len(CSV_COLUMNS) - 1
    yield csv_text([CSV_COLUMNS[:width]])
    for d in snapshot.departments:
        yield csv_text([("", "", d.name, d.parent, d.budget, "", "", "")[:width]])
    for m in snapshot.memberships:
        # A name is written once, on the first row of its number and site.
        name = by_site.pop((m.spec, m.site), "")
        yield csv_text([(m.spec, name, m.department, "", "", m.valid_from, m.valid_until, m.site)[:width]])
    for (number, site), name in sorted(by_site.items(), key=lambda kv: (extension_sort_key(kv[0][0]), kv[0][1])):
        yield csv_text([(number, name, "", "", "", "", "", site)[:width]])


@dataclass(slots=True)
class _Parsed:
    departments: dict[str, DirectoryDepartment] = field(default_factory=dict)
    set_at: dict[tuple[str, str], int] = field(default_factory=dict)  # (department, column) -> line
    memberships: list[DirectoryMembership] = field(default_factory=list)
    member_lines: list[int] = field(default_factory=list)  # the line of each membership
    names: dict[tuple[str, str], str] = field(default_factory=dict)  # (extension, site) -> name


def read_csv(lines: Iterable[str], source: str, *, max_rows: int = 100_000) -> tuple[
        list[DirectoryDepartment], list[DirectoryMembership], list[tuple[str, str, str]]]:
    """Departments, memberships and names (``(extension, name, site)``: a row's name is the name of its extension
    at its site, ``''`` the site-less one) from a CSV in `CSV_COLUMNS` (the header names its columns, in any
    order; ``extension`` and ``department`` are required, the others optional).

    Raises:
        DirectoryError: naming ``source``, the line and the column of the first problem.
    """
    # strict: a quote left open is an error where it ends, not a cell that swallows the rest of the file.
    rows = csv.reader(lines, strict=True)
    try:
        header = next(rows)
    except StopIteration:
        raise DirectoryError(f"{source}, line 1", "the file is empty; expected a header line "
                                                  f"({','.join(CSV_COLUMNS)})") from None
    except csv.Error as exc:
        raise DirectoryError(f"{source}, line 1", f"not CSV: {exc}") from None
    columns = [h.strip().lstrip("\ufeff").lower() for h in header]
    unknown = [c for c in columns if c and c not in CSV_COLUMNS]
    if unknown:
        raise DirectoryError(f"{source}, line 1, column {columns.index(unknown[0]) + 1}",
                             f"unknown column {unknown[0]!r}; expected some of {', '.join(CSV_COLUMNS)}")
    for required in ("extension", "department"):
        if required not in columns:
            raise DirectoryError(f"{source}, line 1", f"no {required!r} column; expected {','.join(CSV_COLUMNS)}")
    p = _Parsed()
    try:
        for row in rows:
            n = rows.line_num
            if n > max_rows + 1:
                raise DirectoryError(f"{source}, line {n}", f"more than {max_rows} rows")
            if not any(cell.strip() for cell in row):
                continue
            _read_row(p, dict(zip(columns, row, strict=False)), columns, f"{source}, line {n}")
    except csv.Error as exc:
        hint = " (a quote opened and never closed)" if "end of data" in str(exc) else ""
        raise DirectoryError(f"{source}, line {rows.line_num}", f"not CSV: {exc}{hint}") from None
    for m in p.memberships:
        if m.department not in p.departments:
            p.departments[m.department] = DirectoryDepartment(m.department)
    departments = list(p.departments.values())
    # The rules across rows (a parent that is no department, parents in a cycle, two memberships that tie),
    # checked here too so that the mistake is named by its line, as every other one is.
    configs = department_configs(DirectorySnapshot(tuple(departments), tuple(p.memberships), 0))
    problems = department_problems(configs)
    if problems:
        key, message = problems[0]
        raise DirectoryError(_csv_place(key, message, configs, p, columns=columns, source=source), message)
    return departments, p.memberships, [(e, name, site) for (e, site), name in p.names.items()]


def _csv_place(key: str, message: str, configs: Sequence[DepartmentConfig], p: _Parsed, *, columns: list[str],
               source: str) -> str:
    """Where in the file a `department_problems` problem stands: the parent cell it is about, or the later row
    of two memberships that tie (named in the message)."""
    found = re.fullmatch(r"departments\[(\d+)\]\.parent", key)
    if found is not None:
        line = p.set_at.get((configs[int(found.group(1))].name, "parent"))
        if line is not None:
            return f"{source}, line {line}, column {columns.index('parent') + 1} (parent)"
    lines = [line for m, line in zip(p.memberships, p.member_lines, strict=True)
             if f"{m.department!r} ({m.spec})" in message]
    return f"{source}, line {max(lines)}" if lines else source


def _read_row(p: _Parsed, cells: dict[str, str], columns: list[str], where: str) -> None:
    def at(column: str) -> str:
        return f"{where}, column {columns.index(column) + 1} ({column})"

    def get(column: str) -> str:
        return cells.get(column, "").strip()

    extension, name, department = get("extension"), get("name"), get("department")
    if extension:
        try:
            MembershipConfig(extensions=[extension])
        except ValidationError as exc:
            raise DirectoryError(at("extension"), exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
    if department:
        try:
            department = department_name(department)
        except DirectoryError as exc:
            raise DirectoryError(at("department"), exc.message) from None
        dep = p.departments.get(department, DirectoryDepartment(department))
        for column in ("parent", "budget"):
            value = get(column)
            if not value:
                continue
            try:
                if column == "parent":
                    parent = department_name(value, column)
                    new: object = parent
                    changed = replace(dep, parent=parent)
                else:
                    new = budget = budget_of(value)
                    changed = replace(dep, budget=budget)
            except DirectoryError as exc:
                raise DirectoryError(at(column), exc.message) from None
            old = getattr(dep, column)
            if old is not None and old != new:
                raise DirectoryError(at(column), f"{department!r} has {column} {old} on line "
                                                 f"{p.set_at[(department, column)]}; give it once")
            dep = changed
            p.set_at[(department, column)] = int(where.rsplit(" ", 1)[1])
        p.departments[department] = dep
    elif get("parent") or get("budget") or get("valid_from") or get("valid_until") or (get("site") and not name):
        raise DirectoryError(at("department"), "parent, budget, dates and site need a department")
    if name:
        if not extension:
            raise DirectoryError(at("extension"), "a name needs its extension")
        if len(name) > MAX_NAME_CHARS:
            raise DirectoryError(at("name"), f"at most {MAX_NAME_CHARS} characters")
        if not name.isprintable():
            # A line break here is a quote left open: the cell ran on into the next rows.
            raise DirectoryError(at("name"), "a name has no line breaks or control characters (a quote left "
                                             "open?)")
        if "-" in extension and extension.replace("-", "").isdigit():
            raise DirectoryError(at("name"), "a range of extensions cannot have one name")
        try:
            p.names[(extension, site_name(get("site")))] = name
        except DirectoryError as exc:
            raise DirectoryError(at("site"), exc.message) from None
    if extension and department:
        days: list[date | None] = []
        for column in ("valid_from", "valid_until"):
            value = get(column)
            try:
                days.append(date.fromisoformat(value) if value else None)
            except ValueError:
                raise DirectoryError(at(column), f"expected a date such as 2026-03-16, got {value!r}") from None
        first, last = days
        if first and last and first > last:
            raise DirectoryError(at("valid_until"), f"{last} is before valid_from ({first})")
        try:
            site = site_name(get("site"))
        except DirectoryError as exc:
            raise DirectoryError(at("site"), exc.message) from None
        p.member_lines.append(int(where.rsplit(" ", 1)[1]))
        p.memberships.append(DirectoryMembership(department, MembershipConfig(extensions=[extension]).extensions[0],
                                                 first, last, site))
