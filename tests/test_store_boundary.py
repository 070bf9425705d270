"""The store boundary: SQLite code lives in ``smdrd/store/sqlite/`` only, SQL text in ``smdrd/store/`` only.

Checked on the source with `ast` (every import, at any depth, including inside functions; every string
constant), so a new module that reaches for the driver or writes a query outside the store fails here, naming
the file and line. A PostgreSQL store is then a sibling package behind `smdrd.store.api`, not a rewrite.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from smdrd.store import api, open_store
from smdrd.store.sqlite.export import SqliteCallExport
from smdrd.store.sqlite.feed import SqliteCallFeed
from smdrd.store.sqlite.outbox import SqliteOutbox
from smdrd.store.sqlite.rebuild import SqliteRebuild
from smdrd.store.sqlite.reports import SqliteReports
from smdrd.store.sqlite.retention import SqliteRetention
from smdrd.store.sqlite.store import SqliteStore

PACKAGE = Path(__file__).resolve().parent.parent / "smdrd"
DRIVERS = {"sqlite3", "aiosqlite"}
#: the statement shapes of SQL, as they start a string (docstrings and messages mention "SQLite", not these).
SQL = re.compile(r"^\s*(SELECT\s.+\sFROM\s|INSERT\s+(OR\s+\w+\s+)?INTO\s|UPDATE\s+\w+\s+SET\s|DELETE\s+FROM\s|"
                 r"CREATE\s+(TEMP\s+)?(TABLE|INDEX|TRIGGER|VIEW)\s|PRAGMA\s|BEGIN(\s+IMMEDIATE)?\s*$)",
                 re.IGNORECASE | re.DOTALL)


def _sources(outside: str) -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if not str(p.relative_to(PACKAGE)).startswith(outside)]


def _driver_imports(path: Path, drivers: set[str] = DRIVERS) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        else:
            continue
        found += [f"{path}:{node.lineno}: imports {n}" for n in names if n.split(".")[0] in drivers]
    return found


def _sql_strings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [f"{path}:{node.lineno}: {node.value[:60]!r}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.match(node.value)]


def test_no_sqlite_driver_outside_the_sqlite_store() -> None:
    sources = _sources("store/sqlite/")
    assert len(sources) > 50  # the walk found the package
    assert [hit for p in sources for hit in _driver_imports(p)] == []


def test_no_sql_outside_the_store() -> None:
    assert [hit for p in _sources("store/") for hit in _sql_strings(p)] == []


@pytest.mark.parametrize("text", [
    "SELECT id FROM calls", "INSERT OR IGNORE INTO alert_outbox VALUES (?)", "UPDATE calls SET cost = ?",
    "delete from lines where id = ?", "CREATE TEMP TABLE x (a)", "PRAGMA user_version", "BEGIN IMMEDIATE",
])
def test_the_sql_check_recognises_statements(tmp_path: Path, text: str) -> None:
    module = tmp_path / "m.py"
    module.write_text(f"import sqlite3\nQUERY = {text!r}\n", encoding="utf-8")
    assert _sql_strings(module) and _driver_imports(module)


@pytest.mark.parametrize("text", ["SQLite database", "select a department", "update the tariff", "Begin here"])
def test_the_sql_check_leaves_prose_alone(tmp_path: Path, text: str) -> None:
    module = tmp_path / "m.py"
    module.write_text(f"MESSAGE = {text!r}\n", encoding="utf-8")
    assert _sql_strings(module) == []


def test_the_sqlite_store_implements_every_protocol(tmp_path: Path) -> None:
    """`SqliteStore` is a `Store`, and what it hands out has every method its protocol names."""
    store = open_store(tmp_path / "db.sqlite")
    assert isinstance(store, SqliteStore)
    parts: tuple[tuple[type, type], ...] = (
        (api.ReportReader, SqliteReports), (api.OutboxStore, SqliteOutbox), (api.CallFeed, SqliteCallFeed),
        (api.CallExport, SqliteCallExport), (api.Retention, SqliteRetention), (api.Rebuild, SqliteRebuild))
    for protocol, cls in parts:
        wanted = {n for n, v in vars(protocol).items() if callable(v) and not n.startswith("_")}
        assert wanted, protocol
        assert wanted <= set(dir(cls)), (protocol.__name__, wanted - set(dir(cls)))
    wanted = {n for n, v in vars(api.Store).items() if callable(v) and not n.startswith("_")}
    assert wanted <= set(dir(SqliteStore))


def test_no_postgresql_driver_outside_the_store() -> None:
    """smdrd central once imported psycopg to catch its errors: the store alone knows its driver (and the test
    kit's PostgresServer, which makes the tests' databases)."""
    found = [hit for p in _sources("store/") if p.name != "testing.py"
             for hit in _driver_imports(p, {"psycopg", "psycopg_pool", "asyncpg"})]
    assert found == []
