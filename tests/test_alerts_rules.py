"""The alert rules and engine, pure: crafted call sequences in, outbox rows out (no broker, no database)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from smdrd.alerts.engine import AlertEngine
from smdrd.alerts.feature import compile_settings
from smdrd.alerts.rules import SourceSnapshot, region_of
from smdrd.config import Settings
from smdrd.journal import Alert
from smdrd.rating import Rater
from smdrd.record import CallRecord, Direction

TZ = ZoneInfo("America/New_York")
#: a Tuesday, 10:00 local: business hours by default.
DAY = datetime(2025, 3, 4, 10, 0, tzinfo=TZ)
NIGHT = datetime(2025, 3, 4, 2, 13, tzinfo=TZ)


@dataclass(frozen=True)
class FakeRating:
    e164: str
    call_class: str
    rule: str = ""
    prefix: str = ""
    cost: Decimal = Decimal(0)
    currency: str = "USD"

    @property
    def region(self) -> str:
        """As the real rater names it (phonenumbers' region of the E.164 number)."""
        return region_of(self.e164) if self.e164 else ""


class Harness:
    """An engine built from settings, with the real rater, that records the alerts each call raises."""

    def __init__(self, alerts: dict[str, Any] | None = None, **extra: Any) -> None:
        self.settings = Settings.model_validate({
            "site": {"timezone": "America/New_York", "country": "US", "area_code": "212"},
            "alerts": alerts or {}, **extra,
        })
        rules, directory = compile_settings(self.settings)
        self.engine = AlertEngine(rules, self.settings.site.tz, site="hq", directory=directory,
                                  clock=lambda: 1_700_000_000.0)
        self.rater = Rater.from_config(self.settings.site, self.settings.tariff)
        self.n = 0

    def call(self, number: str, *, at: datetime = DAY, duration: int = 60, extension: str = "201",
             direction: Direction = Direction.OUTBOUND, answered: bool | None = None, ring: int | None = 3,
             cost: Decimal | None = None, uid: str | None = None) -> list[dict[str, Any]]:
        self.n += 1
        record = CallRecord(format="test", start=at, duration=duration, direction=direction, extension=extension,
                            number=number, ring=ring, answered=duration > 0 if answered is None else answered)
        rating: Any = self.rater.rate(record)
        if cost is not None:
            rating = FakeRating(rating.e164, rating.call_class, cost=cost)
        alerts = self.engine.observe(record, rating, uid or f"test:{self.n}")
        assert all(isinstance(a, Alert) for a in alerts)
        return [json.loads(a.payload) for a in alerts]

    def rules(self, alerts: Sequence[dict[str, Any]]) -> list[str]:
        return [a["rule"] for a in alerts]


def test_a_normal_working_day_raises_nothing() -> None:
    """A user would see alerts for ordinary calls: local, national and a short daytime call abroad."""
    h = Harness()
    raised = []
    for i in range(20):
        at = DAY + timedelta(minutes=7 * i)
        raised += h.call("912125550100", at=at, duration=180)          # local
        raised += h.call("914155550100", at=at, duration=240, extension="202")  # national
        raised += h.call("9011442079460000", at=at, duration=300, extension="203") if i == 3 else []
        raised += h.call("215", at=at, duration=30, direction=Direction.INTERNAL)
    assert raised == []


def test_the_default_rules_catch_a_night_call_to_the_dominican_republic() -> None:
    """With no [alerts] section, a 40-minute call at 02:13 to +1 809 (a NANP look-alike) raises alerts."""
    h = Harness()
    alerts = h.call("918095551234", at=NIGHT, duration=40 * 60)
    assert set(h.rules(alerts)) == {"after_hours", "high_risk"}
    risk = next(a for a in alerts if a["rule"] == "high_risk")
    assert risk["severity"] == "critical" and risk["number"] == "+18095551234"
    assert risk["call"]["duration"] == 2400 and risk["extension"] == "201"
    assert risk["id"].startswith("high_risk:") and risk["id"].endswith("test:1")


@pytest.mark.parametrize("number", ["918765550100", "912425550100", "919005550100", "9011537123456",
                                    "9011881612345678"])
def test_high_risk_destinations_are_caught_in_daytime_too(number: str) -> None:
    """Jamaica (876), Bahamas (242), US 900 premium, Cuba (a listed country), Iridium: each raises high_risk."""
    h = Harness()
    assert "high_risk" in h.rules(h.call(number, duration=30))


def test_high_risk_lists_can_be_extended_and_excluded() -> None:
    """A user's own prefix list adds to the built-in one; an excluded destination stays quiet."""
    h = Harness({"high_risk": {"prefixes": ["+44870"], "exclude_numbers": ["+1876"]}})
    assert h.rules(h.call("9011448701234567", duration=30)) == ["high_risk"]
    assert h.call("918765550100", duration=30) == []


def test_after_hours_respects_weekends_holidays_and_configured_hours() -> None:
    """International calls on Saturday and on a configured holiday alert; at 20:30 with hours to 21:00 they
    do not."""
    h = Harness({"business_hours": {"hours": "08:00-21:00", "holidays": ["2025-03-05"]}})
    saturday = datetime(2025, 3, 8, 11, 0, tzinfo=TZ)
    assert h.rules(h.call("9011442079460000", at=saturday)) == ["after_hours"]
    assert h.rules(h.call("9011442079460000", at=DAY + timedelta(days=1), extension="301")) == ["after_hours"]
    assert h.call("9011442079460000", at=DAY.replace(hour=20, minute=30), extension="302") == []


def test_long_and_expensive_calls() -> None:
    """A 61-minute national call raises long_call; a call costing 75 raises expensive_call; 59 min and 49 do not."""
    h = Harness()
    assert h.rules(h.call("914155550100", duration=61 * 60)) == ["long_call"]
    just_over = h.call("914155550100", duration=3629, extension="205")  # read "60 min (limit 60 min)" rounded
    assert [a["reason"].split(" between ")[0] for a in just_over] == ["outbound call of 1:00:29"]
    assert h.call("914155550100", duration=59 * 60, extension="202") == []
    assert h.rules(h.call("914155550100", cost=Decimal("75.00"), extension="203")) == ["expensive_call"]
    assert h.call("914155550100", cost=Decimal("49.99"), extension="204") == []


def test_velocity_per_extension_fires_once_then_snoozes() -> None:
    """41 external calls in an hour from one extension: one velocity alert, not one per call after the 40th."""
    h = Harness()
    raised = []
    for i in range(60):
        raised += h.call(f"91415555{i:04d}", at=DAY + timedelta(seconds=50 * i), duration=20)
    assert [(a["rule"], a["facts"]["scope"]) for a in raised] == [("velocity", "ext")]
    assert raised[0]["facts"]["value"] == 41


def test_velocity_counts_international_minutes_and_the_whole_site() -> None:
    """Several extensions sharing 11 hours of international talk in an hour trip the site-wide limit once;
    one extension's 3 hours trips its own."""
    h = Harness({"after_hours": {"enabled": False}})
    raised = []
    for i in range(11):
        raised += h.call("9011442079460000", at=DAY + timedelta(minutes=5 * i), duration=3600,
                         extension=f"2{i:02d}")
    assert [a["facts"]["scope"] for a in raised if a["rule"] == "velocity"] == ["site-intl"]
    h = Harness({"long_call": {"enabled": False}})
    raised = [a for i in range(3) for a in h.call("9011442079460000", at=DAY + timedelta(minutes=i),
                                                  duration=3000)]
    assert [a["facts"]["scope"] for a in raised] == ["ext-intl"]


def test_short_calls_in_a_row_to_one_number() -> None:
    """Five 3-second calls in a row to one number raise short_calls; a longer call in between resets it."""
    h = Harness()
    raised = []
    for i in range(4):
        raised += h.call("914155550199", at=DAY + timedelta(minutes=i), duration=3)
    raised += h.call("914155550199", at=DAY + timedelta(minutes=4), duration=300)  # a real conversation
    for i in range(4):
        raised += h.call("914155550199", at=DAY + timedelta(minutes=10 + i), duration=3)
    assert raised == []
    assert h.rules(h.call("914155550199", at=DAY + timedelta(minutes=15), duration=0)) == ["short_calls"]


def test_short_calls_count_within_a_sliding_window() -> None:
    """The streak restarted at its first call once ``within_minutes`` (here 10) had passed: five short calls in
    ten minutes after others earlier never alerted. The window slides."""
    h = Harness({"short_calls": {"within_minutes": 10}})
    raised = [a for m in (0, 20, 25, 28, 31, 33) for a in
              h.call("914155550199", at=DAY + timedelta(minutes=m), duration=5)]
    assert raised == []
    assert h.rules(h.call("914155550199", at=DAY + timedelta(minutes=35), duration=5)) == ["short_calls"]


def test_a_late_call_outside_the_hour_does_not_count_towards_velocity() -> None:
    """40 calls in the hour, then yesterday's call arriving late (a saved buffer): it is not in the window."""
    h = Harness()
    raised = [a for i in range(40) for a in h.call(f"91415555{i:04d}", at=DAY + timedelta(minutes=i), duration=20)]
    assert raised == []
    assert h.call("914155559999", at=DAY - timedelta(days=1), duration=20) == []
    assert h.rules(h.call("914155558888", at=DAY + timedelta(minutes=41), duration=20)) == ["velocity"]


def test_wangiri_call_back_after_a_missed_one_ring_call_from_abroad() -> None:
    """A missed one-ring call from +44 then a call back to it raises wangiri; a call back after an answered
    call, or to a number that rang long, does not."""
    h = Harness({"after_hours": {"enabled": False}})
    assert h.call("+442079460001", direction=Direction.INBOUND, duration=0, ring=2) == []
    assert h.call("+442079460002", direction=Direction.INBOUND, duration=120, ring=2) == []
    assert h.call("+442079460003", direction=Direction.INBOUND, duration=0, ring=25) == []
    later = DAY + timedelta(hours=2)
    assert h.call("9011442079460002", at=later) == []
    assert h.call("9011442079460003", at=later) == []
    alerts = h.call("9011442079460001", at=later)
    assert h.rules(alerts) == ["wangiri"] and alerts[0]["severity"] == "critical"


def test_budget_warns_at_80_and_goes_critical_at_100_once_per_period() -> None:
    """A department's daily budget of 100: a warning when spend passes 80, critical past 100, then silence
    for the rest of the day; the next day starts again."""
    h = Harness({"expensive_call": {"enabled": False}, "budget": {"departments": {"Sales": {"daily": "100"}}}},
                departments=[{"name": "Sales", "extensions": ["200-209"]}])
    seen, reasons = [], []
    for i in range(8):
        got = h.call("914155550100", at=DAY + timedelta(minutes=i), cost=Decimal(30), extension="205")
        seen += [(a["rule"], a["severity"], a["department"]) for a in got]
        reasons += [a["reason"] for a in got]
    assert seen == [("budget", "warning", "Sales"), ("budget", "critical", "Sales")]
    assert all("of its daily budget of 100" in r for r in reasons), reasons  # not "dayly"
    assert h.call("914155550100", at=DAY + timedelta(minutes=9), cost=Decimal(30), extension="301") == []
    nxt = h.call("914155550100", at=DAY + timedelta(days=1), cost=Decimal(90), extension="201")
    assert [(a["severity"], a["facts"]["period"]) for a in nxt] == [("warning", "2025-03-05")]


def test_budget_from_department_settings_and_stored_spend() -> None:
    """A monthly budget set on [[departments]] (``budget``) counts the spend stored before a restart."""
    h = Harness({"expensive_call": {"enabled": False}},
                departments=[{"name": "Ops", "extensions": ["401"], "budget": "1000"}])
    h.engine.seed_spend([("401", "2025-03-01", Decimal(850))])
    alerts = h.call("914155550100", cost=Decimal(20), extension="401")
    assert [(a["rule"], a["severity"]) for a in alerts] == [("budget", "warning")]


def test_snooze_holds_for_the_same_extension_and_lapses_after_it() -> None:
    """Ten night calls abroad from one extension within the hour: one after_hours alert; another extension
    gets its own; after the snooze, the same extension alerts again."""
    h = Harness()
    raised = []
    for i in range(10):
        raised += h.call("9011442079460000", at=NIGHT + timedelta(minutes=3 * i), duration=60)
    raised += h.call("9011442079460000", at=NIGHT, extension="777")
    raised += h.call("9011442079460000", at=NIGHT + timedelta(minutes=61), duration=60)
    assert [(a["rule"], a["extension"]) for a in raised] == [
        ("after_hours", "201"), ("after_hours", "777"), ("after_hours", "201")]
    assert h.engine.stats.snoozed["after_hours"] == 9


def test_excluded_extensions_are_ignored_by_every_rule() -> None:
    """The global exclusion list silences a fax extension entirely."""
    h = Harness({"exclude_extensions": ["299"]})
    assert h.call("918095551234", at=NIGHT, duration=3 * 3600, extension="299") == []


def test_a_resent_line_raises_nothing_and_counts_once() -> None:
    """The same call uid twice (a PBX re-sending its buffer): the second time, no alert and no window count."""
    h = Harness({"velocity": {"extension_calls": 2}})
    assert h.call("914155550100", uid="u1") == []
    assert h.call("914155550100", uid="u1") == []
    assert h.call("914155550100", uid="u1") == []
    assert h.call("914155550101", uid="u2") == []
    assert h.rules(h.call("914155550102", uid="u3")) == ["velocity"]


def test_alerts_disabled_means_no_rules() -> None:
    """[alerts] enabled = false: nothing, even for the worst call."""
    h = Harness({"enabled": False})
    assert h.call("918095551234", at=NIGHT, duration=3 * 3600) == []


def test_alert_ids_are_stable_for_the_same_call() -> None:
    """Two engines (a restart) give the same alert id for the same call: the outbox keeps one."""
    a = Harness().call("918095551234", at=NIGHT, uid="avaya-ipo:abc")
    b = Harness().call("918095551234", at=NIGHT, uid="avaya-ipo:abc")
    assert [x["id"] for x in a] == [x["id"] for x in b] and len(a) == 2


def test_source_down_once_per_outage_and_parse_error_rate() -> None:
    """A source down for over 10 minutes raises one alert per outage; 10 % bad lines raise parse_errors."""
    h = Harness()
    eng = h.engine
    t0 = 1_700_000_000.0
    rows = []
    for i in range(0, 1500, 5):
        rows += eng.check_sources([SourceSnapshot("pbx", False, 0, 0)], t0 + i)
    assert [r.rule for r in rows] == ["source_down"]
    back = eng.check_sources([SourceSnapshot("pbx", True, 0, 0)], t0 + 1600)
    assert [json.loads(r.payload)["state"] for r in back] == ["resolved"]  # the source came back
    assert eng.check_sources([SourceSnapshot("pbx", True, 0, 0)], t0 + 1605) == []
    rows = [r for i in range(1, 200) for r in eng.check_sources([SourceSnapshot("pbx", False, 0, 0)],
                                                                 t0 + 1600 + 5 * i)]
    assert [r.rule for r in rows] == ["source_down"]  # the second outage
    good = [SourceSnapshot("pbx", True, 100 * i, 1 * i) for i in range(1, 5)]
    assert [json.loads(r.payload)["state"] for i, s in enumerate(good)
            for r in eng.check_sources([s], t0 + 3000 + i)] == ["resolved"]  # the second outage's end
    bad = eng.check_sources([SourceSnapshot("pbx", True, 500, 50)], t0 + 3010)
    assert [r.rule for r in bad] == ["parse_errors"]
    assert json.loads(bad[0].payload)["source"] == "pbx"


def test_a_source_back_up_publishes_the_resolved_event_of_its_outage() -> None:
    """source_down, then the source connects again: a resolved event that names the alert it resolves, with
    times in ISO 8601 with the site's offset (never a Unix float, never a local time without an offset). An
    automation could not clear its "PBX down" state without it."""
    eng = Harness().engine
    t0 = 1_700_000_000.0
    raised = [r for i in range(0, 700, 5) for r in eng.check_sources([SourceSnapshot("pbx", False, 0, 0, t0 - 60)],
                                                                       t0 + i)]
    down = json.loads(raised[0].payload)
    assert (down["state"], down["event_type"], down["resolves"]) == ("raised", "source_down", None)
    assert down["facts"]["down_since"] == "2023-11-14T17:13:20-05:00"
    assert "last data at 2023-11-14T17:12:20-05:00" in down["reason"]
    back = [json.loads(r.payload) for r in eng.check_sources([SourceSnapshot("pbx", True, 0, 0)], t0 + 900)]
    assert [(b["rule"], b["state"], b["event_type"], b["resolves"], b["severity"]) for b in back] == [
        ("source_down", "resolved", "source_down_resolved", down["id"], "critical")]
    assert back[0]["id"] == down["id"] + ":resolved" and back[0]["source"] == "pbx"
    assert back[0]["facts"]["up_since"] == "2023-11-14T17:28:20-05:00"


def test_a_source_back_before_the_alert_resolves_nothing() -> None:
    """A blip shorter than the rule's minutes raised nothing, so its end publishes nothing either."""
    eng = Harness().engine
    t0 = 1_700_000_000.0
    assert eng.check_sources([SourceSnapshot("pbx", False, 0, 0)], t0) == []
    assert eng.check_sources([SourceSnapshot("pbx", True, 0, 0)], t0 + 60) == []


def test_parse_failures_that_stop_publish_one_resolved_event() -> None:
    """A source over the parse-failure limit raises parse_errors; once its rate in the window is back under the
    limit, one resolved event follows (and only one)."""
    eng = Harness({"parse_errors": {"window_minutes": 1}}).engine
    t0 = 1_700_000_000.0
    bad = eng.check_sources([SourceSnapshot("pbx", True, 100, 50)], t0)
    assert [json.loads(r.payload)["state"] for r in bad] == ["raised"]
    assert eng.check_sources([SourceSnapshot("pbx", True, 120, 70)], t0 + 5) == []  # still failing (snoozed)
    good = [r for i in range(1, 20) for r in eng.check_sources([SourceSnapshot("pbx", True, 120 + 50 * i, 70)],
                                                                 t0 + 5 + 10 * i)]
    assert [(json.loads(r.payload)["state"], json.loads(r.payload)["resolves"]) for r in good] == [
        ("resolved", json.loads(bad[0].payload)["id"])]


def test_a_long_parse_failure_raises_once_and_its_one_resolution_closes_it() -> None:
    """Three hours at 50 % bad lines raised an alert an hour (past each snooze) under a new id, and only the last
    was resolved: the others stayed open in the inbox. One episode is one alert and one resolution."""
    eng = Harness({"parse_errors": {"window_minutes": 15}}).engine
    t0 = 1_700_000_000.0
    events = [json.loads(r.payload) for i in range(0, 3 * 3600, 60)
              for r in eng.check_sources([SourceSnapshot("pbx", True, 100 * (i // 60 + 1), 50 * (i // 60 + 1))],
                                         t0 + i)]
    assert [e["state"] for e in events] == ["raised"]
    lines, errors = 100 * 181, 50 * 180
    for i in range(1, 40):  # good lines from now on: back under the limit within the window
        events += [json.loads(r.payload) for r in eng.check_sources(
            [SourceSnapshot("pbx", True, lines + 100 * i, errors)], t0 + 3 * 3600 + 60 * i)]
    assert [(e["state"], e.get("resolves")) for e in events] == [("raised", None), ("resolved", events[0]["id"])]


def test_a_budget_alert_is_resolved_when_its_period_ends() -> None:
    """A daily budget passed today: at the site's next midnight the periodic check resolves the day's alert
    (the latest level raised); the month's alert is not resolved then."""
    h = Harness({"expensive_call": {"enabled": False},
                 "budget": {"departments": {"Sales": {"daily": "100", "monthly": "150"}}}},
                departments=[{"name": "Sales", "extensions": ["200-209"]}])
    raised = h.call("914155550100", at=DAY, cost=Decimal(120), extension="205")
    assert [(a["severity"], a["facts"]["kind"], a["cost"]) for a in raised] == [
        ("critical", "day", "120.00"), ("warning", "month", "120.00")]
    eng = h.engine
    assert eng.check_periods((DAY + timedelta(hours=13)).timestamp()) == []  # 23:00 the same day
    ended = [json.loads(r.payload) for r in eng.check_periods((DAY + timedelta(hours=14)).timestamp())]
    assert [(e["state"], e["resolves"], e["department"], e["severity"]) for e in ended] == [
        ("resolved", raised[0]["id"], "Sales", "critical")]
    assert eng.check_periods((DAY + timedelta(hours=15)).timestamp()) == []  # once
    month_end = [json.loads(r.payload) for r in eng.check_periods(datetime(2025, 4, 1, 0, 5, tzinfo=TZ).timestamp())]
    assert [e["resolves"] for e in month_end] == [raised[1]["id"]]


def test_a_us_site_calling_its_own_premium_900_line_is_high_risk() -> None:
    """+1 900 is in the built-in high-risk list; a US site dropped it as one of "its own NANP area codes"
    (phonenumbers files 900 under US), so only the premium class caught it."""
    us = Harness({"high_risk": {"classes": []}, "after_hours": {"enabled": False}})
    assert us.rules(us.call("919005551234", duration=30)) == ["high_risk"]
