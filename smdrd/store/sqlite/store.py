"""`SqliteStore`: one SQLite database file behind `smdrd.store.api.Store`."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from smdrd.store.sqlite.accounts import SqliteAccounts
from smdrd.store.sqlite.alert_inbox import SqliteAlertInbox
from smdrd.store.sqlite.calls import SqliteCalls
from smdrd.store.sqlite.directory import SqliteDirectory
from smdrd.store.sqlite.export import SqliteCallExport
from smdrd.store.sqlite.feed import SqliteCallFeed, drop_cursor, place_cursor
from smdrd.store.sqlite.journal_errors import SqliteJournalErrors
from smdrd.store.sqlite.mail import SqliteMail
from smdrd.store.sqlite.outbox import SqliteOutbox
from smdrd.store.sqlite.rebuild import SqliteRebuild
from smdrd.store.sqlite.reports import SqliteReports
from smdrd.store.sqlite.retention import SqliteRetention
from smdrd.store.sqlite.tariffs import SqliteTariffs


class SqliteStore:
    """The database file at ``path`` (the journal writer creates and migrates it)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def reports(self) -> SqliteReports:
        return SqliteReports(self.path)

    def outbox(self) -> SqliteOutbox:
        return SqliteOutbox(self.path)

    def export(self) -> SqliteCallExport:
        return SqliteCallExport(self.path)

    def retention(self) -> SqliteRetention:
        return SqliteRetention(self.path)

    def rebuild(self) -> SqliteRebuild:
        return SqliteRebuild(self.path)

    def call_feed(self) -> SqliteCallFeed:
        return SqliteCallFeed(self.path)

    def journal_errors(self) -> SqliteJournalErrors:
        return SqliteJournalErrors(self.path)

    def start_call_feed(self, name: str) -> int:
        return place_cursor(str(self.path), name)

    def stop_call_feed(self, name: str) -> None:
        drop_cursor(str(self.path), name)

    def alert_inbox(self) -> SqliteAlertInbox:
        return SqliteAlertInbox(self.path)

    def calls(self) -> SqliteCalls:
        return SqliteCalls(self.path)

    def accounts(self) -> SqliteAccounts:
        return SqliteAccounts(self.path)

    def mail(self) -> SqliteMail:
        return SqliteMail(self.path)

    def tariffs(self) -> SqliteTariffs:
        return SqliteTariffs(self.path)

    def directory(self) -> SqliteDirectory:
        return SqliteDirectory(self.path)

    def spend_since(self, since_utc: int) -> list[tuple[str, str, Decimal]]:
        conn = sqlite3.connect(self.path)
        try:
            rows = conn.execute(
                "SELECT extension, substr(start, 1, 10), sum(cost_micros) FROM calls "
                "WHERE start_utc >= ? AND cost_micros > 0 GROUP BY extension, substr(start, 1, 10)",
                (since_utc,)).fetchall()
        finally:
            conn.close()
        return [(ext, day, Decimal(micros) / 1_000_000) for ext, day, micros in rows]

    def recent_call_uids(self, limit: int) -> list[str]:
        conn = sqlite3.connect(self.path)
        try:
            rows = conn.execute("SELECT uid FROM calls ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        finally:
            conn.close()
        return [str(uid) for (uid,) in reversed(rows)]


if TYPE_CHECKING:
    from smdrd.store import api

    def _is_a_store(store: SqliteStore) -> api.Store:
        return store  # mypy --strict checks here that every part matches its protocol in `smdrd.store.api`
