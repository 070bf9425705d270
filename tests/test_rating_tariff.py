"""Compiled tariffs and the Rater: matching, time bands, directions, decks, config, and their invariants."""

from __future__ import annotations

import textwrap
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smdrd.config import SiteConfig, TariffConfig, load_config
from smdrd.errors import ConfigError, TariffError
from smdrd.rating import (
    Band,
    Dialplan,
    PrefixTable,
    Rater,
    Rule,
    TariffSourceError,
    build_tariff,
    parse_deck,
)
from smdrd.record import CallRecord, Direction

FIXTURES = Path(__file__).parent / "fixtures" / "rating"
LONDON = ZoneInfo("Europe/London")
UK_SITE = SiteConfig(country="GB", area_code="020", timezone="Europe/London")
MONDAY_10 = datetime(2026, 3, 2, 10, 0, tzinfo=LONDON)
PEAK = Band("peak", frozenset(range(5)), 8 * 60, 18 * 60)


def rater(*rules: Rule, **kwargs: object) -> Rater:
    tariff = build_tariff(rules, currency="GBP", **kwargs)  # type: ignore[arg-type]
    return Rater(Dialplan("GB", "020", ("9",)), tariff, LONDON)


def rule(name: str, *prefixes: str, rate: str = "0.01", order: int = 0, **kwargs: object) -> Rule:
    return Rule(name, prefixes, rate=Decimal(rate), order=order, **kwargs)  # type: ignore[arg-type]


def test_longest_prefix_wins() -> None:
    """A UK mobile rule (447) must beat the UK-wide rule (44) for a mobile number."""
    r = rater(rule("UK", "44", order=0), rule("UK mobile", "447", rate="0.10", order=1))
    rating = r.rate_call("907911123456", MONDAY_10, 60)
    assert (rating.rule, rating.prefix, rating.cost) == ("UK mobile", "447", Decimal("0.10"))
    assert r.rate_call("902079460000", MONDAY_10, 60).rule == "UK"


def test_first_match_keeps_list_order() -> None:
    """In first-match mode an earlier, shorter rule wins, as in the PBX's ordered list."""
    r = rater(rule("UK", "44", order=0), rule("UK mobile", "447", order=1), mode="first-match")
    assert r.rate_call("907911123456", MONDAY_10, 60).rule == "UK"


def test_more_specific_band_beats_always_on_same_prefix() -> None:
    """Peak pricing applies in peak hours; the catch-all rule the rest of the time."""
    r = rater(rule("UK", "44", rate="0.01", order=0), rule("UK peak", "44", rate="0.05", order=1, band=PEAK))
    assert r.rate_call("902079460000", MONDAY_10, 60).rule == "UK peak"
    assert r.rate_call("902079460000", datetime(2026, 3, 2, 19, 0, tzinfo=LONDON), 60).rule == "UK"
    assert r.rate_call("902079460000", datetime(2026, 3, 7, 10, 0, tzinfo=LONDON), 60).rule == "UK"


def test_calls_are_rated_in_site_time() -> None:
    """17:30 UTC in summer is 18:30 in London: off-peak, although 17:30 is peak."""
    r = rater(rule("UK", "44", order=0), rule("UK peak", "44", order=1, band=PEAK))
    assert r.rate_call("902079460000", datetime(2026, 7, 6, 17, 30, tzinfo=UTC), 60).rule == "UK"
    assert r.rate_call("902079460000", datetime(2026, 7, 6, 16, 30, tzinfo=UTC), 60).rule == "UK peak"


def test_holiday_band() -> None:
    """On a configured holiday, a holidays=exclude band does not apply and a holidays=only band does."""
    weekdays = Band("weekday", frozenset(range(5)), holidays="exclude")
    holiday = Band("holiday", holidays="only")
    r = rater(rule("weekday", "44", order=0, band=weekdays), rule("holiday", "44", order=1, band=holiday),
              holidays=[date(2026, 12, 25)])
    assert r.rate_call("902079460000", datetime(2026, 12, 25, 10, tzinfo=LONDON), 60).rule == "holiday"
    assert r.rate_call("902079460000", datetime(2026, 12, 24, 10, tzinfo=LONDON), 60).rule == "weekday"


def test_validity_dates() -> None:
    """A new price list takes over on its first day; the old one stops after its last."""
    old = rule("old", "44", rate="0.02", order=0, valid_until=date(2026, 3, 31))
    new = rule("new", "44", rate="0.01", order=1, valid_from=date(2026, 4, 1))
    r = rater(old, new)
    assert r.rate_call("902079460000", datetime(2026, 3, 31, 23, 59, tzinfo=LONDON), 60).rule == "old"
    assert r.rate_call("902079460000", datetime(2026, 4, 1, 0, 0, tzinfo=LONDON), 60).rule == "new"


def test_trunk_rules() -> None:
    """A rule for one carrier's trunk applies only to calls on that trunk."""
    r = rater(rule("any", "44", order=0), rule("sip", "44", order=1, trunks=frozenset({"SIP1"})))
    assert r.rate_call("902079460000", MONDAY_10, 60, trunk="SIP1").rule == "sip"
    assert r.rate_call("902079460000", MONDAY_10, 60, trunk="PRI").rule == "any"


def test_inbound_unanswered_and_internal_cost_nothing() -> None:
    """Only answered outbound calls cost money unless a rule says otherwise."""
    r = rater(rule("UK", "44", rate="0.10"))
    inbound = r.rate_call("02079460000", MONDAY_10, 600, direction="inbound")
    assert (inbound.cost, inbound.rule, inbound.call_class) == (Decimal(0), "", "local")
    assert r.rate_call("902079460000", MONDAY_10, 600, answered=False).cost == 0
    assert r.rate_call("201", MONDAY_10, 600).call_class == "internal"
    assert r.rate_call("902079460000", MONDAY_10, 600, direction="internal").cost == 0


def test_inbound_rule() -> None:
    """An inbound rule (a freephone number the site pays for) prices inbound calls."""
    r = rater(rule("freephone in", "44", rate="0.02", directions=frozenset({"inbound"})))
    assert r.rate_call("02079460000", MONDAY_10, 60, direction="inbound").cost == Decimal("0.02")
    assert r.rate_call("902079460000", MONDAY_10, 60).cost == 0


def test_rule_class_overrides_phonenumbers() -> None:
    """A rule's call_class is what reports show."""
    r = rater(rule("special", "4420", call_class="special"))
    assert r.rate_call("902079460000", MONDAY_10, 60).call_class == "special"


def test_emergency_calls_are_free_even_with_country_rule() -> None:
    """999 must not be priced by the UK-wide rule."""
    rating = rater(rule("UK", "44", rate="1")).rate_call("9999", MONDAY_10, 600)
    assert (rating.call_class, rating.cost, rating.rule) == ("emergency", Decimal(0), "")


def test_split_prices_each_band_piece() -> None:
    """A call from 17:58 to 18:05 pays 2 peak minutes and 5 off-peak ones when split is on."""
    peak = rule("peak", "44", rate="0.10", order=1, band=PEAK)
    offpeak = rule("offpeak", "44", rate="0.01", order=0)
    start = datetime(2026, 3, 2, 17, 58, tzinfo=LONDON)
    assert rater(peak, offpeak).rate_call("902079460000", start, 420).cost == Decimal("0.70")
    split = rater(peak, offpeak, split=True)
    assert split.rate_call("902079460000", start, 420).cost == Decimal("0.25")
    _, breakdown = split.explain("902079460000", start, 420)
    assert [(p.rule, p.units) for p in breakdown.pieces] == [("peak", 2), ("offpeak", 5)]


def test_record_interface() -> None:
    """The daemon's call: Rater.rate(CallRecord) -> Rating."""
    r = Rater.from_config(UK_SITE, TariffConfig(currency="GBP", decks=[FIXTURES / "uk.csv"]))
    record = CallRecord(format="x", start=MONDAY_10, duration=125, direction=Direction.OUTBOUND,
                        extension="201", number="907711123456", trunk="1")
    rating = r.rate(record)
    assert rating.to_json() == {"e164": "+447711123456", "call_class": "mobile", "rule": "UK mobile Vodafone",
                                "prefix": "4477", "cost": "0.36", "currency": "GBP", "region": "GB"}


def test_default_tariff_classifies_without_prices() -> None:
    """A user who configured no tariff still gets call classes, at cost 0."""
    rating = Rater.from_config(UK_SITE).rate_call("907911123456", MONDAY_10, 600)
    assert (rating.call_class, rating.cost, rating.rule) == ("mobile", Decimal(0), "")


def test_inline_rules_come_before_decks(tmp_path: Path) -> None:
    """Inline rules override a deck line with the same prefix (and come first in first-match mode)."""
    config = TariffConfig(currency="GBP", decks=[FIXTURES / "uk.csv"],
                          rules=[{"name": "my London", "prefixes": ["4420"], "rate": "0.001"}])  # type: ignore[list-item]
    assert Rater.from_config(UK_SITE, config).rate_call("902079460000", MONDAY_10, 60).rule == "my London"


def test_config_file_with_decks_bands_and_rules(tmp_path: Path) -> None:
    """A full [tariff] section loads, with a relative deck path resolved from the config's folder."""
    (tmp_path / "rates.csv").write_text("prefix,rate,band\n44,0.05,peak\n44,0.01,\n")
    cfg = tmp_path / "smdrd.toml"
    cfg.write_text(textwrap.dedent("""
        [site]
        country = "GB"
        timezone = "Europe/London"
        [tariff]
        currency = "GBP"
        decimals = 3
        decks = ["rates.csv"]
        holidays = [2026-12-25]
        [tariff.bands.peak]
        days = ["mon-fri"]
        hours = "08:00-18:00"
        holidays = "exclude"
        [[tariff.rules]]
        name = "mobiles"
        prefixes = ["+447"]
        rate = "0.1"
        billing_unit = 6
    """))
    settings_ = load_config(cfg, use_env=False)
    r = Rater.from_config(settings_.site, settings_.tariff, base_dir=tmp_path)
    assert r.rate_call("902079460000", MONDAY_10, 60).cost == Decimal("0.050")
    assert r.rate_call("902079460000", datetime(2026, 12, 25, 10, tzinfo=LONDON), 60).cost == Decimal("0.010")
    assert r.rate_call("907911123456", MONDAY_10, 7).cost == Decimal("0.200")
    assert len(r.tariff.digest) == 16


def test_toml_float_is_a_config_error(tmp_path: Path) -> None:
    """rate = 0.03 (a binary float) is refused, naming the key and saying to quote it."""
    cfg = tmp_path / "smdrd.toml"
    cfg.write_text('[[tariff.rules]]\nname = "x"\nprefixes = ["44"]\nrate = 0.03\n')
    with pytest.raises(ConfigError, match=r"tariff\.rules\[0\]\.rate.*quoted"):
        load_config(cfg, use_env=False)


def test_unknown_band_in_inline_rule_is_a_config_error() -> None:
    """A typo in a band name names the rule's index."""
    with pytest.raises(ValueError, match=r"rules\[0\]\.band: unknown band 'peek'"):
        TariffConfig(rules=[{"prefixes": ["44"], "band": "peek"}])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("prefix,rate\n44,0.01\n4420,zero\n", 3, "rate"),
        ("prefix,rate\n44,0.01\n\n# note\n44x,0.01\n", 5, "prefix"),
        ("prefix,rate\n44,\n", 2, "rate"),
        ("prefix,rate,billing_unit\n44,0.01,0\n", 2, "billing_unit"),
        ("prefix,rate,band\n44,0.01,night\n", 2, "unknown band"),
        ("prefix,rate,call_class\n44,0.01,cheap\n", 2, "call_class"),
        ("prefix,rate\n44,0.01,extra\n", 2, "cells"),
        ("prefix,price\n44,0.01\n", 1, "unknown column"),
        ("name,rate\nx,0.01\n", 1, "missing column 'prefix'"),
        ("prefix,rate,valid_from,valid_until\n44,0.01,2026-03-01,2026-02-01\n", 2, "before valid_from"),
    ],
)
def test_bad_deck_line_names_file_and_line(text: str, line: int, reason: str) -> None:
    """A bad deck says which file and which line, so the user can fix it (and the old tariff stays)."""
    with pytest.raises(TariffError, match=reason) as info:
        parse_deck(text.splitlines(keepends=True), "/etc/smdrd/rates.csv")
    assert isinstance(info.value, TariffSourceError)
    assert (info.value.source, info.value.line) == ("/etc/smdrd/rates.csv", line)
    assert str(info.value).startswith(f"/etc/smdrd/rates.csv:{line}: ")


def test_a_deck_past_the_rule_limit_is_refused_at_its_first_rule_too_many() -> None:
    """A deck is at most `MAX_RULES` rules (each costs the daemon memory; a bigger one is the wrong file): the
    limit itself is read, the next rule is named."""
    from smdrd.rating.deck import MAX_RULES

    lines = ["prefix,rate\n", *(f"{n},0.01\n" for n in range(10_000_000, 10_000_000 + MAX_RULES))]
    assert len(parse_deck(lines, "big.csv")) == MAX_RULES
    with pytest.raises(TariffSourceError, match=f"more than {MAX_RULES:,} rules") as info:
        parse_deck([*lines, "99,0.01\n"], "big.csv")
    assert info.value.line == MAX_RULES + 2


def test_bad_deck_file_through_config(tmp_path: Path) -> None:
    """Rater.from_config raises TariffError naming the deck file and line."""
    deck = tmp_path / "rates.csv"
    deck.write_text("prefix,rate\n44,0.01\n49,0,01\n")
    with pytest.raises(TariffError, match=rf"{deck}:3: "):
        Rater.from_config(UK_SITE, TariffConfig(decks=[deck]))
    with pytest.raises(TariffError, match=rf"^tariff.decks\[0\]: no deck at {tmp_path / 'missing.csv'}$"):
        Rater.from_config(UK_SITE, TariffConfig(decks=[tmp_path / "missing.csv"]))


# --- invariants -------------------------------------------------------------------------------------------

money = st.decimals(min_value=0, max_value=5, places=3)
rules_st = st.builds(
    lambda rate, unit, initial, icost, fee, minimum: Rule(
        "r", ("44",), rate=rate, billing_unit=unit, initial_time=initial, initial_cost=icost,
        connection_fee=fee, minimum_charge=minimum),
    money, st.sampled_from([1, 6, 30, 60]), st.integers(0, 120), money, money, money,
)


@settings(max_examples=200, deadline=None)
@given(rules_st, st.integers(0, 7200), st.integers(0, 600), st.booleans())
def test_cost_never_decreases_with_duration(r: Rule, seconds: int, more: int, split: bool) -> None:
    """A longer call never costs less (also when split across bands)."""
    offpeak = Rule("off", ("44",), rate=Decimal("0.001"), billing_unit=r.billing_unit, order=1)
    peak = Rule(r.name, r.prefixes, rate=r.rate, billing_unit=r.billing_unit, initial_time=r.initial_time,
                initial_cost=r.initial_cost, connection_fee=r.connection_fee, minimum_charge=r.minimum_charge,
                band=PEAK)
    rr = rater(peak, offpeak, split=split)
    start = datetime(2026, 3, 2, 17, 30, tzinfo=LONDON)
    assert rr.rate_call("902079460000", start, seconds).cost <= rr.rate_call("902079460000", start,
                                                                            seconds + more).cost


@settings(max_examples=100, deadline=None)
@given(rules_st, st.integers(0, 7200))
def test_equal_inputs_give_equal_costs(r: Rule, seconds: int) -> None:
    """Rating is deterministic, with or without the normalisation cache, and explain agrees with rate."""
    tariff = build_tariff([r], currency="GBP")
    cached = Rater(Dialplan("GB", "020"), tariff, LONDON)
    uncached = Rater(Dialplan("GB", "020"), tariff, LONDON, cache=False)
    a = cached.rate_call("902079460000", MONDAY_10, seconds)
    assert a == cached.rate_call("902079460000", MONDAY_10, seconds)
    assert a == uncached.rate_call("902079460000", MONDAY_10, seconds)
    assert cached.explain("902079460000", MONDAY_10, seconds)[1].cost == a.cost


digits = st.text(alphabet="1234", min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(digits, st.text(alphabet="1234", min_size=1, max_size=4), st.text(alphabet="1234", max_size=4))
def test_longer_prefix_beats_shorter(short: str, extra: str, tail: str) -> None:
    """Whatever the order, a longer matching prefix wins in longest-prefix mode."""
    longer = Rule("long", (short + extra,), order=0)
    shorter = Rule("short", (short,), order=1)
    for rules in ([longer, shorter], [shorter, longer]):
        tariff = build_tariff(rules)
        found = tariff.select(short + extra + tail, None, "outbound", "")
        assert found is not None
        assert found[0].name == "long"


@settings(max_examples=200, deadline=None)
@given(st.lists(digits, min_size=0, max_size=40), st.lists(st.text(alphabet="1234", max_size=9), max_size=20),
       st.sampled_from(["longest-prefix", "first-match"]))
def test_table_agrees_with_brute_force(prefixes: list[str], keys: list[str], mode: str) -> None:
    """The compiled prefix table picks the same rule as scanning every rule."""
    rules = [Rule(f"r{i}", (p,), order=i) for i, p in enumerate(prefixes)]
    tariff = build_tariff(rules, mode=mode)
    table = PrefixTable((p, i) for i, p in enumerate(prefixes))
    for key in keys:
        matching = [r for r in rules if key and key.startswith(r.prefixes[0])]
        if mode == "longest-prefix":
            expected = min(matching, key=lambda r: (-len(r.prefixes[0]), r.order), default=None)
        else:
            expected = min(matching, key=lambda r: r.order, default=None)
        found = tariff.select(key, None, "outbound", "")
        assert (found[0] if found else None) == expected
        longest = table.longest(key)
        lengths = [len(p) for p in prefixes if key.startswith(p)]
        assert (len(longest[0]) if longest else None) == (max(lengths) if lengths else None)


def test_example_deck_compiles() -> None:
    """The deck shipped in config/ stays valid (users copy it)."""
    example = Path(__file__).parent.parent / "config" / "rates.example.csv"
    r = Rater.from_config(UK_SITE, TariffConfig(currency="GBP", decks=[example]))
    rating = r.rate_call("907911123456", MONDAY_10, 31)  # 30/6: 0.025 for 30 s, then one 6 s unit
    assert (rating.rule, rating.cost) == ("UK mobile", Decimal("0.03"))


#: the nights the clocks change in London (forward at 01:00 UTC, back at 01:00 UTC) and New York.
CLOCK_CHANGES = [("Europe/London", datetime(2026, 3, 29, 1, tzinfo=UTC)),
                 ("Europe/London", datetime(2026, 10, 25, 1, tzinfo=UTC)),
                 ("America/New_York", datetime(2026, 3, 8, 7, tzinfo=UTC)),
                 ("America/New_York", datetime(2026, 11, 1, 6, tzinfo=UTC))]


@settings(max_examples=200, deadline=None)
@given(change=st.sampled_from(CLOCK_CHANGES), before=st.integers(-7200, 7200), duration=st.integers(1, 7200),
       edge=st.sampled_from(["00:30", "01:00", "01:30", "02:00", "02:30"]))
def test_a_split_call_over_a_clock_change_pays_each_minute_at_the_band_of_its_wall_clock(
        change: tuple[str, datetime], before: int, duration: int, edge: str) -> None:
    """A band edge in the hour the clocks skip was placed an hour late, one in the hour they repeat was kept
    once, and a call over the change kept the band it started in (Rater._cuts). Each started minute is now
    priced by the band its own start falls in on the wall clock."""
    from smdrd.rating.rules import parse_hours

    zone = ZoneInfo(change[0])
    night = Band("night", frozenset(range(7)), *parse_hours(f"{edge}-06:00"))
    rules = [Rule("night", ("447",), rate=Decimal("0.01"), band=night, order=0),
             Rule("day", ("447",), rate=Decimal("0.10"), order=1)]
    rater = Rater(Dialplan("GB", "20"), build_tariff(rules, split=True), zone, cache=False)
    start = change[1] + timedelta(seconds=before)
    rating, _ = rater.explain("907911123456", start, duration)
    minutes = [datetime.fromtimestamp(start.timestamp() + 60 * m, zone) for m in range(-(-duration // 60))]
    expected = sum((Decimal("0.01") if night.contains(w, False) else Decimal("0.10") for w in minutes), Decimal(0))
    assert rating.cost == expected
