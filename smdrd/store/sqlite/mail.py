"""The mail outbox in SQLite (`smdrd.store.api.MailStore`): scheduled reports and alert digests, each a row made
once by its key, sent and marked; the console's report schedules; users' e-mail addresses.

A mail is added with the cursor that planned it in one transaction (``INSERT OR IGNORE`` on the unique key), so
a crash between planning and saving the cursor cannot add a second one. A row is marked ``sent`` only after the
mail server accepted it; if the daemon dies between the two, the same mail (same Message-ID) goes again.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from smdrd.store.api import Actor, MailItem, NewMail, PendingAlert, StoredSchedule
from smdrd.store.mapping import MAIL_FIELDS, MAX_ERROR, SCHEDULE_FIELDS, mail_item, stored_schedule
from smdrd.store.sqlite.side import SideConnection

_ITEM = f"SELECT {', '.join(MAIL_FIELDS)} FROM mail_outbox"
_SCHEDULE = f"SELECT {', '.join(SCHEDULE_FIELDS)} FROM report_schedules"


class SqliteMail:
    """One connection to the database at ``path`` (created and migrated if needed); used from one thread at a
    time, not necessarily the one that opened it."""

    def __init__(self, path: Path | str) -> None:
        self.side = SideConnection(path)
        self.conn = self.side.conn
        self._write = self.side.write
        self._audit = self.side.audit

    def close(self) -> None:
        self.side.close()

    # ---- the outbox ----

    def cursor(self, name: str) -> int | None:
        row = self.conn.execute("SELECT position FROM mail_cursors WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

    def plan(self, mails: Sequence[NewMail], cursors: dict[str, int]) -> int:
        with self._write() as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO mail_outbox (key, kind, owner, message_id, recipients, subject, spec, "
                "created_at, due_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(m.key, m.kind, m.owner, m.message_id, json.dumps(list(m.recipients)), m.subject, m.spec,
                  m.due_at, m.due_at, m.due_at) for m in mails])
            added = conn.total_changes - before
            conn.executemany("INSERT INTO mail_cursors (name, position) VALUES (?, ?) "
                             "ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                             list(cursors.items()))
        return added

    def due(self, now: int, limit: int = 20) -> list[MailItem]:
        rows = self.conn.execute(f"{_ITEM} WHERE state = 'pending' AND next_attempt_at <= ? "
                                 "ORDER BY next_attempt_at, id LIMIT ?", (now, limit)).fetchall()
        return [mail_item(r) for r in rows]

    def next_due(self) -> int | None:
        row = self.conn.execute("SELECT min(next_attempt_at) FROM mail_outbox WHERE state = 'pending'").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def mark_sent(self, mail_id: int, at: int, note: str = "") -> None:
        self.conn.execute("UPDATE mail_outbox SET state = 'sent', sent_at = ?, attempts = attempts + 1, "
                          "last_error = ? WHERE id = ?", (at, note[:MAX_ERROR], mail_id))

    def mark_retry(self, mail_id: int, error: str, next_attempt_at: int) -> None:
        self.conn.execute("UPDATE mail_outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? "
                          "WHERE id = ? AND state = 'pending'", (error[:MAX_ERROR], next_attempt_at, mail_id))

    def mark_failed(self, mail_id: int, error: str) -> None:
        self.conn.execute("UPDATE mail_outbox SET state = 'failed', attempts = attempts + 1, last_error = ? "
                          "WHERE id = ?", (error[:MAX_ERROR], mail_id))

    def mark_partial(self, mail_id: int, recipients: Sequence[str], error: str, next_attempt_at: int) -> None:
        self.conn.execute("UPDATE mail_outbox SET recipients = ?, attempts = attempts + 1, last_error = ?, "
                          "next_attempt_at = ? WHERE id = ? AND state = 'pending'",
                          (json.dumps(list(recipients)), error[:MAX_ERROR], next_attempt_at, mail_id))

    def prune(self, before: int) -> int:
        with self._write() as conn:
            return conn.execute("DELETE FROM mail_outbox WHERE state <> 'pending' AND created_at < ?",
                                (before,)).rowcount

    def deliveries(self, owners: Sequence[str] | None = None, limit: int = 100) -> list[MailItem]:
        if owners is None:
            rows = self.conn.execute(f"{_ITEM} ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        else:
            marks = ", ".join("?" * len(owners)) or "NULL"
            rows = self.conn.execute(f"{_ITEM} WHERE owner IN ({marks}) ORDER BY id DESC LIMIT ?",
                                     (*owners, limit)).fetchall()
        return [mail_item(r) for r in rows]

    # ---- alerts to mail ----

    def alerts_after(self, position: int, limit: int) -> list[PendingAlert]:
        rows = self.conn.execute("SELECT id, alert_id, rule, payload FROM alert_outbox WHERE id > ? ORDER BY id "
                                 "LIMIT ?", (position, limit)).fetchall()
        return [PendingAlert(*row) for row in rows]

    def last_alert(self) -> int:
        row = self.conn.execute("SELECT max(id) FROM alert_outbox").fetchone()
        return 0 if row is None or row[0] is None else int(row[0])

    # ---- users' addresses ----

    def manager_emails(self, department: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT DISTINCT u.email FROM users u JOIN user_departments d ON d.user_id = u.id "
            "WHERE u.role = 'manager' AND d.department = ? AND u.email <> '' ORDER BY u.email",
            (department,)).fetchall()
        return [str(r[0]) for r in rows]

    def set_user_email(self, name: str, email: str, *, at: int, actor: Actor) -> bool:
        with self._write() as conn:
            row = conn.execute("SELECT name, email FROM users WHERE name = ?", (name,)).fetchone()
            if row is None:
                return False
            if row[1] != email:
                conn.execute("UPDATE users SET email = ? WHERE name = ?", (email, name))
                self._audit("user.email", row[0], at=at, actor=actor, before={"email": row[1]}, after={"email": email})
        return True

    def user_emails(self) -> dict[str, str]:
        return {str(n): str(e) for n, e in self.conn.execute("SELECT name, email FROM users WHERE email <> ''")}

    def user_scope(self, name: str) -> tuple[str, tuple[str, ...]] | None:
        row = self.conn.execute("SELECT id, role FROM users WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        departments = tuple(str(d) for (d,) in self.conn.execute(
            "SELECT department FROM user_departments WHERE user_id = ? ORDER BY department", (row[0],)))
        return str(row[1]), departments

    # ---- schedules made in the console ----

    def schedules(self) -> list[StoredSchedule]:
        return [s for s in map(stored_schedule, self.conn.execute(f"{_SCHEDULE} ORDER BY name").fetchall())
                if s is not None]

    def schedule(self, schedule_id: int) -> StoredSchedule | None:
        return stored_schedule(self.conn.execute(f"{_SCHEDULE} WHERE id = ?", (schedule_id,)).fetchone())

    def save_schedule(self, schedule_id: int | None, name: str, owner: str, spec: str, *, at: int,
                      actor: Actor) -> StoredSchedule:
        with self._write() as conn:
            before = None if schedule_id is None else self.schedule(schedule_id)
            try:
                if before is None:
                    cur = conn.execute("INSERT INTO report_schedules (name, owner, spec, created_at, updated_at) "
                                       "VALUES (?, ?, ?, ?, ?)", (name, owner, spec, at, at))
                    schedule_id = int(cur.lastrowid or 0)
                else:
                    conn.execute("UPDATE report_schedules SET name = ?, spec = ?, updated_at = ? WHERE id = ?",
                                 (name, spec, at, before.id))
            except sqlite3.IntegrityError as exc:
                if "UNIQUE" in str(exc):
                    raise ValueError(f"a schedule named {name!r} exists already") from None
                raise
            after = self.schedule(int(schedule_id or 0))
            assert after is not None
            self._audit("schedule.add" if before is None else "schedule.change", name, at=at, actor=actor,
                        before=None if before is None else json.loads(before.spec), after=json.loads(spec))
        return after

    def delete_schedule(self, schedule_id: int, *, at: int, actor: Actor) -> bool:
        with self._write() as conn:
            before = self.schedule(schedule_id)
            if before is None:
                return False
            conn.execute("DELETE FROM report_schedules WHERE id = ?", (schedule_id,))
            self._audit("schedule.remove", before.name, at=at, actor=actor, before=json.loads(before.spec), after=None)
        return True
