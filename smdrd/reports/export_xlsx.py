"""A report as an XLSX workbook, written with xlsxwriter in ``constant_memory`` mode.

Cells are typed, so a spreadsheet sums and sorts them without cleaning: counts are numbers, durations are
Excel durations (a fraction of a day, shown ``[h]:mm:ss``, so 27 hours stay 27:00:00), money is a number with
the tariff's decimals and its currency in the number format (``#,##0.00 "EUR"``), days and call times are
dates. Everything else, extensions, phone numbers and trunks above all, is written as a text cell: ``0044...``
keeps its zeros, ``+44...`` stays a number a person can dial, and ``=HYPERLINK(...)`` from a caller ID is text,
never a formula (xlsxwriter's automatic conversions are off and every string goes through ``write_string``).

Each section is a sheet: the header block (title, period, time zone, filters, currency), the table with a
frozen heading and a filter, and a bold totals row. ``constant_memory`` writes each row to a temporary file as
soon as the next one starts, so a year of calls never sits in memory; a section longer than a sheet's
1,048,576 rows goes on in a sheet of its own. Pure apart from the file it writes and xlsxwriter's temporary
files.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import IO, Any

import xlsxwriter
from xlsxwriter.format import Format
from xlsxwriter.workbook import Workbook
from xlsxwriter.worksheet import Worksheet

from smdrd.reports.export import Section, extra_totals, header_lines, title_of
from smdrd.reports.queries import Column, Report

__all__ = ["MAX_ROWS", "write_xlsx"]

#: the rows of one worksheet (Excel's limit).
MAX_ROWS = 1_048_576
#: a text cell holds at most this many characters (Excel's limit).
MAX_TEXT = 32_767
_SECONDS_PER_DAY = 86_400
#: Excel's day 0 (its serial numbers count days from here, 1900 leap-year bug included).
_EPOCH = datetime(1899, 12, 30)
_DAY = timedelta(days=1)
_WIDTHS = {"text": 14, "int": 9, "seconds": 11, "average": 11, "minutes": 10, "money": 14, "date": 11,
           "datetime": 19}
_BAD_SHEET_CHARS = re.compile(r"[\[\]:*?/\\]")


def cell_kind(column: Column) -> str:
    """How a column is typed in a sheet: its report kind, or ``date``/``datetime`` for days and call times."""
    if column.key == "day":
        return "date"
    if column.key == "start":
        return "datetime"
    return column.kind


def money_format(currency: str, decimals: int) -> str:
    """Excel's number format for money in ``currency``: ``#,##0.00 "EUR"`` (an ISO code, letters only)."""
    code = re.sub(r"[^A-Za-z]", "", currency)[:8]
    number = "#,##0" + ("." + "0" * decimals if decimals > 0 else "")
    return f'{number} "{code}"' if code else number


class _Formats:
    """The workbook's cell formats, plain and bold (totals), per cell kind."""

    def __init__(self, wb: Workbook, currency: str, decimals: int) -> None:
        numbers = {"int": "#,##0", "seconds": "[h]:mm:ss", "average": "[h]:mm:ss", "minutes": "#,##0.0",
                   "money": money_format(currency, decimals), "date": "yyyy-mm-dd",
                   "datetime": "yyyy-mm-dd hh:mm:ss", "text": "@"}
        self.plain = {k: wb.add_format({"num_format": v}) for k, v in numbers.items()}
        self.bold = {k: wb.add_format({"num_format": v, "bold": True, "top": 1}) for k, v in numbers.items()}
        self.title = wb.add_format({"bold": True, "font_size": 14})
        self.label = wb.add_format({"bold": True})
        self.head = wb.add_format({"bold": True, "bottom": 1, "bg_color": "#F2F2F2", "text_wrap": True,
                                   "valign": "top"})
        self.head_number = wb.add_format({"bold": True, "bottom": 1, "bg_color": "#F2F2F2", "text_wrap": True,
                                          "valign": "top", "align": "right"})


def write_cell(ws: Worksheet, row: int, col: int, value: Any, *, kind: str, fmt: Format) -> None:
    """One typed cell (``None`` is a blank cell with the column's format)."""
    if value is None or value == "":
        ws.write_blank(row, col, None, fmt)
    elif kind in ("seconds", "average") and isinstance(value, int | Decimal):
        ws.write_number(row, col, float(Decimal(value) / _SECONDS_PER_DAY), fmt)
    elif kind in ("int", "minutes", "money") and isinstance(value, int | Decimal):
        ws.write_number(row, col, float(value), fmt)
    elif kind in ("date", "datetime") and isinstance(value, str) and (when := _when(value, kind)) is not None:
        ws.write_number(row, col, (when - _EPOCH) / _DAY, fmt)  # what write_datetime does, at a third of the cost
    else:
        ws.write_string(row, col, str(value)[:MAX_TEXT], fmt)


def _when(text: str, kind: str) -> datetime | None:
    try:
        if kind == "date":
            d = date.fromisoformat(text)
            return datetime(d.year, d.month, d.day)
        return datetime.fromisoformat(text).replace(tzinfo=None)
    except ValueError:
        return None


def sheet_name(name: str, taken: set[str]) -> str:
    """A valid, unique sheet name: no ``[]:*?/\\``, at most 31 characters, not starting or ending with ``'``."""
    base = _BAD_SHEET_CHARS.sub(" ", name).strip().strip("'")[:31] or "Sheet"
    candidate, n = base, 1
    while candidate.lower() in taken:
        n += 1
        suffix = f" ({n})"
        candidate = base[:31 - len(suffix)] + suffix
    taken.add(candidate.lower())
    return candidate


class _SheetWriter:
    """Writes one section over as many sheets as it needs."""

    def __init__(self, wb: Workbook, report: Report, fmt: _Formats, taken: set[str], max_rows: int) -> None:
        self.wb, self.report, self.fmt, self.taken, self.max_rows = wb, report, fmt, taken, max_rows
        self.columns = report.columns
        self.kinds = [cell_kind(c) for c in self.columns]

    def _start(self, name: str) -> tuple[Worksheet, int]:
        """A new sheet with the header block and the table heading; returns it and its first data row."""
        ws = self.wb.add_worksheet(sheet_name(name, self.taken))
        ws.write_string(0, 0, title_of(self.report), self.fmt.title)
        row = 1
        for label, value in header_lines(self.report):
            ws.write_string(row, 0, label, self.fmt.label)
            ws.write_string(row, 1, value[:MAX_TEXT])
            row += 1
        row += 1
        for i, (c, kind) in enumerate(zip(self.columns, self.kinds, strict=True)):
            title = c.title.removesuffix(" (s)")
            ws.write_string(row, i, title, self.fmt.head if kind in ("text", "date", "datetime")
                            else self.fmt.head_number)
            ws.set_column(i, i, max(_WIDTHS.get(kind, 12), len(title) + 2))
        ws.freeze_panes(row + 1, 0)
        ws.repeat_rows(row)
        ws.set_landscape()
        ws.fit_to_pages(1, 0)
        ws.set_paper(9)  # A4; Excel scales to Letter when printing there
        return ws, row

    def write(self, section: Section) -> None:
        ws, head = self._start(section.name)
        row = head
        part = 1
        for data in section.rows:
            if row + 2 >= self.max_rows:  # keep a row for the totals on the last sheet
                self._filter(ws, head, row)
                part += 1
                ws, head = self._start(f"{section.name} ({part})")
                row = head
            row += 1
            for i, (c, kind) in enumerate(zip(self.columns, self.kinds, strict=True)):
                write_cell(ws, row, i, data.get(c.key), kind=kind, fmt=self.fmt.plain[kind])
        self._filter(ws, head, row)
        if section.totals is not None:
            row += 1
            for i, (c, kind) in enumerate(zip(self.columns, self.kinds, strict=True)):
                value = "Total" if i == 0 else section.totals.get(c.key)
                write_cell(ws, row, i, value, kind="text" if i == 0 else kind, fmt=self.fmt.bold[kind])
            for title, value, kind in extra_totals(self.report, section):
                row += 1
                ws.write_string(row, 0, title, self.fmt.label)
                write_cell(ws, row, 1, value, kind=kind, fmt=self.fmt.plain[kind])

    def _filter(self, ws: Worksheet, head: int, last: int) -> None:
        ws.autofilter(head, 0, max(head, last), len(self.columns) - 1)


def write_xlsx(out: IO[bytes] | str, report: Report, sections: Iterable[Section], *,
               max_rows: int = MAX_ROWS) -> None:
    """Write ``report`` as a workbook to ``out`` (a binary file or a path), a sheet per section.

    Args:
        max_rows: the rows of a sheet; a longer section goes on in another sheet (tests make it small).
    """
    meta = report.meta
    wb = xlsxwriter.Workbook(out, {"constant_memory": True, "strings_to_numbers": False,
                                   "strings_to_formulas": False, "strings_to_urls": False})
    wb.set_properties({"title": title_of(report), "subject": f"{meta.get('from')} to {meta.get('to')}",
                       "creator": "smdrd"})
    fmt = _Formats(wb, str(meta.get("currency") or ""), int(meta.get("decimals") or 0))
    taken: set[str] = set()
    writer = _SheetWriter(wb, report, fmt, taken, max_rows)
    for section in sections:
        writer.write(section)
    wb.close()
