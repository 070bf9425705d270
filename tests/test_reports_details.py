"""The details kinds (extension-details, department-details) and every kind's CSV export, checked against the
JSON report to the cent: built from calls written through the real journal writer into SQLite
(`tests.test_reports`), exported as CSV, XLSX (opened with openpyxl) and PDF (read with Debian's ``pdftotext``),
over the CLI (a subprocess) and a real daemon's HTTP server.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from smdrd.http import Principal
from smdrd.reports.export import write_export
from smdrd.reports.http import scoped
from smdrd.reports.queries import DETAIL_KINDS, KINDS, NO_NAMES, Context, context_from, parse_query, run_report
from smdrd.reports.render import hms, to_dict, to_html, to_table
from smdrd.store import open_store
from smdrd.store.sqlite.reports import SqliteReports
from tests.test_reports import CALLS, DEPARTMENTS, settings_for, write_calls
from tests.test_reports_cli import HOSTILE, config_text
from tests.test_reports_http import get, port_of, reports_daemon

MARCH = {"from": ["2026-03-01"], "to": ["2026-03-31"]}
#: the grand totals of `CALLS` over March (outbound): 8 calls, 9 legs, 1,600 s, 8.35 EUR.
GRAND: dict[str, Any] = {"calls": 8, "legs": 9, "duration": 1600, "cost": "8.35"}
NAMES = {"201": "Alice Smith", "300": "Bob <b>Jones</b>"}


@pytest.fixture
async def db(tmp_path: Path) -> Path:
    path = tmp_path / "smdrd.db"
    await write_calls(path, CALLS)
    return path


def context(db: Path) -> Context:
    return context_from(settings_for(db, DEPARTMENTS))


def build(db: Path, kind: str, names: dict[str, str] | None = None, **params: str) -> dict[str, Any]:
    """The JSON report (every call on one page)."""
    ctx = context(db)
    query = parse_query({"kind": [kind], **MARCH, "page_size": ["0"], **{k: [v] for k, v in params.items()}}, ctx)
    with SqliteReports(str(db)) as reader:
        data: dict[str, Any] = json.loads(json.dumps(to_dict(run_report(reader, query, ctx, names or NO_NAMES))))
    return data


def exported(db: Path, kind: str, fmt: str, names: dict[str, str] | None = None, **params: str) -> bytes:
    ctx = context(db)
    query = parse_query({"kind": [kind], **MARCH, "page_size": ["0"], **{k: [v] for k, v in params.items()}}, ctx)
    out = io.BytesIO()
    with SqliteReports(str(db)) as reader:
        write_export(reader, query, ctx, fmt, out, every=True, names=names or NO_NAMES)
    return out.getvalue()


def pdf_text(data: bytes) -> str:
    result = subprocess.run(["pdftotext", "-layout", "-", "-"], input=data, capture_output=True, check=True,
                            timeout=60)
    return result.stdout.decode()


def test_extension_details_has_a_section_per_extension_whose_subtotals_sum_to_the_total(db: Path) -> None:
    data = build(db, "extension-details")
    assert [c["key"] for c in data["columns"]] == ["start", "number", "direction", "call_class", "rule", "trunk",
                                                   "duration", "cost"]
    assert [s["extension"] for s in data["sections"]] == ["201", "205", "211", "300", "301", "999"]
    assert {k: data["totals"][k] for k in GRAND} == GRAND
    assert data["totals"] == build(db, "calls")["totals"]  # the same calls as the listing
    for key in ("calls", "legs", "duration"):
        assert sum(s["totals"][key] for s in data["sections"]) == GRAND[key]
    assert sum(Decimal(s["totals"]["cost"]) for s in data["sections"]) == Decimal(GRAND["cost"])
    per_extension = {s["extension"]: s["totals"] for s in data["sections"]}
    assert per_extension["205"] == {"calls": 2, "legs": 2, "duration": 400, "average": 200.0, "cost": "2.40"}
    for section in data["sections"]:  # each section's calls are its rows, in time order
        rows = [r for r in data["rows"] if r["extension"] == section["extension"]]
        assert len(rows) == section["totals"]["legs"]
        assert sum(r["duration"] for r in rows) == section["totals"]["duration"]
        assert [r["start"] for r in rows] == sorted(r["start"] for r in rows)


def test_department_details_splits_a_moved_extension_at_its_move(db: Path) -> None:
    """205 moved from Sales to Support on 16 March: a section in each, departments in tree order."""
    data = build(db, "department-details")
    assert [(s["department"], s["extension"]) for s in data["sections"]] == [
        ("Sales", "201"), ("Sales", "205"), ("Sales North", "211"), ("Support", "205"), ("Support", "300"),
        ("Support", "301"), ("Unassigned", "999")]
    sales_205, support_205 = data["sections"][1], data["sections"][3]
    assert (sales_205["totals"]["cost"], support_205["totals"]["cost"]) == ("2.00", "0.40")
    assert {k: data["totals"][k] for k in GRAND} == GRAND
    support = build(db, "department-details", department="Support")
    assert [s["extension"] for s in support["sections"]] == ["205", "300", "301"]
    assert support["totals"]["cost"] == "5.10"
    assert all(r["start"] >= "2026-03-16" for r in support["rows"] if r["extension"] == "205")


def test_details_pages_walk_the_sections_in_order(db: Path) -> None:
    ctx = context(db)
    every = build(db, "extension-details")["rows"]
    seen: list[dict[str, Any]] = []
    with SqliteReports(str(db)) as reader:
        for page in (1, 2, 3, 4):
            query = parse_query({"kind": ["extension-details"], **MARCH, "page": [str(page)], "page_size": ["4"]},
                                ctx, bounded=True)
            data = json.loads(json.dumps(to_dict(run_report(reader, query, ctx))))
            assert data["pages"] == 3 and data["rows_total"] == 9 and len(data["sections"]) == 6
            seen.extend(data["rows"])
    assert seen == every


def test_names_stand_beside_the_extensions_and_are_escaped_in_html(db: Path) -> None:
    extensions = build(db, "extensions", NAMES)
    assert [c["key"] for c in extensions["columns"]][:3] == ["extension", "name", "department"]
    assert extensions["rows"][0]["name"] == "Alice Smith" and extensions["rows"][1]["name"] == ""
    details = build(db, "extension-details", NAMES)
    assert details["sections"][0]["title"] == "201 Alice Smith"
    assert build(db, "calls", NAMES)["rows"][0]["name"] == "Alice Smith"
    ctx = context(db)
    query = parse_query({"kind": ["extension-details"], **MARCH}, ctx)
    with SqliteReports(str(db)) as reader:
        report = run_report(reader, query, ctx, NAMES)
    page = to_html(report)
    assert "Bob &lt;b&gt;Jones&lt;/b&gt;" in page and "<b>Jones" not in page
    table = to_table(report)
    assert "201 Alice Smith" in table and "Subtotal" in table and "Time zone: Europe/Warsaw" in table
    assert "0:26:40" in table and "8.35 EUR" in table


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_exports_to_csv_with_the_json_totals(db: Path, kind: str) -> None:
    """The last line is the Total, equal to the JSON report's totals (plain seconds, decimal money)."""
    lines = list(csv.reader(io.StringIO(exported(db, kind, "csv").decode("utf-8-sig"))))
    expected = build(db, kind)
    header, total = lines[0], lines[-1]
    assert total[0] == "Total"
    for key in ("duration", "cost", "calls"):
        if key in header and expected["totals"].get(key) is not None:
            assert total[header.index(key)] == str(expected["totals"][key]), (kind, key)


def test_details_csv_has_each_sections_subtotal_and_stays_formula_safe(db: Path) -> None:
    lines = list(csv.reader(io.StringIO(exported(db, "department-details", "csv", NAMES).decode("utf-8-sig"))))
    header = lines[0]
    assert header[:3] == ["extension", "name", "department"]
    subtotals = [line for line in lines if line[header.index("start")] == "Subtotal"]
    assert [(s[0], s[2], s[header.index("cost")]) for s in subtotals] == [
        ("201", "Sales", "0.80"), ("205", "Sales", "2.00"), ("211", "Sales North", "0.35"),
        ("205", "Support", "0.40"), ("300", "Support", "4.30"), ("301", "Support", "0.40"),
        ("999", "Unassigned", "0.10")]
    assert lines[1][1] == "Alice Smith"
    assert lines[-1][header.index("cost")] == "8.35" and lines[-1][header.index("duration")] == "1600"


async def test_details_csv_quotes_what_a_spreadsheet_would_evaluate(tmp_path: Path) -> None:
    db = tmp_path / "hostile.db"
    await write_calls(db, HOSTILE)
    ctx = context(db)
    query = parse_query({"kind": ["extension-details"], "from": ["2026-03"], "to": ["2026-03"],
                         "direction": ["all"]}, ctx)
    out = io.BytesIO()
    with SqliteReports(str(db)) as reader:
        write_export(reader, query, ctx, "csv", out, every=True)
    cells = {cell for line in csv.reader(io.StringIO(out.getvalue().decode())) for cell in line}
    assert "'=1+2" in cells and "=1+2" not in cells


@pytest.mark.parametrize("kind", DETAIL_KINDS)
def test_details_xlsx_has_a_summary_and_a_sheet_per_extension_with_its_subtotal(db: Path, kind: str) -> None:
    data = build(db, kind)
    wb = openpyxl.load_workbook(io.BytesIO(exported(db, kind, "xlsx")))
    assert wb.sheetnames[0] == "Summary" and len(wb.sheetnames) == 1 + len(data["sections"])
    summary = [[c.value for c in row] for row in wb["Summary"].iter_rows()]
    head = next(i for i, r in enumerate(summary) if r[0] == "Extension")
    total = next(r for r in summary if r[0] == "Total")
    columns = summary[head]
    assert total[columns.index("Calls")] == 8 and total[columns.index("Legs")] == 9
    assert total[columns.index("Talk duration")] == timedelta(seconds=1600)
    assert f"{total[columns.index('Amount')]:.2f}" == "8.35"
    for section, name in zip(data["sections"], wb.sheetnames[1:], strict=True):
        ws = wb[name]
        rows = [[c.value for c in row] for row in ws.iter_rows()]
        sub = next(r for r in rows if r[0] == "Subtotal")
        assert sub[6] == timedelta(seconds=section["totals"]["duration"])
        assert f"{sub[7]:.2f}" == section["totals"]["cost"]
        assert ws.cell(sub_row(rows) - section["totals"]["legs"], 2).data_type == "s"  # a number is text


def sub_row(rows: list[list[Any]]) -> int:
    """The 1-based row of the Subtotal."""
    return next(i for i, r in enumerate(rows, start=1) if r[0] == "Subtotal")


@pytest.mark.parametrize("kind", DETAIL_KINDS)
def test_details_pdf_shows_every_section_and_the_grand_total(db: Path, kind: str) -> None:
    data = build(db, kind, NAMES)
    text = pdf_text(exported(db, kind, "pdf", NAMES))
    assert "Period" in text and "Europe/Warsaw" in text and "Summary" in text
    for section in data["sections"]:
        assert section["title"] in text
    assert "201 Alice Smith" in text
    last_total = [line for line in text.splitlines() if line.strip().startswith("Total")][-1]
    assert "8.35 EUR" in last_total and hms(1600) in last_total
    assert text.count("Subtotal") == len(data["sections"])


def test_cli_exports_details_as_csv_xlsx_and_pdf(db: Path, tmp_path: Path) -> None:
    config = tmp_path / "smdrd.toml"
    config.write_text(config_text(db))
    for fmt in ("csv", "xlsx", "pdf"):
        out = tmp_path / f"details.{fmt}"
        result = subprocess.run([sys.executable, "-m", "smdrd", "report", "extension-details", "--from", "2026-03",
                                 "--to", "2026-03", "--config", str(config), "--format", fmt, "--output", str(out)],
                                capture_output=True, timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        if fmt == "csv":
            assert out.read_text().splitlines()[-1].endswith(",1600,8.35")
        elif fmt == "xlsx":
            assert openpyxl.load_workbook(out).sheetnames[:2] == ["Summary", "201"]
        else:
            assert "8.35 EUR" in pdf_text(out.read_bytes())


async def test_http_serves_details_with_the_directorys_names(tmp_path: Path) -> None:
    async with reports_daemon(tmp_path) as daemon:
        directory = open_store(daemon.settings.database.path).directory()
        try:
            directory.learn_names([("201", "Alice Smith")], at=0)
        finally:
            directory.close()
        port = port_of(daemon)
        status, _, body = await get(port, "/api/reports/extension-details?from=2026-03-01&to=2026-03-31")
        assert status == 200
        data = json.loads(body)
        assert data["sections"][0]["title"] == "201 Alice Smith" and data["totals"]["cost"] == "8.35"
        status, headers, body = await get(port, "/api/reports/department-details?from=2026-03-01&to=2026-03-31"
                                                "&format=csv")
        assert status == 200 and headers["Content-Type"].startswith("text/csv")
        assert body.decode().splitlines()[-1].endswith(",1600,8.35")
        status, _, body = await get(port, "/api/reports/extensions?from=2026-03-01&to=2026-03-31")
        assert json.loads(body)["rows"][0]["name"] == "Alice Smith"
        for fmt in ("xlsx", "pdf"):
            status, headers, body = await get(port, "/api/reports/extension-details?from=2026-03-01"
                                                    f"&to=2026-03-31&format={fmt}")
            assert status == 200 and "attachment" in headers["Content-Disposition"]
        assert "8.35 EUR" in pdf_text(body)


def test_a_manager_gets_the_details_of_their_departments_only(db: Path) -> None:
    """The same scoping as every kind (`smdrd.reports.http.scoped`): a manager of Sales asking for department
    details gets Sales and Sales North, 205 only for its days in Sales, and is refused Support."""
    ctx = context(db)
    maria = Principal("maria", "manager", "session", user_id=2, departments=("Sales",))
    query = scoped(parse_query({"kind": ["department-details"], **MARCH}, ctx), maria, ctx)
    assert query is not None
    with SqliteReports(str(db)) as reader:
        data = json.loads(json.dumps(to_dict(run_report(reader, query, ctx))))
    assert {s["department"] for s in data["sections"]} == {"Sales", "Sales North"}
    assert data["totals"]["cost"] == "3.15" and all(r["start"] < "2026-03-16" for r in data["rows"])
    support = parse_query({"kind": ["extension-details"], **MARCH, "department": ["Support"]}, ctx)
    assert scoped(support, maria, ctx) is None
