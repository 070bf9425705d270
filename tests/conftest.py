"""Shared test configuration."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from smdrd.testing import DaemonProcess, PostgresServer, postgres_bin

# Machines here are shared and noisy: no per-example deadlines, no "too slow" health check. CI runs more
# examples than a developer's quick loop.
settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("default"), max_examples=200)
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    """Daemon processes (`smdrd.testing.DaemonProcess`) a test starts; any still running at the end is killed."""
    started: list[DaemonProcess] = []
    yield started
    for d in started:
        d.kill()


#: the session's database: created and migrated once, emptied before each test that asks for it.
_DATABASE = "smdrd_test"
#: every table of the schema emptied (a CREATE DATABASE per test costs seconds on a loaded machine; this, a few
#: hundred milliseconds), the versions kept (the schema's; the directory's back to 0), the local site unnamed again.
EMPTY_DATABASE = """DO $$ BEGIN
EXECUTE (SELECT 'TRUNCATE ' || string_agg(quote_ident(tablename), ', ') || ' RESTART IDENTITY CASCADE'
         FROM pg_tables WHERE schemaname = 'public'
         AND tablename NOT IN ('smdrd_schema', 'sites', 'directory_version'));
DELETE FROM sites WHERE id > 1;  -- the sites a central writer added: a later test may name its own alike
UPDATE sites SET name = '' WHERE id = 1;
UPDATE directory_version SET version = 0;
END $$"""


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole session (`smdrd.testing.PostgresServer`), stopped at the end;
    skipped where PostgreSQL is not installed (under CI=true that fails instead: scripts/system-deps.sh)."""
    if postgres_bin() is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed (scripts/system-deps.sh installs it)")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    # Not under pytest's tmp_path: its folders are private to the user, and under root the server runs as nobody.
    folder = Path(tempfile.mkdtemp(prefix="smdrd-pg-"))
    server = PostgresServer(folder)
    server.start()
    try:
        from smdrd.store.postgres.connect import connect

        connect(server.create_database(_DATABASE)).close()
        yield server
    finally:
        server.stop("immediate")  # nothing in it is kept: no shutdown checkpoint
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def pg_url(postgres: PostgresServer) -> str:
    """The URL of the session's PostgreSQL database, emptied: smdrd's schema and nothing else."""
    import psycopg

    url = postgres.url(_DATABASE)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(EMPTY_DATABASE)
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def any_database(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Each store in turn, for a test of a store part on both: a new SQLite file's path, then the URL of the
    session's PostgreSQL database, emptied (`pg_url`)."""
    return tmp_path / "smdrd.db" if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))


@pytest.fixture(scope="session")
def console_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One daemon for the console's calls, alerts inbox and upload tests (tests/test_console_calls.py): the
    report tests' calls and departments, a few alerts, users alice (admin), victor (viewer) and maria (manager
    of Sales), numbers masked for all but admins, uploads capped at 1 MiB."""
    from tests.test_console_calls import console_daemon

    yield from console_daemon(tmp_path_factory.mktemp("console-calls"))
