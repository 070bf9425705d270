"""Department membership: ranges, lists, parents, validity dates, precedence, and the configuration errors."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from smdrd.config import DepartmentConfig
from smdrd.errors import ConfigError
from smdrd.reports.departments import UNASSIGNED, Directory, department_problems, prorated_budget


def directory(*deps: dict[str, Any]) -> Directory:
    return Directory.from_config([DepartmentConfig.model_validate(d) for d in deps])


def test_single_numbers_ranges_and_lists() -> None:
    """An extension matches its department by exact number (int or string) or inclusive range; others are
    Unassigned, never dropped."""
    d = directory({"name": "Sales", "extensions": ["200-299", 301, "SIP/alice"]})
    for ext in ("200", "250", "299", "301", "SIP/alice"):
        assert d.department(ext, "2026-03-01") == "Sales", ext
    for ext in ("199", "300", "302", "", "SIP/bob", "2x0"):
        assert d.department(ext, "2026-03-01") == UNASSIGNED, ext


def test_narrower_membership_wins_then_the_later_start() -> None:
    """An exact extension beats a range, a narrow range a wide one; a dated move beats the old membership."""
    d = directory(
        {"name": "Sales", "extensions": ["200-299"]},
        {"name": "Team", "extensions": ["250-259"]},
        {"name": "Boss", "extensions": ["255"]},
        {"name": "Support", "members": [{"extensions": ["201"], "valid_from": "2026-03-16",
                                         "valid_until": "2026-03-20"}]},
        {"name": "Ops", "members": [{"extensions": ["270-279"], "valid_from": "2026-03-10"}]},
    )
    assert d.department("250", "2026-03-01") == "Team"
    assert d.department("255", "2026-03-01") == "Boss"
    assert [d.department("201", day) for day in ("2026-03-15", "2026-03-16", "2026-03-20", "2026-03-21")] == [
        "Sales", "Support", "Support", "Sales"]
    assert d.department("275", "2026-03-09") == "Sales" and d.department("275", "2026-03-10") == "Ops"


def test_intervals_split_a_range_at_each_move() -> None:
    """Call details filtered by department use these spans: one per stretch of days in one department."""
    d = directory({"name": "Sales", "extensions": ["200-299"]},
                  {"name": "Support", "members": [{"extensions": ["201"], "valid_from": "2026-03-16",
                                                   "valid_until": "2026-03-20"}]})
    assert d.intervals("201", "2026-03-01", "2026-03-31") == [
        ("2026-03-01", "2026-03-15", "Sales"), ("2026-03-16", "2026-03-20", "Support"),
        ("2026-03-21", "2026-03-31", "Sales")]
    assert d.intervals("202", "2026-03-01", "2026-03-31") == [("2026-03-01", "2026-03-31", "Sales")]
    assert [m.spec for m in d.volatile("2026-03-01", "2026-03-31")] == ["201"]
    assert d.volatile("2026-04-01", "2026-04-30") == []


def test_parents_subtrees_and_tree_order() -> None:
    """Sub-departments roll up into their parents; the report lists parents before children."""
    d = directory({"name": "B", "parent": "A"}, {"name": "A"}, {"name": "C", "parent": "B"}, {"name": "D"})
    assert d.tree_order() == ["A", "B", "C", "D"]
    assert d.ancestors("C") == ["C", "B", "A"]
    assert d.subtree("B") == {"B", "C"}
    assert d.subtree(UNASSIGNED) == {UNASSIGNED}


@pytest.mark.parametrize(("deps", "key", "message"), [
    ([{"name": "A", "parent": "Nope"}], "departments[0].parent", "unknown department 'Nope'"),
    ([{"name": "A", "parent": "B"}, {"name": "B", "parent": "A"}], "departments[0].parent", "cycle"),
    ([{"name": "A"}, {"name": "A"}], "departments[1].name", "already the name"),
    ([{"name": "A", "extensions": ["200-299"]}, {"name": "B", "extensions": ["250-349"]}], "departments",
     "extension 250 is in both 'A' (200-299) and 'B' (250-349)"),
    ([{"name": "A", "extensions": ["201"]}, {"name": "B", "extensions": [201]}], "departments",
     "extension 201 is in both"),
])
def test_inconsistent_departments_are_config_errors(deps: list[dict[str, Any]], key: str, message: str) -> None:
    """A user who mistypes a parent, loops parents or puts one extension in two departments equally is told
    which key and why, instead of getting silently wrong bills."""
    configs = [DepartmentConfig.model_validate(x) for x in deps]
    problems = department_problems(configs)
    assert any(k == key and message in m for k, m in problems), problems
    with pytest.raises(ConfigError):
        Directory.from_config(configs)


def test_non_overlapping_dated_moves_are_fine() -> None:
    """Moving an extension with dates that do not overlap is not a conflict."""
    a = {"name": "A", "members": [{"extensions": ["201"], "valid_until": "2026-03-15"}]}
    b = {"name": "B", "members": [{"extensions": ["201"], "valid_from": "2026-03-16"}]}
    assert department_problems([DepartmentConfig.model_validate(a), DepartmentConfig.model_validate(b)]) == []


@pytest.mark.parametrize("bad", [
    {"name": "Unassigned"},
    {"name": "A", "extensions": ["299-200"]},
    {"name": "A", "extensions": [True]},
    {"name": "A", "budget": 12.5},
    {"name": "A", "members": [{"extensions": ["1"], "valid_from": "2026-03-02", "valid_until": "2026-03-01"}]},
    {"name": "A", "colour": "red"},
])
def test_department_config_validation(bad: dict[str, Any]) -> None:
    """Reserved names, backward ranges, float budgets, reversed dates and unknown keys are refused."""
    with pytest.raises(ValidationError):
        DepartmentConfig.model_validate(bad)


def test_budget_is_prorated_by_days_of_each_month() -> None:
    """A whole month is the monthly budget; a year is twelve; half of April is half April's budget."""
    from datetime import date

    assert prorated_budget(Decimal(300), date(2026, 2, 1), date(2026, 2, 28)) == Decimal(300)
    assert prorated_budget(Decimal(300), date(2026, 1, 1), date(2026, 12, 31)) == Decimal(3600)
    assert prorated_budget(Decimal(300), date(2026, 4, 1), date(2026, 4, 15)) == Decimal(150)
