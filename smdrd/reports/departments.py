"""Which department an extension belongs to on a given day: the ``[[departments]]`` configuration, resolved.

Pure: no I/O and no database here. Reports ask `Directory.department` for each (extension, day) they read from
the rollups, so a changed configuration re-attributes past calls without rewriting any data, and an extension
that moved mid-month is billed to the right department on each day.

When several memberships match an extension on one day, the most specific wins: an exact extension beats a
range, a narrower range beats a wider one; between equally narrow ones, the one that started later wins (an
undated membership started "always"). Two memberships of different departments that remain tied are a
configuration error, never a silent choice. An extension that matches nothing is `UNASSIGNED`: never dropped.

In a store of several sites (a central one), a membership may name a site: it covers only that site's
extensions (extension 201 of one site is never 201 of another), and for a call of that site it wins over the
memberships that name none (those cover every site, as on a box of its own). A directory where no membership
names a site (`Directory.sited` false) resolves by extension alone, whatever the call's site.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from smdrd.errors import ConfigError
from smdrd.reports.config import UNASSIGNED, DepartmentConfig

__all__ = ["UNASSIGNED", "Directory", "Membership", "department_problems", "extension_sort_key"]

#: an ISO date string (``2026-03-16``): days compare as strings, so no date objects are built per row.
Day = str
_NEVER = ""  # sorts before every ISO day
_FOREVER = "9999-12-31"


@dataclass(frozen=True, slots=True)
class Membership:
    """One extension spec of one department for a period (days inclusive, ISO strings)."""

    department: str
    spec: str
    lo: int | None  # numeric range bounds; None for an exact (possibly non-numeric) extension
    hi: int | None
    first: Day = _NEVER
    last: Day = _FOREVER
    site: str = ""  # the site whose extensions it covers; '' every site

    @property
    def width(self) -> int:
        """How many extensions the spec covers: the narrower one wins."""
        return 1 if self.lo is None or self.hi is None else self.hi - self.lo + 1

    def covers(self, extension: str) -> bool:
        if self.lo is None or self.hi is None:
            return extension == self.spec
        return extension.isdigit() and self.lo <= int(extension) <= self.hi

    def precedence(self) -> tuple[int, int, str]:
        """Sorts the winner first: one naming the call's site, then the narrowest, then the latest start."""
        return (0 if self.site else 1, self.width, _invert(self.first))


def _invert(day: Day) -> str:
    # A later start must sort first in an ascending sort: map each digit d to 9 - d (the "-" separators stay).
    return day.translate(str.maketrans("0123456789", "9876543210")) if day else "~"


def _parse_spec(spec: str) -> tuple[int | None, int | None]:
    lo, sep, hi = spec.partition("-")
    if sep and lo.isdigit() and hi.isdigit():
        return int(lo), int(hi)
    # An exact spec matches only its own spelling: "0201" and "201" are different extensions to a PBX.
    return None, None


def _next_day(day: Day) -> Day:
    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


def _previous_day(day: Day) -> Day:
    return (date.fromisoformat(day) - timedelta(days=1)).isoformat()


def extension_sort_key(extension: str) -> tuple[int, int, str]:
    """Numbers in numeric order, then everything else alphabetically."""
    return (0, int(extension), extension) if extension.isdigit() else (1, 0, extension)


@dataclass(slots=True)
class Directory:
    """The departments of one configuration, ready for per-day lookups.

    Attributes:
        names: department names in configuration order (`UNASSIGNED` is not among them).
        parents: each department's parent, or ``None`` for a top-level department.
        budgets: monthly budgets (only departments that have one).
    """

    names: list[str] = field(default_factory=list)
    parents: dict[str, str | None] = field(default_factory=dict)
    budgets: dict[str, Decimal] = field(default_factory=dict)
    memberships: list[Membership] = field(default_factory=list)
    #: some membership names a site: departments are then resolved per (site, extension).
    sited: bool = False
    _exact: dict[str, list[Membership]] = field(default_factory=dict)
    _ranges: list[Membership] = field(default_factory=list)
    _cache: dict[tuple[str, str], list[Membership]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, departments: Sequence[DepartmentConfig], *, path: str | None = None) -> Directory:
        """Build the directory.

        Raises:
            ConfigError: an unknown parent, a cycle of parents, a name used twice, or two departments tied
                for one extension on one day (names the key, the extension and the day).
        """
        problems = department_problems(departments)
        if problems:
            raise ConfigError(path, problems)
        return cls._build(departments)

    @classmethod
    def _build(cls, departments: Sequence[DepartmentConfig]) -> Directory:
        d = cls()
        for dep in departments:
            d.names.append(dep.name)
            d.parents[dep.name] = dep.parent
            if dep.budget is not None:
                d.budgets[dep.name] = dep.budget
            for spec in dep.extensions:
                d._add(Membership(dep.name, spec, *_parse_spec(spec)))
            for member in dep.members:
                first = member.valid_from.isoformat() if member.valid_from else _NEVER
                last = member.valid_until.isoformat() if member.valid_until else _FOREVER
                for spec in member.extensions:
                    d._add(Membership(dep.name, spec, *_parse_spec(spec), first, last, member.site))
        return d

    def _add(self, m: Membership) -> None:
        self.memberships.append(m)
        self.sited = self.sited or bool(m.site)
        if m.lo is None:
            self._exact.setdefault(m.spec, []).append(m)
        else:
            self._ranges.append(m)

    def candidates(self, extension: str, site: str = "") -> list[Membership]:
        """Every membership that names ``extension`` of ``site`` (a site's name; ``''``: a site no membership
        names, such as a box's own) on some day, the winner first."""
        found = self._cache.get((site, extension))
        if found is None:
            found = [m for m in self._exact.get(extension, ()) if m.site in ("", site)]
            found.extend(m for m in self._ranges if m.site in ("", site) and m.covers(extension))
            found.sort(key=Membership.precedence)
            self._cache[(site, extension)] = found
        return found

    def sites(self, extension: str) -> list[str]:
        """The sites named by memberships that cover ``extension``, sorted."""
        return sorted({m.site for m in (*self._exact.get(extension, ()), *self._ranges)
                       if m.site and m.covers(extension)})

    def department(self, extension: str, day: Day, site: str = "") -> str:
        """The department ``extension`` (of the site named ``site``) belongs to on ``day`` (ISO date), or
        `UNASSIGNED`."""
        for m in self.candidates(extension, site):
            if m.first <= day <= m.last:
                return m.department
        return UNASSIGNED

    def volatile(self, first: Day, last: Day) -> list[Membership]:
        """The memberships that start or end strictly inside ``first``..``last``: only extensions they cover
        can change department within the range, so only those need resolving day by day."""
        return [m for m in self.memberships if first < m.first <= last or first <= m.last < last]

    def intervals(self, extension: str, first: Day, last: Day, site: str = "") -> list[tuple[Day, Day, str]]:
        """``(first_day, last_day, department)`` spans covering ``first``..``last`` for ``extension`` (of the
        site named ``site``)."""
        cuts = {first}
        for m in self.candidates(extension, site):
            if first < m.first <= last:
                cuts.add(m.first)
            if first <= m.last < last:
                cuts.add(_next_day(m.last))
        starts = sorted(cuts)
        spans: list[tuple[Day, Day, str]] = []
        for i, start in enumerate(starts):
            end = _previous_day(starts[i + 1]) if i + 1 < len(starts) else last
            dep = self.department(extension, start, site)
            if spans and spans[-1][2] == dep:
                spans[-1] = (spans[-1][0], end, dep)
            else:
                spans.append((start, end, dep))
        return spans

    def ancestors(self, name: str) -> list[str]:
        """``name`` and its parents up to the top-level department (``[name]`` for `UNASSIGNED`)."""
        chain = [name]
        seen = {name}
        parent = self.parents.get(name)
        while parent is not None and parent not in seen:
            chain.append(parent)
            seen.add(parent)
            parent = self.parents.get(parent)
        return chain

    def subtree(self, name: str) -> set[str]:
        """``name`` and every department under it."""
        return {n for n in [*self.names, UNASSIGNED] if name in self.ancestors(n)}

    def depth(self, name: str) -> int:
        return len(self.ancestors(name)) - 1

    def tree_order(self) -> list[str]:
        """Every department, each parent followed by its children (configuration order among siblings)."""
        out: list[str] = []

        def visit(parent: str | None) -> None:
            for n in self.names:
                if self.parents[n] == parent and n not in out:
                    out.append(n)
                    visit(n)

        visit(None)
        return out


def department_problems(departments: Sequence[DepartmentConfig]) -> list[tuple[str, str]]:
    """Checks across departments, as ``(key, message)`` pairs for `ConfigError` (empty when all is well)."""
    problems: list[tuple[str, str]] = []
    names: dict[str, int] = {}
    for i, dep in enumerate(departments):
        if dep.name in names:
            problems.append((f"departments[{i}].name", f"{dep.name!r} is already the name of "
                                                        f"departments[{names[dep.name]}]"))
        names.setdefault(dep.name, i)
    for i, dep in enumerate(departments):
        if dep.parent is not None and dep.parent not in names:
            known = ", ".join(names) or "none"
            problems.append((f"departments[{i}].parent", f"unknown department {dep.parent!r} (known: {known})"))
    parents = {dep.name: dep.parent for dep in departments}
    for i, dep in enumerate(departments):
        seen = [dep.name]
        parent = dep.parent
        while parent is not None and parent in parents:
            if parent in seen:
                problems.append((f"departments[{i}].parent",
                                 "parents form a cycle: " + " -> ".join([*seen, parent])))
                break
            seen.append(parent)
            parent = parents[parent]
    if not problems:
        problems.extend(_ties(Directory._build(departments)))
    return problems


def _ties(d: Directory) -> Iterable[tuple[str, str]]:
    """Two departments' memberships equally specific for one extension on one day: reports could not choose.

    Only memberships of equal precedence can tie, and among those an exact extension only with the same
    extension or a one-wide range covering it: the pairs are found by grouping, not by comparing every pair (a
    directory that grew thousands of dated moves is checked at each change, on the daemon's event loop too)."""
    ms = d.memberships
    for i, j in _tie_candidates(ms):
        a, b = ms[i], ms[j]
        if a.department == b.department or a.site != b.site:
            continue
        shared = _shared_extension(a, b)
        if shared is None:
            continue
        first, last = max(a.first, b.first), min(a.last, b.last)
        if first > last:
            continue
        day = first or "the start"
        at = f" of site {a.site!r}" if a.site else ""
        yield ("departments", f"extension {shared}{at} is in both {a.department!r} ({a.spec}) and "
                              f"{b.department!r} ({b.spec}) on {day}: make one membership narrower or give "
                              "it a later valid_from")


def _tie_candidates(ms: Sequence[Membership]) -> list[tuple[int, int]]:
    """The pairs ``(i, j)``, ``i < j``, of memberships with equal precedence that may share an extension, in
    order."""
    groups: dict[tuple[tuple[int, int, str], str], list[int]] = {}
    for i, m in enumerate(ms):
        groups.setdefault((m.precedence(), m.site), []).append(i)
    pairs: list[tuple[int, int]] = []
    for members in groups.values():
        if len(members) < 2:
            continue
        exact: dict[str, list[int]] = {}
        ranges: list[int] = []
        for i in members:
            (ranges if ms[i].lo is not None else exact.setdefault(ms[i].spec, [])).append(i)
        for same in exact.values():
            pairs += [(a, b) for k, a in enumerate(same) for b in same[k + 1:]]
        pairs += [(a, b) for k, a in enumerate(ranges) for b in ranges[k + 1:]]
        if ranges and exact:  # one-wide ranges against the exact extensions they cover
            for r in ranges:
                for spec, same in exact.items():
                    if ms[r].covers(spec):
                        pairs += [(min(r, e), max(r, e)) for e in same]
    return sorted(pairs)


def _shared_extension(a: Membership, b: Membership) -> str | None:
    if a.lo is None or a.hi is None:
        return a.spec if b.covers(a.spec) else None
    if b.lo is None or b.hi is None:
        return b.spec if a.covers(b.spec) else None
    lo = max(a.lo, b.lo)
    return str(lo) if lo <= min(a.hi, b.hi) else None


def days_between(first: date, last: date) -> int:
    """Days from ``first`` to ``last``, both included."""
    return (last - first).days + 1


def prorated_budget(monthly: Decimal, first: date, last: date) -> Decimal:
    """A monthly budget for the days ``first``..``last``: each month contributes its share of days, so a whole
    month is exactly the budget and a year is twelve budgets."""
    total = Decimal(0)
    day = first
    while day <= last:
        month_start = day.replace(day=1)
        next_month = (month_start + timedelta(days=32)).replace(day=1)
        month_end = min(last, next_month - timedelta(days=1))
        in_month = (next_month - month_start).days
        total += monthly * Decimal(days_between(day, month_end)) / Decimal(in_month)
        day = month_end + timedelta(days=1)
    return total
