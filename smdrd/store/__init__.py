"""Storage behind one interface: the protocols of `smdrd.store.api`, and the stores that implement them.

`smdrd.store.sqlite` is the embedded default (one file on the box). Nothing outside ``smdrd/store/`` writes SQL,
and nothing outside ``smdrd/store/sqlite/`` imports a SQLite driver; a PostgreSQL store is a sibling package
behind the same protocols. `open_store` picks the store for a database setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from smdrd.store.api import Store
    from smdrd.store.sqlite.writer import JournalWriter

__all__ = ["is_url", "journal_writer", "open_store"]


def is_url(database: Path | str) -> bool:
    """``database`` names a server (``postgresql://...``), not a SQLite file."""
    return isinstance(database, str) and urlsplit(database).scheme in ("postgresql", "postgres")


def open_store(database: Path | str) -> Store:
    """The store of ``database``: a SQLite file path, or a ``postgresql://`` URL (`smdrd.store.postgres`)."""
    if is_url(database):
        from smdrd.store.postgres.store import PgStore

        return PgStore(str(database))
    from smdrd.store.sqlite.store import SqliteStore

    return SqliteStore(Path(database))


def journal_writer(database: Path | str, **options: Any) -> JournalWriter:
    """The journal writer of ``database`` (see `open_store`); ``options`` as `JournalWriter` takes them."""
    if is_url(database):
        from smdrd.store.postgres.writer import PgJournalWriter

        return PgJournalWriter(str(database), **options)
    from smdrd.store.sqlite.writer import JournalWriter

    return JournalWriter(database, **options)
