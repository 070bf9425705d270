"""The month-end budget forecast (`smdrd.reports.forecast`): spend so far, projected over the working days left."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from smdrd.reports.forecast import MONDAY_TO_FRIDAY, WorkingCalendar, month_bounds, month_end_forecast

money = st.decimals(min_value=0, max_value=10**7, places=2, allow_nan=False, allow_infinity=False)
moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31, 23, 59, 59))
hours = st.tuples(st.integers(0, 1439), st.integers(1, 1440)).filter(lambda h: h[0] != h[1])
calendars = st.builds(
    WorkingCalendar,
    weekdays=st.frozensets(st.integers(0, 6)),
    holidays=st.frozensets(st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)), max_size=20),
    hours=hours,
)


@given(money, moments, calendars)
def test_the_forecast_never_falls_below_the_spend_and_its_days_add_up(spent: Decimal, now: datetime,
                                                                        cal: WorkingCalendar) -> None:
    f = month_end_forecast(spent, now, cal)
    assert f.projected >= f.spent == spent
    first, last = month_bounds(now.date())
    assert f.elapsed + f.remaining == f.working_days == cal.count(first, last)
    assert f.elapsed >= 0 and f.remaining >= 0
    assert f.month == now.strftime("%Y-%m")


@given(money, moments, calendars, st.integers(1, 50))
def test_the_forecast_is_proportional_to_the_spend(spent: Decimal, now: datetime, cal: WorkingCalendar,
                                                   k: int) -> None:
    one = month_end_forecast(spent, now, cal).projected
    many = month_end_forecast(spent * k, now, cal).projected
    assert abs(many - one * k) <= Decimal("1e-12") * max(many, Decimal(1))


@given(st.decimals(min_value=1, max_value=1000, places=2), moments, calendars)
def test_an_even_daily_spend_projects_to_that_rate_times_the_working_days(rate: Decimal, now: datetime,
                                                                          cal: WorkingCalendar) -> None:
    f0 = month_end_forecast(Decimal(0), now, cal)
    spent = rate * f0.elapsed
    f = month_end_forecast(spent, now, cal)
    if f.elapsed > 0:
        assert abs(f.projected - rate * f.working_days) <= Decimal("1e-9") * rate * max(f.working_days, 1)
    else:
        assert f.projected == spent  # no working time yet: nothing to project from


@given(money, st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)))
def test_after_the_months_last_working_day_the_forecast_is_the_spend(spent: Decimal, day: date) -> None:
    last = month_bounds(day)[1]
    cal = WorkingCalendar(MONDAY_TO_FRIDAY, frozenset(), (7 * 60, 19 * 60))
    f = month_end_forecast(spent, datetime.combine(last, datetime.min.time()).replace(hour=19), cal)
    assert f.remaining == 0 and f.projected == spent


@given(money, moments)
def test_later_in_the_month_the_same_spend_projects_no_higher(spent: Decimal, now: datetime) -> None:
    cal = WorkingCalendar(MONDAY_TO_FRIDAY, frozenset(), (7 * 60, 19 * 60))
    later = now + timedelta(hours=5)
    if later.month == now.month and month_end_forecast(spent, now, cal).elapsed > 0:  # once there is a rate
        assert month_end_forecast(spent, later, cal).projected <= month_end_forecast(spent, now, cal).projected


def test_a_worked_example_monday_to_friday_with_a_holiday() -> None:
    # November 2026: 21 weekdays; the 11th (a Wednesday) a holiday leaves 20 working days. Friday the 13th at
    # 13:00 in a 07:00-19:00 day: 8 whole working days (2-6, 9, 10, 12) and half of the 13th are gone.
    cal = WorkingCalendar(MONDAY_TO_FRIDAY, frozenset({date(2026, 11, 11)}), (7 * 60, 19 * 60))
    f = month_end_forecast(Decimal("170.00"), datetime(2026, 11, 13, 13, 0), cal)
    assert f.working_days == 20 and f.elapsed == Decimal("8.5") and f.remaining == Decimal("11.5")
    assert f.projected == Decimal("400.00")  # 20 per working day
    assert f.over(Decimal("399.99")) and not f.over(Decimal("400"))


def test_a_weekend_adds_spend_but_no_working_day() -> None:
    cal = WorkingCalendar()  # Monday to Friday, whole days
    saturday = month_end_forecast(Decimal("100"), datetime(2026, 11, 7, 12, 0), cal)  # 5 working days gone
    assert saturday.elapsed == 5 and saturday.projected == Decimal("100") + Decimal("100") * 16 / 5
    # The 1st of November 2026 is a Sunday: no working time yet, nothing to project from.
    sunday = month_end_forecast(Decimal("30"), datetime(2026, 11, 1, 18, 0), cal)
    assert sunday.elapsed == 0 and sunday.projected == Decimal("30")


def test_the_overview_says_a_budgets_state_in_words() -> None:
    from smdrd.console.overview import budget_state

    cal = WorkingCalendar()
    mid = month_end_forecast(Decimal("200"), datetime(2026, 11, 16, 12, 0), cal)  # 10.5 of 21 working days
    assert budget_state(Decimal("200"), None, mid, Decimal(2)) == ""
    assert budget_state(Decimal("200"), Decimal("350"), mid, Decimal(2)) == "forecast over budget"
    assert budget_state(Decimal("200"), Decimal("500"), mid, Decimal(2)) == "on track"
    assert budget_state(Decimal("200"), Decimal("200"), mid, Decimal(2)) == "over budget"
    early = month_end_forecast(Decimal("200"), datetime(2026, 11, 2, 12, 0), cal)  # half a working day
    assert budget_state(Decimal("200"), Decimal("350"), early, Decimal(2)) == "too early to forecast"
    assert budget_state(Decimal("400"), Decimal("350"), early, Decimal(2)) == "over budget"
