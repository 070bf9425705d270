"""Scheduled reports: what a schedule says (``[[reports.schedules]]``, or one stored from the console), when it
is due and which days its report covers.

Pure: no I/O, no clock, no asyncio. `occurrences` lists the instants a schedule fires in a time window, in the
site's zone: ``at = "08:00"`` is 08:00 local on every day it runs, through daylight-saving changes (a time the
clocks skip, 02:30 on the night they go forward, fires at the same instant as 03:30; a time that happens twice
fires once, at the first). `period_of` gives the days a report of that occurrence covers. The daemon's mail
feature (`smdrd.mail`) turns each occurrence into one outbox row, keyed by the schedule and the period.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator, model_validator

from smdrd.mail_config import check_addresses
from smdrd.section import Section

__all__ = [
    "FILTER_KEYS",
    "MAX_CATCH_UP_DAYS",
    "PERIODS",
    "REPORT_FORMATS",
    "WEEKDAYS",
    "Occurrence",
    "ReportsConfig",
    "ScheduleConfig",
    "occurrences",
    "period_of",
    "query_params",
]

REPORT_FORMATS = ("csv", "xlsx", "pdf")
PERIODS = ("yesterday", "last_week", "last_month", "month_to_date")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: the report filters a schedule may set (as `smdrd.reports.queries.parse_query` reads them).
FILTER_KEYS = ("department", "extension", "trunk", "direction", "class", "by_class", "top", "by")
#: a daemon stopped longer than this sends only the occurrences of its last days (a year off is not 365 mails).
MAX_CATCH_UP_DAYS = 31

Period = Literal["yesterday", "last_week", "last_month", "month_to_date"]
ReportFormat = Literal["csv", "xlsx", "pdf"]
_DEFAULT_FORMATS: tuple[ReportFormat, ...] = ("pdf",)


class ScheduleConfig(Section):
    """One scheduled report (docs/reports.md#scheduled-reports-by-e-mail)."""

    name: str = Field(min_length=1, max_length=100)
    #: a report kind (`smdrd.reports.queries.KINDS`): departments, extensions, calls, extension-details...
    kind: str = "departments"
    formats: list[ReportFormat] = Field(default_factory=lambda: list(_DEFAULT_FORMATS), min_length=1)
    period: Period = "last_month"
    recipients: list[str] = Field(min_length=1, max_length=50)
    #: ``daily``, ``weekly`` (on ``weekday``) or ``monthly`` (on ``day``; a day the month lacks is its last).
    when: Literal["daily", "weekly", "monthly"] = "monthly"
    weekday: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] = "mon"
    day: int = Field(default=1, ge=1, le=31)
    #: the local time, HH:MM (24-hour; HH:MM:SS also works), in the site's timezone.
    at: str = "07:00"
    #: report filters, as the report URL takes them: ``{ department = ["Sales"], direction = ["all"] }``.
    filters: dict[str, list[str]] = Field(default_factory=dict)
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        v = v.strip()
        if not v or any(ord(c) < 32 for c in v):
            raise ValueError("expected a name of 1 to 100 characters, no control characters")
        return v

    @field_validator("recipients")
    @classmethod
    def _recipients(cls, v: list[str]) -> list[str]:
        return check_addresses(v)

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        from smdrd.reports.queries import KINDS

        if v not in KINDS:
            raise ValueError(f"expected one of {', '.join(KINDS)}, got {v[:40]!r}")
        return v

    @field_validator("at")
    @classmethod
    def _at(cls, v: str) -> str:
        clock_time(v)
        return v

    @field_validator("filters")
    @classmethod
    def _filters(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for key, values in v.items():
            if key not in FILTER_KEYS:
                raise ValueError(f"unknown filter {key!r}; expected some of {', '.join(FILTER_KEYS)}")
            if len(values) > 100 or any(len(x) > 100 for x in values):
                raise ValueError(f"filter {key!r}: at most 100 values of at most 100 characters")
        return v

    @model_validator(mode="after")
    def _unique_formats(self) -> ScheduleConfig:
        if len(set(self.formats)) != len(self.formats):
            raise ValueError("formats: each format once")
        return self

    def describe_when(self) -> str:
        """``monthly on day 1 at 07:00`` and the like, for pages and mails."""
        if self.when == "daily":
            return f"daily at {self.at}"
        if self.when == "weekly":
            return f"weekly on {self.weekday.capitalize()} at {self.at}"
        return f"monthly on day {self.day} at {self.at}"


class ReportsConfig(Section):
    """The ``[reports]`` section: scheduled reports (each mailed through ``[smtp]``)."""

    schedules: list[ScheduleConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> ReportsConfig:
        seen: set[str] = set()
        for s in self.schedules:
            if s.name.casefold() in seen:
                raise ValueError(f"schedule names must be unique; {s.name!r} is used twice")
            seen.add(s.name.casefold())
        return self


def clock_time(text: str) -> time:
    """``HH:MM`` or ``HH:MM:SS`` (24-hour) as a `time`.

    Raises:
        ValueError: saying what was expected.
    """
    parts = text.split(":")
    if (len(parts) not in (2, 3) or len(parts[0]) not in (1, 2) or any(len(p) != 2 for p in parts[1:])
            or not all(p.isascii() and p.isdigit() for p in parts)
            or int(parts[0]) > 23 or any(int(p) > 59 for p in parts[1:])):
        raise ValueError(f"expected a time such as 07:30 (24-hour, the site's zone), got {text[:20]!r}")
    hh, mm, ss = (int(p) for p in (*parts, "0")[:3])
    return time(hh, mm, ss)


def query_params(schedule: ScheduleConfig, first: date, last: date) -> dict[str, list[str]]:
    """The report parameters (`smdrd.reports.queries.parse_query`) of ``schedule`` for the days first..last."""
    params = {k: list(v) for k, v in schedule.filters.items()}
    params.update({"kind": [schedule.kind], "from": [first.isoformat()], "to": [last.isoformat()]})
    return params


@dataclass(frozen=True, slots=True, order=True)
class Occurrence:
    """A schedule firing: the instant (UTC epoch seconds) and the site-local day it fires on."""

    at: int
    day: date


def _fires_on(schedule: ScheduleConfig, day: date) -> bool:
    if schedule.when == "daily":
        return True
    if schedule.when == "weekly":
        return day.weekday() == WEEKDAYS.index(schedule.weekday)
    last = calendar.monthrange(day.year, day.month)[1]
    return day.day == min(schedule.day, last)


def instant(day: date, at: time, tz: ZoneInfo) -> int:
    """The UTC instant of local ``at`` on ``day``: a skipped time (DST gap) is shifted forward by the gap, a
    repeated one is its first occurrence (``fold=0``)."""
    return int(datetime.combine(day, at, tz).timestamp())


def occurrences(schedule: ScheduleConfig, tz: ZoneInfo, after: int, until: int) -> list[Occurrence]:
    """The instants in ``(after, until]`` (UTC epoch seconds) ``schedule`` fires at, oldest first; at most the
    last `MAX_CATCH_UP_DAYS` days of the window are looked at."""
    if until <= after:
        return []
    at = clock_time(schedule.at)
    after = max(after, until - MAX_CATCH_UP_DAYS * 86400)
    first = datetime.fromtimestamp(after, tz).date() - timedelta(days=1)
    last = datetime.fromtimestamp(until, tz).date() + timedelta(days=1)
    out = []
    for day in _days(first, last):
        if _fires_on(schedule, day):
            t = instant(day, at, tz)
            if after < t <= until:
                out.append(Occurrence(t, day))
    return out


def _days(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def period_of(period: str, day: date) -> tuple[date, date]:
    """The site-local days (both included) a report sent on ``day`` covers.

    ``yesterday``: the day before; ``last_week``: Monday to Sunday of the week before ``day``'s; ``last_month``:
    the whole month before ``day``'s; ``month_to_date``: from the first of ``day``'s month to ``day`` itself
    (the calls of ``day`` so far).
    """
    if period == "yesterday":
        y = day - timedelta(days=1)
        return y, y
    if period == "last_week":
        monday = day - timedelta(days=day.weekday() + 7)
        return monday, monday + timedelta(days=6)
    if period == "last_month":
        end = day.replace(day=1) - timedelta(days=1)
        return end.replace(day=1), end
    if period == "month_to_date":
        return day.replace(day=1), day
    raise ValueError(f"period: expected one of {', '.join(PERIODS)}, got {period!r}")
