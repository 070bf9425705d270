"""Report exports as files a person files or opens: XLSX (`export_xlsx`) and PDF (`export_pdf`).

This module is what both formats share: the header block every export starts with (title, period, time zone,
filters, currency), the sections a report is split into (a sheet or a heading each), and `write_export`, the
one entry point the CLI and the HTTP routes call. The ``calls`` listing of a whole range is read from a cursor
(`smdrd.reports.queries.every_call`) and handed to the writer row by row, so an export of a year holds one row
at a time (the XLSX writer keeps one row in memory too; a PDF stops at `PDF_MAX_ROWS` and says so). Never
writes to the database.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any

from smdrd.reports.queries import Context, Query, Report, every_call, run_report
from smdrd.store.api import ReportReader

__all__ = ["CONTENT_TYPES", "FORMATS", "PAPERS", "PDF_MAX_ROWS", "Section", "filename", "header_lines",
           "sections_of", "title_of", "write_export"]

FORMATS = ("xlsx", "pdf")
CONTENT_TYPES = {"xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                 "pdf": "application/pdf"}
PAPERS = ("a4", "letter")
#: the most call details a PDF lists: a PDF is printed and read (5,000 calls are about 110 pages); every call
#: of a range is the CSV or the XLSX export.
PDF_MAX_ROWS = 5000

TITLES = {"extensions": "Calls per extension", "departments": "Calls per department", "calls": "Call details",
          "destinations": "Calls per destination", "trunks": "Calls per trunk", "days": "Calls per day"}
_FILTER_NAMES = {"department": "Department", "extension": "Extension", "trunk": "Trunk", "direction": "Direction",
                 "class": "Class"}


@dataclass(frozen=True, slots=True)
class Section:
    """A part of a report with its own table and totals: a sheet in XLSX, a heading in PDF. Every kind is one
    section today; a details report (issue 16) has one per extension. ``rows`` may be a one-pass iterator."""

    name: str
    rows: Iterable[dict[str, Any]]
    totals: dict[str, Any] | None


def title_of(report: Report) -> str:
    return TITLES.get(report.kind, f"{report.kind} report")


def sections_of(report: Report, rows: Iterable[dict[str, Any]] | None = None) -> list[Section]:
    """The sections of ``report``: one, with ``rows`` (a cursor) or the report's own rows."""
    return [Section(title_of(report), report.rows if rows is None else rows, report.totals)]


def header_lines(report: Report) -> list[tuple[str, str]]:
    """What a reader must know before the table: the period, the time zone, the filters and the currency (the
    title is `title_of`). Values come from the configuration and the query, never from a PBX line."""
    m = report.meta
    filters = m.get("filters") or {}
    described = [f"{_FILTER_NAMES.get(k, k)}: {', '.join(map(str, v))}" for k, v in filters.items() if v]
    if m.get("by_class"):
        described.append("by call class")
    if report.kind == "destinations":
        described.append(f"top {m.get('top') or 'all'} by {m.get('by', 'cost')}")
    lines = [("Period", f"{m.get('from')} to {m.get('to')} (both included)"),
             ("Time zone", str(m.get("timezone", ""))),
             ("Filters", "; ".join(described) or "none"),
             ("Currency", str(m.get("currency", "")))]
    if m.get("note"):
        lines.append(("Note", str(m["note"])))
    return lines


def filename(kind: str, query: Query, fmt: str) -> str:
    """The file name an export is offered under: ``smdrd-calls-2026-03-01-2026-03-31.xlsx``."""
    return f"smdrd-{kind}-{query.first}-{query.last}.{fmt}"


def write_export(reader: ReportReader, query: Query, ctx: Context, fmt: str, out: IO[bytes], *,
                 every: bool, paper: str = "a4") -> None:
    """Build the report ``query`` asks for and write it to ``out`` as ``fmt`` (one of `FORMATS`).

    Args:
        every: for ``calls``, every call of the range (streamed from a cursor; the page does not apply) rather
            than the query's page.
        paper: ``a4`` or ``letter`` (PDF only).
    """
    if fmt not in FORMATS:
        raise ValueError(f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    rows: Iterable[dict[str, Any]] | None = None
    if query.kind == "calls" and every:
        report, rows = every_call(reader, query, ctx)
        total = int(report.meta.get("rows_total") or 0)
        if fmt == "pdf" and total > PDF_MAX_ROWS:
            rows = itertools.islice(rows, PDF_MAX_ROWS)
            report.meta["note"] = (f"the first {PDF_MAX_ROWS:,} of {total:,} call legs are listed; the totals "
                                   "cover them all (the CSV and XLSX exports list every call)")
    else:
        report = run_report(reader, query, ctx)
    sections = sections_of(report, rows)
    if fmt == "xlsx":
        from smdrd.reports.export_xlsx import write_xlsx

        write_xlsx(out, report, sections)
    else:
        from smdrd.reports.export_pdf import write_pdf

        write_pdf(out, report, sections, paper=paper)


def extra_totals(report: Report, section: Section) -> list[tuple[str, Any, str]]:
    """Totals that have no column of their own (the ``calls`` listing's calls, legs and average): ``(title,
    value, kind)`` each, shown under the totals row."""
    if section.totals is None:
        return []
    keys = {c.key for c in report.columns}
    kinds = {"calls": "int", "legs": "int", "average": "average", "duration": "seconds", "cost": "money"}
    return [(k.capitalize(), v, kinds.get(k, "text")) for k, v in section.totals.items() if k not in keys]
