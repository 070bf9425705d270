"""Report exports as files a person files or opens: XLSX (`export_xlsx`) and PDF (`export_pdf`).

This module is what both formats share: the header block every export starts with (title, period, time zone,
filters, currency), the sections a report is split into (a sheet or a heading each), and `write_export`, the
one entry point the CLI and the HTTP routes call. The ``calls`` listing of a whole range is read from a cursor
(`smdrd.reports.queries.every_call`) and handed to the writer row by row, so an export of a year holds one row
at a time (the XLSX writer keeps one row in memory too; a PDF stops at `PDF_MAX_ROWS` and says so). Never
writes to the database.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

import structlog

from smdrd.reports.queries import (
    DETAIL_KINDS,
    NO_NAMES,
    TITLES,
    Context,
    Query,
    Report,
    Section,
    details_summary,
    every_row,
)
from smdrd.store.api import ReportReader, Store

log = structlog.get_logger(__name__)

__all__ = ["CONTENT_TYPES", "FILE_FORMATS", "FORMATS", "PAPERS", "PDF_MAX_ROWS", "Section", "filename",
           "header_lines", "names_of", "sections_of", "title_of", "write_export"]

FORMATS = ("xlsx", "pdf")
#: every format `write_export` writes: the binary ones and CSV (every row, streamed).
FILE_FORMATS = ("csv", *FORMATS)
CONTENT_TYPES = {"xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                 "pdf": "application/pdf", "csv": "text/csv; charset=utf-8"}
PAPERS = ("a4", "letter")
#: the most call details a PDF lists: a PDF is printed and read (5,000 calls are about 110 pages); every call
#: of a range is the CSV or the XLSX export.
PDF_MAX_ROWS = 5000

_FILTER_NAMES = {"department": "Department", "extension": "Extension", "trunk": "Trunk", "direction": "Direction",
                 "class": "Class"}


def names_of(store: Store) -> Mapping[str, str]:
    """Extension -> name from the directory of ``store`` (`smdrd.store.api.DirectoryStore.names`), or none when
    it cannot be read (a read-only copy, a database from before the directory): a report never fails for a
    name."""
    try:
        directory = store.directory()
    except Exception as exc:  # any store's error: the report goes on without names
        log.warning("reports.names_unavailable", reason=type(exc).__name__)
        return NO_NAMES
    try:
        return directory.names()
    except Exception as exc:
        log.warning("reports.names_unavailable", reason=type(exc).__name__)
        return NO_NAMES
    finally:
        directory.close()


def title_of(report: Report) -> str:
    return TITLES.get(report.kind, f"{report.kind} report")


def sections_of(report: Report, rows: Iterable[dict[str, Any]] | None = None) -> list[Section]:
    """The sections of ``report``: its own (the details kinds, `every_row`: after a summary of their
    subtotals), or one, with ``rows`` (a cursor) or the report's own rows."""
    if report.sections is not None and rows is None:
        if report.kind in DETAIL_KINDS:
            return [details_summary(report), *report.sections]
        return report.sections
    return [Section(title_of(report), report.rows if rows is None else rows, report.totals)]


def _capped(sections: list[Section], cap: int) -> Iterator[Section]:
    """``sections`` with at most ``cap`` rows in all: the sections after the cap are left out (their cursors
    never opened), the one that reaches it is cut."""
    left = cap
    for section in sections:
        if section.columns is not None:  # a summary, not calls
            yield section
            continue
        if left <= 0:
            return
        rows = list(itertools.islice(section.rows, left))
        left -= len(rows)
        yield dataclasses.replace(section, rows=rows)


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
                 every: bool, paper: str = "a4", names: Mapping[str, str] = NO_NAMES) -> None:
    """Build the report ``query`` asks for and write it to ``out`` as ``fmt`` (one of `FILE_FORMATS`).

    Args:
        every: for the listing kinds (``calls``, the details), every call of the range (streamed from a cursor;
            the page does not apply) rather than the query's page.
        paper: ``a4`` or ``letter`` (PDF only).
        names: extension -> name (the directory's), shown beside the extensions.
    """
    if fmt not in FILE_FORMATS:
        raise ValueError(f"format: expected one of {', '.join(FILE_FORMATS)}, got {fmt!r}")
    if every:
        report = every_row(reader, query, ctx, names)
    else:
        from smdrd.reports.queries import run_report

        report = run_report(reader, query, ctx, names)
    sections: Iterable[Section] = sections_of(report)
    total = int(report.meta.get("rows_total") or 0)
    if every and fmt == "pdf" and total > PDF_MAX_ROWS:
        sections = _capped(list(sections), PDF_MAX_ROWS)
        report.meta["note"] = (f"the first {PDF_MAX_ROWS:,} of {total:,} call legs are listed; the totals "
                               "cover them all (the CSV and XLSX exports list every call)")
    if fmt == "csv":  # one table: every section's rows under one header, without the summary
        write_csv(out, report, report.sections if report.sections is not None else sections)
    elif fmt == "xlsx":
        from smdrd.reports.export_xlsx import write_xlsx

        write_xlsx(out, report, sections)
    else:
        from smdrd.reports.export_pdf import write_pdf

        write_pdf(out, report, sections, paper=paper)


def write_csv(out: IO[bytes], report: Report, sections: Iterable[Section]) -> None:
    """``report`` as CSV (`smdrd.reports.render.csv_lines`, through `smdrd.csvsafe`) to ``out``, UTF-8 after a
    byte order mark (`smdrd.csvsafe.BOM`: Excel reads it as UTF-8), a line at a time as the sections' rows are
    read."""
    import io

    from smdrd.csvsafe import BOM, SafeCsvWriter
    from smdrd.reports.render import csv_lines

    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=False)
    try:
        text.write(BOM)
        writer = SafeCsvWriter(text)
        for line in csv_lines(report, sections):
            writer.writerow(line)
        text.flush()
    finally:
        text.detach()  # ``out`` stays open: it is the caller's


def extra_totals(report: Report, section: Section) -> list[tuple[str, Any, str]]:
    """Totals that have no column of their own (the ``calls`` listing's calls, legs and average): ``(title,
    value, kind)`` each, shown under the totals row."""
    if section.totals is None:
        return []
    keys = {c.key for c in section.columns or report.columns}
    kinds = {"calls": "int", "legs": "int", "average": "average", "duration": "seconds", "cost": "money"}
    return [(k.capitalize(), v, kinds.get(k, "text")) for k, v in section.totals.items() if k not in keys]
