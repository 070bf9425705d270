"""Scheduled reports, the pure part: when a schedule fires (through daylight-saving changes) and which days its
report covers; and the mail outbox's promise that a mail is made once, whoever plans it again."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smdrd.config import ConfigError, load_config
from smdrd.reports.schedules import (
    PERIODS,
    WEEKDAYS,
    ScheduleConfig,
    clock_time,
    occurrences,
    period_of,
)
from smdrd.store import open_store
from smdrd.store.api import Actor, NewMail

ZONES = [ZoneInfo(z) for z in ("Europe/Warsaw", "America/New_York", "Australia/Lord_Howe", "UTC", "Asia/Kolkata")]
#: 2020 to 2030, as epoch seconds.
INSTANTS = st.integers(1_577_836_800, 1_893_456_000)


def schedule(**kw: object) -> ScheduleConfig:
    return ScheduleConfig.model_validate({"name": "s", "recipients": ["a@example.com"], **kw})


schedules = st.builds(
    lambda when, weekday, day, hh, mm: schedule(when=when, weekday=weekday, day=day, at=f"{hh:02d}:{mm:02d}"),
    st.sampled_from(["daily", "weekly", "monthly"]), st.sampled_from(WEEKDAYS), st.integers(1, 31),
    st.integers(0, 23), st.sampled_from([0, 1, 15, 30, 59]))


@settings(max_examples=150, deadline=None)
@given(schedules, st.sampled_from(ZONES), INSTANTS, st.integers(0, 30 * 86400), st.integers(0, 30 * 86400))
def test_a_window_split_anywhere_fires_the_same_instants(s: ScheduleConfig, tz: ZoneInfo, start: int, a: int,
                                                         b: int) -> None:
    """A daemon stopped and started (the cursor saved between) fires each occurrence once: no gap, no double."""
    lo, hi = sorted((a, b))
    whole = occurrences(s, tz, start, start + hi)
    assert occurrences(s, tz, start, start + lo) + occurrences(s, tz, start + lo, start + hi) == whole


@settings(max_examples=150, deadline=None)
@given(schedules, st.sampled_from(ZONES), INSTANTS, st.integers(1, 30 * 86400))
def test_each_occurrence_is_at_its_local_time_once_a_day_it_runs(s: ScheduleConfig, tz: ZoneInfo, start: int,
                                                                 span: int) -> None:
    fired = occurrences(s, tz, start, start + span)
    assert all(start < o.at <= start + span for o in fired)
    assert [o.at for o in fired] == sorted({o.at for o in fired})
    assert len({o.day for o in fired}) == len(fired)
    at = clock_time(s.at)
    for o in fired:
        local = datetime.fromtimestamp(o.at, tz)
        if local.time() != at:  # only a time the clocks skipped moves, forward, and stays on its day
            assert local.date() == o.day and local.time() > at
            assert datetime.combine(o.day, at, tz).astimezone(UTC).astimezone(tz).time() != at
        if s.when == "weekly":
            assert o.day.weekday() == WEEKDAYS.index(s.weekday)
        if s.when == "monthly":
            assert o.day.day == min(s.day, calendar.monthrange(o.day.year, o.day.month)[1])


def test_a_daily_schedule_fires_once_on_the_days_clocks_change() -> None:
    warsaw = ZoneInfo("Europe/Warsaw")
    # 2026-03-29: 02:00 becomes 03:00 (02:30 does not exist); 2026-10-25: 02:00-03:00 happens twice.
    for day, at in ((date(2026, 3, 29), "02:30"), (date(2026, 10, 25), "02:30")):
        lo = int(datetime.combine(day, time(0), warsaw).timestamp())
        fired = occurrences(schedule(when="daily", at=at), warsaw, lo, lo + 86400 - 1)
        assert [o.day for o in fired] == [day]
    fired = occurrences(schedule(when="daily", at="02:30"), warsaw, 1_774_738_800, 1_774_738_800 + 86400)
    assert datetime.fromtimestamp(fired[0].at, warsaw).strftime("%H:%M") == "03:30"


def test_monthly_on_the_31st_is_the_last_day_of_short_months() -> None:
    tz = ZoneInfo("UTC")
    lo = int(datetime(2026, 1, 1, tzinfo=tz).timestamp())
    fired = occurrences(schedule(when="monthly", day=31, at="06:00"), tz, lo, lo + 365 * 86400)
    # a window of a year reaches back 31 days only (a daemon off for a year does not send a year of mails)
    assert [o.day for o in fired] == [date(2026, 12, 31)]
    fired = occurrences(schedule(when="monthly", day=31, at="06:00"), tz, lo + 31 * 86400, lo + 62 * 86400)
    assert [o.day for o in fired] == [date(2026, 2, 28)]


@given(st.dates(date(2000, 1, 1), date(2099, 12, 31)), st.sampled_from(PERIODS))
def test_periods_are_whole_days_before_the_send_or_the_month_so_far(day: date, period: str) -> None:
    first, last = period_of(period, day)
    assert first <= last
    if period == "yesterday":
        assert first == last == day - timedelta(days=1)
    elif period == "last_week":
        assert first.weekday() == 0 and last - first == timedelta(days=6) and last < day
        assert day - last <= timedelta(days=7)
    elif period == "last_month":
        assert first.day == 1 and (last + timedelta(days=1)).day == 1 and last < day
        assert (last + timedelta(days=1)).month == day.month
    else:
        assert first == day.replace(day=1) and last == day


@pytest.mark.parametrize("text", ["7:5", "24:00", "12:60", "12", "１２:00", "12:00:61", "12:00:00:00", ""])
def test_a_bad_time_is_refused_saying_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match="expected a time such as 07:30"):
        schedule(at=text)


def test_check_config_names_a_schedule_with_an_unknown_department(tmp_path: Path) -> None:
    path = tmp_path / "smdrd.toml"
    path.write_text('[[departments]]\nname = "Sales"\nextensions = ["200-209"]\n\n'
                    '[[reports.schedules]]\nname = "m"\nrecipients = ["a@example.com"]\n'
                    'filters = { department = ["Sails"] }\n\n'
                    '[[reports.schedules]]\nname = "n"\nrecipients = ["not an address"]\n')
    with pytest.raises(ConfigError) as err:
        load_config(path, use_env=False)
    text = str(err.value)
    assert "reports.schedules[1].recipients" in text and "e-mail address" in text
    path.write_text(path.read_text().replace('"not an address"', '"b@example.com"'))
    with pytest.raises(ConfigError, match=r"reports.schedules\[0\].filters.*unknown department 'Sails'"):
        load_config(path, use_env=False)


def test_an_smtp_password_file_problem_never_shows_the_password(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter2-first\nhunter2-second\n")
    path = tmp_path / "smdrd.toml"
    path.write_text(f'[smtp]\nenabled = true\nusername = "u"\npassword_file = "{secret}"\n')
    with pytest.raises(ConfigError, match=r"smtp\.password_file") as err:
        load_config(path, use_env=False)
    assert "hunter2" not in str(err.value)
    secret.write_text("hunter2\n")
    assert load_config(path, use_env=False).smtp.username == "u"


def mail(key: str, due: int = 0) -> NewMail:
    return NewMail(key, "report", "config:m", f"<{key}@x>", ("a@example.com",), "s", "{}", due)


def test_a_mail_is_made_once_however_often_it_is_planned(any_database: Path | str) -> None:
    store = open_store(any_database).mail()
    try:
        assert store.plan([mail("report:a:1"), mail("report:a:2")], {"schedule:a": 10}) == 2
        assert store.plan([mail("report:a:2"), mail("report:a:3")], {"schedule:a": 20}) == 1
        assert store.cursor("schedule:a") == 20
        due = store.due(now=100)
        assert [m.key for m in due] == ["report:a:1", "report:a:2", "report:a:3"]
        store.mark_retry(due[0].id, "connection refused", 200)
        store.mark_sent(due[1].id, 100)
        store.mark_failed(due[2].id, "550 no such user")
        assert store.due(now=150) == []
        assert [m.key for m in store.due(now=200)] == ["report:a:1"]
        states = {m.key: (m.state, m.attempts, m.last_error) for m in store.deliveries(["config:m"])}
        assert states == {"report:a:1": ("pending", 1, "connection refused"), "report:a:2": ("sent", 1, ""),
                          "report:a:3": ("failed", 1, "550 no such user")}
        assert store.prune(before=-1) == 0  # made at 0 (when due)
        assert store.prune(before=10**10) == 2  # sent and failed go; the pending one stays
        assert [m.key for m in store.deliveries()] == ["report:a:1"]
        assert not store.set_user_email("nobody", "x@example.com", at=1, actor=Actor("t"))
    finally:
        store.close()


def test_check_config_warns_of_mail_that_would_wait_for_ever(tmp_path: Path) -> None:
    from smdrd.config import config_warnings

    path = tmp_path / "smdrd.toml"
    path.write_text('[[reports.schedules]]\nname = "m"\nrecipients = ["a@example.com"]\n\n'
                    '[alerts.email]\nenabled = true\n')
    warnings = dict(config_warnings(path, load_config(path, use_env=False)))
    assert warnings["smtp.enabled"] == ("[[reports.schedules]] and [alerts.email] wait in the mail outbox: "
                                        "[smtp] is not enabled")
    assert warnings["alerts.email.recipients"] == ("nobody receives alerts by e-mail except the managers of a "
                                                   "department over budget")
    from smdrd.cli.check_config import mail_summary

    path.write_text(path.read_text() + '\n[smtp]\nenabled = true\nhost = "mail.example.com"\nusername = "u"\n')
    assert mail_summary(load_config(path, use_env=False)) == (
        "mail: mail.example.com:587 (starttls, login 'u'); 1 scheduled report(s) in the file; alerts to 0 address(es)")


async def test_every_report_kind_makes_a_mail_with_its_attachments(tmp_path: Path) -> None:
    from smdrd.reports.mail import render_report_mail
    from smdrd.reports.queries import KINDS, context_from
    from smdrd.store import open_store
    from tests.test_reports import CALLS, DEPARTMENTS, settings_for, write_calls

    db = tmp_path / "smdrd.db"
    await write_calls(db, CALLS)
    ctx, store = context_from(settings_for(db, DEPARTMENTS)), open_store(db)
    for kind in KINDS:
        formats = ["csv", "xlsx", "pdf"] if kind in ("departments", "extension-details") else ["csv", "xlsx"]
        s = schedule(kind=kind, formats=formats, filters={"department": ["Sales"]})
        made = render_report_mail(store, s, date(2026, 3, 1), date(2026, 3, 31), ctx=ctx, site="HQ")
        assert [a.filename.rsplit(".", 1)[1] for a in made.attachments] == formats, kind
        assert all(a.data for a in made.attachments), kind
        assert made.attachments[1].data.startswith(b"PK"), kind  # a zip: the XLSX
        assert "Period: 2026-03-01 to 2026-03-31" in made.body and "Department: Sales" in made.body, kind


def test_an_unknown_rule_in_alerts_email_is_named(tmp_path: Path) -> None:
    path = tmp_path / "smdrd.toml"
    path.write_text('[alerts.email]\nenabled = true\nrules = { velocty = ["sec@example.com"] }\n')
    with pytest.raises(ConfigError, match=r"alerts.*unknown rule 'velocty'; expected some of .*velocity"):
        load_config(path, use_env=False)


def test_the_smtp_password_comes_from_a_systemd_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from smdrd.mail_config import SmtpConfig, smtp_password

    cfg = SmtpConfig(enabled=True, username="u", password_credential="smtp-password")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ValueError, match=r"CREDENTIALS_DIRECTORY is not set"):
        smtp_password(cfg)
    (tmp_path / "smtp-password").write_text("s3cret-from-systemd\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert smtp_password(cfg) == "s3cret-from-systemd"


async def test_a_report_mail_masks_the_digits_it_is_asked_to(tmp_path: Path) -> None:
    """`render_report_mail(..., mask_digits=3)`: the attachment's numbers end in ***, as its owner sees them."""
    from smdrd.reports.mail import render_report_mail
    from smdrd.reports.queries import context_from
    from smdrd.store import open_store
    from tests.test_reports import CALLS, DEPARTMENTS, settings_for, write_calls

    db = tmp_path / "smdrd.db"
    await write_calls(db, CALLS)
    ctx, store = context_from(settings_for(db, DEPARTMENTS)), open_store(db)
    s = schedule(kind="calls", formats=["csv"], filters={})
    whole = render_report_mail(store, s, date(2026, 3, 1), date(2026, 3, 31), ctx=ctx, site="HQ")
    masked = render_report_mail(store, s, date(2026, 3, 1), date(2026, 3, 31), ctx=ctx, site="HQ", mask_digits=3)
    assert b"0221234567" in whole.attachments[0].data
    assert b"0221234567" not in masked.attachments[0].data and b"0221234***" in masked.attachments[0].data
