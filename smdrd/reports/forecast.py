"""A department's month-end forecast: what it has spent so far this month, projected over the working days left.

Pure: no I/O, no clock (the caller says what time it is, in the site's timezone). The console's overview and the
``budget_forecast`` alert rule (`smdrd.alerts.rules.BudgetForecast`) both call `month_end_forecast`, so the
figure a manager reads and the one that raised the alert are the same.

The rate is the spend per working day so far: working days are the weekdays of the site's business hours
(``[alerts.business_hours] days``, Monday to Friday by default) that are not holidays (its ``holidays`` and the
tariff's). Today counts as the share of its business hours already gone (at 13:00 in a 07:00-19:00 day, half a
day), so a morning's spend is not projected as if it were a whole day's. Spend on a closed day (a weekend
call) counts in the spend but adds no working day. Before any working time has passed this month there is no
rate to project from, and the forecast is the spend itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from smdrd.rating.rules import parse_days, parse_hours

__all__ = ["MONDAY_TO_FRIDAY", "Forecast", "WorkingCalendar", "calendar_for", "month_bounds",
           "month_end_forecast"]

MONDAY_TO_FRIDAY = frozenset(range(5))
_WHOLE_DAY = (0, 24 * 60)


@dataclass(frozen=True, slots=True)
class WorkingCalendar:
    """Which days are working days, and the business hours of one (minutes of the day, end excluded; an end
    before the start wraps past midnight, and then a day's share is counted over the whole day)."""

    weekdays: frozenset[int] = MONDAY_TO_FRIDAY
    holidays: frozenset[date] = frozenset()
    hours: tuple[int, int] = _WHOLE_DAY

    def working(self, day: date) -> bool:
        return day.weekday() in self.weekdays and day not in self.holidays

    def count(self, first: date, last: date) -> int:
        """Working days from ``first`` to ``last``, both included (0 when ``last`` is before ``first``)."""
        n = 0
        day = first
        while day <= last:
            n += self.working(day)
            day += timedelta(days=1)
        return n

    def share_gone(self, local: datetime) -> Decimal:
        """How much of ``local``'s day's working time has passed at ``local`` (0 to 1; 0 on a closed day)."""
        if not self.working(local.date()):
            return Decimal(0)
        start, end = self.hours if self.hours[0] < self.hours[1] else _WHOLE_DAY
        minute = local.hour * 60 + local.minute + Decimal(local.second) / 60
        if minute <= start:
            return Decimal(0)
        if minute >= end:
            return Decimal(1)
        return (minute - start) / (end - start)


def calendar_for(days: Iterable[str], hours: str, holidays: Iterable[date]) -> WorkingCalendar:
    """The calendar of business hours as configured (``["mon-fri"]``, ``"07:00-19:00"``, closed dates).

    Raises:
        ValueError: a day or the hours cannot be read (the configuration has checked them already).
    """
    return WorkingCalendar(parse_days(days), frozenset(holidays), parse_hours(hours))


@dataclass(frozen=True, slots=True)
class Forecast:
    """A month-end forecast.

    Attributes:
        month: ``YYYY-MM``.
        spent: the spend so far.
        projected: the spend at the month's end if the rate so far goes on (at least ``spent``).
        elapsed: working days gone (today's share included).
        remaining: working days left (the rest of today included).
        working_days: the month's working days (``elapsed + remaining``).
    """

    month: str
    spent: Decimal
    projected: Decimal
    elapsed: Decimal
    remaining: Decimal
    working_days: int

    def over(self, budget: Decimal) -> bool:
        """True when the forecast exceeds ``budget``."""
        return self.projected > budget


def month_bounds(day: date) -> tuple[date, date]:
    """The first and last day of ``day``'s month."""
    first = day.replace(day=1)
    return first, (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)


def month_end_forecast(spent: Decimal, local: datetime, calendar: WorkingCalendar | None = None) -> Forecast:
    """The forecast of ``local``'s month (``local``: now, in the site's timezone) from ``spent`` so far."""
    cal = calendar or WorkingCalendar()
    today = local.date()
    first, last = month_bounds(today)
    share = cal.share_gone(local)
    before = cal.count(first, today - timedelta(days=1))
    after = cal.count(today + timedelta(days=1), last)
    today_working = cal.working(today)
    elapsed = before + share
    remaining = after + ((1 - share) if today_working else Decimal(0))
    projected = spent if elapsed <= 0 or remaining <= 0 else spent + spent * remaining / elapsed
    return Forecast(today.strftime("%Y-%m"), spent, max(projected, spent), elapsed, remaining,
                    before + after + today_working)
