"""Every figure of every report kind, over a known set of calls written through the real journal writer.

The calls go through the store's journal writer (`smdrd.store.journal_writer`) into a real SQLite file, and
again into a real PostgreSQL database (`smdrd.store.postgres`): every test that reads a store runs on both, with
the same expected figures, so the two stores agree to the cent. `CALLS` below is the whole data set; the expected
figures in each test are worked out by hand from it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
import pytest

from smdrd.config import Settings
from smdrd.core import PARSED, Entry
from smdrd.journal import RatedCall
from smdrd.rating import Rater, Rating
from smdrd.rating.normalise import region_of
from smdrd.record import CallRecord, Direction
from smdrd.reports.export import header_lines
from smdrd.reports.queries import Context, Query, Report, context_from, parse_query, rounded, run_report
from smdrd.store import is_url, open_store
from smdrd.store.api import ReportReader
from smdrd.testing import write_entries

TZ = ZoneInfo("Europe/Warsaw")

DEPARTMENTS: list[dict[str, Any]] = [
    {"name": "Company", "budget": "1000"},
    {"name": "Sales", "parent": "Company", "extensions": ["200-209"], "budget": "300"},
    {"name": "Sales North", "parent": "Sales", "extensions": ["210-219"]},
    # 205 moves from Sales (its range) to Support on 16 March.
    {"name": "Support", "extensions": ["300", 301], "members": [{"extensions": ["205"], "valid_from": "2026-03-16"}]},
]


def settings_for(db: Path | str, departments: list[dict[str, Any]] | None = None, **extra: Any) -> Settings:
    return Settings.model_validate({
        "site": {"timezone": "Europe/Warsaw", "country": "PL"},
        "database": {"url": db} if is_url(db) else {"path": str(db), "commit_interval_ms": 5},
        "tariff": {"currency": "EUR", "decimals": 2},
        "departments": DEPARTMENTS if departments is None else departments,
        **extra,
    })


@dataclass(frozen=True, slots=True)
class Call:
    """One leg as a test writes it: local start, extension, direction, class, seconds, cost, trunk, number."""

    start: str
    extension: str
    direction: str
    call_class: str
    duration: int
    cost: str
    trunk: str = "T1"
    e164: str = "+48221234567"
    number: str = "0221234567"
    key: str = ""
    leg: int = 0


CALLS = [
    Call("2026-03-02T10:15:00", "201", "outbound", "national", 120, "0.50"),
    Call("2026-03-03T11:00:00", "201", "outbound", "mobile", 60, "0.30", e164="+48600123456"),
    Call("2026-03-10T09:30:00", "205", "outbound", "international", 300, "2.00", trunk="T2", e164="+442071234567"),
    Call("2026-03-20T14:00:00", "205", "outbound", "national", 100, "0.40"),
    Call("2026-03-05T10:05:00", "211", "outbound", "national", 90, "0.35"),
    # 30 March is after the change to summer time (+02:00): still March, still counted.
    Call("2026-03-30T16:45:00", "300", "outbound", "international", 600, "3.50", trunk="T2", e164="+12125551234"),
    # A transferred call: 300 answers, transfers to 301. One call; both legs' duration and cost.
    Call("2026-03-12T10:00:00", "300", "outbound", "national", 200, "0.80", key="X1"),
    Call("2026-03-12T10:03:20", "301", "outbound", "national", 100, "0.40", key="X1", leg=1),
    Call("2026-03-04T12:00:00", "999", "outbound", "local", 30, "0.10", e164="+48521234567"),
    # Not counted by default: inbound and internal.
    Call("2026-03-06T09:00:00", "201", "inbound", "national", 400, "0"),
    Call("2026-03-06T15:00:00", "201", "internal", "internal", 50, "0", trunk="", e164="", number="202"),
    # Outside March in site time (the first is still 31 March in UTC).
    Call("2026-04-01T00:30:00", "201", "outbound", "national", 70, "0.25"),
    Call("2026-02-28T23:30:00", "201", "outbound", "national", 80, "0.30"),
]


def record(c: Call) -> RatedCall:
    start = datetime.fromisoformat(c.start).replace(tzinfo=TZ)
    rec = CallRecord(format="test", start=start, duration=c.duration, direction=Direction(c.direction),
                     extension=c.extension, number=c.number, trunk=c.trunk, leg=c.leg, call_key=c.key)
    region = region_of(phonenumbers.parse(c.e164)) if c.e164 else ""
    rating = Rating(c.e164, c.call_class, "rule", c.e164[:3], Decimal(c.cost), "EUR", region)
    return RatedCall(f"test:{c.start}:{c.extension}:{c.leg}", rec, rating)


async def write_calls(db: Path | str, calls: list[Call]) -> None:
    """Store ``calls`` as the daemon does: one journal line each, through the batching writer."""
    await write_rated(db, [record(c) for c in calls])


async def write_rated(db: Path | str, calls: list[RatedCall]) -> None:
    """Store rated ``calls`` through the store's batching writer, one journal line each."""
    await write_entries(db, [Entry("pbx", "", 1_000_000 + i, "test", f"line {i}".encode(), PARSED, calls=[call])
                             for i, call in enumerate(calls)])


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """An empty store: a SQLite file's path, or a new PostgreSQL database's URL."""
    return tmp_path / "smdrd.db" if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))


@pytest.fixture
async def db(target: Path | str) -> Path | str:
    await write_calls(target, CALLS)
    return target


@pytest.fixture
def ctx(db: Path | str) -> Context:
    return context_from(settings_for(db))


@pytest.fixture
def conn(db: Path | str) -> Iterator[ReportReader]:
    c = open_store(db).reports()
    yield c
    c.close()


def delete_calls(db: Path | str) -> None:
    """Delete every call detail, as retention does (the rollups stay)."""
    if is_url(db):
        import psycopg

        with psycopg.connect(str(db)) as pg:
            pg.execute("DELETE FROM calls")
        return
    rw = sqlite3.connect(db)
    rw.execute("DELETE FROM calls")
    rw.commit()
    rw.close()


def report(conn: ReportReader, ctx: Context, kind: str, **params: str) -> Report:
    args = {"kind": [kind], "from": ["2026-03-01"], "to": ["2026-03-31"], **{k: [v] for k, v in params.items()}}
    return run_report(conn, parse_query(args, ctx), ctx)


def cells(rep: Report, *keys: str) -> list[tuple[Any, ...]]:
    """The rows' ``keys``; an average (exact in the report) with one decimal, as JSON and CSV give it."""
    return [tuple(rounded(row[k]) if k == "average" else row[k] for k in keys) for row in rep.rows]


FIGS = ("calls", "duration", "average", "cost")


def d(text: str) -> Decimal:
    return Decimal(text)


def test_extensions_report_every_figure_and_the_totals_row(conn: ReportReader, ctx: Context) -> None:
    """The per-extension bill: a wrong count, duration, average or cost for any extension shows here; 205 is
    billed to Sales before its move on 16 March and to Support after; 999 is in no department: Unassigned."""
    rep = report(conn, ctx, "extensions")
    assert cells(rep, "extension", "department", *FIGS) == [
        ("201", "Sales", 2, 180, d("90.0"), d("0.80")),
        ("205", "Sales", 1, 300, d("300.0"), d("2.00")),
        ("205", "Support", 1, 100, d("100.0"), d("0.40")),
        ("211", "Sales North", 1, 90, d("90.0"), d("0.35")),
        ("300", "Support", 2, 800, d("400.0"), d("4.30")),
        ("301", "Support", 0, 100, d("0.0"), d("0.40")),  # the transfer's second leg: time and cost, no call
        ("999", "Unassigned", 1, 30, d("30.0"), d("0.10")),
    ]
    assert rep.totals == {"calls": 8, "duration": 1600, "average": d("200.0"), "cost": d("8.35")}


def test_extensions_by_class_splits_each_extension(conn: ReportReader, ctx: Context) -> None:
    """With --by-class, 201's national and mobile calls are separate rows; the totals do not change."""
    rep = report(conn, ctx, "extensions", by_class="1", extension="201")
    assert cells(rep, "extension", "call_class", "calls", "cost") == [
        ("201", "mobile", 1, d("0.30")), ("201", "national", 1, d("0.50"))]
    assert rep.totals is not None and rep.totals["calls"] == 2 and rep.totals["cost"] == d("0.80")


def test_departments_report_rolls_sub_departments_into_parents(conn: ReportReader, ctx: Context) -> None:
    """Sales includes Sales North, Company includes both; totals count every call once (not once per level);
    budgets for a whole month are the monthly budget."""
    rep = report(conn, ctx, "departments")
    assert cells(rep, "department", "parent", *FIGS, "budget") == [
        ("Company", None, 4, 570, d("142.5"), d("3.15"), d("1000.00")),
        ("Sales", "Company", 4, 570, d("142.5"), d("3.15"), d("300.00")),
        ("Sales North", "Sales", 1, 90, d("90.0"), d("0.35"), None),
        ("Support", None, 3, 1000, d("333.3"), d("5.10"), None),
        ("Unassigned", None, 1, 30, d("30.0"), d("0.10"), None),
    ]
    assert rep.totals == {"calls": 8, "duration": 1600, "average": d("200.0"), "cost": d("8.35")}


def test_department_filter_takes_the_subtree(conn: ReportReader, ctx: Context) -> None:
    """--department Sales shows Sales and Sales North, and totals only theirs."""
    rep = report(conn, ctx, "departments", department="Sales")
    assert cells(rep, "department", "calls", "cost") == [("Sales", 4, d("3.15")), ("Sales North", 1, d("0.35"))]
    assert rep.totals is not None and (rep.totals["calls"], rep.totals["cost"]) == (4, d("3.15"))
    ext = report(conn, ctx, "extensions", department="Unassigned")
    assert cells(ext, "extension", "calls") == [("999", 1)]


def test_mid_month_move_bills_each_day_to_its_department(conn: ReportReader, ctx: Context) -> None:
    """205's calls before 16 March go to Sales, after it to Support, in every report; a half-month range
    before the move shows only Sales."""
    deps = report(conn, ctx, "departments", extension="205")
    assert [(r["department"], r["calls"], r["cost"]) for r in deps.rows if r["calls"]] == [
        ("Company", 1, d("2.00")), ("Sales", 1, d("2.00")), ("Support", 1, d("0.40"))]
    early = run_report(conn, parse_query({"kind": ["extensions"], "from": ["2026-03-01"], "to": ["2026-03-15"],
                                          "extension": ["205"]}, ctx), ctx)
    assert cells(early, "extension", "department", "calls") == [("205", "Sales", 1)]


def test_changing_departments_reattributes_past_calls(db: Path | str, conn: ReportReader) -> None:
    """Departments are resolved when reporting: without the move, 205 is Sales all month; no data rewritten."""
    ctx = context_from(settings_for(db, [dep for dep in DEPARTMENTS if dep["name"] != "Support"]))
    rep = report(conn, ctx, "extensions", extension="205,300")
    assert cells(rep, "extension", "department", "calls") == [("205", "Sales", 2), ("300", "Unassigned", 2)]


def test_direction_class_and_trunk_filters(conn: ReportReader, ctx: Context) -> None:
    """Outbound is the default; --direction all adds the inbound and internal calls; class and trunk narrow."""
    assert report(conn, ctx, "extensions", direction="all").totals == {
        "calls": 10, "duration": 2050, "average": d("205.0"), "cost": d("8.35")}
    assert report(conn, ctx, "extensions", direction="inbound").totals == {
        "calls": 1, "duration": 400, "average": d("400.0"), "cost": d("0.00")}
    intl = report(conn, ctx, "extensions", **{"class": "international"})
    assert cells(intl, "extension", "calls", "cost") == [("205", 1, d("2.00")), ("300", 1, d("3.50"))]
    t2 = report(conn, ctx, "departments", trunk="T2")
    assert t2.totals is not None and (t2.totals["calls"], t2.totals["cost"]) == (2, d("5.50"))


def test_trunks_report_calls_minutes_cost_and_busiest_hour(conn: ReportReader, ctx: Context) -> None:
    """Per trunk: calls (the transfer once), minutes, cost, and the hour of day with the most calls."""
    rep = report(conn, ctx, "trunks")
    assert cells(rep, "trunk", "calls", "duration", "minutes", "cost", "busiest_hour", "busiest_hour_calls") == [
        ("T1", 6, 700, d("11.7"), d("2.85"), "10:00-11:00", 3),
        ("T2", 2, 900, d("15.0"), d("5.50"), "09:00-10:00", 1),  # a tie between 9 and 16: the earlier
    ]
    assert rep.totals == {"calls": 8, "duration": 1600, "minutes": d("26.7"), "cost": d("8.35"),
                          "busiest_hour": "10:00-11:00", "busiest_hour_calls": 3}
    # with every direction, the internal call (no trunk) is a row that says so, not a row without a name
    every = report(conn, ctx, "trunks", direction="all")
    assert [row["trunk"] for row in every.rows] == ["(no trunk)", "T1", "T2"]


def test_destinations_by_cost_and_by_count(conn: ReportReader, ctx: Context) -> None:
    """Destinations are country and class, ranked by cost (default) or by number of calls; totals cover all."""
    keys = ("country", "code", "call_class", "calls", "duration", "cost")
    by_cost = report(conn, ctx, "destinations")
    assert cells(by_cost, *keys) == [
        ("US", "+1", "international", 1, 600, d("3.50")),
        ("PL", "+48", "national", 4, 610, d("2.45")),
        ("GB", "+44", "international", 1, 300, d("2.00")),
        ("PL", "+48", "mobile", 1, 60, d("0.30")),
        ("PL", "+48", "local", 1, 30, d("0.10")),
    ]
    assert by_cost.totals == {"calls": 8, "duration": 1600, "average": d("200.0"), "cost": d("8.35")}
    by_count = report(conn, ctx, "destinations", by="count", top="2")
    assert cells(by_count, "code", "call_class", "calls") == [("+48", "national", 4), ("+1", "international", 1)]
    assert by_count.totals is not None and by_count.totals["calls"] == 8


async def test_destinations_name_the_country_of_the_number_not_of_its_calling_code(target: Path | str) -> None:
    """+1 809 is the Dominican Republic and +1 876 Jamaica, not the US (the main country of +1), as the alerts
    say: the rater names each number's region, it is stored with the call, and the report shows it."""
    path = target
    settings = settings_for(path, departments=[], site={"timezone": "Europe/Warsaw", "country": "PL"})
    rater = Rater.from_config(settings.site, settings.tariff)
    calls = []
    for i, (number, seconds) in enumerate((("0018095551234", 60), ("0018765551234", 120), ("0012125551234", 30),
                                           ("0018095550000", 15))):
        start = datetime(2026, 3, 2, 10, i, tzinfo=TZ)
        rec = CallRecord(format="test", start=start, duration=seconds, direction=Direction.OUTBOUND,
                         extension="201", number=number, trunk="T1", call_key=f"k{i}")
        calls.append(RatedCall(f"nanp:{i}", rec, rater.rate(rec)))
    assert [c.region for c in calls] == ["DO", "JM", "US", "DO"]
    await write_rated(path, calls)
    reader = open_store(path).reports()
    try:
        rep = report(reader, context_from(settings), "destinations", by="count")
    finally:
        reader.close()
    assert cells(rep, "country", "code", "calls", "duration") == [
        ("DO", "+1", 2, 75), ("JM", "+1", 1, 120), ("US", "+1", 1, 30)]


def test_days_report_has_every_day_of_the_range(conn: ReportReader, ctx: Context) -> None:
    """The chart's data: 31 days for March, empty days as zeros, the transfer on its day once."""
    rep = report(conn, ctx, "days")
    assert len(rep.rows) == 31 and rep.rows[0]["day"] == "2026-03-01" and rep.rows[-1]["day"] == "2026-03-31"
    by_day = {r["day"]: (r["calls"], r["duration"], r["cost"]) for r in rep.rows}
    assert by_day["2026-03-01"] == (0, 0, d("0.00"))
    assert by_day["2026-03-12"] == (1, 300, d("1.20"))
    assert by_day["2026-03-30"] == (1, 600, d("3.50"))
    assert rep.totals == {"calls": 8, "duration": 1600, "average": d("200.0"), "cost": d("8.35")}


def test_calls_report_lists_legs_in_time_order_and_paginates(conn: ReportReader, ctx: Context) -> None:
    """Call details: every leg in start order, with its department on its day; pages and totals over all pages."""
    page1 = report(conn, ctx, "calls", page_size="4")
    assert page1.meta["pages"] == 3 and page1.meta["rows_total"] == 9
    assert cells(page1, "start", "extension", "department", "duration", "cost") == [
        ("2026-03-02T10:15:00+01:00", "201", "Sales", 120, d("0.50")),
        ("2026-03-03T11:00:00+01:00", "201", "Sales", 60, d("0.30")),
        ("2026-03-04T12:00:00+01:00", "999", "Unassigned", 30, d("0.10")),
        ("2026-03-05T10:05:00+01:00", "211", "Sales North", 90, d("0.35")),
    ]
    page3 = report(conn, ctx, "calls", page_size="4", page="3")
    assert cells(page3, "start", "extension", "leg") == [("2026-03-30T16:45:00+02:00", "300", 0)]
    assert page1.totals == page3.totals == {"calls": 8, "legs": 9, "duration": 1600, "average": d("200.0"),
                                            "cost": d("8.35")}


def test_calls_report_department_filter_follows_the_move(conn: ReportReader, ctx: Context) -> None:
    """Support's calls: 205 only after its move, and both of 300's calls plus the transfer leg to 301."""
    rep = report(conn, ctx, "calls", department="Support", page_size="0")
    assert cells(rep, "start", "extension", "leg") == [
        ("2026-03-12T10:00:00+01:00", "300", 0), ("2026-03-12T10:03:20+01:00", "301", 1),
        ("2026-03-20T14:00:00+01:00", "205", 0), ("2026-03-30T16:45:00+02:00", "300", 0)]
    assert rep.totals is not None and (rep.totals["calls"], rep.totals["cost"]) == (3, d("5.10"))


async def test_a_resent_call_is_not_counted_twice(db: Path | str, ctx: Context) -> None:
    """A PBX that re-sends its buffer: the duplicate line is ignored, and the rollups with it."""
    await write_calls(db, CALLS[:2])
    conn = open_store(db).reports()
    try:
        assert report(conn, ctx, "extensions").totals == {
            "calls": 8, "duration": 1600, "average": d("200.0"), "cost": d("8.35")}
    finally:
        conn.close()


def test_pruning_call_details_keeps_the_totals(db: Path | str, ctx: Context) -> None:
    """Retention deletes old call details; the accounting reports (rollups) must not change."""
    delete_calls(db)
    conn = open_store(db).reports()
    try:
        assert report(conn, ctx, "departments").totals == {
            "calls": 8, "duration": 1600, "average": d("200.0"), "cost": d("8.35")}
        assert report(conn, ctx, "calls").rows == []
    finally:
        conn.close()


def test_migration_rolls_up_calls_stored_before_it(tmp_path: Path) -> None:
    """A database from before the reports: its calls are rolled up once when the schema is upgraded."""
    from smdrd.store.sqlite.rows import CALL_COLUMNS, call_row
    from smdrd.store.sqlite.schema import MIGRATIONS, migrate

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(f"BEGIN; {MIGRATIONS[0]} PRAGMA user_version = 1; COMMIT;")
    conn.execute("INSERT INTO lines VALUES (1, 'pbx', '', 0, 'test', x'00', 'parsed', NULL)")
    v1 = CALL_COLUMNS[:CALL_COLUMNS.index("region")]  # the columns of migration 1
    conn.executemany(f"INSERT INTO calls (line_id, {', '.join(v1)}) VALUES (1, {', '.join('?' * len(v1))})",
                     [call_row(record(c), "pbx")[:len(v1)] for c in CALLS])
    migrate(conn)
    conn.close()
    ro = open_store(path).reports()
    try:
        ctx = context_from(settings_for(path))
        assert report(ro, ctx, "extensions").totals == {
            "calls": 8, "duration": 1600, "average": d("200.0"), "cost": d("8.35")}
        assert report(ro, ctx, "trunks").totals is not None
    finally:
        ro.close()


def test_parse_query_rejects_what_a_user_can_get_wrong(ctx: Context) -> None:
    """Bad parameters name the parameter and what was expected (the HTTP API answers 400 with this)."""
    for params, expected in [
        ({"from": ["2026-13-01"]}, "from: expected a date"),
        ({"from": ["2026-03-10"], "to": ["2026-03-01"]}, "is before from"),
        ({"department": ["Nowhere"]}, "unknown department 'Nowhere'"),
        ({"direction": ["sideways"]}, "direction: expected"),
        ({"class": ["cheap"]}, "class: expected"),
        ({"kind": ["everything"]}, "kind: expected"),
        ({"page_size": ["-1"]}, "page_size: expected"),
    ]:
        with pytest.raises(ValueError, match=expected):
            parse_query(params, ctx)


def test_month_shorthand_and_default_range(ctx: Context) -> None:
    """--from 2026-02 --to 2026-02 is all of February; no dates means this month to date."""
    q = parse_query({"from": ["2026-02"], "to": ["2026-02"]}, ctx)
    assert (q.first, q.last) == (date(2026, 2, 1), date(2026, 2, 28))
    q = parse_query({}, ctx, today=date(2026, 5, 17))
    assert (q.first, q.last, q.directions) == (date(2026, 5, 1), date(2026, 5, 17), ("outbound",))
    assert isinstance(parse_query({"direction": ["all"]}, ctx), Query)


async def test_costs_priced_in_another_currency_are_said_in_every_report(target: Path | str) -> None:
    """The database held 11.471 USD and 8.149 GBP; the report said "Total 19.620 GBP" without a word. The
    rollups keep each call's currency: a report whose days hold another one than the configured one says so."""
    import dataclasses

    usd = record(Call("2026-03-18T10:00:00", "201", "outbound", "national", 60, "1.00"))
    assert isinstance(usd.rating, Rating)
    usd = dataclasses.replace(usd, uid="test:usd", rating=dataclasses.replace(usd.rating, currency="USD"))
    await write_rated(target, [record(c) for c in CALLS[:4]] + [usd])
    ctx = context_from(settings_for(target))  # EUR
    conn = open_store(target).reports()
    try:
        for first, last in (("2026-03-01", "2026-03-31"), ("2026-03-18", "2026-03-18")):
            for kind in ("extensions", "departments", "days", "trunks", "destinations", "calls", "extension-details"):
                rep = run_report(conn, parse_query({"kind": [kind], "from": [first], "to": [last]}, ctx), ctx)
                assert "priced in USD" in rep.meta["note"] and "smdrd rerate" in rep.meta["note"], kind
                assert ("Note", rep.meta["note"]) in header_lines(rep)
        quiet = run_report(conn, parse_query({"kind": ["extensions"], "from": ["2026-03-01"], "to": ["2026-03-17"]},
                                             ctx), ctx)
        assert "note" not in quiet.meta  # only EUR on those days
    finally:
        conn.close()
