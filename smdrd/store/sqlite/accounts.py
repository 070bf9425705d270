"""People and rights in SQLite (`smdrd.store.api.Accounts`): users, sessions, personal API tokens, the audit log.

No secret is stored as it is: passwords as their Argon2id hash (made by `smdrd.accounts`, never here), session
ids and API tokens as their SHA-256 digest (they are 256-bit random values, so a fast digest is enough: nobody
can guess one from its digest). Every change to a user or a token is written with its audit entry in one
transaction, so the log cannot miss a change that happened. Times are UTC seconds, given by the caller.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from smdrd.store import mapping
from smdrd.store.api import Actor, ApiToken, AuditEntry, LastAdmin, SessionInfo, User, UserExists, removed_owner
from smdrd.store.sqlite.schema import connect

_USER = f"SELECT {', '.join(mapping.USER_FIELDS)} FROM users"


class SqliteAccounts:
    """One connection to the database at ``path`` (created and migrated if needed). Used from one thread at a
    time, not necessarily the one that opened it (the console runs it on its own thread)."""

    def __init__(self, path: Path | str) -> None:
        self.conn = connect(str(path))
        self.conn.close()
        # Reopened shareable across threads: the console hands it to its one worker thread.
        self.conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        for pragma in ("PRAGMA foreign_keys = ON", "PRAGMA busy_timeout = 5000"):
            self.conn.execute(pragma)

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # ---- users ----

    def _user(self, row: tuple[Any, ...] | None) -> User | None:
        if row is None:
            return None
        departments = tuple(d for (d,) in self.conn.execute(
            "SELECT department FROM user_departments WHERE user_id = ? ORDER BY department", (row[0],)))
        return mapping.user(row, departments)

    def _by_id(self, user_id: int) -> User | None:
        return self._user(self.conn.execute(f"{_USER} WHERE id = ?", (user_id,)).fetchone())

    def add_user(self, name: str, role: str, password_hash: str, departments: Sequence[str], *, at: int,
                 actor: Actor) -> User:
        with self._write() as conn:
            try:
                cur = conn.execute("INSERT INTO users (name, role, password_hash, created_at) VALUES (?, ?, ?, ?)",
                                   (name, role, password_hash, at))
            except sqlite3.IntegrityError as exc:
                if "UNIQUE" in str(exc):
                    raise UserExists(f"a user named {name!r} exists already") from None
                raise
            user_id = int(cur.lastrowid or 0)
            conn.executemany("INSERT OR IGNORE INTO user_departments (user_id, department) VALUES (?, ?)",
                             [(user_id, d) for d in departments])
            user = self._by_id(user_id)
            assert user is not None
            self._audit(conn, "user.add", user.name, at, actor, before=None, after=user.audit_view())
        return user

    def user(self, name: str) -> User | None:
        return self._user(self.conn.execute(f"{_USER} WHERE name = ?", (name,)).fetchone())

    def users(self) -> list[User]:
        rows = self.conn.execute(f"{_USER} ORDER BY name").fetchall()
        return [u for u in map(self._user, rows) if u is not None]

    def any_users(self) -> bool:
        return bool(self.conn.execute("SELECT EXISTS (SELECT 1 FROM users)").fetchone()[0])

    def password_hash(self, user_id: int) -> str | None:
        row = self.conn.execute("SELECT password_hash FROM users WHERE id = ?", (user_id,)).fetchone()
        return None if row is None else str(row[0])

    def set_password(self, user_id: int, password_hash: str, *, at: int, actor: Actor | None,
                     revoke_tokens: bool = False, keep_session: str = "") -> int:
        with self._write() as conn:
            conn.execute("UPDATE users SET password_hash = ?, failed_logins = 0, locked_until = 0 WHERE id = ?",
                         (password_hash, user_id))
            if actor is None:  # a silent rehash at sign-in: nothing else changes
                return 0
            # a new password: every session ends but the one it was changed from (and, for a reset, every token)
            sessions = conn.execute("DELETE FROM sessions WHERE user_id = ? AND digest <> ?",
                                    (user_id, keep_session)).rowcount
            tokens = conn.execute("DELETE FROM api_tokens WHERE user_id = ?", (user_id,)).rowcount \
                if revoke_tokens else 0
            user = self._by_id(user_id)
            if user is not None:
                self._audit(conn, "user.password", user.name, at, actor, before=None,
                            after={"sessions_ended": sessions, "tokens_revoked": tokens})
        return tokens

    def _last_admin(self, user: User) -> bool:
        return user.role == "admin" and self.conn.execute(
            "SELECT COUNT(*) FROM users WHERE role = 'admin'").fetchone()[0] <= 1

    def remove_user(self, name: str, *, at: int, actor: Actor, keep_an_admin: bool = False) -> User | None:
        with self._write() as conn:
            user = self.user(name)
            if user is None:
                return None
            if keep_an_admin and self._last_admin(user):
                raise LastAdmin(f"{user.name} is the last admin; make another admin first")
            conn.execute("DELETE FROM users WHERE id = ?", (user.id,))  # sessions, tokens, departments cascade
            self._audit(conn, "user.remove", user.name, at, actor, before=user.audit_view(), after=None)
            self._disown_schedules(conn, user.name, at, actor)
        return user

    def _disown_schedules(self, conn: sqlite3.Connection, name: str, at: int, actor: Actor) -> None:
        """Give the removed user's report schedules, and their mails still to send, `removed_owner`: owners are
        names, and a new user of the same name must not inherit them."""
        former = removed_owner(name)
        rows = conn.execute("SELECT id, name, owner FROM report_schedules WHERE owner = ? COLLATE NOCASE ORDER BY id",
                            (name,)).fetchall()
        for schedule_id, schedule_name, owner in rows:
            conn.execute("UPDATE report_schedules SET owner = ? WHERE id = ?", (former, schedule_id))
            # the outbox knows a console schedule as db:<id> (smdrd.mail.schedule_key) and its owner from the spec
            conn.execute("UPDATE mail_outbox SET spec = json_set(spec, '$.owner', ?) "
                         "WHERE owner = ? AND state = 'pending' AND json_valid(spec)", (former, f"db:{schedule_id}"))
            self._audit(conn, "schedule.disown", schedule_name, at, actor, before={"owner": owner},
                        after={"owner": former})

    def change_user(self, name: str, *, role: str, departments: Sequence[str], at: int,
                    actor: Actor) -> tuple[User, User] | None:
        with self._write() as conn:
            before = self.user(name)
            if before is None:
                return None
            if role != "admin" and self._last_admin(before):
                raise LastAdmin(f"{before.name} is the last admin; make another admin first")
            conn.execute("UPDATE users SET role = ? WHERE id = ?", (role, before.id))
            conn.execute("DELETE FROM user_departments WHERE user_id = ?", (before.id,))
            conn.executemany("INSERT OR IGNORE INTO user_departments (user_id, department) VALUES (?, ?)",
                             [(before.id, d) for d in departments])
            after = self._by_id(before.id)
            assert after is not None
            if after.audit_view() != before.audit_view():
                self._audit(conn, "user.change", after.name, at, actor, before=before.audit_view(),
                            after=after.audit_view())
        return before, after

    def unlock_user(self, name: str, *, at: int, actor: Actor) -> User | None:
        with self._write() as conn:
            user = self.user(name)
            if user is None:
                return None
            conn.execute("UPDATE users SET failed_logins = 0, locked_until = 0 WHERE id = ?", (user.id,))
            self._audit(conn, "user.unlock", user.name, at, actor,
                        before={"failed_logins": user.failed_logins, "locked_until": user.locked_until},
                        after={"failed_logins": 0, "locked_until": 0})
        return self._by_id(user.id)

    def login_failed(self, user_id: int, *, at: int, lock_after: int, lock_seconds: int) -> User:
        with self._write() as conn:
            conn.execute(
                "UPDATE users SET failed_logins = failed_logins + 1, "
                "locked_until = CASE WHEN failed_logins + 1 >= ? THEN ? ELSE locked_until END WHERE id = ?",
                (lock_after, at + lock_seconds, user_id))
            user = self._by_id(user_id)
        assert user is not None
        return user

    def login_succeeded(self, user_id: int) -> None:
        self.conn.execute("UPDATE users SET failed_logins = 0, locked_until = 0 WHERE id = ? AND "
                          "(failed_logins <> 0 OR locked_until <> 0)", (user_id,))

    # ---- sessions ----

    def create_session(self, user_id: int, id_digest: str, csrf: str, *, at: int, expires_at: int) -> None:
        self.conn.execute("INSERT INTO sessions (digest, user_id, csrf, created_at, expires_at) "
                          "VALUES (?, ?, ?, ?, ?)", (id_digest, user_id, csrf, at, expires_at))

    def session(self, id_digest: str, *, at: int) -> SessionInfo | None:
        row = self.conn.execute("SELECT user_id, csrf, expires_at FROM sessions WHERE digest = ? AND expires_at > ?",
                                (id_digest, at)).fetchone()
        if row is None:
            return None
        user = self._by_id(int(row[0]))
        return None if user is None else SessionInfo(user, str(row[1]), int(row[2]))

    def end_session(self, id_digest: str) -> None:
        self.conn.execute("DELETE FROM sessions WHERE digest = ?", (id_digest,))

    def prune_sessions(self, at: int) -> int:
        return self.conn.execute("DELETE FROM sessions WHERE expires_at <= ?", (at,)).rowcount

    # ---- personal API tokens ----

    def create_token(self, user_id: int, name: str, digest: str, *, at: int, actor: Actor) -> ApiToken:
        with self._write() as conn:
            cur = conn.execute("INSERT INTO api_tokens (user_id, name, digest, created_at) VALUES (?, ?, ?, ?)",
                               (user_id, name, digest, at))
            token = ApiToken(int(cur.lastrowid or 0), user_id, name, at, None)
            user = self._by_id(user_id)
            self._audit(conn, "token.create", user.name if user else str(user_id), at, actor, before=None,
                        after={"id": token.id, "name": name})
        return token

    def tokens(self, user_id: int) -> list[ApiToken]:
        rows = self.conn.execute("SELECT id, user_id, name, created_at, last_used_at FROM api_tokens "
                                 "WHERE user_id = ? ORDER BY id", (user_id,)).fetchall()
        return [ApiToken(int(r[0]), int(r[1]), r[2], int(r[3]), None if r[4] is None else int(r[4])) for r in rows]

    def token_user(self, digest: str, *, at: int) -> User | None:
        row = self.conn.execute("SELECT id, user_id, last_used_at FROM api_tokens WHERE digest = ?",
                                (digest,)).fetchone()
        if row is None:
            return None
        if row[2] is None or at - int(row[2]) >= 60:  # noted once a minute at most: no write per request
            self.conn.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (at, row[0]))
        return self._by_id(int(row[1]))

    def revoke_token(self, user_id: int, token_id: int, *, at: int, actor: Actor) -> bool:
        with self._write() as conn:
            row = conn.execute("SELECT name FROM api_tokens WHERE id = ? AND user_id = ?",
                               (token_id, user_id)).fetchone()
            if row is None:
                return False
            conn.execute("DELETE FROM api_tokens WHERE id = ?", (token_id,))
            user = self._by_id(user_id)
            self._audit(conn, "token.revoke", user.name if user else str(user_id), at, actor,
                        before={"id": token_id, "name": row[0]}, after=None)
        return True

    # ---- the audit log ----

    @staticmethod
    def _audit(conn: sqlite3.Connection, action: str, target: str, at: int, actor: Actor, *,
               before: dict[str, Any] | None, after: dict[str, Any] | None) -> None:
        conn.execute("INSERT INTO audit_log (at, actor, address, action, target, before, after) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (at, actor.name, actor.address, action, target, mapping.audit_text(before),
                      mapping.audit_text(after)))

    def record(self, action: str, target: str, *, at: int, actor: Actor,
               before: dict[str, Any] | None = None, after: dict[str, Any] | None = None) -> None:
        self._audit(self.conn, action, target, at, actor, before=before, after=after)

    def entries(self, limit: int = 100, before_id: int | None = None) -> list[AuditEntry]:
        rows = self.conn.execute(
            f"SELECT {', '.join(mapping.AUDIT_FIELDS)} FROM audit_log WHERE id < ? ORDER BY id DESC LIMIT ?",
            (before_id if before_id is not None else 2**63 - 1, limit)).fetchall()
        return [mapping.audit_entry(r) for r in rows]
