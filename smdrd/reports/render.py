"""Report output: a text table, CSV, JSON and a static HTML document.

Pure: a `Report` in, text out; no I/O. Everything in a report may come from a PBX (extension, number, trunk) or
the configuration, so the HTML renderer escapes every value (`html.escape`) and the text renderers write values
as data, never as markup. Money leaves as exact decimal strings, never as floats.
"""

from __future__ import annotations

import html
import io
import json
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from smdrd.csvsafe import SafeCsvWriter
from smdrd.reports.queries import Column, Report

__all__ = ["FORMATS", "hms", "render", "to_csv", "to_html", "to_json", "to_table"]

FORMATS = ("table", "csv", "json", "html")
CONTENT_TYPES = {"table": "text/plain; charset=utf-8", "csv": "text/csv; charset=utf-8",
                 "json": "application/json", "html": "text/html; charset=utf-8"}
_NUMERIC = {"int", "seconds", "average", "minutes", "money"}
#: columns of seconds, which the text table shows as h:mm:ss (CSV and JSON keep plain seconds for tools).
_DURATIONS = {"seconds", "average"}


def json_value(value: Any, kind: str) -> Any:
    """A value as JSON wants it: money as a decimal string, averages and minutes as numbers with one decimal."""
    if isinstance(value, Decimal):
        return str(value) if kind == "money" else float(value)
    return value


def _json_row(row: dict[str, Any], kinds: dict[str, str]) -> dict[str, Any]:
    return {k: json_value(v, kinds.get(k, "text")) for k, v in row.items()}


def to_dict(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data (see docs/reports.md for the shape)."""
    kinds = {c.key: c.kind for c in report.columns}
    return {**report.meta,
            "columns": [{"key": c.key, "title": c.title, "kind": c.kind} for c in report.columns],
            "rows": [_json_row(r, kinds) for r in report.rows],
            "totals": None if report.totals is None else _json_row(report.totals, kinds)}


def to_json(report: Report) -> str:
    return json.dumps(to_dict(report), ensure_ascii=False, indent=1) + "\n"


def text_value(value: Any) -> str:
    """A value as CSV and the text table show it (``None`` is empty)."""
    return "" if value is None else str(value)


def _totals_row(report: Report) -> list[str] | None:
    if report.totals is None:
        return None
    cells = [text_value(report.totals.get(c.key)) for c in report.columns]
    cells[0] = "Total"
    return cells


def to_csv(report: Report) -> str:
    """A header of column keys, one line per row, and a last ``Total`` line.

    Through `smdrd.csvsafe`: a cell a spreadsheet would evaluate (``=1+2`` from a caller ID) gets a leading
    ``'``; plain numbers such as ``+442071234567`` stay as they are.
    """
    out = io.StringIO()
    writer = SafeCsvWriter(out)
    writer.writerow([c.key for c in report.columns])
    for row in report.rows:
        writer.writerow([text_value(row.get(c.key)) for c in report.columns])
    totals = _totals_row(report)
    if totals is not None:
        writer.writerow(totals)
    return out.getvalue()


def _title(report: Report) -> str:
    m = report.meta
    directions = ", ".join(m.get("filters", {}).get("direction", [])) or "all"
    return (f"{report.kind} report, {m.get('from')} to {m.get('to')} ({m.get('timezone')}), "
            f"{directions} calls, costs in {m.get('currency')}")


def hms(seconds: int | Decimal) -> str:
    """Seconds as a person reads a duration: ``h:mm:ss`` (``0:02:05``, ``27:46:40``), rounded half up."""
    whole = int(Decimal(seconds).quantize(Decimal(1), ROUND_HALF_UP))
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


def _table_cells(row: dict[str, Any], report: Report) -> list[str]:
    currency = str(report.meta.get("currency") or "")
    return [_table_value(row.get(c.key), c.kind, currency) for c in report.columns]


def to_table(report: Report) -> str:
    """An aligned text table for a terminal: durations as h:mm:ss, money with its currency, numbers
    right-aligned, totals under a rule."""
    head = [c.title.removesuffix(" (s)") if c.kind in _DURATIONS else c.title for c in report.columns]
    body = [_table_cells(r, report) for r in report.rows]
    totals = None
    if report.totals is not None:
        totals = _table_cells(report.totals, report)
        totals[0] = "Total"
    every = [head, *body, *([totals] if totals else [])]
    widths = [max(len(line[i]) for line in every) for i in range(len(head))]
    right = [c.kind in _NUMERIC for c in report.columns]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.rjust(w) if r else cell.ljust(w) for cell, w, r in zip(cells, widths, right,
                                                                                       strict=True)).rstrip()

    lines = [_title(report), "", line(head), line(["-" * w for w in widths])]
    lines.extend(line(cells) for cells in body)
    if totals:
        lines.extend([line(["=" * w for w in widths]), line(totals)])
    if report.kind == "calls":
        m = report.meta
        lines.append(f"\npage {m.get('page')} of {m.get('pages')} ({m.get('rows_total')} rows)")
    if report.meta.get("note"):
        lines.append(f"\nnote: {report.meta['note']}")
    return "\n".join(lines) + "\n"


_STYLE = """body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse}
th,td{padding:.25em .6em;border-bottom:1px solid #ddd}th{text-align:left;background:#f4f4f4}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}tfoot td{font-weight:bold;border-top:2px solid #888}"""


def to_html(report: Report) -> str:
    """A self-contained HTML document (no scripts, no external files); every value escaped."""
    e = html.escape
    cols = report.columns

    def cls(c: Column) -> str:
        return ' class="n"' if c.kind in _NUMERIC else ""

    parts = ["<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
             f"<title>{e(_title(report))}</title><style>{_STYLE}</style></head><body>",
             f"<h1>{e(_title(report))}</h1>", "<table><thead><tr>",
             *(f"<th{cls(c)}>{e(c.title)}</th>" for c in cols), "</tr></thead><tbody>"]
    for row in report.rows:
        parts.append("<tr>" + "".join(f"<td{cls(c)}>{e(text_value(row.get(c.key)))}</td>" for c in cols) + "</tr>")
    parts.append("</tbody>")
    totals = _totals_row(report)
    if totals is not None:
        parts.append("<tfoot><tr>" + "".join(f"<td{cls(c)}>{e(v)}</td>" for c, v in zip(cols, totals, strict=True))
                     + "</tr></tfoot>")
    parts.append("</table></body></html>\n")
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
