"""A database as a smdrd from before a migration wrote it, for the tests of that migration on either store.

Here, not in `smdrd.testing`: it holds SQL and opens the drivers itself, which only `smdrd/store/` may do in
the package (tests/test_store_boundary.py).
"""

from __future__ import annotations

from pathlib import Path


def database_before(database: Path | str, sqlite_migration: str, pg_migration: str,
                    *statements: str) -> None:
    """Make ``database`` (a new SQLite file, or an emptied PostgreSQL database) one that a smdrd from before a
    migration wrote: its schema up to the one before ``sqlite_migration`` (SQLite) or ``pg_migration`` (PostgreSQL),
    then ``statements`` run (the same text on both, no placeholders)."""
    if "://" in str(database):
        import psycopg

        from smdrd.store.postgres import schema as pg

        with psycopg.connect(str(database), autocommit=True) as conn:
            conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
            upto = pg.MIGRATIONS.index(pg_migration)
            with conn.transaction():
                for statement in pg.PREPARE:
                    conn.execute(statement)
                for number in range(1, upto + 1):
                    conn.execute(pg.MIGRATIONS[number - 1])
                conn.execute(f"INSERT INTO smdrd_schema (version) VALUES ({upto})")
                for statement in statements:
                    conn.execute(statement)
        return
    import sqlite3

    from smdrd.store.sqlite import schema as lite

    old = sqlite3.connect(database, isolation_level=None)
    try:
        upto = lite.MIGRATIONS.index(sqlite_migration)
        for number in range(1, upto + 1):
            old.executescript(f"BEGIN;\n{lite.MIGRATIONS[number - 1]}\nPRAGMA user_version = {number};\nCOMMIT;")
        for statement in statements:
            old.execute(statement)
    finally:
        old.close()
