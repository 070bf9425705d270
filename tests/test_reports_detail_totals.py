"""The details reports' section totals read in one grouped read (`ReportReader.extension_totals`) equal what the
per-extension reads gave before (`ReportReader.call_totals` once per extension, and per department interval of
an extension that moved), on both stores: from the rollups, and from the call details once retention has
deleted old calls. Random calls, ranges over whole and partial months, a move in and a move back out, and every
filter a details report takes (department, extension, direction, class, trunk, site), with paging."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smdrd.reports import queries
from smdrd.reports.departments import extension_sort_key
from smdrd.reports.queries import Context, Query, context_from, parse_query, run_report
from smdrd.reports.render import to_json
from smdrd.store import is_url, open_store
from smdrd.store.api import Interval, ReportReader
from smdrd.testing import PostgresServer
from tests import test_directory_sites
from tests.conftest import EMPTY_DATABASE
from tests.test_directory_sites import MARCH, context, stored
from tests.test_postgres_store import _CALL
from tests.test_reports import CALLS, DEPARTMENTS, Call, settings_for, write_calls

#: the report tests' departments, and 211 in Support from 25 March to 5 April only: it moves in and back out.
MOVES: list[dict[str, Any]] = [
    *DEPARTMENTS[:3],
    {**DEPARTMENTS[3], "members": [*DEPARTMENTS[3]["members"],
                                   {"extensions": ["211"], "valid_from": "2026-03-25", "valid_until": "2026-04-05"}]},
]

RANGES = (("2026-03-01", "2026-03-31"), ("2026-02-20", "2026-05-10"), ("2026-03-10", "2026-04-20"),
          ("2026-01-01", "2026-12-31"), ("2026-03-26", "2026-03-26"))
FILTERS: tuple[dict[str, str], ...] = (
    {}, {"department": "Sales"}, {"department": "Support"}, {"department": "Company,Unassigned"},
    {"direction": "all"}, {"class": "national,mobile", "direction": "all"}, {"trunk": "T2"},
    {"extension": "205,211"}, {"site": "nowhere"}, {"department": "Support", "class": "national"},
    {"page": "2", "page_size": "3"}, {"department": "Sales", "page": "3", "page_size": "2"},
)


def per_extension_parts(reader: ReportReader, q: Query, ctx: Context) -> list[queries._Part]:
    """The sections as they were read before `ReportReader.extension_totals`: the extensions with traffic (at
    each site, when the directory names sites), then `ReportReader.call_totals` for each (for a section covering
    some of its extension's days, of those days)."""
    d = ctx.directory
    f = q.filters()
    first, last = q.first.isoformat(), q.last.isoformat()
    wanted = queries._wanted(q, d)
    order = {name: i for i, name in enumerate(queries._shown_departments(q, d, wanted))}
    parts: list[queries._Part] = []
    extensions = reader.range_site_extensions(f) if d.sited else [(None, e) for e in reader.range_extensions(f)]
    for site, ext in extensions:
        spans = d.intervals(ext, first, last, site or "")
        groups: dict[str, list[Interval]] = {}
        for a, b, dep in spans:
            if wanted is None or dep in wanted:
                groups.setdefault(dep if q.kind == "department-details" else "", []).append((ext, a, b))
        for dep, chosen in groups.items():
            part = queries._Part(ext, dep, None if len(chosen) == len(spans) else tuple(chosen), (0, 0, 0, 0), site)
            if part.spans is not None:
                reader.select_intervals(part.spans)
            totals = reader.call_totals(part.filters(f), ctx.timezone, selected=part.spans is not None)
            if totals[0]:
                parts.append(dataclasses.replace(part, totals=totals))
    parts.sort(key=lambda p: (order.get(p.department, len(order)), extension_sort_key(p.extension), p.site or ""))
    return parts


def prune(db: Path | str, before: str) -> None:
    """Delete the calls of the site-local days before ``before``, as retention does (the rollups stay)."""
    sql = "DELETE FROM calls WHERE substr(start, 1, 10) < ?"
    if is_url(db):
        with psycopg.connect(str(db)) as pg:
            pg.execute(sql.replace("?", "%s"), (before,))
        return
    rw = sqlite3.connect(db)
    rw.execute(sql, (before,))
    rw.commit()
    rw.close()


def details(db: Path | str, ctx: Context) -> Iterator[tuple[str, list[queries._Part], list[queries._Part], str, str]]:
    """For every details query: its parameters, the sections' parts read the new way and the old way, and (for
    the unfiltered and the paged queries) the report's JSON each way (page rows, sections, totals)."""
    reader = open_store(db).reports()
    try:
        for kind in queries.DETAIL_KINDS:
            for lo, hi in RANGES:
                for extra in FILTERS:
                    params = {"kind": kind, "from": lo, "to": hi, **extra}
                    q = parse_query({k: [v] for k, v in params.items()}, ctx)
                    new = queries._detail_parts(reader, q, ctx)
                    old = per_extension_parts(reader, q, ctx)
                    new_json = old_json = ""
                    if not extra or "page" in extra:  # the whole report (its page's rows): the unfiltered, paged
                        new_json = to_json(run_report(reader, q, ctx))
                        with mock.patch.object(queries, "_detail_parts", per_extension_parts):
                            old_json = to_json(run_report(reader, q, ctx))
                    yield repr(params), new, old, new_json, old_json
    finally:
        reader.close()


def check(db: Path | str) -> list[str]:
    """Assert the new reads equal the old ones for every query on ``db``; what they gave, for the other store."""
    ctx = context_from(settings_for(db, MOVES))
    out = []
    for params, new, old, new_json, old_json in details(db, ctx):
        assert new == old, params
        assert new_json == old_json, params
        out.append(f"{params} {new_json} {new}")
    return out


@pytest.mark.timeout(600)  # six examples of 120 queries on each store, on a shared machine
@settings(max_examples=6, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(calls=st.lists(_CALL, max_size=40), retention=st.sampled_from(["", "2026-03-05", "2026-03-27"]))
def test_grouped_section_totals_equal_the_per_extension_ones_on_both_stores(
        postgres: PostgresServer, tmp_path: Path, calls: list[Call], retention: str) -> None:
    """Whatever the calls, and whether retention has deleted the oldest (the totals then come from the call
    details, not the rollups), each store's sections, subtotals, page rows and grand total are what the
    per-extension reads gave; and the two stores agree."""
    url = postgres.url("smdrd_test")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(EMPTY_DATABASE)
    path = tmp_path / f"{uuid.uuid4().hex}.db"
    reports = []
    for db in (path, url):
        asyncio.run(write_calls(db, [*CALLS, *calls]))
        if retention:
            prune(db, retention)
        reports.append(check(db))
    assert reports[0] == reports[1]


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_moved_extension_splits_into_a_section_per_department_with_its_own_days(
        store: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """205 moves from Sales to Support on 16 March: its March calls of the 10th and the 20th fall in two
    sections of the department details, each with only its own days' figures, read without a call per section."""
    db: Path | str = tmp_path / "smdrd.db" if store == "sqlite" else str(request.getfixturevalue("pg_url"))
    asyncio.run(write_calls(db, CALLS))
    ctx = context_from(settings_for(db, MOVES))
    reader = open_store(db).reports()
    try:
        q = parse_query({"kind": ["department-details"], "from": ["2026-03-01"], "to": ["2026-03-31"]}, ctx)
        with mock.patch.object(type(reader), "call_totals", side_effect=AssertionError("a read per extension")):
            parts = {(p.department, p.extension): p for p in queries._detail_parts(reader, q, ctx)}
    finally:
        reader.close()
    assert parts[("Sales", "205")].totals == (1, 1, 300, 2_000_000)
    assert parts[("Sales", "205")].spans == (("205", "2026-03-01", "2026-03-15"),)
    assert parts[("Support", "205")].totals == (1, 1, 100, 400_000)
    assert parts[("Support", "205")].spans == (("205", "2026-03-16", "2026-03-31"),)
    assert parts[("Support", "300")].spans is None

#: the directory-sites tests' stores: a box's SQLite journal (site north), a central PostgreSQL store of three.
sited_store = test_directory_sites.database


async def test_a_directory_naming_sites_gets_the_same_sections_per_site_and_extension(
        sited_store: Path | str, tmp_path: Path) -> None:
    """Three sites' extension 201 in different departments (west's moving on the 10th): the grouped read gives
    each site's sections the figures the per-site, per-extension reads gave."""
    await stored(sited_store, tmp_path)
    ctx = context(sited_store)
    reader = open_store(sited_store).reports()
    try:
        for kind in queries.DETAIL_KINDS:
            for extra in ({}, {"departments": ("Sales",)}, {"departments": ("Support",), "classes": ("national",)},
                          {"sites": ("west",)}, {"extensions": ("201",)}):
                q = Query(kind, *MARCH, directions=queries.DIRECTIONS, **extra)  # type: ignore[arg-type]
                new = queries._detail_parts(reader, q, ctx)
                assert new == per_extension_parts(reader, q, ctx), (kind, extra)
                assert new or extra, (kind, extra)
    finally:
        reader.close()
