"""The alert engine's hot path gives what the plain one gives: rules picked by the call's direction, and the
rules' view of a call built without its frozen ``__init__``, against every rule on every call and ``RatedCall(...)``.
"""

from __future__ import annotations

import pickle
from dataclasses import fields
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smdrd.alerts.engine import AlertEngine
from smdrd.alerts.feature import compile_settings
from smdrd.alerts.rules import AlertState, RatedCall, RuleSet, _Window
from smdrd.config import Settings
from smdrd.journal import Alert, JournalEntry
from smdrd.journal import RatedCall as JournalCall
from smdrd.rating import Rater
from smdrd.record import CallRecord, Direction

TZ = ZoneInfo("America/New_York")
START = datetime(2025, 3, 7, 17, 0, tzinfo=TZ)  # a Friday afternoon: calls on both sides of closing time
#: every call rule on, with limits a few calls reach (the budget rules through the department of 201 and 202).
SETTINGS = Settings.model_validate({
    "site": {"timezone": "America/New_York", "country": "US", "area_code": "212"},
    "alerts": {
        "long_call": {"minutes": 2, "directions": ["inbound", "outbound"]},
        "expensive_call": {"cost": "0.50"},
        "velocity": {"extension_calls": 3, "extension_international_minutes": 4, "site_calls": 6,
                     "site_international_minutes": 9, "window_minutes": 30},
        "short_calls": {"count": 2, "max_seconds": 20},
        "after_hours": {"snooze_minutes": 5, "exclude_numbers": ["+1212"]},
        "budget": {"departments": {"Sales": {"daily": "1.00", "monthly": "5.00"}}},
    },
    "departments": [{"name": "Sales", "extensions": ["201", "202"]}],
})
NUMBERS = ["12125551234", "918095550100", "9011442079460000", "+442079460000", "911", "205", "ANONYMOUS",
           "9011537123456", "18005551234"]
RATER = Rater.from_config(SETTINGS.site, SETTINGS.tariff)

calls = st.lists(st.tuples(
    st.sampled_from(list(Direction)), st.sampled_from(NUMBERS), st.sampled_from(["201", "202", "305", ""]),
    st.integers(0, 400), st.integers(0, 24 * 60 * 3), st.booleans(), st.none() | st.integers(0, 30),
    st.none() | st.decimals(Decimal(0), Decimal(2), places=2)), max_size=40)


def _engine() -> AlertEngine:
    rules, directory = compile_settings(SETTINGS)
    return AlertEngine(rules, TZ, site="hq", directory=directory, clock=lambda: 1_700_000_000.0)


def _run(engine: AlertEngine, sequence: list[Any]) -> list[list[Alert]]:
    out = []
    for i, (direction, number, extension, duration, minutes, answered, ring, cost) in enumerate(sequence):
        record = CallRecord(format="test", start=START + timedelta(minutes=minutes), duration=duration,
                            direction=direction, extension=extension, number=number, ring=ring,
                            answered=answered)
        rating: Any = RATER.rate(record)
        if cost is not None:
            rating = type(rating)(rating.e164, rating.call_class, "r", "1", cost, rating.currency, rating.region)
        out.append(list(engine.observe(record, rating, f"u{i % 30}")))  # some uids come again: re-sent lines
    return out


def _state(engine: AlertEngine) -> dict[str, Any]:
    """The engine's state as plain data (a sliding window compares by its events and total)."""
    def plain(value: Any) -> Any:
        if isinstance(value, _Window):
            return list(value.events), value.total
        if isinstance(value, dict):
            return [(k, plain(v)) for k, v in value.items()]  # in order: the oldest is forgotten first
        if isinstance(value, tuple):
            return tuple(plain(v) for v in value)
        return value
    return {f.name: plain(getattr(engine.state, f.name)) for f in fields(engine.state)}


@settings(max_examples=60, deadline=None)
@given(calls)
def test_rules_by_direction_raise_what_every_rule_on_every_call_raises(sequence: list[Any]) -> None:
    indexed = _engine()
    fast = _run(indexed, sequence)
    plain = _engine()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(RuleSet, "for_direction", lambda self, direction: self.calls)
        slow = _run(plain, sequence)
    assert fast == slow
    assert _state(indexed) == _state(plain)  # windows, streaks, spend, snoozes: the same after the same calls
    assert indexed.stats == plain.stats


def test_each_rule_is_skipped_only_for_directions_it_ignores() -> None:
    """Which rules an inbound, outbound and internal call walk (the after-hours rule: outbound only)."""
    rules = _engine().rules
    names = {d: [a.rule.name for a in rules.for_direction(d)] for d in ("inbound", "outbound", "internal")}
    assert names["outbound"] == [a.rule.name for a in rules.calls]
    assert names["inbound"] == ["long_call", "expensive_call", "wangiri", "budget", "budget_forecast"]
    assert names["internal"] == ["expensive_call", "budget", "budget_forecast"]
    assert rules.for_direction("sideways") == rules.calls


@settings(max_examples=40, deadline=None)
@given(st.tuples(st.sampled_from(list(Direction)), st.sampled_from(NUMBERS), st.sampled_from(["201", "305", ""]),
                 st.integers(0, 5000), st.none() | st.integers(0, 99), st.booleans()))
def test_the_rules_view_of_a_call_is_the_plain_constructors(case: tuple[Any, ...]) -> None:
    direction, number, extension, duration, ring, rated = case
    engine = _engine()
    record = CallRecord(format="test", start=START.replace(tzinfo=None), duration=duration, direction=direction,
                        extension=extension, number=number, ring=ring)
    rating = RATER.rate(record) if rated else None
    local = START
    expected = RatedCall(
        uid="u", start=local, ts=local.timestamp(), duration=duration, ring=ring, direction=direction.value,
        answered=True, extension=extension, number=number, digits="".join(c for c in number if c.isdigit()),
        e164=rating.e164 if rating else "", call_class=rating.call_class if rating else "unknown",
        cost=rating.cost if rating else Decimal(0), currency=rating.currency if rating else "",
        department="Sales" if extension == "201" else None, region=rating.region if rating else None)
    made = engine.rated_call(record, rating, "u")
    assert made == expected
    assert type(made) is RatedCall and repr(made) == repr(expected)


def test_journal_entries_come_back_from_a_pickle_equal() -> None:
    """What the worker sends the daemon is rebuilt without the frozen __init__ (`smdrd.frozen`): equal fields."""
    record = CallRecord(format="test", start=START, duration=61, direction=Direction.OUTBOUND, extension="201",
                        number="12125551234", ring=3, extra={"k": "v"})
    entry = JournalEntry("pbx", "10.0.0.1:9000", 1, "test", b"raw", "parsed", None,
                         (JournalCall("u", record, RATER.rate(record)),), (Alert("a", "r", "warning", 2, "{}"),))
    back = pickle.loads(pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL))
    assert back == entry and type(back) is JournalEntry
    assert type(back.calls[0]) is JournalCall and type(back.calls[0].record) is CallRecord
    assert back.calls[0].record == record and back.alerts[0] == entry.alerts[0]


#: `SETTINGS` with every flood rule snoozed: the velocity and after-hours findings of most calls are held back.
SNOOZED = Settings.model_validate({**SETTINGS.model_dump(mode="json", exclude={"alerts"}), "alerts": {
    **SETTINGS.alerts.model_dump(mode="json"),
    "velocity": {**SETTINGS.alerts.velocity.model_dump(mode="json"), "snooze_minutes": 20},
    "after_hours": {**SETTINGS.alerts.after_hours.model_dump(mode="json"), "snooze_minutes": 90}}})


@settings(max_examples=60, deadline=None)
@given(calls)
def test_findings_held_before_they_are_built_are_the_ones_the_snooze_drops(sequence: list[Any]) -> None:
    """`AlertState.held` (a flood rule skips building what its snooze drops) changes no alert, state or count."""
    def engine() -> AlertEngine:
        rules, directory = compile_settings(SNOOZED)
        return AlertEngine(rules, TZ, site="hq", directory=directory, clock=lambda: 1_700_000_000.0)

    early = engine()
    fast = _run(early, sequence)
    late = engine()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(AlertState, "held", lambda self, rule, key, ts: False)
        slow = _run(late, sequence)
    assert fast == slow
    assert _state(early) == _state(late)
    assert early.stats == late.stats


def test_a_snoozed_flood_builds_no_finding() -> None:
    """After the first, an extension's after-hours calls within the snooze are held before their finding is built:
    counted as snoozed, and no alert."""
    rules, directory = compile_settings(SNOOZED)
    engine = AlertEngine(rules, TZ, site="hq", directory=directory, clock=lambda: 1_700_000_000.0)
    night = START.replace(hour=23)
    raised, held = [], []
    real = AlertState.held

    def spy(state: AlertState, rule: str, key: str, ts: float) -> bool:
        answer = real(state, rule, key, ts)
        held.append((rule, answer))
        return answer

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(AlertState, "held", spy)
        for i in range(5):
            record = CallRecord(format="test", start=night + timedelta(minutes=i), duration=60,
                                direction=Direction.OUTBOUND, extension="305", number="918095550100")
            raised += [a.rule for a in engine.observe(record, RATER.rate(record), f"n{i}")]
    assert raised.count("after_hours") == 1
    assert held.count(("after_hours", True)) == 4
    assert engine.stats.snoozed["after_hours"] == 4
    assert engine.state.held_back is engine.stats.snoozed


def test_no_departments_configured_means_no_department_look_up() -> None:
    """Without ``[[departments]]`` the engine does not search the (empty) directory for each call's department."""
    bare = Settings.model_validate({"site": {"timezone": "America/New_York", "country": "US"}})
    rules, directory = compile_settings(bare)
    engine = AlertEngine(rules, TZ, site="hq", directory=directory)
    record = CallRecord(format="test", start=START, duration=61, direction=Direction.OUTBOUND, extension="201",
                        number="12125551234")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(type(directory), "department", lambda *a: pytest.fail("looked up"))
        assert engine.rated_call(record, None, "u").department is None
    assert _engine().rated_call(record, None, "u").department == "Sales"  # with departments: looked up


def test_the_core_builds_the_entry_the_plain_constructors_build() -> None:
    """`smdrd.core.process_frame` builds its entry and calls positionally (`smdrd.journal.new_entry`): the same
    objects as ``JournalEntry(...)`` and ``RatedCall(...)``, alerts included."""
    from smdrd.core import process_frame
    from smdrd.parsers.avaya_ipo import AvayaIPOfficeParser
    from smdrd.parsing import ParserContext

    parser = AvayaIPOfficeParser(ParserContext(timezone=TZ))
    raw = (b"2025/03/07 23:30:22,00:01:01,0,201,O,9011442079460000,9011442079460000,,0,1005727,0,E201,A,T9005,"
           b"Line 5.0,0,0,,,,,,,,,,,,,")
    entry = process_frame(raw, parser, "utf-8", source="pbx", peer="p", received_at=7, rate=RATER.rate,
                          observe=_engine().observe)
    plain = JournalEntry(entry.source, entry.peer, entry.received_at, entry.format, entry.raw, entry.status,
                         entry.error, tuple(JournalCall(c.uid, c.record, c.rating) for c in entry.calls),
                         entry.alerts)
    assert entry == plain and repr(entry) == repr(plain) and type(entry) is JournalEntry
    assert entry.status == "parsed" and type(entry.calls[0]) is JournalCall and entry.alerts
