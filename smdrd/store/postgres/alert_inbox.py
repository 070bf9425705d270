"""The alerts inbox on PostgreSQL (`smdrd.store.api.AlertInbox`), as `smdrd.store.sqlite.alert_inbox` reads it:
an alert's state decided when it is read (``resolved`` when the outbox holds ``<id>:resolved``, else
``acknowledged``, else ``snoozed`` while its snooze lasts, else ``open``); acknowledging and snoozing written with
their audit entry in one transaction."""

from __future__ import annotations

from typing import Any

from smdrd.store.api import Actor, AlertFilter, InboxAlert
from smdrd.store.mapping import alert_view, inbox_alert
from smdrd.store.postgres.side import PgSide

__all__ = ["PgAlertInbox"]

_STATE = ("CASE WHEN r.id IS NOT NULL THEN 'resolved' WHEN s.acked_at IS NOT NULL THEN 'acknowledged' "
          "WHEN s.snoozed_until > %(now)s THEN 'snoozed' ELSE 'open' END")
_SELECT = (f"SELECT o.id, o.alert_id, o.rule, o.severity, o.created_at, o.payload, {_STATE} AS state, s.acked_by, "
           "s.acked_at, s.snoozed_until, s.snoozed_by, r.created_at FROM alert_outbox o "
           "LEFT JOIN alert_states s ON s.alert_id = o.alert_id "
           "LEFT JOIN alert_outbox r ON r.alert_id = o.alert_id || ':resolved' ")
#: not a resolved event itself (``%%``: a literal ``%`` among psycopg's placeholders).
_RAISED = "o.alert_id NOT LIKE '%%:resolved'"
#: an alert's site (its payload's ``site``); a payload that is not a JSON object has none.
_SITE = "(CASE WHEN {payload} ~ '^\\s*\\{{' THEN {payload}::jsonb ->> 'site' END)"
_ACK = ("INSERT INTO alert_states (alert_id, acked_by, acked_at) VALUES (%s, %s, %s) ON CONFLICT (alert_id) "
        "DO UPDATE SET acked_by = excluded.acked_by, acked_at = excluded.acked_at, snoozed_until = NULL")
_SNOOZE = ("INSERT INTO alert_states (alert_id, snoozed_until, snoozed_by, snoozed_at) VALUES (%s, %s, %s, %s) "
           "ON CONFLICT (alert_id) DO UPDATE SET snoozed_until = excluded.snoozed_until, "
           "snoozed_by = excluded.snoozed_by, snoozed_at = excluded.snoozed_at, acked_by = NULL, acked_at = NULL")


class PgAlertInbox(PgSide):
    """One connection to the database at ``url`` (migrated if need be), used from one thread at a time."""

    def alerts(self, f: AlertFilter) -> list[InboxAlert]:
        where = [_RAISED]
        params: dict[str, Any] = {"now": f.now, "limit": max(1, f.limit)}
        for column, key, values in (("o.rule", "rules", f.rules), ("o.severity", "severities", f.severities),
                                    (_STATE, "states", f.states)):
            if values:
                where.append(f"{column} = ANY(%({key})s)")
                params[key] = list(values)
        if f.departments is not None:
            # A payload is the JSON object the writer made; one that is not JSON has no department.
            where.append("(CASE WHEN o.payload ~ '^\\s*\\{' THEN o.payload::jsonb ->> 'department' END) "
                         "= ANY(%(departments)s)")
            params["departments"] = list(f.departments)
        if f.sites:
            where.append(f"{_SITE.format(payload='o.payload')} = ANY(%(sites)s)")
            params["sites"] = list(f.sites)
        for column, key, value in (("o.created_at >=", "lo", f.lo), ("o.created_at <", "hi", f.hi),
                                   ("o.id <", "before", f.before)):
            if value is not None:
                where.append(f"{column} %({key})s")
                params[key] = value
        sql = f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY o.id DESC LIMIT %(limit)s"
        return [inbox_alert(row) for row in self.all(sql, params)]

    def alert(self, alert_id: str, now: int) -> InboxAlert | None:
        row = self.one(f"{_SELECT} WHERE o.alert_id = %(id)s AND {_RAISED}", {"now": now, "id": alert_id})
        return None if row is None else inbox_alert(row)

    def rules(self) -> list[str]:
        return [r for (r,) in self.all("SELECT DISTINCT rule FROM alert_outbox ORDER BY rule")]

    def sites(self) -> list[str]:
        site = _SITE.format(payload="payload")
        return [s for (s,) in self.all(f"SELECT DISTINCT {site} AS s FROM alert_outbox WHERE {site} IS NOT NULL "
                                       "ORDER BY s")]

    def acknowledge(self, alert_id: str, *, at: int, actor: Actor) -> InboxAlert | None:
        return self._change(alert_id, at, actor, "alert.acknowledge", sql=_ACK, params=(alert_id, actor.name, at))

    def snooze(self, alert_id: str, until: int, *, at: int, actor: Actor) -> InboxAlert | None:
        return self._change(alert_id, at, actor, "alert.snooze", sql=_SNOOZE,
                            params=(alert_id, until or None, actor.name, at))

    def _change(self, alert_id: str, at: int, actor: Actor, action: str, *, sql: str,
                params: tuple[object, ...]) -> InboxAlert | None:
        with self.write() as conn:
            before = self.alert(alert_id, at)
            if before is None:
                return None
            conn.execute(sql, params)
            after = self.alert(alert_id, at)
            assert after is not None
            self.audit(action, alert_id, at=at, actor=actor, before=alert_view(before), after=alert_view(after))
        return after
