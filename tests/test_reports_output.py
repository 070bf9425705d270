"""What every output of one report shows of the same figures: the text table, CSV, JSON, XLSX and PDF.

Reports are built in memory by the builders themselves (`smdrd.reports.queries`), so each test names the exact
figures it is about; tests/test_reports_export.py runs the same writers over a database.
"""

from __future__ import annotations

import csv
import io
import json
import os
import threading
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import openpyxl
import pypdf
import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from smdrd.reports import export_pdf
from smdrd.reports.export import sections_of, write_csv
from smdrd.reports.export_pdf import CJK_FONTS, FONT_DIR, write_pdf
from smdrd.reports.export_xlsx import write_xlsx
from smdrd.reports.queries import DETAIL_COLUMNS, Report, Section, average, extensions_report, listing_totals
from smdrd.reports.render import display_width, hms, pad, to_csv, to_json, to_table

META = {"from": "2026-03-01", "to": "2026-03-31", "timezone": "Europe/Warsaw", "currency": "EUR", "decimals": 2,
        "filters": {"direction": ["outbound"]}, "by_class": False}


def extensions(*rows: tuple[str, str, int, int, int]) -> Report:
    """The extensions report of ``(extension, department, calls, seconds, cost_micros)`` rows."""
    report = extensions_report([(dep, ext, "", (), calls, seconds, cost) for ext, dep, calls, seconds, cost in rows],
                               by_class=False, decimals=2)
    report.meta.update(META)
    return report


def pdf_text(report: Report) -> str:
    out = io.BytesIO()
    write_pdf(out, report, sections_of(report))
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(out.getvalue())).pages)


def xlsx_rows(report: Report) -> list[list[Any]]:
    out = io.BytesIO()
    write_xlsx(out, report, sections_of(report))
    ws = openpyxl.load_workbook(io.BytesIO(out.getvalue())).worksheets[0]
    return [[c.value for c in row] for row in ws.iter_rows()]


def test_an_average_is_rounded_once_to_the_second_in_every_format() -> None:
    """41 calls of 6,087 s are 148.46 s a call: 0:02:28 (rounding to 148.5 first made it 0:02:29), 148.5 in
    JSON and CSV (one decimal, rounded once from the exact quotient), 148 s in the XLSX cell."""
    report = extensions(("201", "Sales", 41, 6087, 0))
    table = to_table(report)
    assert "0:02:28" in table and "0:02:29" not in table
    assert json.loads(to_json(report))["rows"][0]["average"] == 148.5
    assert json.loads(to_json(report))["totals"]["average"] == 148.5
    lines = list(csv.DictReader(io.StringIO(to_csv(report).lstrip("\ufeff"))))
    assert lines[0]["average"] == "148.5" and lines[-1]["average"] == "148.5"
    text = pdf_text(report)
    assert "0:02:28" in text and "0:02:29" not in text
    rows = xlsx_rows(report)
    row = next(r for r in rows if r[0] == "201")
    assert timedelta(seconds=148) in row and timedelta(seconds=148.5) not in row


@given(st.integers(min_value=0, max_value=10**9), st.integers(min_value=1, max_value=10**6))
def test_the_shown_average_is_the_exact_quotient_rounded_half_up(seconds: int, calls: int) -> None:
    """Whatever the figures, h:mm:ss is the exact seconds per call rounded half up to the second, once."""
    exact = Fraction(seconds, calls)
    whole = int(exact) + (1 if exact - int(exact) >= Fraction(1, 2) else 0)
    assert hms(average(seconds, calls)) == hms(whole)
    tenths = Decimal(int(exact * 10) + (1 if exact * 10 - int(exact * 10) >= Fraction(1, 2) else 0)) / 10
    assert average(seconds, calls).quantize(Decimal("0.1"), ROUND_HALF_UP) == tenths


def details(*extensions: tuple[str, str, list[str]]) -> Report:
    """An extension-details report: per ``(extension, name, numbers)`` a section of a 2-minute call to each."""
    sections = []
    for ext, name, numbers in extensions:
        rows = [{"start": f"2026-03-02T10:{i % 60:02d}:00+01:00", "extension": ext, "name": name,
                 "department": "Sales", "number": number, "direction": "outbound", "call_class": "international",
                 "rule": "World", "trunk": "T1", "duration": 120, "cost": Decimal("0.50"), "leg": 0}
                for i, number in enumerate(numbers)]
        sections.append(Section(f"{ext} {name}".strip(), rows,
                                listing_totals(len(rows), len(rows), 120 * len(rows), 500_000 * len(rows), 2),
                                {"extension": ext, "name": name}, total_label="Subtotal"))
    legs = sum(len(n) for _, _, n in extensions)
    report = Report("extension-details", DETAIL_COLUMNS, [], listing_totals(legs, legs, 120 * legs,
                                                                             500_000 * legs, 2), sections=sections)
    report.meta.update(META)
    return report


def pdf_fragments(report: Report) -> list[str]:
    """Every piece of text the PDF draws, in drawing order (a cell's lines are consecutive pieces)."""
    out = io.BytesIO()
    write_pdf(out, report, sections_of(report))
    pieces: list[str] = []
    for page in pypdf.PdfReader(io.BytesIO(out.getvalue())).pages:
        page.extract_text(visitor_text=lambda text, *_: pieces.append(text) if text.strip() else None)
    return pieces


def drawn_whole(pieces: list[str], text: str) -> bool:
    """``text`` is drawn uncut: as one piece, or as consecutive pieces (the lines of a wrapped cell)."""
    for i in range(len(pieces)):
        joined = ""
        for piece in pieces[i:i + 6]:
            joined += piece.strip()
            if joined == text:
                return True
            if not text.startswith(joined):
                break
    return False


def test_pdf_never_cuts_a_dialled_number() -> None:
    """The number is what a call is looked up by: a longer one than the measured rows had (past the first 300,
    or in a later extension's section, or longer than any column could be) is drawn whole, never with "…"."""
    late = "+8613912345678901234567"
    longer = "00" + "4420712345678" * 4
    report = details(("201", "Anna", ["+48221234567"] * 310 + [late]), ("202", "Piotr", [late, longer]))
    pieces = pdf_fragments(report)
    assert not any("…" in p or "..." in p for p in pieces)
    assert drawn_whole(pieces, late) and drawn_whole(pieces, longer)


def needs_fonts() -> None:
    """DejaVu and a CJK font installed (scripts/system-deps.sh); skipped without them, failed under CI=true."""
    if (FONT_DIR / "DejaVuSans.ttf").is_file() and any(p.is_file() for p in CJK_FONTS):
        return
    if os.environ.get("CI"):
        pytest.fail("fonts-dejavu-core or fonts-wqy-zenhei is not installed (scripts/system-deps.sh)")
    pytest.skip("apt-get install fonts-dejavu-core fonts-wqy-zenhei")


def test_pdf_draws_chinese_japanese_and_korean_with_the_cjk_font() -> None:
    """DejaVu Sans has no CJK glyphs and fpdf2 draws nothing for a missing glyph: department 東京 was blank.
    The CJK font draws it (and Korean, Japanese kana) beside DejaVu's Latin."""
    needs_fonts()
    report = extensions(("201", "東京", 2, 300, 1_000_000), ("202", "서울 Łódź", 1, 60, 500_000),
                        ("203", "カタカナ", 1, 60, 0))
    text = pdf_text(report)
    assert "東京" in text and "서울 Łódź" in text and "カタカナ" in text
    assert "\ufffd" not in text


def test_pdf_without_a_cjk_font_shows_a_replacement_and_logs_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no CJK font installed a character DejaVu lacks is a visible U+FFFD, never a blank cell; the
    warning (which package to install) is logged once, not per cell or per report."""
    if not (FONT_DIR / "DejaVuSans.ttf").is_file():
        pytest.skip("apt-get install fonts-dejavu-core")
    monkeypatch.setattr(export_pdf, "CJK_FONTS", (Path("/nonexistent/cjk.ttc"),))
    monkeypatch.setattr(export_pdf, "_warned", threading.Event())
    report = extensions(("201", "東京", 2, 300, 1_000_000), ("202", "Łódź", 1, 60, 500_000))
    with capture_logs() as logs:
        text = pdf_text(report)
        pdf_text(report)
    assert "\ufffd\ufffd" in text and "Łódź" in text
    warnings = [e for e in logs if e["event"] == "reports.pdf_glyphs_missing"]
    assert len(warnings) == 1 and "fonts-wqy-zenhei" in warnings[0]["font"]


def test_report_csv_starts_with_a_bom_so_excel_reads_utf8() -> None:
    """Without a byte order mark Excel reads a CSV in the ANSI code page: Łódź became ÅÃ³dÅº. Every report
    CSV starts with one, rendered (`to_csv`) or written as a file (`write_csv`), and only once."""
    report = extensions(("201", "Łódź", 2, 300, 1_000_000))
    text = to_csv(report)
    assert text.startswith("\ufeffextension,") and text.count("\ufeff") == 1
    out = io.BytesIO()
    write_csv(out, report, sections_of(report))
    data = out.getvalue()
    assert data.startswith(b"\xef\xbb\xbfextension,") and data.decode("utf-8-sig") == text.removeprefix("\ufeff")
    assert "Łódź" in data.decode("utf-8-sig")


def test_table_lines_up_columns_after_wide_characters() -> None:
    """東京 takes four terminal columns, not two: padded by ``len`` the figures after it were two columns left
    of the others'. Every line's columns start at the same terminal column, whatever the script."""
    report = extensions(("201", "東京", 2, 300, 1_000_000), ("202", "Łódź", 1, 60, 500_000),
                        ("203", "ｶﾞｲﾄﾞ", 1, 60, 0), ("204", "Sales", 1, 60, 0))
    lines = [line for line in to_table(report).splitlines() if line[:3] in ("Ext", "201", "202", "203", "204")]
    assert len(lines) == 5
    ends = {display_width(line) for line in lines}  # the cost column is right-aligned: every line ends alike
    assert len(ends) == 1, lines
    calls = {display_width(line[:line.index(" 0:0")]) for line in lines[1:]}
    assert len(calls) == 1, lines


@given(st.text(alphabet=st.sampled_from("a東Łｶ\u0301한"), max_size=12), st.integers(min_value=0, max_value=30))
def test_pad_fills_to_the_display_width(text: str, width: int) -> None:
    assert display_width(pad(text, width)) == max(width, display_width(text))
    assert pad(text, width, right=True).endswith(text) and pad(text, width).startswith(text)


def test_details_pdf_repeats_the_section_heading_where_its_calls_go_on_over_a_page() -> None:
    """An extension's calls that go on over the next page say whose they are there, above the column heading:
    "201 Anna (continued)". A section that starts on a page of its own is not "continued"."""
    report = details(("201", "Anna", ["+48221234567"] * 80), ("202", "Piotr", ["+48221234568"] * 3))
    out = io.BytesIO()
    write_pdf(out, report, sections_of(report))
    pages = [page.extract_text() for page in pypdf.PdfReader(io.BytesIO(out.getvalue())).pages]
    assert len(pages) >= 3
    assert "(continued)" not in pages[0]
    for page in pages[1:]:
        if "+48221234567" in page:
            lines = page.splitlines()
            assert lines[0] == "201 Anna (continued)" and lines[1].startswith("Time Call to"), page[:200]
    assert "202 Piotr (continued)" not in "".join(pages)
