"""The directory in the database: changes checked as the configuration is, dated moves, CSV import and export with
errors naming the line and column, ``check-config`` saying which source is in force, and a running daemon taking
a change made by another process (real SQLite files, the real CLI, a real daemon)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smdrd.cli import main
from smdrd.config import load_config
from smdrd.directory import (
    DirectoryError,
    add_department,
    delete_department,
    department_configs,
    edit_department,
    move_extension,
    read_csv,
)
from smdrd.reports.departments import UNASSIGNED, Directory
from smdrd.store import open_store
from smdrd.store.api import Actor, DirectoryConflict, DirectoryDepartment, DirectoryMembership, DirectorySnapshot
from smdrd.testing import config_toml, daemon_config, running_daemon

ADMIN = Actor("alice", "127.0.0.1")
CSV = """extension,name,department,parent,budget,valid_from,valid_until
,,Company,,1000,,
,,Sales,Company,250.50,,
200-299,,Sales,,,,
301,Bob Jones,Support,Company,,,
205,Alice Smith,Support,,,2026-03-15,
"""


def smdrd(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "smdrd", *args], input=stdin, capture_output=True, text=True,
                          timeout=60, check=False)


def lookup(snapshot: DirectorySnapshot) -> Directory:
    return Directory.from_config(department_configs(snapshot))


def empty() -> DirectorySnapshot:
    return DirectorySnapshot((), (), 0)


def test_csv_gives_departments_memberships_and_names() -> None:
    departments, memberships, names = read_csv(CSV.splitlines(keepends=True), "d.csv")
    assert [(d.name, d.parent, d.budget) for d in departments] == [
        ("Company", None, Decimal(1000)), ("Sales", "Company", Decimal("250.50")), ("Support", "Company", None)]
    assert names == [("301", "Bob Jones", ""), ("205", "Alice Smith", "")]
    d = lookup(DirectorySnapshot(tuple(departments), tuple(memberships), 1))
    assert d.department("205", "2026-03-14") == "Sales"  # the range, before the move
    assert d.department("205", "2026-03-15") == "Support"  # moved on the 15th
    assert d.department("999", "2026-03-15") == UNASSIGNED
    assert d.ancestors("Sales") == ["Sales", "Company"]


@pytest.mark.parametrize(("text", "where", "what"), [
    ("extension,department,colour\n", "line 1, column 3", "unknown column 'colour'"),
    ("extension,name\n", "line 1", "no 'department' column"),
    ("extension,department,budget\n201,Sales,ten\n", "line 2, column 3 (budget)", "expected an amount"),
    ("extension,department,valid_from\n201,Sales,16/03/2026\n", "line 2, column 3 (valid_from)",
     "expected a date such as 2026-03-16"),
    ("extension,department\n\n201,Unassigned\n", "line 3, column 2 (department)", "Unassigned"),
    ("extension,department\n299-200,Sales\n", "line 2, column 1 (extension)", "runs backwards"),
    ("extension,department,parent\n,Sales,A\n,Sales,B\n", "line 3, column 3 (parent)", "give it once"),
    ("extension,name,department\n200-299,Everyone,Sales\n", "line 2, column 2 (name)", "range"),
    # A quote left open swallowed the rest of the file into one name: the import emptied the directory.
    ('extension,name,department\n201,"unterminated,Sales\n202,x,Sales\n', "line 3", "never closed"),
    ('extension,name,department\n201,"two\nlines",Sales\n', "line 3, column 2 (name)", "line breaks"),
    ("extension,name,department\n201,Ann,Sales\n202," + "n" * 101 + ",Sales\n", "line 3, column 2 (name)",
     "at most 100 characters"),
    ("extension,name,department\n201\x00,x,Sales\n", "line 2, column 1 (extension)", "control characters"),
    ("extension,department\n201,Sa\x00les\n", "line 2, column 2 (department)", "control characters"),
    # the rules across rows, named by the row too
    ("extension,department,parent\n,A,B\n,B,A\n", "line 2, column 3 (parent)", "parents form a cycle"),
    ("extension,department\n200-299,Sales\n201,Ops\n250-349,Support\n", "line 4", "in both 'Sales'"),
])
def test_csv_errors_name_the_line_and_the_column(text: str, where: str, what: str) -> None:
    with pytest.raises(DirectoryError) as caught:
        read_csv(text.splitlines(keepends=True), "d.csv")
    assert caught.value.field.startswith("d.csv, ")
    assert where in caught.value.field and what in caught.value.message


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.text(max_size=12), max_size=8), max_size=6))
def test_any_csv_is_read_or_refused_with_its_line(rows: list[list[str]]) -> None:
    """Whatever a file holds, the import reads it or names where it is wrong: never another error."""
    import csv
    import io

    out = io.StringIO()
    csv.writer(out).writerows([list(CSV.splitlines()[0].split(",")), *rows])
    try:
        departments, memberships, _ = read_csv(out.getvalue().splitlines(keepends=True), "f.csv")
    except DirectoryError as exc:
        where = exc.field
    else:
        where = ""
    if where:
        assert where.startswith("f.csv, line ")
        return
    known = {d.name for d in departments}
    assert all(m.department in known for m in memberships)


def test_changes_are_checked_as_the_configuration_is() -> None:
    snap = empty()
    snap = DirectorySnapshot(add_department(snap, "Company").departments, (), 1)
    with pytest.raises(DirectoryError) as caught:
        add_department(snap, " company ")
    assert (caught.value.field, caught.value.message) == ("name", "a department named 'company' exists already")
    with pytest.raises(DirectoryError) as caught:
        add_department(snap, "Sales", parent="Nowhere")
    assert caught.value.field == "parent"
    with pytest.raises(DirectoryError) as caught:
        add_department(snap, "Sales", budget="-5")
    assert caught.value.field == "budget"
    change = add_department(snap, "Sales", parent="Company", budget="100")
    snap = DirectorySnapshot(change.departments, change.memberships, 2)
    # a cycle of parents is refused beside the parent field
    with pytest.raises(DirectoryError) as caught:
        edit_department(snap, "Company", new_name="Company", parent="Sales", budget="").check()
    assert caught.value.field == "parent" and "cycle" in caught.value.message
    with pytest.raises(DirectoryError) as caught:
        delete_department(snap, "Company")
    assert "sub-departments (Sales)" in caught.value.message
    # a rename carries the sub-departments and memberships along
    snap = DirectorySnapshot(snap.departments, (DirectoryMembership("Company", "201"),), 3)
    renamed = edit_department(snap, "Company", new_name="Head office", parent="", budget="5")
    assert [(d.name, d.parent) for d in renamed.departments] == [("Head office", None), ("Sales", "Head office")]
    assert renamed.memberships == (DirectoryMembership("Head office", "201"),)
    assert renamed.renamed == {"Company": "Head office"}


def test_a_move_bills_calls_from_its_day_to_the_new_department() -> None:
    snap = DirectorySnapshot((DirectoryDepartment("Sales"), DirectoryDepartment("Support")),
                             (DirectoryMembership("Sales", "200-299"), DirectoryMembership("Sales", "205")), 1)
    moved = move_extension(snap, "205", "Support", date(2026, 3, 15))
    snap = DirectorySnapshot(moved.departments, moved.memberships, 2)
    d = lookup(snap)
    assert [d.department("205", day) for day in ("2026-03-14", "2026-03-15", "2027-01-01")] == [
        "Sales", "Support", "Support"]
    assert d.department("206", "2026-03-15") == "Sales"
    # moving back earlier than the first move replaces it (no tie left behind)
    back = move_extension(snap, "205", "Sales", date(2026, 3, 10))
    back.check()
    d = lookup(DirectorySnapshot(back.departments, back.memberships, 3))
    assert [d.department("205", day) for day in ("2026-03-09", "2026-03-10", "2026-03-20")] == [
        "Sales", "Sales", "Sales"]
    assert moved.before == {"memberships": [{"department": "Sales", "extension": "205", "valid_from": None,
                                             "valid_until": None}]}
    # leaving: its own memberships end, the range still counts for it
    snap = DirectorySnapshot(moved.departments, (*moved.memberships, DirectoryMembership("Support", "301")), 4)
    left = move_extension(snap, "301", UNASSIGNED, date(2026, 4, 1))
    d = lookup(DirectorySnapshot(left.departments, left.memberships, 5))
    assert [d.department("301", day) for day in ("2026-03-31", "2026-04-01")] == ["Support", UNASSIGNED]
    left = move_extension(snap, "205", UNASSIGNED, date(2026, 4, 1))
    assert lookup(DirectorySnapshot(left.departments, left.memberships, 5)).department("205", "2026-04-02") == "Sales"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["A", "B", "C"]), st.dates(date(2026, 1, 1), date(2026, 12, 31))),
                min_size=1, max_size=6))
def test_any_sequence_of_moves_stays_valid_and_the_last_move_holds(moves: list[tuple[str, date]]) -> None:
    snap = DirectorySnapshot(tuple(DirectoryDepartment(n) for n in "ABC"), (), 0)
    for department, day in moves:
        change = move_extension(snap, "201", department, day)
        change.check()
        snap = DirectorySnapshot(change.departments, change.memberships, snap.version + 1)
    department, day = moves[-1]
    assert lookup(snap).department("201", day.isoformat()) == department
    assert lookup(snap).department("201", "2099-01-01") == department


def test_the_store_writes_only_over_the_version_it_read_and_audits_the_change(any_database: Path | str) -> None:
    db = any_database
    directory = open_store(db).directory()
    accounts = open_store(db).accounts()
    try:
        snap = directory.snapshot()
        change = add_department(snap, "Sales", budget="100.25")
        assert change.write(directory, snap, at=10, actor=ADMIN) == 1
        with pytest.raises(DirectoryConflict):
            add_department(snap, "Support").write(directory, snap, at=11, actor=ADMIN)
        assert directory.snapshot().departments == (DirectoryDepartment("Sales", None, Decimal("100.25")),)
        entry = accounts.entries(limit=1)[0]
        assert (entry.actor, entry.action, entry.target, entry.before) == ("alice", "department.add", "Sales", None)
        assert entry.after == {"name": "Sales", "parent": None, "budget": "100.25"}
    finally:
        directory.close()
        accounts.close()


def test_import_export_and_check_config_from_the_shell(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = daemon_config(tmp_path, directory={"source": "database"})
    path = tmp_path / "smdrd.toml"
    path.write_text(config_toml(config))
    (tmp_path / "d.csv").write_text(CSV)
    done = smdrd("directory", "import", str(tmp_path / "d.csv"), "--config", str(path))  # the installed command
    assert done.returncode == 0, done.stderr
    assert "3 departments, 3 memberships, 2 names" in done.stdout
    # the rest in this process, through the same entry point
    assert main(["directory", "export", "--config", str(path)]) == 0
    exported = capsys.readouterr().out
    rows = exported.splitlines()
    assert rows[0] == "extension,name,department,parent,budget,valid_from,valid_until"
    assert "301,Bob Jones,Support,,,," in rows and "205,Alice Smith,Support,,,2026-03-15," in rows
    # what was exported imports again to the same directory
    (tmp_path / "again.csv").write_text(exported)
    before = open_store(tmp_path / "smdrd.db").directory()
    try:
        first = before.snapshot()
    finally:
        before.close()
    assert main(["directory", "import", str(tmp_path / "again.csv"), "--config", str(path)]) == 0
    after = open_store(tmp_path / "smdrd.db").directory()
    try:
        second = after.snapshot()
        assert (second.departments, second.memberships) == (first.departments, first.memberships)
        assert second.version == first.version + 1
    finally:
        after.close()
    (tmp_path / "bad.csv").write_text("extension,department\n201,Sales\n201,B\n")
    capsys.readouterr()
    assert main(["directory", "import", str(tmp_path / "bad.csv"), "--config", str(path)]) == 2
    assert "extension 201 is in both 'Sales'" in capsys.readouterr().err
    assert main(["check-config", str(path)]) == 0
    assert 'directory: from the database ([directory] source = "database"): 3 departments, 3 memberships' in \
        capsys.readouterr().out


def test_a_running_daemon_takes_a_change_made_by_another_process(tmp_path: Path) -> None:
    config = daemon_config(tmp_path, directory={"source": "database"})
    path = tmp_path / "smdrd.toml"
    path.write_text(config_toml(config))

    async def scenario() -> None:
        async with running_daemon(load_config(path), config_path=path,
                                  features=("metrics", "reports", "alerts")) as daemon:
            reports = daemon.features.reports
            assert reports is not None and reports.context.directory.names == []
            directory = open_store(tmp_path / "smdrd.db").directory()
            try:
                departments, memberships, names = read_csv(CSV.splitlines(keepends=True), "d.csv")
                snap = directory.snapshot()
                from smdrd.directory import replace_all

                replace_all(snap, departments, memberships, names, source="d.csv").write(
                    directory, snap, at=1, actor=ADMIN)
            finally:
                directory.close()
            for _ in range(100):
                if reports.context.directory.names:
                    break
                await asyncio.sleep(0.1)
            assert reports.context.directory.names == ["Company", "Sales", "Support"]
            assert daemon.settings.departments[1].budget == Decimal("250.50")
            # budget alerts and metrics resolve departments from the same directory
            alerts = daemon.features.alerts
            assert alerts is not None and alerts.engine.directory.department("205", "2026-03-15") == "Support"
            metrics = daemon.features.metrics
            assert metrics is not None and metrics.department_of("205", "2026-03-15")[0] == "Support"

    asyncio.run(scenario())


def test_the_demo_gets_a_populated_directory_once(tmp_path: Path) -> None:
    from smdrd.cli.simulate import DEMO_NAMES, demo_directory

    db = tmp_path / "demo.db"
    assert demo_directory(db) is True
    assert demo_directory(db) is False  # a second run leaves what the user may have changed
    store = open_store(db).directory()
    try:
        snap = store.snapshot()
        names = store.names()
    finally:
        store.close()
    d = lookup(snap)
    assert d.tree_order()[0] == "Company" and d.ancestors("Sales") == ["Sales", "Company"]
    assert d.department("205", "2026-03-16") == "Sales" and d.budgets["Company"] == Decimal(20000)
    assert names["200"] == DEMO_NAMES[0] and len(names) == 20 + 15 + 6 + 4
    assert len(set(names.values())) == len(names)  # one person per extension: no name twice


def test_an_import_is_audited_with_what_went_and_what_came(tmp_path: Path) -> None:
    from smdrd.directory import replace_all

    db = tmp_path / "smdrd.db"
    directory = open_store(db).directory()
    accounts = open_store(db).accounts()
    try:
        for text in (CSV, CSV.replace("Support", "Help")):
            departments, memberships, names = read_csv(text.splitlines(keepends=True), "d.csv")
            snap = directory.snapshot()
            replace_all(snap, departments, memberships, names, source="d.csv").write(directory, snap, at=1,
                                                                                     actor=ADMIN)
        entry = accounts.entries(limit=1)[0]
    finally:
        directory.close()
        accounts.close()
    assert (entry.action, entry.target, entry.actor) == ("directory.import", "d.csv", "alice")
    assert entry.before is not None and entry.after is not None
    assert entry.before["departments"] == {"count": 1, "items": [
        {"name": "Support", "parent": "Company", "budget": None}]}
    assert entry.after["departments"]["items"] == [{"name": "Help", "parent": "Company", "budget": None}]
    assert entry.before["memberships"]["count"] == entry.after["memberships"]["count"] == 2
    assert entry.after["names"]["items"] == [{"extension": "301", "name": "Bob Jones"},
                                             {"extension": "205", "name": "Alice Smith"}]


def test_resolving_makes_no_database(tmp_path: Path) -> None:
    from smdrd.directory import resolve

    config = daemon_config(tmp_path / "not-yet", directory={"source": "database"})
    path = tmp_path / "smdrd.toml"
    path.write_text(config_toml(config))
    settings = load_config(path)
    assert resolve(settings).departments == []
    assert not (tmp_path / "not-yet").exists()


def _every_pair_ties(d: Directory) -> list[tuple[str, str]]:
    """The tie check as it was: every pair compared (the reference for the grouped one)."""
    from smdrd.reports.departments import _shared_extension

    out = []
    ms = d.memberships
    for i, a in enumerate(ms):
        for b in ms[i + 1:]:
            if a.department == b.department or a.precedence() != b.precedence():
                continue
            shared = _shared_extension(a, b)
            if shared is None or max(a.first, b.first) > min(a.last, b.last):
                continue
            day = max(a.first, b.first) or "the start"
            out.append(("departments", f"extension {shared} is in both {a.department!r} ({a.spec}) and "
                                       f"{b.department!r} ({b.spec}) on {day}: make one membership narrower or "
                                       "give it a later valid_from"))
    return out


SPECS = st.sampled_from(["201", "0201", "202", "201-201", "200-209", "205-214", "200-299", "SIP/a"])
DAYS = st.sampled_from([None, date(2026, 3, 1), date(2026, 3, 15)])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("ABC"), SPECS, DAYS, DAYS), max_size=10))
def test_grouped_tie_check_finds_what_comparing_every_pair_finds(rows: list[tuple[str, str, Any, Any]]) -> None:
    from smdrd.reports.departments import _ties

    members = tuple(DirectoryMembership(dep, spec, first, last) for dep, spec, first, last in rows
                    if not (first and last and first > last))
    snap = DirectorySnapshot(tuple(DirectoryDepartment(n) for n in "ABC"), members, 0)
    d = Directory._build(department_configs(snap))
    assert list(_ties(d)) == _every_pair_ties(d)


def test_an_older_directory_never_replaces_a_newer_one_in_the_daemon(tmp_path: Path) -> None:
    """The watch may read the stored directory just before the console writes and swaps in a newer one; the
    daemon then keeps the newer one instead of going back to the older until the watch's next look."""
    from smdrd.config import DepartmentConfig, Settings
    from smdrd.daemon import Daemon
    from smdrd.testing import daemon_config

    daemon = Daemon(Settings.model_validate(daemon_config(tmp_path, [])))
    base = daemon.settings
    newer = base.model_copy(update={"departments": [DepartmentConfig(name="Sales", extensions=["201"])]})
    older = base.model_copy(update={"departments": [DepartmentConfig(name="Support", extensions=["201"])]})
    daemon.use_directory(newer, 5)  # the console's change
    daemon.use_directory(older, 4)  # the watch's read from before it
    assert [d.name for d in daemon.settings.departments] == ["Sales"]
    daemon.use_directory(older, 6)  # a later change (an import from the shell) still goes in
    assert [d.name for d in daemon.settings.departments] == ["Support"]
