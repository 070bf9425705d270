"""The alerts inbox in SQLite (`smdrd.store.api.AlertInbox`): the raised alerts of ``alert_outbox`` with what
people did with them (``alert_states``) and whether their resolved event came.

An alert's state is decided when it is read, never stored as a word: ``resolved`` when the outbox holds
``<id>:resolved`` (looked up by the unique index on ``alert_id``), else ``acknowledged`` when someone did, else
``snoozed`` while its snooze lasts, else ``open``. The later of acknowledging and snoozing wins: each clears the
other. Acknowledging and snoozing write the state row and the audit
entry in one transaction (`SqliteAccounts._audit`), so the audit log cannot miss one. Pages are read newest
first, by row id, from the ``created_at`` index when a date range is given.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from smdrd.store.api import Actor, AlertFilter, InboxAlert
from smdrd.store.mapping import alert_view, inbox_alert
from smdrd.store.sqlite.accounts import SqliteAccounts
from smdrd.store.sqlite.schema import connect

__all__ = ["SqliteAlertInbox"]

_STATE = ("CASE WHEN r.id IS NOT NULL THEN 'resolved' WHEN s.acked_at IS NOT NULL THEN 'acknowledged' "
          "WHEN s.snoozed_until > :now THEN 'snoozed' ELSE 'open' END")
_SELECT = (f"SELECT o.id, o.alert_id, o.rule, o.severity, o.created_at, o.payload, {_STATE} AS state, s.acked_by, "
           "s.acked_at, s.snoozed_until, s.snoozed_by, r.created_at FROM alert_outbox o "
           "LEFT JOIN alert_states s ON s.alert_id = o.alert_id "
           "LEFT JOIN alert_outbox r ON r.alert_id = o.alert_id || ':resolved' ")


class SqliteAlertInbox:
    """One connection to the database at ``path`` (migrated if need be), used from one thread at a time."""

    def __init__(self, path: Path | str) -> None:
        connect(str(path)).close()
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self.conn.execute("PRAGMA busy_timeout = 5000")

    def close(self) -> None:
        self.conn.close()

    def alerts(self, f: AlertFilter) -> list[InboxAlert]:
        where = ["o.alert_id NOT LIKE '%:resolved'"]
        params: dict[str, Any] = {"now": f.now, "limit": max(1, f.limit)}
        for column, key, values in (("o.rule", "rule", f.rules), ("o.severity", "sev", f.severities),
                                    (_STATE, "state", f.states)):
            if values:
                names = [f":{key}{i}" for i in range(len(values))]
                where.append(f"{column} IN ({', '.join(names)})")
                params.update({n[1:]: v for n, v in zip(names, values, strict=True)})
        if f.departments is not None:
            names = [f":dep{i}" for i in range(len(f.departments))]
            where.append(f"json_extract(o.payload, '$.department') IN ({', '.join(names) or 'NULL'})")
            params.update({n[1:]: v for n, v in zip(names, f.departments, strict=True)})
        if f.sites:
            names = [f":site{i}" for i in range(len(f.sites))]
            where.append(f"json_extract(o.payload, '$.site') IN ({', '.join(names)})")
            params.update({n[1:]: v for n, v in zip(names, f.sites, strict=True)})
        if f.lo is not None:
            where.append("o.created_at >= :lo")
            params["lo"] = f.lo
        if f.hi is not None:
            where.append("o.created_at < :hi")
            params["hi"] = f.hi
        if f.before is not None:
            where.append("o.id < :before")
            params["before"] = f.before
        sql = f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY o.id DESC LIMIT :limit"
        return [inbox_alert(row) for row in self.conn.execute(sql, params)]

    def alert(self, alert_id: str, now: int) -> InboxAlert | None:
        row = self.conn.execute(f"{_SELECT} WHERE o.alert_id = :id AND o.alert_id NOT LIKE '%:resolved'",
                                {"now": now, "id": alert_id}).fetchone()
        return None if row is None else inbox_alert(row)

    def rules(self) -> list[str]:
        return [r for (r,) in self.conn.execute("SELECT DISTINCT rule FROM alert_outbox ORDER BY rule")]

    def sites(self) -> list[str]:
        return [s for (s,) in self.conn.execute(
            "SELECT DISTINCT json_extract(payload, '$.site') AS s FROM alert_outbox WHERE json_valid(payload) "
            "AND json_type(payload, '$.site') = 'text' ORDER BY s")]

    def acknowledge(self, alert_id: str, *, at: int, actor: Actor) -> InboxAlert | None:
        return self._change(alert_id, at, actor, "alert.acknowledge",
                            sql="INSERT INTO alert_states (alert_id, acked_by, acked_at) VALUES (?, ?, ?) "
                            "ON CONFLICT DO UPDATE SET acked_by = excluded.acked_by, acked_at = excluded.acked_at, "
                                "snoozed_until = NULL",
                            params=(alert_id, actor.name, at))

    def snooze(self, alert_id: str, until: int, *, at: int, actor: Actor) -> InboxAlert | None:
        return self._change(alert_id, at, actor, "alert.snooze",
                            sql="INSERT INTO alert_states (alert_id, snoozed_until, snoozed_by, snoozed_at) "
                            "VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET snoozed_until = excluded.snoozed_until, "
                            "snoozed_by = excluded.snoozed_by, snoozed_at = excluded.snoozed_at, acked_by = NULL, "
                                "acked_at = NULL",
                            params=(alert_id, until or None, actor.name, at))

    def _change(self, alert_id: str, at: int, actor: Actor, action: str, *, sql: str,
                params: tuple[object, ...]) -> InboxAlert | None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            before = self.alert(alert_id, at)
            if before is None:
                conn.execute("ROLLBACK")
                return None
            conn.execute(sql, params)
            after = self.alert(alert_id, at)
            assert after is not None
            SqliteAccounts._audit(conn, action, alert_id, at, actor, before=alert_view(before),
                                  after=alert_view(after))
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return after
