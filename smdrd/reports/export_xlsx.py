"""A report as an XLSX workbook, written with xlsxwriter in ``constant_memory`` mode.

Cells are typed, so a spreadsheet sums and sorts them without cleaning: counts are numbers, durations are
Excel durations (a fraction of a day, shown ``[h]:mm:ss``, so 27 hours stay 27:00:00), money is a number with
the tariff's decimals and its currency in the number format (``#,##0.00 "EUR"``), days and call times are
dates. An average is stored rounded half up to the second, once, from the exact quotient: what ``[h]:mm:ss``
shows, the PDF and the table show, whichever spreadsheet rounds or cuts a shown duration. Everything else,
extensions, phone numbers and trunks above all, is written as a text cell: ``0044...`` keeps its zeros,
``+44...`` stays a number a person can dial, and ``=HYPERLINK(...)`` from a caller ID is text, never a formula
(xlsxwriter's automatic conversions are off and every string goes through ``write_string``).

Each section is a sheet: the header block (title, period, time zone, filters, currency), the table with a
frozen heading and a filter, and a bold totals row. ``constant_memory`` writes each row to a temporary file as
soon as the next one starts, so a year of calls never sits in memory; a section longer than a sheet's
1,048,576 rows goes on in a sheet of its own. Pure apart from the file it writes and xlsxwriter's temporary
files.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import IO, Any

import xlsxwriter
from xlsxwriter.format import Format
from xlsxwriter.utility import xl_col_to_name
from xlsxwriter.workbook import Workbook
from xlsxwriter.worksheet import Worksheet

from smdrd.reports.export import Section, extra_totals, header_lines, title_of
from smdrd.reports.queries import Column, Report, rounded

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
        seconds = rounded(value, "1") if kind == "average" else Decimal(value)
        ws.write_number(row, col, float(seconds / _SECONDS_PER_DAY), fmt)
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


#: a string that needs more than ``&<>`` escaping: control characters (``_xHHHH_``) and literal ``_xHHHH_``.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f]|_x[0-9a-fA-F]{4}_")
_ESCAPE_ESCAPE = re.compile("(_x[0-9a-fA-F]{4}_)")
_CONTROL_CHAR = re.compile(r"([\x00-\x08\x0b-\x1f])")

#: makes the XML of one cell at a 1-based row number (a string), from its value.
CellXml = Callable[[Any, str], str]


#: a string that needs escaping at all (one search for the common case, plain text).
_SPECIAL = re.compile(r"[\x00-\x08\x0b-\x1f&<>]|_x[0-9a-fA-F]{4}_")


def _inline_string(ref: str, style: int, text: str) -> str:
    """A text cell as an inline string, escaped as xlsxwriter escapes it (never a rich string or markup)."""
    text = text[:MAX_TEXT]
    if _SPECIAL.search(text):
        if _CONTROL.search(text):
            text = _CONTROL_CHAR.sub(lambda m: f"_x{ord(m.group(1)):04X}_", _ESCAPE_ESCAPE.sub(r"_x005F\1", text))
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    space = ' xml:space="preserve"' if text[:1].isspace() or text[-1:].isspace() else ""
    return f'<c r="{ref}" s="{style}" t="inlineStr"><is><t{space}>{text}</t></is></c>'


def _cell_xml(letter: str, kind: str, style: int) -> CellXml:
    """The XML writer of one column's cells: what `write_cell` writes through xlsxwriter, as text directly."""
    days: dict[str, float] = {}
    blank = f'" s="{style}"/>'
    number = f'" s="{style}"><v>'

    def text(value: Any, row: str) -> str:
        if value is None or value == "":
            return f'<c r="{letter}{row}{blank}'
        return _inline_string(letter + row, style, str(value))

    def numeric(value: Any, row: str) -> str:
        if type(value) is int or type(value) is Decimal:  # the exact decimal text; Excel reads a double
            return f'<c r="{letter}{row}{number}{value}</v></c>'
        return text(value, row)

    def duration(value: Any, row: str) -> str:
        if type(value) is int or type(value) is Decimal:
            return f'<c r="{letter}{row}{number}{float(value) / _SECONDS_PER_DAY!r}</v></c>'
        return text(value, row)

    def mean(value: Any, row: str) -> str:
        return duration(rounded(value, "1") if type(value) is Decimal else value, row)

    def when(value: Any, row: str) -> str:
        serial = _serial(value, kind, days) if isinstance(value, str) and value else None
        if serial is not None:
            return f'<c r="{letter}{row}{number}{serial!r}</v></c>'
        return text(value, row)

    if kind in ("int", "minutes", "money"):
        return numeric
    if kind == "average":
        return mean
    if kind == "seconds":
        return duration
    if kind in ("date", "datetime"):
        return when
    return text


def _serial(text: str, kind: str, days: dict[str, float]) -> float | None:
    """Excel's serial number of an ISO day or local time (``2026-03-02T10:15:00+01:00``: its wall-clock time;
    the zone is in the header), the day part looked up once per day."""
    day = days.get(text[:10])
    if day is None:
        when = _when(text[:10], "date")
        if when is None:
            return None
        day = days[text[:10]] = (when - _EPOCH) / _DAY
    if kind == "date":
        return day if len(text) == 10 else None
    clock = text[11:19]
    if text[10:11] not in ("T", " ") or len(clock) != 8 or clock[2] != ":" or clock[5] != ":":
        when = _when(text, kind)
        return None if when is None else (when - _EPOCH) / _DAY
    try:
        seconds = int(clock[:2]) * 3600 + int(clock[3:5]) * 60 + int(clock[6:8])
    except ValueError:
        return None
    return day + seconds / _SECONDS_PER_DAY


def _fast(ws: Worksheet) -> bool:
    """Whether ``ws`` takes rows as XML text: xlsxwriter's constant_memory state this module relies on (checked,
    so another xlsxwriter falls back to its public, slower calls)."""
    return (getattr(ws, "constant_memory", False) and hasattr(ws, "_write_single_row")
            and hasattr(ws, "previous_row") and hasattr(ws, "fh") and hasattr(ws, "dim_rowmax"))


class _SheetWriter:
    """Writes one section over as many sheets as it needs.

    The data rows, which are nearly all of a year's export, skip xlsxwriter's per-cell calls: each column has a
    precomputed writer (`_cell_xml`) that formats its cell as the XML xlsxwriter would write, appended to the
    sheet's constant_memory row file after xlsxwriter has flushed the heading. About ten times faster (figures
    in docs/reports.md); the header block, the heading, the totals, the formats and the workbook stay
    xlsxwriter's."""

    def __init__(self, wb: Workbook, report: Report, fmt: _Formats, taken: set[str], max_rows: int) -> None:
        self.wb, self.report, self.fmt, self.taken, self.max_rows = wb, report, fmt, taken, max_rows

    def _start(self, name: str, columns: Sequence[Column], kinds: Sequence[str]) -> tuple[Worksheet, int]:
        """A new sheet with the header block and the table heading; returns it and its first data row."""
        ws = self.wb.add_worksheet(sheet_name(name, self.taken))
        ws.write_string(0, 0, title_of(self.report), self.fmt.title)
        row = 1
        for label, value in header_lines(self.report):
            ws.write_string(row, 0, label, self.fmt.label)
            ws.write_string(row, 1, value[:MAX_TEXT])
            row += 1
        if name != title_of(self.report):
            ws.write_string(row, 0, "Section", self.fmt.label)
            ws.write_string(row, 1, name[:MAX_TEXT])
        row += 1
        for i, (c, kind) in enumerate(zip(columns, kinds, strict=True)):
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
        columns = section.columns or self.report.columns
        kinds = [cell_kind(c) for c in columns]
        keys = [c.key for c in columns]
        ws, head = self._start(section.name, columns, kinds)
        writers = [_cell_xml(xl_col_to_name(i), kind, self.fmt.plain[kind]._get_xf_index())
                   for i, kind in enumerate(kinds)] if _fast(ws) else None
        row = head
        part = 1
        rows: Iterator[dict[str, Any]] = iter(section.rows)
        while True:
            room = self.max_rows - 2 - row  # keep a row for the totals on the last sheet
            if room <= 0:
                following = next(rows, None)
                if following is None:
                    break
                rows = itertools.chain([following], rows)
                self._filter(ws, head, row, columns)
                self._close(ws)
                part += 1
                ws, head = self._start(f"{section.name} ({part})", columns, kinds)
                row = head
                continue
            chunk = itertools.islice(rows, room)
            before = row
            if writers is not None:
                row = self._xml_rows(ws, row, chunk, keys, writers)
            else:
                for data in chunk:
                    row += 1
                    for i, (key, kind) in enumerate(zip(keys, kinds, strict=True)):
                        write_cell(ws, row, i, data.get(key), kind=kind, fmt=self.fmt.plain[kind])
            if row - before < room:
                break
        self._filter(ws, head, row, columns)
        if section.totals is not None:
            row += 1
            for i, (c, kind) in enumerate(zip(columns, kinds, strict=True)):
                value = section.total_label if i == 0 else section.totals.get(c.key)
                write_cell(ws, row, i, value, kind="text" if i == 0 else kind, fmt=self.fmt.bold[kind])
            for title, value, kind in extra_totals(self.report, section):
                row += 1
                ws.write_string(row, 0, title, self.fmt.label)
                write_cell(ws, row, 1, value, kind=kind, fmt=self.fmt.plain[kind])
        self._close(ws)

    @staticmethod
    def _xml_rows(ws: Worksheet, row: int, rows: Iterable[dict[str, Any]], keys: Sequence[str],
                  writers: Sequence[CellXml]) -> int:
        """Append ``rows`` after ``row`` (0-based) as XML; returns the last row written."""
        ws._write_single_row(row + 1)  # flush the row before (the heading): xlsxwriter's rows stay in order
        write = ws.fh.write
        pairs = list(zip(keys, writers, strict=True))
        first = row
        for data in rows:
            row += 1
            r = str(row + 1)
            get = data.get
            write(f'<row r="{r}">' + "".join([cell(get(key), r) for key, cell in pairs]) + "</row>")
        if row > first:
            ws.previous_row = row + 1
            ws.dim_rowmax = max(ws.dim_rowmax or 0, row)
            ws.dim_colmin = 0 if ws.dim_colmin is None else min(ws.dim_colmin, 0)
            ws.dim_colmax = max(ws.dim_colmax or 0, len(keys) - 1)
        return row

    @staticmethod
    def _close(ws: Worksheet) -> None:
        """Close a finished sheet's row file (reopened when the workbook is assembled), so a report of many
        sections does not hold a file open per sheet."""
        close = getattr(ws, "_opt_close", None)
        if close is not None and getattr(ws, "constant_memory", False):
            close()

    def _filter(self, ws: Worksheet, head: int, last: int, columns: Sequence[Column]) -> None:
        ws.autofilter(head, 0, max(head, last), len(columns) - 1)


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
