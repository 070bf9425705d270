"""Report output: a text table, CSV, JSON and a static HTML document.

Pure: a `Report` in, text out; no I/O. Everything in a report may come from a PBX (extension, number, trunk) or
the configuration, so the HTML renderer escapes every value (`html.escape`) and the text renderers write values
as data, never as markup. Money leaves as exact decimal strings, never as floats.
"""

from __future__ import annotations

import html
import io
import json
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from smdrd.csvsafe import BOM, SafeCsvWriter
from smdrd.reports.export import header_lines, title_of
from smdrd.reports.queries import DETAIL_KINDS, SECTION_COLUMNS, Column, Report, Section, rounded

__all__ = ["FORMATS", "TableView", "csv_lines", "hms", "render", "table_view", "to_csv", "to_html", "to_json",
           "to_table"]

FORMATS = ("table", "csv", "json", "html")
CONTENT_TYPES = {"table": "text/plain; charset=utf-8", "csv": "text/csv; charset=utf-8",
                 "json": "application/json", "html": "text/html; charset=utf-8"}
_NUMERIC = {"int", "seconds", "average", "minutes", "money"}
#: columns of seconds, which the text table shows as h:mm:ss (CSV and JSON keep plain seconds for tools).
_DURATIONS = {"seconds", "average"}


def json_value(value: Any, kind: str) -> Any:
    """A value as JSON wants it: money as a decimal string, averages and minutes as numbers with one decimal
    (an average is unrounded until here, `smdrd.reports.queries.average`; a totals' average has no column, so
    every decimal that is not money is rounded)."""
    if isinstance(value, Decimal):
        return str(value) if kind == "money" else float(rounded(value))
    return value


def _json_row(row: dict[str, Any], kinds: dict[str, str]) -> dict[str, Any]:
    return {k: json_value(v, kinds.get(k, "text")) for k, v in row.items()}


def to_dict(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data (see docs/reports.md for the shape). The details kinds add ``sections``:
    each extension's ``extension``, ``name`` (and ``department``) and subtotals (``totals``), whichever page
    the ``rows`` are; each row names its extension."""
    kinds = {c.key: c.kind for c in report.columns}
    out = {**report.meta,
           "columns": [{"key": c.key, "title": c.title, "kind": c.kind} for c in report.columns],
           "rows": [_json_row(r, kinds) for r in report.rows],
           "totals": None if report.totals is None else _json_row(report.totals, kinds)}
    if report.sections is not None:
        out["sections"] = [{"title": s.name, **s.key,
                            "totals": None if s.totals is None else _json_row(s.totals, kinds)}
                           for s in report.sections]
    return out


def to_json(report: Report) -> str:
    return json.dumps(to_dict(report), ensure_ascii=False, indent=1) + "\n"


def text_value(value: Any, kind: str = "text") -> str:
    """A value as CSV and the text table show it (``None`` is empty; an average with one decimal, as in JSON)."""
    if value is None:
        return ""
    return str(csv_value(value, kind))


def csv_value(value: Any, kind: str) -> Any:
    """A value as a CSV cell holds it: an average (unrounded in the report) rounded once to one decimal, as
    JSON has it; anything else as it is."""
    if kind == "average" and isinstance(value, Decimal):
        return rounded(value)
    return value


def _totals_row(report: Report) -> list[str] | None:
    if report.totals is None:
        return None
    cells = [text_value(report.totals.get(c.key), c.kind) for c in report.columns]
    cells[0] = "Total"
    return cells


def csv_lines(report: Report, sections: Iterable[Section] | None = None) -> Iterator[list[Any]]:
    """The CSV of ``report`` line by line: a header of column keys, one line per row, a last ``Total`` line.

    The rows are ``sections``' (default: the report's sections, or its rows), read as consumed, so a cursor's
    rows become lines one at a time. For the details kinds each line starts with its section's extension, name
    and department, and each section ends with a ``Subtotal`` line (under ``start``)."""
    columns = report.columns
    if sections is None:
        sections = report.sections if report.sections is not None else [Section("", report.rows, report.totals)]
    if report.kind not in DETAIL_KINDS:
        yield [c.key for c in columns]
        kinds = [c.kind for c in columns]
        averages = "average" in kinds
        for section in sections:
            for row in section.rows:  # values as they are: `smdrd.csvsafe` writes numbers and text alike
                if averages:
                    yield [csv_value(row.get(c.key), c.kind) for c in columns]
                else:
                    yield [row.get(c.key) for c in columns]
        totals = _totals_row(report)
        if totals is not None:
            yield totals
        return
    lead = SECTION_COLUMNS
    yield [c.key for c in (*lead, *columns)]
    for section in sections:
        if isinstance(section.rows, list) and not section.rows:
            continue  # a page's section without calls on the page
        keys = [c.key for c in (*lead, *columns)]
        for row in section.rows:
            yield [row.get(key) for key in keys]
        if section.totals is not None:
            yield [*(text_value(section.key.get(c.key, "")) for c in lead),
                   *("Subtotal" if i == 0 else text_value(section.totals.get(c.key), c.kind)
                     for i, c in enumerate(columns))]
    grand = report.totals or {}
    yield ["Total", *("" for _ in lead[1:]), *(text_value(grand.get(c.key), c.kind) for c in columns)]


def to_csv(report: Report) -> str:
    """The report as CSV (`csv_lines`): for the details kinds, the calls of the page with their sections'
    subtotals (an export, `every_row`, has every call).

    Through `smdrd.csvsafe`: a cell a spreadsheet would evaluate (``=1+2`` from a caller ID) gets a leading
    ``'``; plain numbers such as ``+442071234567`` stay as they are. It starts with a UTF-8 byte order mark
    (`smdrd.csvsafe.BOM`), so that Excel reads it as UTF-8.
    """
    out = io.StringIO()
    out.write(BOM)
    writer = SafeCsvWriter(out)
    for line in csv_lines(report):
        writer.writerow(line)
    return out.getvalue()


def _title(report: Report) -> str:
    m = report.meta
    return f"{title_of(report)}, {m.get('from')} to {m.get('to')}"


def hms(seconds: int | Decimal) -> str:
    """Seconds as a person reads a duration: ``h:mm:ss`` (``0:02:05``, ``27:46:40``), rounded half up to the
    second, once: an average comes here unrounded (`smdrd.reports.queries.average`)."""
    whole = int(rounded(seconds, "1"))
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _table_value(value: Any, kind: str, currency: str) -> str:
    if value is None:
        return ""
    if kind in _DURATIONS:
        return hms(value)
    if kind == "money" and currency:
        return f"{value} {currency}"
    return str(value)


def local_time(value: Any) -> Any:
    """A call's start as a person reads it: ``2026-03-02 10:15:00``, the site's wall clock (the time zone is in
    the header; JSON and CSV keep the ISO time with its offset)."""
    if isinstance(value, str) and value[10:11] == "T":
        return value[:10] + " " + value[11:19]
    return value


def _table_cells(row: dict[str, Any], report: Report) -> list[str]:
    currency = str(report.meta.get("currency") or "")
    return [_table_value(local_time(row.get(c.key)) if c.key == "start" else row.get(c.key), c.kind, currency)
            for c in report.columns]


def _blocks(report: Report) -> list[tuple[str | None, list[dict[str, Any]], dict[str, Any] | None]]:
    """What a table shows: ``(heading, rows, subtotals)`` per section with rows on this page (the details
    kinds), or the report's rows under no heading."""
    if report.sections is None:
        return [(None, report.rows, None)]
    return [(s.name, rows, s.totals) for s in report.sections if (rows := list(s.rows))]


def _extras(report: Report) -> str:
    """Totals without a column of their own (calls and legs of a listing), as one line."""
    keys = {c.key for c in report.columns}
    currency = str(report.meta.get("currency") or "")
    kinds = {"calls": "int", "legs": "int", "average": "average"}
    return "   ".join(f"{k.capitalize()}: {_table_value(v, kinds.get(k, 'text'), currency)}"
                      for k, v in (report.totals or {}).items() if k not in keys)


def _page_line(report: Report) -> str | None:
    m = report.meta
    if m.get("page_size"):
        return f"page {m.get('page')} of {m.get('pages')} ({m.get('rows_total')} rows)"
    return None


@dataclass(frozen=True, slots=True)
class TableView:
    """A report as every table shows it (the terminal's, the HTML document's, the console's page): headings,
    cells as text (durations h:mm:ss, money with its currency, times on the site's wall clock), which columns
    are numbers, the blocks (a heading, rows and subtotals per section of the details kinds; else the rows under
    no heading), the totals row, the totals without a column of their own, and the page line."""

    columns: tuple[Column, ...]
    head: list[str]
    numeric: list[bool]
    blocks: list[tuple[str | None, list[list[str]], list[str] | None]]
    totals: list[str] | None
    extras: str
    page: str | None


def table_view(report: Report) -> TableView:
    """``report`` as a `TableView` (the rows of its page, as ``report`` holds them)."""
    cols = report.columns
    head = [c.title.removesuffix(" (s)") if c.kind in _DURATIONS else c.title for c in cols]
    blocks = [(name, [_table_cells(r, report) for r in rows], None if sub is None else _table_cells(sub, report))
              for name, rows, sub in _blocks(report)]
    for _name, _rows, sub in blocks:
        if sub is not None:
            sub[0] = "Subtotal"
    totals = None
    if report.totals is not None:
        totals = _table_cells(report.totals, report)
        totals[0] = "Total"
    return TableView(cols, head, [c.kind in _NUMERIC for c in cols], blocks, totals, _extras(report),
                     _page_line(report))


def display_width(text: str) -> int:
    """The columns ``text`` takes in a terminal: a wide or full-width character (CJK: ``東京``) takes two, a
    combining mark none. Padding by ``len`` put every column after a Chinese department out of line."""
    if text.isascii():
        return len(text)
    return sum(0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
               for ch in text)


def pad(text: str, width: int, *, right: bool = False) -> str:
    """``text`` padded with spaces to ``width`` terminal columns (`display_width`), on the left with ``right``."""
    fill = " " * max(0, width - display_width(text))
    return fill + text if right else text + fill


def to_table(report: Report) -> str:
    """An aligned text table for a terminal under the report's header (period, time zone, filters, currency):
    durations as h:mm:ss, money with its currency, numbers right-aligned, totals under a rule; the details
    kinds with a heading and a subtotal per section."""
    view = table_view(report)
    head, blocks, totals = view.head, view.blocks, view.totals
    every = [head, *(r for _, rows, _ in blocks for r in rows), *(sub for _, _, sub in blocks if sub),
             *([totals] if totals else [])]
    widths = [max(display_width(line[i]) for line in every) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        return "  ".join(pad(cell, w, right=r) for cell, w, r in zip(cells, widths, view.numeric,
                                                                      strict=True)).rstrip()

    lines = [_title(report), *(f"{label}: {value}" for label, value in header_lines(report)), ""]
    for name, rows, sub in blocks:
        if name is not None:
            lines.extend(["", name])
        lines.extend([line(head), line(["-" * w for w in widths])])
        lines.extend(line(cells) for cells in rows)
        if sub is not None:
            lines.extend([line(["-" * w for w in widths]), line(sub)])
    if totals:
        if report.sections is not None:
            lines.append("")
        lines.extend([line(["=" * w for w in widths]), line(totals)])
        if view.extras:
            lines.append(view.extras)
    if view.page:
        lines.append(f"\n{view.page}")
    return "\n".join(lines) + "\n"


_STYLE = """body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse}
th,td{padding:.25em .6em;border-bottom:1px solid #ddd}th{text-align:left;background:#f4f4f4}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}tfoot td,tr.sub td{font-weight:bold;
border-top:2px solid #888}tbody th[colspan]{background:#fff;padding-top:1em;font-size:1.05em}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:bold}dd{margin:0}"""


def to_html(report: Report) -> str:
    """A self-contained HTML document (no scripts, no external files) under the report's header; durations as
    h:mm:ss and money with its currency; every value escaped."""
    e = html.escape
    view = table_view(report)
    classes = [' class="n"' if n else "" for n in view.numeric]

    def cells(values: list[str]) -> str:
        return "".join(f"<td{c}>{e(v)}</td>" for c, v in zip(classes, values, strict=True))

    parts = ["<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
             f"<title>{e(_title(report))}</title><style>{_STYLE}</style></head><body>",
             f"<h1>{e(title_of(report))}</h1>", "<dl>",
             *(f"<dt>{e(label)}</dt><dd>{e(value)}</dd>" for label, value in header_lines(report)), "</dl>",
             "<table><thead><tr>", *(f"<th{c} scope=\"col\">{e(t)}</th>" for c, t in zip(classes, view.head,
                                                                                        strict=True)),
             "</tr></thead>"]
    for name, rows, sub in view.blocks:
        parts.append("<tbody>")
        if name is not None:
            parts.append(f"<tr><th colspan=\"{len(view.head)}\" scope=\"rowgroup\">{e(name)}</th></tr>")
        parts.extend(f"<tr>{cells(row)}</tr>" for row in rows)
        if sub is not None:
            parts.append(f"<tr class=\"sub\">{cells(sub)}</tr>")
        parts.append("</tbody>")
    if view.totals is not None:
        parts.append(f"<tfoot><tr>{cells(view.totals)}</tr></tfoot>")
    parts.append("</table>")
    if view.extras:
        parts.append(f"<p>{e(view.extras)}</p>")
    if view.page:
        parts.append(f"<p>{e(view.page)}</p>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def render(report: Report, fmt: str) -> str:
    """``report`` in ``fmt`` (one of `FORMATS`)."""
    if fmt == "table":
        return to_table(report)
    if fmt == "csv":
        return to_csv(report)
    if fmt == "json":
        return to_json(report)
    if fmt == "html":
        return to_html(report)
    raise ValueError(f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
