"""Issue 15, point 3 and 4 for the tariff: versions kept in the database, `smdrd tariff import|export` with
smdrd's and Yeastar's CSV columns, Yeastar's number length, and the number tester's `explain`."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smdrd.rating import Rater
from smdrd.rating.config import SiteConfig, TariffConfig, TariffRuleConfig
from smdrd.rating.explain import explain  # once imported, smdrd.rating's explain is this submodule
from smdrd.rating.rules import TariffSourceError
from smdrd.store import open_store
from smdrd.store.api import Actor, TariffConflict
from smdrd.tariffs import document, read_csv, tariff_config, write_csv

YEASTAR = ("Name,Match Prefix,Number Length,Rate,Billable Unit(s),Initial Time(s),Initial Cost\r\n"
           "UK mobile,447,12,0.1,60,0,0\r\n"
           "UK,44,,0.05,60,120,0.2\r\n")
GB = SiteConfig(country="GB", area_code="020", timezone="Europe/London")
MONDAY = datetime(2026, 3, 2, 10, 0)


def cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "smdrd", *args], capture_output=True, text=True, input=stdin,
                          timeout=60, check=False)


def test_a_yeastar_deck_is_read_last_line_first_and_written_back_the_same() -> None:
    rules = read_csv(YEASTAR, "rates.csv", {})
    assert [r.name for r in rules] == ["UK", "UK mobile"]  # Yeastar exports its list bottom-up
    assert rules[1].number_length == 12 and rules[0].initial_cost == Decimal("0.2")
    assert write_csv(rules, yeastar=True) == YEASTAR
    assert read_csv(write_csv(rules), "again.csv", {}) == rules


@pytest.mark.parametrize(("deck", "message"), [
    ("Name,Match Prefix,Rate\r\nx,44,abc\r\n", "rates.csv:2: Rate: expected an amount"),
    ("Name,Match Prefix,Rate\r\nok,44,1\r\nx,4X4,1\r\n", "rates.csv:3: Match Prefix: expected a prefix"),
    ("Name,Match Prefix,Rate,Billable Unit(s)\r\nx,44,1,0\r\n", "rates.csv:2: Billable Unit(s): expected a whole"),
    ("Name,Match Prefix,Rate,Number Length\r\nx,44,1,99\r\n", "rates.csv:2: Number Length: expected a whole"),
    ("name,prefix,rate,call_class\r\nx,44,1,cheap\r\n", "rates.csv:2: call_class: expected one of"),
    ("Name,Match Prefix,Rate,Member Extensions\r\n", "rates.csv:1: unknown column 'member extensions'"),
])
def test_a_bad_cell_is_named_by_its_line_and_column(deck: str, message: str) -> None:
    with pytest.raises(TariffSourceError) as caught:
        read_csv(deck, "rates.csv", {})
    assert str(caught.value).startswith(message), str(caught.value)


def test_number_length_limits_a_rule_to_numbers_of_that_many_digits() -> None:
    def rule(length: int) -> str:
        deck = YEASTAR.replace("447,12,", f"447,{length},")
        tariff = tariff_config(TariffConfig(currency="GBP"), document("longest-prefix", {}, read_csv(deck, "y", {})))
        return Rater.from_config(GB, tariff).rate_call("907911123456", MONDAY, 60).rule

    assert rule(12) == "UK mobile"  # +447911123456: 12 digits
    assert rule(11) == "UK"  # not that rule's length: the next prefix prices it


def test_explain_shows_the_normalised_number_the_rule_and_the_arithmetic() -> None:
    tariff = tariff_config(TariffConfig(currency="GBP"), document("first-match", {}, read_csv(YEASTAR, "y", {})))
    answer = explain(Rater.from_config(GB, tariff), "902079460000", MONDAY, 125)
    assert (answer.e164, answer.call_class, answer.rule, answer.prefix) == ("+442079460000", "local", "UK", "44")
    assert answer.cost == Decimal("0.25") and answer.arithmetic == "first 120 s 0.2 + 1 x 0.05 per 60 s = 0.25 GBP"
    assert answer.steps[-1] == "exact sum 0.25, rounded half-up to 2 decimals = 0.25 GBP"
    assert json.loads(json.dumps(answer.to_json()))["cost"] == "0.25"


#: up to the 12 decimals a deck may have: below 0.000001, str(Decimal) writes 5E-7, which no deck reads back.
amounts = st.decimals(min_value=0, max_value=999, places=12, allow_nan=False, allow_infinity=False)  # 15 digits at most


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.text(alphabet="abcXYZ=+-@,\" é", min_size=1, max_size=12).map(str.strip).filter(bool),
                          st.integers(1, 9_999_999).map(str), amounts,
                          st.integers(1, 600), st.integers(0, 600), amounts), min_size=1, max_size=5))
def test_any_deck_survives_export_and_import_in_both_formats(rows: list[tuple[str, str, Decimal, int, int,
                                                                                Decimal]]) -> None:
    rules = [TariffRuleConfig(name=n, prefixes=[p], rate=r, billing_unit=u, initial_time=t, initial_cost=c)
             for n, p, r, u, t, c in rows]
    for yeastar in (False, True):
        back = read_csv(write_csv(rules, yeastar=yeastar), "x", {})
        assert [(b.prefixes, b.rate, b.billing_unit, b.initial_time, b.initial_cost) for b in back] == \
            [(r.prefixes, r.rate, r.billing_unit, r.initial_time, r.initial_cost) for r in rules]
        assert all(b.name in (r.name, "'" + r.name) for b, r in zip(back, rules, strict=True))
    saved = json.loads(json.dumps(document("longest-prefix", {}, rules)))  # a database tariff's version
    again = tariff_config(TariffConfig(currency="GBP"), saved).rules
    assert [(b.rate, b.initial_cost) for b in again] == [(r.rate, r.initial_cost) for r in rules]


def test_versions_are_kept_audited_and_never_changed(any_database: Path | str) -> None:
    tariffs = open_store(any_database).tariffs()
    try:
        assert tariffs.current() is None
        doc = document("first-match", {}, read_csv(YEASTAR, "y", {}))
        first = tariffs.save(doc, expected=0, at=100, actor=Actor("alice", "10.0.0.1"), note="start",
                             action="tariff.import", target="y.csv", before=None, after={"rules": 2})
        second = tariffs.save({**doc, "rules": doc["rules"][:1]}, expected=1, at=200, actor=Actor("bob"), note="",
                              action="tariff.rule.delete", target="UK mobile", before={"name": "UK mobile"},
                              after=None)
        assert (first.version, second.version, second.rules) == (1, 2, 1)
        with pytest.raises(TariffConflict):
            tariffs.save(doc, expected=1, at=300, actor=Actor("carol"), note="", action="x", target="y",
                         before=None, after=None)
        assert [v.version for v in tariffs.versions()] == [2, 1]
        old = tariffs.version(1)
        assert old is not None and old.document == doc and old.info.actor == "alice"
    finally:
        tariffs.close()
    conn: Any = psycopg.connect(any_database) if isinstance(any_database, str) else sqlite3.connect(any_database)
    with pytest.raises((sqlite3.DatabaseError, psycopg.Error), match="never changed"):
        conn.execute("UPDATE tariff_versions SET note = 'x'")
    conn.rollback()
    with pytest.raises((sqlite3.DatabaseError, psycopg.Error), match="kept"):
        conn.execute("DELETE FROM tariff_versions")
    conn.rollback()
    audit = conn.execute("SELECT actor, action, target, after FROM audit_log ORDER BY id").fetchall()
    conn.close()
    assert [a[:3] for a in audit] == [("alice", "tariff.import", "y.csv"), ("bob", "tariff.rule.delete", "UK mobile")]
    assert json.loads(audit[1][3]) == {"version": 2}


def test_tariff_import_export_and_check_config_from_the_shell(tmp_path: Path) -> None:
    config = tmp_path / "smdrd.toml"
    config.write_text(f'[site]\ncountry = "GB"\narea_code = "020"\n[database]\npath = "{tmp_path / "calls.db"}"\n'
                      '[tariff]\nsource = "database"\ncurrency = "GBP"\nmode = "first-match"\n')
    before = cli("check-config", str(config))
    assert before.returncode == 0 and "from the database" in before.stdout and "no version saved yet" in before.stdout
    deck = tmp_path / "yeastar.csv"
    deck.write_text(YEASTAR)
    done = cli("tariff", "import", str(deck), "--config", str(config), "--note", "from the PBX")
    assert done.returncode == 0, done.stderr
    assert "tariff version 1: 2 rules" in done.stdout
    assert cli("tariff", "export", "--yeastar", "--config", str(config)).stdout == YEASTAR.replace("\r\n", "\n")
    after = cli("check-config", str(config))
    assert "version 1, 2 rules" in after.stdout
    priced = cli("rate", "902079460000", "--duration", "125", "--config", str(config), "--json")
    assert json.loads(priced.stdout)["rule"] == "UK" and json.loads(priced.stdout)["cost"] == "0.25"
    bad = tmp_path / "bad.csv"
    bad.write_text("Name,Match Prefix,Rate\nok,44,1\nx,44,zero\n")
    refused = cli("tariff", "import", str(bad), "--config", str(config))
    assert refused.returncode != 0 and "bad.csv:3: Rate: expected an amount" in refused.stderr
    files = tmp_path / "files.toml"
    files.write_text(config.read_text().replace('source = "database"', 'source = "files"'))
    assert "from the files" in cli("check-config", str(files)).stdout
