"""The directory's site dimension (issue 17, "departments may span sites"): a membership may name the site whose
extension it is, so in a central store extension 201 of one site is never 201 of another. Three sites, each
with an extension 201 in a different department, and one department spanning two sites: every department's
report is the sum of its sites' figures, to the cent, on both stores; a directory naming no site, a CSV without
the column and a database from before the column behave as they always did."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from smdrd.config import DepartmentConfig
from smdrd.directory import DirectoryError, department_configs, export_csv, from_config, move_extension, read_csv
from smdrd.journal import PARSED, JournalEntry, RatedCall
from smdrd.mqtt_payloads import encode, journal_message, read_journal_message
from smdrd.rating.tariff import Rating
from smdrd.record import CallRecord, Direction
from smdrd.reports.departments import UNASSIGNED, Directory
from smdrd.reports.queries import DIRECTIONS, Context, Query, Report, every_row, run_report
from smdrd.store import is_url, open_store
from smdrd.store.api import (
    Actor,
    DirectoryDepartment,
    DirectoryMembership,
    DirectorySnapshot,
    ExtensionNames,
    FeedCall,
)
from smdrd.store.postgres.central import CentralWriter
from smdrd.testing import PostgresServer, write_entries
from tests.old_databases import database_before

TZ = ZoneInfo("Europe/London")
ADMIN = Actor("alice", "127.0.0.1")
MARCH = (date(2026, 3, 1), date(2026, 3, 31))
#: each site's extension 201 (and 202, in no site's membership): Sales spans north and west (west's 201 moves
#: to Support on the 10th); south's 201 is Support's; 202 is Ops' at every site (a membership naming no site).
SITES = ("north", "south", "west")
DEPARTMENTS: list[dict[str, Any]] = [
    {"name": "Sales", "members": [{"extensions": ["201"], "site": "north"},
                                  {"extensions": ["201"], "site": "west", "valid_until": "2026-03-09"}]},
    {"name": "Support", "members": [{"extensions": ["201"], "site": "south"},
                                    {"extensions": ["201"], "site": "west", "valid_from": "2026-03-10"}]},
    {"name": "Ops", "extensions": ["200-299"]},
]


def directory(*deps: dict[str, Any]) -> Directory:
    return Directory.from_config([DepartmentConfig.model_validate(d) for d in deps])


# ---- resolution ----

def test_an_extension_resolves_at_its_site_and_a_membership_naming_none_covers_every_site() -> None:
    d = directory(*DEPARTMENTS)
    assert d.sited
    assert d.department("201", "2026-03-05", "north") == "Sales"
    assert d.department("201", "2026-03-05", "south") == "Support"
    assert d.department("201", "2026-03-05", "west") == "Sales"
    assert d.department("201", "2026-03-10", "west") == "Support"
    # A site's membership wins over one naming no site, even a narrower one; elsewhere the range holds.
    assert d.department("201", "2026-03-05", "east") == "Ops"
    assert d.department("201", "2026-03-05") == "Ops"
    assert d.department("202", "2026-03-05", "north") == "Ops"
    assert d.intervals("201", "2026-03-01", "2026-03-31", "west") == [
        ("2026-03-01", "2026-03-09", "Sales"), ("2026-03-10", "2026-03-31", "Support")]
    assert not directory({"name": "Ops", "extensions": ["200-299"]}).sited


def test_two_departments_tie_only_at_one_site() -> None:
    ok = directory({"name": "A", "members": [{"extensions": ["201"], "site": "north"}]},
                   {"name": "B", "members": [{"extensions": ["201"], "site": "south"}]})
    assert ok.department("201", "2026-03-01", "south") == "B"
    with pytest.raises(Exception, match="extension 201 of site 'north' is in both 'A'"):
        directory({"name": "A", "members": [{"extensions": ["201"], "site": "north"}]},
                  {"name": "B", "members": [{"extensions": ["201"], "site": "north"}]})


# ---- changes and CSV ----

def test_a_move_at_one_site_leaves_the_other_sites_extension_alone() -> None:
    deps, members = from_config([DepartmentConfig.model_validate(d) for d in DEPARTMENTS])
    snap = DirectorySnapshot(tuple(deps), tuple(members), 1)
    change = move_extension(snap, "201", "Ops", date(2026, 3, 20), site="south")
    change.check()
    moved = Directory.from_config(department_configs(DirectorySnapshot(change.departments, change.memberships, 2)))
    assert moved.department("201", "2026-03-20", "south") == "Ops"
    assert moved.department("201", "2026-03-19", "south") == "Support"
    assert moved.department("201", "2026-03-20", "north") == "Sales"
    assert change.target == "south/201" and change.after is not None
    assert change.after["memberships"][-1]["site"] == "south"
    with pytest.raises(DirectoryError) as caught:
        move_extension(snap, "201", "Ops", date(2026, 3, 20), site="x" * 101)
    assert caught.value.field == "site"


def test_the_csv_has_a_site_column_only_when_a_membership_names_one_and_old_files_import() -> None:
    deps, members, names = read_csv(["extension,name,department,valid_from,site",
                                     "201,Anna,Sales,,north", "201,,Support,,south", "202,Bob,Ops,,"], "d.csv")
    assert [(m.spec, m.department, m.site) for m in members] == [
        ("201", "Sales", "north"), ("201", "Support", "south"), ("202", "Ops", "")]
    # A row's name is the name of its extension at its site.
    assert names == [("201", "Anna", "north"), ("202", "Bob", "")]
    snap = DirectorySnapshot(tuple(deps), tuple(members), 1)
    lines = "".join(export_csv(snap, ExtensionNames(names))).splitlines()
    assert lines[0] == "extension,name,department,parent,budget,valid_from,valid_until,site"
    assert read_csv(lines, "again.csv")[1:] == (members, names)
    old = ["extension,name,department", "201,Anna,Sales"]
    deps, members, _ = read_csv(old, "old.csv")
    assert members == [DirectoryMembership("Sales", "201")]
    assert "".join(export_csv(DirectorySnapshot(tuple(deps), tuple(members), 1), {})).splitlines()[0] == (
        "extension,name,department,parent,budget,valid_from,valid_until")
    with pytest.raises(DirectoryError, match=r"line 2, column 2 \(department\): parent, budget, dates and site"):
        read_csv(["extension,department,site", "201,,north"], "bad.csv")


# ---- both stores ----

def entries(site: int, day: int, n: int) -> list[JournalEntry]:
    """``n`` rated outbound calls of 2 March 2026 + ``day`` days at site ``site``: from extension 201 (and each
    third from 202), the i-th costing ``site`` + i + 0.01 x day."""
    out = []
    for i in range(n):
        start = datetime(2026, 3, 1 + day, 9 + i, 30, tzinfo=TZ)
        raw = f"site {site} day {day} call {i}".encode()
        ext = "202" if i % 3 == 2 else "201"
        record = CallRecord(format="avaya-ipo", start=start, duration=60 + 7 * i, direction=Direction.OUTBOUND,
                            extension=ext, number=f"0207{site}{day:02d}{i:03d}", answered=True)
        cost = Decimal(site + i) + Decimal(day) / 100
        rating = Rating(f"+44207{site}{day:02d}{i:03d}", "national", "gb", "44", cost, "GBP", "GB")
        out.append(JournalEntry("pbx", "10.0.0.9", int(start.timestamp() * 1_000_000), "avaya-ipo", raw, PARSED,
                                None, (RatedCall(f"avaya-ipo:{raw.hex()}", record, rating),)))
    return out


def journal(site: int) -> list[JournalEntry]:
    return [e for day in (1, 8, 9, 12, 20) for e in entries(site, day, 4)]


async def published(db: Path) -> list[FeedCall]:
    """What a site's publisher reads from its journal."""
    feed = open_store(db).call_feed()
    await feed.open()
    try:
        return await feed.entries(0, 1000)
    finally:
        await feed.close()


async def central(url: str, folder: Path) -> None:
    """The three sites' journals, each written to its own SQLite file and stored as `smdrd central` stores what
    the sites publish (through the payload codec), in one batch."""
    messages = []
    for k, name in enumerate(SITES, 1):
        await write_entries(folder / f"{name}.db", journal(k), site=name)
        messages += [read_journal_message(encode(journal_message(name, e.fields)))
                     for e in await published(folder / f"{name}.db")]
    writer = CentralWriter(url)
    await writer.open()
    try:
        await writer.store(messages)
    finally:
        await writer.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path | str]:
    """A box's SQLite journal, named ``north`` (its own site), or a central PostgreSQL store of the three sites."""
    if request.param == "sqlite":
        yield tmp_path / "north.db"
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    name = f"smdrd_directory_sites_{abs(hash(request.node.name)) % 10**8}"
    yield server.create_database(name)
    import psycopg

    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def stored(database: Path | str, folder: Path) -> tuple[str, ...]:
    """The calls stored, and the directory written through the store; the sites the store holds."""
    if is_url(database):
        await central(str(database), folder)
    else:
        await write_entries(database, journal(1), site="north")
    deps, members = from_config([DepartmentConfig.model_validate(d) for d in DEPARTMENTS])
    store = open_store(database).directory()
    try:
        store.replace(deps, members, expected_version=store.version(), at=1, actor=ADMIN, action="directory.import",
                      target="test", before=None, after=None)
    finally:
        store.close()
    return SITES if is_url(database) else ("north",)


def context(database: Path | str) -> Context:
    store = open_store(database).directory()
    try:
        snapshot = store.snapshot()
    finally:
        store.close()
    assert [m.site for m in snapshot.memberships] == ["", "north", "west", "south", "west"]
    return Context(Directory.from_config(department_configs(snapshot)), TZ, "GBP", 2)


def run(database: Path | str, ctx: Context, kind: str, first: date = MARCH[0], last: date = MARCH[1],
        **filters: Any) -> Report:
    reader = open_store(database).reports()
    try:
        return run_report(reader, Query(kind, first, last, directions=DIRECTIONS, page_size=0, **filters), ctx)
    finally:
        reader.close()


def cost(report: Report) -> Decimal:
    assert report.totals is not None
    return Decimal(report.totals["cost"])


def expected(database: Path | str, ctx: Context, sites: tuple[str, ...]) -> dict[str, Decimal]:
    """Each department's cost from the sites' own figures: each site's extension 201 and 202 read with a site
    and an extension filter (no department involved), over the days it belongs to each department."""
    out: dict[str, Decimal] = {}

    def add(dep: str, site: str, ext: str, first: date, last: date) -> None:
        out[dep] = out.get(dep, Decimal(0)) + cost(run(database, ctx, "calls", first, last, sites=(site,),
                                                       extensions=(ext,)))

    for site in sites:
        add("Ops", site, "202", *MARCH)
        if site == "west":
            add("Sales", site, "201", MARCH[0], date(2026, 3, 9))
            add("Support", site, "201", date(2026, 3, 10), MARCH[1])
        else:
            add({"north": "Sales", "south": "Support"}[site], site, "201", *MARCH)
    return out


async def test_a_department_is_the_sum_of_its_sites_to_the_cent(database: Path | str, tmp_path: Path) -> None:
    sites = await stored(database, tmp_path)
    ctx = context(database)
    want = expected(database, ctx, sites)
    assert all(v > 0 for v in want.values())
    report = run(database, ctx, "departments")
    got = {r["department"]: r["cost"] for r in report.rows}
    assert {k: got.get(k, Decimal(0)) for k in want} == want
    assert UNASSIGNED not in got
    assert cost(report) == sum(want.values()) == cost(run(database, ctx, "calls"))
    for dep, amount in want.items():
        # A department filter, on every kind, and the details listing: the same figure.
        for kind in ("extensions", "days", "calls", "department-details", "extension-details"):
            assert cost(run(database, ctx, kind, departments=(dep,))) == amount, (dep, kind)
    if is_url(database):
        assert want["Sales"] != cost(run(database, ctx, "calls", sites=("north",), extensions=("201",)))
    # A details report: a section per site and extension, each in its site's department.
    reader = open_store(database).reports()
    try:
        details = every_row(reader, Query("department-details", *MARCH, directions=DIRECTIONS), ctx)
        sections = [(s.key.get("department"), s.key.get("site"), s.key["extension"], s.totals)
                    for s in details.sections or ()]
    finally:
        reader.close()
    per_dep: dict[str, Decimal] = {}
    for section_dep, _site, _ext, totals in sections:
        assert totals is not None
        per_dep[str(section_dep)] = per_dep.get(str(section_dep), Decimal(0)) + totals["cost"]
    assert per_dep == want
    if is_url(database):
        assert ("Sales", "north", "201") in [s[:3] for s in sections]
        assert ("Support", "south", "201") in [s[:3] for s in sections]
        assert ("Sales", "west", "201") in [s[:3] for s in sections]
        assert ("Support", "west", "201") in [s[:3] for s in sections]
    # Each call's listed department is its site's.
    for row in run(database, ctx, "calls", extensions=("201",)).rows:
        assert row["department"] in ("Sales", "Support")


async def test_a_database_from_before_the_site_column_opens_with_every_membership_at_every_site(
        any_database: Path | str) -> None:
    from smdrd.store.postgres import schema as pg
    from smdrd.store.sqlite import schema as lite

    database_before(any_database, lite.DIRECTORY_SITES_MIGRATION, pg.DIRECTORY_SITES_MIGRATION,
                    "INSERT INTO directory_departments (name, position) VALUES ('Sales', 0)",
                    "INSERT INTO directory_memberships (department, spec) VALUES ('Sales', '201')")
    store = open_store(any_database).directory()
    try:
        snap = store.snapshot()
        assert snap.memberships == (DirectoryMembership("Sales", "201"),)
        store.replace(snap.departments, (*snap.memberships, DirectoryMembership("Sales", "201", site="south")),
                      expected_version=snap.version, at=1, actor=ADMIN, action="t", target="t", before=None,
                      after=None)
        assert [m.site for m in store.snapshot().memberships] == ["", "south"]
        assert store.snapshot().departments == (DirectoryDepartment("Sales"),)
    finally:
        store.close()


class Counting:
    """A `ReportReader` that counts its rollup reads."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.reader, name)

    def daily_rows(self, *args: Any, **kwargs: Any) -> Any:
        self.reads += 1
        return self.reader.daily_rows(*args, **kwargs)


async def test_the_overview_compares_the_sites_in_one_read_each_sites_extensions_at_their_site(
        database: Path | str, tmp_path: Path) -> None:
    from smdrd.console.overview import site_rows
    from smdrd.store.api import SiteSeen

    sites = await stored(database, tmp_path)
    ctx = context(database)
    today = date(2026, 3, 13)
    for scope in ((), ("Sales",), ("Support", "Ops")):
        reader = Counting(open_store(database).reports())
        try:
            rows = site_rows(reader, ctx, [SiteSeen(name, None) for name in sites], today, scope)
        finally:
            reader.close()
        assert reader.reads == 1
        for row in rows:
            for key, first in (("today", today), ("month", today.replace(day=1))):
                # The same as the site's own report of the scope's departments.
                one = run(database, ctx, "calls", first, today, sites=(row["site"],), departments=scope)
                assert one.totals is not None
                assert row[key]["calls"] == one.totals["calls"], (scope, row["site"], key)
                assert row[key]["cost"] == f"{one.totals['cost']} GBP", (scope, row["site"], key)
        assert [r["site"] for r in rows] == list(sites)
        if scope == ("Sales",) and is_url(database):
            assert [r["month"]["calls"] > 0 for r in rows] == [True, False, True]  # north, south, west
