"""The PostgreSQL store (`smdrd.store.postgres`) on a real PostgreSQL server: the session's cluster started by
`initdb` and `pg_ctl` in a temporary folder (tests/conftest.py), one fresh database per test."""

from __future__ import annotations

import psycopg

from smdrd.testing import PostgresServer


def test_the_fixture_starts_a_real_server_on_its_own_socket(postgres: PostgresServer, pg_url: str) -> None:
    assert str(postgres.folder) in pg_url and f"port={postgres.port}" in pg_url
    with psycopg.connect(pg_url) as conn:
        row = conn.execute("SELECT current_database(), current_user").fetchone()
    assert row is not None and row[1] == PostgresServer.user
