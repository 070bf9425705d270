"""Storage behind one interface: the protocols of `smdrd.store.api`, and the stores that implement them.

`smdrd.store.sqlite` is the embedded default (one file on the box). Nothing outside ``smdrd/store/`` writes SQL,
and nothing outside ``smdrd/store/sqlite/`` imports a SQLite driver; a PostgreSQL store is a sibling package
behind the same protocols. `open_store` picks the store for a database setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from smdrd.store.api import Store

__all__ = ["open_store"]


def open_store(database: Path | str) -> Store:
    """The store of ``database`` (today a SQLite file path)."""
    from smdrd.store.sqlite.store import SqliteStore

    return SqliteStore(Path(database))
