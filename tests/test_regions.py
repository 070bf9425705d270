"""A call's country is its number's ISO 3166 region (+1 809 is DO, not US): named by the rater for new calls, and
by migration 10's frozen prefix table for calls stored before it, in the rollups and reports too."""

from __future__ import annotations

import hashlib
import random
import sqlite3
from pathlib import Path

import phonenumbers
from hypothesis import given
from hypothesis import strategies as st
from phonenumbers import PhoneNumberType

from smdrd.rating import Dialplan, normalise_uncached
from smdrd.reports.queries import context_from, parse_query, run_report
from smdrd.store.sqlite.regions import GENERATED_FROM, MAIN_REGIONS_V10, PREFIXES_V10
from smdrd.store.sqlite.reports import SqliteReports
from smdrd.store.sqlite.rollups import ROLLUPS, ROLLUPS_V8, backfill_sql, batch_sql
from smdrd.store.sqlite.schema import MIGRATIONS, connect
from tests.test_reports import settings_for

TABLE = dict(PREFIXES_V10)


def frozen_region(e164: str) -> str:
    """What migration 10's table says of ``e164``: the region of its longest listed prefix."""
    digits = e164.lstrip("+")
    for n in range(len(digits), 0, -1):
        if digits[:n] in TABLE:
            return TABLE[digits[:n]]
    return ""


def phonenumbers_region(e164: str) -> str:
    region = phonenumbers.region_code_for_number(phonenumbers.parse(e164))
    return region if region and region.isalpha() and region != "ZZ" else ""


# ---- the frozen table ------------------------------------------------------------------------------------

def test_every_listed_prefix_names_the_region_phonenumbers_gives_its_numbers() -> None:
    """For each prefix the table lists (each NANP area code, each calling code, each prefix splitting a shared
    code), the numbers under it to which phonenumbers gives a region get that region: a table that named +1 809
    US, or +44 7781 GB, fails here."""
    rng = random.Random(14)
    for prefix, region in PREFIXES_V10:
        code = next(str(c) for c in range(1, 1000) if prefix.startswith(str(c))
                    and c in phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
        for _ in range(5):
            national = prefix[len(code):] + "".join(rng.choice("0123456789") for _ in range(12))
            for length in range(max(len(prefix) - len(code), 6), 12):
                num = phonenumbers.parse(f"+{code}{national[:length]}")
                if phonenumbers.is_valid_number(num):
                    assert phonenumbers_region(f"+{code}{national[:length]}") == region, (prefix, national)


def test_the_nanp_area_codes_name_their_countries() -> None:
    assert [frozen_region(n) for n in ("+18095551234", "+18765551234", "+12125551234", "+14165551234",
                                       "+16645551234", "+17875551234")] == ["DO", "JM", "US", "CA", "MS", "PR"]
    assert frozen_region("+447781123456") == "GG" and frozen_region("+77012345678") == "KZ"
    assert frozen_region("+80012345678") == ""  # non-geographic: no country


def test_main_regions_are_phonenumbers_ones() -> None:
    """What a pruned destination row keeps: the calling code's main region, as phonenumbers says."""
    assert GENERATED_FROM  # the version the table came from, for whoever regenerates a later one
    for code, region in MAIN_REGIONS_V10:
        assert phonenumbers.region_code_for_country_code(int(code)) == region, code


def test_example_numbers_of_every_region_get_their_region_from_the_table() -> None:
    types = (PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE, PhoneNumberType.TOLL_FREE)
    for region in phonenumbers.SUPPORTED_REGIONS:
        for kind in types:
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
                assert frozen_region(e164) == phonenumbers_region(e164), (region, kind, e164)


# ---- the rater -------------------------------------------------------------------------------------------

@st.composite
def valid_numbers(draw: st.DrawFn) -> str:
    """A valid number of any region phonenumbers knows: an example number with random last digits."""
    region = draw(st.sampled_from(sorted(phonenumbers.SUPPORTED_REGIONS)))
    kind = draw(st.sampled_from((PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE)))
    example = phonenumbers.example_number_for_type(region, kind) or phonenumbers.example_number(region)
    assert example is not None
    e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
    tail = draw(st.integers(0, 9999))
    candidate = e164[:-4] + f"{tail:04d}" if len(e164) > 8 else e164
    return candidate if phonenumbers.is_valid_number(phonenumbers.parse(candidate)) else e164


@given(valid_numbers(), st.sampled_from(("US", "GB", "DE", "JM")))
def test_the_rater_names_the_region_phonenumbers_names(e164: str, site: str) -> None:
    """Whatever the site's country, a valid number's region is phonenumbers' region_code_for_number."""
    assert normalise_uncached(e164, Dialplan(site)).region == phonenumbers_region(e164)


# ---- migration 10 ----------------------------------------------------------------------------------------

#: (day, number, seconds, cost in micros): the first day's calls are pruned by retention before the upgrade.
OLD_CALLS = (
    ("2026-02-02", "+18095551234", 60, 500_000), ("2026-02-02", "+12125551234", 30, 100_000),
    ("2026-03-02", "+18095551234", 120, 900_000), ("2026-03-02", "+18765551234", 90, 700_000),
    ("2026-03-02", "+12125551234", 40, 150_000), ("2026-03-03", "", 10, 0),
)


def version_9_database(path: Path) -> None:
    """A database of schema version 9 with `OLD_CALLS` rolled up as version 9 did, then February's calls
    deleted by retention (the rollups keep them)."""
    conn = sqlite3.connect(path, isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:9], start=1):
        conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")
    conn.execute("BEGIN")
    conn.execute("INSERT INTO lines (id, source, received_at, format, raw, status) "
                 "VALUES (1, 'pbx', 0, 'test', x'00', 'parsed')")
    for i, (day, e164, seconds, micros) in enumerate(OLD_CALLS):
        conn.execute(
            "INSERT INTO calls (line_id, uid, source, format, call_key, leg, start, start_utc, duration, direction, "
            "extension, number, trunk, account, auth_code, call_id, answered, transfer, extra, e164, call_class, "
            "rule, prefix, cost_micros, currency) VALUES (1, ?, 'pbx', 'test', ?, 0, ?, ?, ?, 'outbound', '201', "
            "?, 'T1', '', '', '', 1, '', '{}', ?, 'international', 'r', '1', ?, 'EUR')",
            (f"u{i}", f"k{i}", f"{day}T10:00:00+01:00", 1_770_000_000 + i, seconds, e164, e164 or None, micros))
    for statement in batch_sql(ROLLUPS_V8):
        conn.execute(statement, (0,))
    conn.execute("DELETE FROM calls WHERE start < '2026-03'")
    conn.execute("COMMIT")
    conn.close()


def test_migration_10_names_the_region_of_stored_calls_and_keeps_every_figure(tmp_path: Path) -> None:
    """Stored calls get their region; a destination row of pruned calls keeps its figures under its code's
    main region (+1: US), the best answer left; no rollup loses or gains a call, a second or a micro-unit."""
    path = tmp_path / "v9.db"
    version_9_database(path)
    before = sqlite3.connect(path)
    sums = {r.table: before.execute(f"SELECT sum(calls), sum(duration), sum(cost_micros) FROM {r.table}").fetchone()
            for r in ROLLUPS}
    before.close()
    conn = connect(str(path))
    try:
        assert conn.execute("SELECT e164, region FROM calls ORDER BY id").fetchall() == [
            ("+18095551234", "DO"), ("+18765551234", "JM"), ("+12125551234", "US"), (None, "")]
        for r in ROLLUPS:
            assert conn.execute(f"SELECT sum(calls), sum(duration), sum(cost_micros) FROM {r.table}").fetchone() \
                == sums[r.table], r.table
        assert conn.execute("SELECT day, country, region, calls, duration, cost_micros FROM rollup_destinations "
                            "ORDER BY day, region").fetchall() == [
            ("2026-02-02", "1", "US", 2, 90, 600_000),  # pruned: +1 809 and +1 212, now only +1's main region
            ("2026-03-02", "1", "DO", 1, 120, 900_000), ("2026-03-02", "1", "JM", 1, 90, 700_000),
            ("2026-03-02", "1", "US", 1, 40, 150_000), ("2026-03-03", "", "", 1, 10, 0)]
        monthly = next(r for r in ROLLUPS if r.table == "rollup_monthly_destinations")
        conn.execute("CREATE TEMP TABLE fresh AS SELECT * FROM rollup_monthly_destinations WHERE 0")
        conn.execute(backfill_sql(monthly).replace("INTO rollup_monthly_destinations", "INTO temp.fresh"))
        assert sorted(conn.execute("SELECT * FROM temp.fresh")) == sorted(
            conn.execute("SELECT * FROM rollup_monthly_destinations"))
    finally:
        conn.close()
    ctx = context_from(settings_for(path, departments=[]))
    reader = SqliteReports(path)
    try:
        params = {"kind": ["destinations"], "from": ["2026-03-01"], "to": ["2026-03-31"], "by": ["count"]}
        rows = run_report(reader, parse_query(params, ctx), ctx).rows
    finally:
        reader.close()
    assert sorted((row["country"], row["code"], row["calls"]) for row in rows) == [
        ("", "", 1), ("DO", "+1", 1), ("JM", "+1", 1), ("US", "+1", 1)]


def test_migration_10_is_frozen() -> None:
    """Migration 10 is generated (from `ROLLUPS_V10`, `DIMENSIONS` and the tables above), yet databases in the
    field hold its result and restore compares with it: its text must never change (a change is migration 11)."""
    assert hashlib.sha1(MIGRATIONS[9].encode()).hexdigest() == "7c21cc2b697ad8983dca75e4edaa1ab2954f433d"
