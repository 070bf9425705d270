"""Connections to the PostgreSQL store: synchronous (CLI, report reads) and asynchronous (the daemon), both with
the schema brought up to date and sums loaded as ``int``.

PostgreSQL's ``sum`` of a ``bigint`` is a ``numeric``; every figure summed here is a whole number (seconds,
calls, millionths of a currency unit), so a ``numeric`` without a fraction is loaded as ``int``, as SQLite gives
it, and the report builders see the same types from either store.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import psycopg
from psycopg.adapt import Loader

from smdrd.errors import SmdrdError
from smdrd.store.api import StoreUnavailable
from smdrd.store.config import redact_url, url_secrets
from smdrd.store.postgres.schema import PREPARE, READ_VERSION, migrate_sql

__all__ = ["AsyncPart", "aconnect", "connect", "failure", "redact"]

#: ``url`` without its password, for messages and logs (`smdrd.store.config.redact_url`).
redact = redact_url


def failure(url: str, exc: Exception) -> str:
    """What went wrong talking to the store at ``url``: where (its URL without the password) and libpq's
    message, any secret of the URL taken out of it (a malformed password is repeated there, in quotes)."""
    message = str(exc).strip()
    for secret in url_secrets(url):
        message = message.replace(secret, "***")
    return f"PostgreSQL at {redact(url)}: {message}"


class _WholeNumeric(Loader):
    """``numeric`` as ``int`` when it has no fraction, else as `Decimal`."""

    def load(self, data: Any) -> int | Decimal:
        text = bytes(data).decode()
        return int(text) if text.lstrip("-").isdigit() else Decimal(text)


def _configure(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    conn.adapters.register_loader("numeric", _WholeNumeric)


def _unavailable(url: str, exc: Exception) -> StoreUnavailable:
    return StoreUnavailable(failure(url, exc))


def connect(url: str, *, migrate: bool = True, autocommit: bool = True) -> psycopg.Connection[Any]:
    """A synchronous connection to the store at ``url``, its schema up to date.

    Raises:
        StoreUnavailable: the server cannot be reached (or refused the login).
        SmdrdError: the database was written by a newer smdrd.
    """
    try:
        conn = psycopg.connect(url, autocommit=True)
    except psycopg.Error as exc:
        raise _unavailable(url, exc) from None
    _configure(conn)
    try:
        if migrate:
            with conn.transaction():
                for statement in PREPARE:
                    conn.execute(statement)
                row = conn.execute(READ_VERSION).fetchone()
                for statement in migrate_sql(int(row[0]) if row else 0):
                    conn.execute(statement)
        conn.autocommit = autocommit
    except (psycopg.Error, SmdrdError):
        conn.close()
        raise
    return conn


async def aconnect(url: str, *, migrate: bool = True) -> psycopg.AsyncConnection[Any]:
    """An asynchronous connection (autocommit; transactions are explicit) to the store at ``url``, its schema
    up to date. Raises as `connect`."""
    try:
        conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    except psycopg.Error as exc:
        raise _unavailable(url, exc) from None
    _configure(conn)
    try:
        if migrate:
            async with conn.transaction():
                for statement in PREPARE:
                    await conn.execute(statement)
                cur = await conn.execute(READ_VERSION)
                row = await cur.fetchone()
                for statement in migrate_sql(int(row[0]) if row else 0):
                    await conn.execute(statement)
    except (psycopg.Error, SmdrdError):
        await conn.close()
        raise
    return conn


class AsyncPart:
    """A store part on its own asynchronous connection: ``await open()``, use `conn`, ``await close()``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def open(self) -> None:
        self._conn = await aconnect(self.url)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    @property
    def conn(self) -> psycopg.AsyncConnection[Any]:
        assert self._conn is not None, "open() first"
        return self._conn
