"""Opening an aiosqlite connection so that a cancellation never leaks it.

An aiosqlite connection is a thread of its own, and not a daemon thread: a connection left open keeps the
process alive after the daemon stopped. A task cancelled while it was opening one (a SIGTERM during start-up)
would leave exactly that, so `open_connection` finishes the opening and closes it before passing the
cancellation on.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import aiosqlite

from smdrd.store.sqlite.schema import PRAGMAS


async def _connect(path: Path) -> aiosqlite.Connection:
    db = await aiosqlite.connect(path, isolation_level=None)
    try:
        for pragma in PRAGMAS:
            await db.execute(pragma)
    except BaseException:
        await db.close()
        raise
    return db


async def open_connection(path: Path) -> aiosqlite.Connection:
    """An autocommit connection with smdrd's pragmas; closed again if the caller is cancelled meanwhile."""
    opening = asyncio.ensure_future(_connect(path))
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            db = await opening
            await db.close()
        raise


class AsyncPart:
    """A store part on its own aiosqlite connection: ``await open()``, use `db`, ``await close()``."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> None:
        self._db = await open_connection(self.path)

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        assert self._db is not None, "open() first"
        return self._db
