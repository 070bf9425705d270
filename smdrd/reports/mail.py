"""A scheduled report as a mail's content: the report's attachments (CSV, XLSX, PDF, made by the same exporters
as the CLI, the HTTP API and the console) and a short text body with its totals.

Blocking (it reads the store): the mail feature runs it in a thread. Each attachment is written to a temporary
file first and refused when larger than `MAX_ATTACHMENT`, so a year of call details cannot fill the memory of
a mail. Never writes to the database.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date

from smdrd.reports.export import CONTENT_TYPES, filename, header_lines, names_of, title_of, write_export
from smdrd.reports.queries import DETAIL_KINDS, Context, Query, Report, parse_query, run_report
from smdrd.reports.render import hms
from smdrd.reports.schedules import ScheduleConfig, query_params
from smdrd.store.api import Store

__all__ = ["MAX_ATTACHMENT", "Attachment", "AttachmentTooLarge", "ReportMail", "render_report_mail",
           "schedule_problem", "schedule_query"]

#: the kinds that list calls: their query is for every call (the page does not apply), their summary reads one page.
LISTINGS = ("calls", *DETAIL_KINDS)
#: the largest attachment mailed (mail servers refuse 20-25 MB messages; base64 adds a third).
MAX_ATTACHMENT = 12 * 1024 * 1024


class AttachmentTooLarge(ValueError):
    """An attachment is over `MAX_ATTACHMENT`: the schedule should cover less (a filter, a shorter period)."""


@dataclass(frozen=True, slots=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class ReportMail:
    """What a scheduled report's mail holds: its title, a text body and the attachments."""

    title: str
    body: str
    attachments: list[Attachment]


def schedule_query(schedule: ScheduleConfig, first: date, last: date, ctx: Context) -> Query:
    """The report query of ``schedule`` over first..last (every call of the range, for a ``calls`` report).

    Raises:
        ValueError: a filter is wrong (names the filter and what was expected).
    """
    params = query_params(schedule, first, last)
    if schedule.kind in LISTINGS:
        params["page_size"] = ["0"]
    return parse_query(params, ctx)


def schedule_problem(schedule: ScheduleConfig, ctx: Context) -> str | None:
    """Why ``schedule``'s filters cannot make a report (None when they can)."""
    today = date(2026, 1, 1)
    try:
        schedule_query(schedule, today, today, ctx)
    except ValueError as exc:
        return str(exc)
    return None


def _attachment(store: Store, query: Query, ctx: Context, fmt: str, names: Mapping[str, str]) -> Attachment:
    with tempfile.TemporaryFile() as out:
        reader = store.reports()
        try:
            write_export(reader, query, ctx, fmt, out, every=True, names=names)
        finally:
            reader.close()
        size = out.tell()
        name = filename(query.kind, query, fmt)
        if size > MAX_ATTACHMENT:
            raise AttachmentTooLarge(f"{name} is {size / 1048576:.1f} MiB, over the {MAX_ATTACHMENT // 1048576} "
                                     "MiB a mail carries; narrow the schedule (a filter, a shorter period)")
        out.seek(0)
        return Attachment(name, CONTENT_TYPES[fmt].partition(";")[0], out.read())


def _summary(report: Report) -> str:
    totals = report.totals or {}
    currency = str(report.meta.get("currency") or "")
    parts = []
    if "calls" in totals:
        parts.append(f"Calls: {totals['calls']}")
    if "duration" in totals:
        parts.append(f"Talk time: {hms(totals['duration'])}")
    if "cost" in totals:
        parts.append(f"Cost: {totals['cost']} {currency}".rstrip())
    return "\n".join(parts)


def render_report_mail(store: Store, schedule: ScheduleConfig, first: date, last: date, *, ctx: Context,
                       site: str, mask_digits: int = 0) -> ReportMail:
    """The mail of ``schedule`` for first..last (blocking), numbers with ``mask_digits`` last digits hidden.

    Raises:
        ValueError: the schedule's filters no longer fit the configuration (a department removed), or an
            attachment is too large (`AttachmentTooLarge`).
    """
    query = replace(schedule_query(schedule, first, last, ctx), mask_digits=mask_digits)
    summary_query = query if query.kind not in LISTINGS else replace(query, page_size=1)
    names = names_of(store)
    reader = store.reports()
    try:
        report = run_report(reader, summary_query, ctx, names)
    finally:
        reader.close()
    title = title_of(report)
    head = "\n".join(f"{name}: {value}" for name, value in header_lines(report))
    attachments = [_attachment(store, query, ctx, fmt, names) for fmt in schedule.formats]
    body = (f"{title} for {site}: scheduled report {schedule.name!r} ({schedule.describe_when()}).\n\n{head}\n\n"
            f"{_summary(report)}\n\nAttached: {', '.join(a.filename for a in attachments)}.\n\n"
            "-- \nsmdrd, call accounting. The schedule is changed in the console (Schedules) or in the "
            "configuration ([[reports.schedules]]).\n")
    return ReportMail(f"{title}, {first} to {last}", body, attachments)
