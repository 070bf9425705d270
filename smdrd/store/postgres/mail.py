"""The mail outbox on PostgreSQL (`smdrd.store.api.MailStore`), as `smdrd.store.sqlite.mail` keeps it: each mail
added once by its key with the cursors that planned it, in one transaction; marked sent only after the server
accepted it; the console's report schedules; users' e-mail addresses."""

from __future__ import annotations

import json
from collections.abc import Sequence

import psycopg

from smdrd.store.api import Actor, MailItem, NewMail, PendingAlert, StoredSchedule
from smdrd.store.mapping import MAIL_FIELDS, MAX_ERROR, SCHEDULE_FIELDS, mail_item, stored_schedule
from smdrd.store.postgres.side import PgSide

__all__ = ["PgMail"]

_ITEM = f"SELECT {', '.join(MAIL_FIELDS)} FROM mail_outbox"
_SCHEDULE = f"SELECT {', '.join(SCHEDULE_FIELDS)} FROM report_schedules"
_PLAN = ("INSERT INTO mail_outbox (key, kind, owner, message_id, recipients, subject, spec, created_at, due_at, "
         "next_attempt_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (key) DO NOTHING")
_SAVE_CURSOR = ("INSERT INTO mail_cursors (name, position) VALUES (%s, %s) "
                "ON CONFLICT (name) DO UPDATE SET position = excluded.position")


class PgMail(PgSide):
    """One connection to the database at ``url`` (migrated if need be), used from one thread at a time."""

    # ---- the outbox ----

    def cursor(self, name: str) -> int | None:
        row = self.one("SELECT position FROM mail_cursors WHERE name = %s", (name,))
        return None if row is None else int(row[0])

    def plan(self, mails: Sequence[NewMail], cursors: dict[str, int]) -> int:
        added = 0
        with self.write() as conn, conn.cursor() as cur:
            for m in mails:
                cur.execute(_PLAN, (m.key, m.kind, m.owner, m.message_id, json.dumps(list(m.recipients)), m.subject,
                                    m.spec, m.due_at, m.due_at, m.due_at))
                added += cur.rowcount
            cur.executemany(_SAVE_CURSOR, list(cursors.items()))
        return added

    def due(self, now: int, limit: int = 20) -> list[MailItem]:
        return [mail_item(r) for r in self.all(f"{_ITEM} WHERE state = 'pending' AND next_attempt_at <= %s "
                                               "ORDER BY next_attempt_at, id LIMIT %s", (now, limit))]

    def next_due(self) -> int | None:
        row = self.one("SELECT min(next_attempt_at) FROM mail_outbox WHERE state = 'pending'")
        return None if row is None or row[0] is None else int(row[0])

    def mark_sent(self, mail_id: int, at: int, note: str = "") -> None:
        self.conn.execute("UPDATE mail_outbox SET state = 'sent', sent_at = %s, attempts = attempts + 1, "
                          "last_error = %s WHERE id = %s", (at, note[:MAX_ERROR], mail_id))

    def mark_retry(self, mail_id: int, error: str, next_attempt_at: int) -> None:
        self.conn.execute("UPDATE mail_outbox SET attempts = attempts + 1, last_error = %s, next_attempt_at = %s "
                          "WHERE id = %s AND state = 'pending'", (error[:MAX_ERROR], next_attempt_at, mail_id))

    def mark_failed(self, mail_id: int, error: str) -> None:
        self.conn.execute("UPDATE mail_outbox SET state = 'failed', attempts = attempts + 1, last_error = %s "
                          "WHERE id = %s", (error[:MAX_ERROR], mail_id))

    def mark_partial(self, mail_id: int, recipients: Sequence[str], error: str, next_attempt_at: int) -> None:
        self.conn.execute("UPDATE mail_outbox SET recipients = %s, attempts = attempts + 1, last_error = %s, "
                          "next_attempt_at = %s WHERE id = %s AND state = 'pending'",
                          (json.dumps(list(recipients)), error[:MAX_ERROR], next_attempt_at, mail_id))

    def prune(self, before: int) -> int:
        return self.conn.execute("DELETE FROM mail_outbox WHERE state <> 'pending' AND created_at < %s",
                                 (before,)).rowcount

    def deliveries(self, owners: Sequence[str] | None = None, limit: int = 100) -> list[MailItem]:
        if owners is None:
            rows = self.all(f"{_ITEM} ORDER BY id DESC LIMIT %s", (limit,))
        else:
            rows = self.all(f"{_ITEM} WHERE owner = ANY(%s) ORDER BY id DESC LIMIT %s", (list(owners), limit))
        return [mail_item(r) for r in rows]

    # ---- alerts to mail ----

    def alerts_after(self, position: int, limit: int) -> list[PendingAlert]:
        rows = self.all("SELECT id, alert_id, rule, payload FROM alert_outbox WHERE id > %s ORDER BY id LIMIT %s",
                        (position, limit))
        return [PendingAlert(int(r[0]), r[1], r[2], r[3]) for r in rows]

    def last_alert(self) -> int:
        row = self.one("SELECT max(id) FROM alert_outbox")
        return 0 if row is None or row[0] is None else int(row[0])

    # ---- users' addresses ----

    def manager_emails(self, department: str) -> list[str]:
        rows = self.all("SELECT DISTINCT u.email FROM users u JOIN user_departments d ON d.user_id = u.id "
                        "WHERE u.role = 'manager' AND d.department = %s AND u.email <> '' ORDER BY u.email",
                        (department,))
        return [str(r[0]) for r in rows]

    def set_user_email(self, name: str, email: str, *, at: int, actor: Actor) -> bool:
        with self.write() as conn:
            row = self.one("SELECT name, email FROM users WHERE lower(name) = lower(%s) FOR UPDATE", (name,))
            if row is None:
                return False
            if row[1] != email:
                conn.execute("UPDATE users SET email = %s WHERE lower(name) = lower(%s)", (email, name))
                self.audit("user.email", row[0], at=at, actor=actor, before={"email": row[1]}, after={"email": email})
        return True

    def user_emails(self) -> dict[str, str]:
        return {str(n): str(e) for n, e in self.all("SELECT name, email FROM users WHERE email <> ''")}

    def user_scope(self, name: str) -> tuple[str, tuple[str, ...]] | None:
        row = self.one("SELECT id, role FROM users WHERE lower(name) = lower(%s)", (name,))
        if row is None:
            return None
        departments = tuple(str(d) for (d,) in self.all(
            "SELECT department FROM user_departments WHERE user_id = %s ORDER BY department", (row[0],)))
        return str(row[1]), departments

    # ---- schedules made in the console ----

    def schedules(self) -> list[StoredSchedule]:
        return [s for s in map(stored_schedule, self.all(f"{_SCHEDULE} ORDER BY lower(name)")) if s is not None]

    def schedule(self, schedule_id: int) -> StoredSchedule | None:
        return stored_schedule(self.one(f"{_SCHEDULE} WHERE id = %s", (schedule_id,)))

    def save_schedule(self, schedule_id: int | None, name: str, owner: str, spec: str, *, at: int,
                      actor: Actor) -> StoredSchedule:
        try:
            with self.write() as conn:
                before = None if schedule_id is None else self.schedule(schedule_id)
                if before is None:
                    row = self.one("INSERT INTO report_schedules (name, owner, spec, created_at, updated_at) "
                                   "VALUES (%s, %s, %s, %s, %s) RETURNING id", (name, owner, spec, at, at))
                    schedule_id = int(row[0]) if row else 0
                else:
                    conn.execute("UPDATE report_schedules SET name = %s, spec = %s, updated_at = %s WHERE id = %s",
                                 (name, spec, at, before.id))
                after = self.schedule(int(schedule_id or 0))
                assert after is not None
                self.audit("schedule.add" if before is None else "schedule.change", name, at=at, actor=actor,
                           before=None if before is None else json.loads(before.spec), after=json.loads(spec))
        except psycopg.errors.UniqueViolation:
            raise ValueError(f"a schedule named {name!r} exists already") from None
        return after

    def delete_schedule(self, schedule_id: int, *, at: int, actor: Actor) -> bool:
        with self.write() as conn:
            before = self.schedule(schedule_id)
            if before is None:
                return False
            conn.execute("DELETE FROM report_schedules WHERE id = %s", (schedule_id,))
            self.audit("schedule.remove", before.name, at=at, actor=actor, before=json.loads(before.spec), after=None)
        return True
