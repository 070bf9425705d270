"""Extension names per site (issue 17): in a store of several sites, extension 201 of one site and 201 of
another are two people with two names. Three sites, each with a 201 its PBX (IP Office) names differently, stored
as `smdrd central` stores what they publish: each site's name is learnt at its site, and shown with its calls;
a box learns its names without a site, as it always did; a database from before keeps its names."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg
import pytest

from smdrd.directory import export_csv, read_csv
from smdrd.journal import PARSED, JournalEntry, RatedCall
from smdrd.mqtt_payloads import encode, journal_message, read_journal_message
from smdrd.rating.tariff import Rating
from smdrd.record import CallRecord, Direction
from smdrd.reports.departments import Directory
from smdrd.reports.queries import DIRECTIONS, Context, Query, every_row, run_report
from smdrd.store import open_store
from smdrd.store.api import Actor, ExtensionNames, name_at
from smdrd.store.postgres import schema as pg
from smdrd.store.postgres.central import CentralWriter
from smdrd.store.sqlite import schema as lite
from smdrd.testing import PostgresServer, write_entries
from tests.old_databases import database_before

TZ = ZoneInfo("Europe/London")
ADMIN = Actor("alice", "127.0.0.1")
#: each site's PBX names its extension 201 differently; 202 is named alike at every site.
SITES = {"north": "Nora North", "south": "Sam South", "west": "Wendy West"}


def entries(site: str, name: str, n: int = 3, day: int = 2) -> list[JournalEntry]:
    """``n`` IP Office calls of ``site`` on ``day`` March 2026: 201 named ``name`` by the PBX, then 202 named
    alike everywhere."""
    out = []
    for i in range(n):
        start = datetime(2026, 3, day, 9 + i, 30, tzinfo=TZ)
        ext, party = ("202", "Zoe Same") if i == n - 1 else ("201", name)
        raw = f"{site} day {day} call {i}".encode()
        record = CallRecord(format="avaya-ipo", start=start, duration=60, direction=Direction.OUTBOUND,
                            extension=ext, number=f"02071{i:03d}", answered=True,
                            extra={"party1_device": f"E{ext}", "party1_name": party})
        rating = Rating(f"+442071{i:03d}", "national", "gb", "44", Decimal("0.10"), "GBP", "GB")
        out.append(JournalEntry("pbx", "10.0.0.9", int(start.timestamp() * 1_000_000), "avaya-ipo", raw, PARSED,
                                None, (RatedCall(f"avaya-ipo:{raw.hex()}", record, rating),)))
    return out


async def central(url: str, folder: Path, sites: dict[str, str] = SITES, day: int = 2) -> None:
    """Each site's journal written to its own SQLite file, then stored as `smdrd central` stores what the sites
    publish (through the payload codec)."""
    writer = CentralWriter(url)
    await writer.open()
    try:
        for site, name in sites.items():
            await write_entries(folder / f"{site}.db", entries(site, name, day=day), site=site)
            feed = open_store(folder / f"{site}.db").call_feed()
            await feed.open()
            try:
                published = await feed.entries(0, 1000)
            finally:
                await feed.close()
            await writer.store([read_journal_message(encode(journal_message(site, e.fields))) for e in published])
    finally:
        await writer.close()


def test_a_name_is_its_sites_then_the_site_less_one() -> None:
    names = ExtensionNames([("201", "Anna", ""), ("201", "Nora", "north"), ("202", "Zoe", "north"),
                            ("202", "Zoe", "south"), ("203", "Ann", "north"), ("203", "Bea", "south")])
    assert names.at("north", "201") == "Nora"
    assert names.at("south", "201") == "Anna"  # none of its own: the site-less one
    assert names.at("", "201") == "Anna"
    assert names.at("west", "202") == ""  # the sites' names are theirs alone
    # Where no site is known: the site-less name, else the one every naming site agrees on.
    assert dict(names) == {"201": "Anna", "202": "Zoe"}
    assert names.of_site("south") == {"201": "Anna", "202": "Zoe", "203": "Bea"}
    assert name_at(names, "north", "203") == "Ann"
    assert name_at({"203": "Plain"}, "north", "203") == "Plain"
    assert name_at(names, None, "201") == "Anna"


@pytest.fixture
def central_url(postgres: PostgresServer) -> Iterator[str]:
    """A database of its own for a central store (the sites it adds stay out of the session's shared one)."""
    name = "smdrd_extension_names_sites"
    yield postgres.create_database(name)
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_three_sites_each_with_a_201_keep_their_own_names_centrally(central_url: str, tmp_path: Path) -> None:
    pg_url = central_url
    await central(pg_url, tmp_path)
    store = open_store(pg_url).directory()
    try:
        names = store.names()
        assert {s: names.at(s, "201") for s in SITES} == SITES
        assert {s: names.at(s, "202") for s in SITES} == dict.fromkeys(SITES, "Zoe Same")
        assert "201" not in names and names["202"] == "Zoe Same"
        assert store.names(["201"]).at("south", "201") == "Sam South"
        # An edited name at one site stays over its PBX's; the other sites' keep theirs.
        store.set_name("201", "Nora N. (edited)", at=5, actor=ADMIN, site="north")
        listed, total = store.extensions("201")
        assert total == 3
        assert [(e.site, e.name, e.name_source) for e in listed] == [
            ("north", "Nora N. (edited)", "edited"), ("south", "Sam South", "pbx"), ("west", "Wendy West", "pbx")]
        assert [e.site for e in store.extensions("west")[0]] == ["west", "west"]
    finally:
        store.close()
    # A PBX renaming 201 at south (a new line) is learnt there; north's edited name stays.
    (tmp_path / "again").mkdir()
    await central(pg_url, tmp_path / "again", {"north": "Nora Again", "south": "Sam Renamed"}, day=3)
    store = open_store(pg_url).directory()
    try:
        names = store.names()
        assert names.at("north", "201") == "Nora N. (edited)"
        assert names.at("south", "201") == "Sam Renamed"
        assert names.at("west", "201") == "Wendy West"
    finally:
        store.close()


async def test_a_box_learns_its_names_without_a_site(any_database: Path | str, tmp_path: Path) -> None:
    await write_entries(any_database, entries("box", "Nora North"), site="box")
    store = open_store(any_database).directory()
    try:
        names = store.names()
        assert names.plain == {"201": "Nora North", "202": "Zoe Same"} and not names.sites
        assert names.at("north", "201") == names.at("south", "201") == "Nora North"
        assert store.learn_names([("201", "Nora Elsewhere")], at=2, site="south") == 1
        assert store.names().at("south", "201") == "Nora Elsewhere"
        assert store.names().at("north", "201") == "Nora North"
        store.set_name("201", "", at=3, actor=ADMIN, site="south")  # forgotten: the site-less name again
        assert store.names().at("south", "201") == "Nora North"
    finally:
        store.close()


async def test_a_database_from_before_site_names_keeps_its_names(any_database: Path | str) -> None:
    database_before(any_database, lite.EXTENSION_SITES_MIGRATION, pg.EXTENSION_SITES_MIGRATION,
                    "INSERT INTO directory_extensions (number, name, name_source, updated_at) "
                    "VALUES ('201', 'Anna', 'edited', 7), ('202', 'Bob', 'pbx', 8)")
    store = open_store(any_database).directory()
    try:
        names = store.names()
        assert names == names.plain == {"201": "Anna", "202": "Bob"}
        listed, _ = store.extensions()
        assert [(e.number, e.name, e.name_source, e.updated_at, e.site) for e in listed] == [
            ("201", "Anna", "edited", 7, ""), ("202", "Bob", "pbx", 8, "")]
        # The PBX may not replace an edited name; it may a learnt one; a site's own name is a second row.
        assert store.learn_names([("201", "Other"), ("202", "Bobby")], at=9) == 1
        assert store.learn_names([("201", "Ann North")], at=9, site="north") == 1
        names = store.names()
        assert names.plain == {"201": "Anna", "202": "Bobby"}
        assert names.at("north", "201") == "Ann North"
    finally:
        store.close()
    if not str(any_database).startswith("postgresql"):
        # `smdrd backup` checks the file: SQLite 3.40 misreads a WITHOUT ROWID table whose key is not leading.
        with sqlite3.connect(any_database) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


async def test_reports_and_the_directory_csv_show_each_calls_site_name(central_url: str, tmp_path: Path) -> None:
    await central(central_url, tmp_path)
    ctx = Context(Directory.from_config([]), TZ, "GBP", 2)
    store = open_store(central_url)
    directory = store.directory()
    reader = store.reports()
    try:
        names = directory.names()
        march = (date(2026, 3, 1), date(2026, 3, 31))
        calls = run_report(reader, Query("calls", *march, directions=DIRECTIONS, page_size=0), ctx, names)
        # Each site's two calls of 201, each named as its site names it.
        assert len(calls.rows) == 9
        assert sorted(r["name"] for r in calls.rows if r["extension"] == "201") == sorted([*SITES.values()] * 2)
        every = every_row(reader, Query("calls", *march, directions=DIRECTIONS), ctx, names)
        listed = [r for s in every.sections or () for r in s.rows]
        assert sorted({r["name"] for r in listed if r["extension"] == "201"}) == sorted(SITES.values())
        # Every site's extensions: a row per site and extension, each named as its site names it.
        extensions = run_report(reader, Query("extensions", *march, directions=DIRECTIONS), ctx, names)
        assert {(r["extension"], r["site"]): r["name"] for r in extensions.rows} == {
            **{("201", site): name for site, name in SITES.items()}, **{("202", site): "Zoe Same" for site in SITES}}
        # One site's report names that site's extensions.
        for site, name in SITES.items():
            one = run_report(reader, Query("extensions", *march, directions=DIRECTIONS, sites=(site,)), ctx, names)
            assert {r["extension"]: r["name"] for r in one.rows} == {"201": name, "202": "Zoe Same"}
            details = every_row(reader, Query("extension-details", *march, directions=DIRECTIONS, sites=(site,)),
                                ctx, names)
            assert [s.key["name"] for s in details.sections or ()] == [name, "Zoe Same"]
        # The directory's CSV: each site's name on a row of its site, read back the same.
        lines = "".join(export_csv(directory.snapshot(), names)).splitlines()
        assert lines[0].endswith(",site")
        assert set(lines[1:]) == {f"201,{n},,,,,,{s}" for s, n in SITES.items()} | {
            f"202,Zoe Same,,,,,,{s}" for s in SITES}
        assert sorted(read_csv(lines, "again.csv")[2]) == sorted(
            [("201", n, s) for s, n in SITES.items()] + [("202", "Zoe Same", s) for s in SITES])
    finally:
        reader.close()
        directory.close()
