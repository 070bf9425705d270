"""People and rights on PostgreSQL (`smdrd.store.api.Accounts`): users, sessions, personal API tokens, the audit
log, as `smdrd.store.sqlite.accounts` keeps them (secrets only as digests and Argon2 hashes; every change with its
audit entry in one transaction). A user's name is unique without regard to case (``users_name``, on
``lower(name)``), and looked up the same way."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from smdrd.store import mapping
from smdrd.store.api import Actor, ApiToken, AuditEntry, LastAdmin, SessionInfo, User, UserExists, removed_owner
from smdrd.store.postgres.side import PgSide

__all__ = ["PgAccounts"]

_USER = f"SELECT {', '.join(mapping.USER_FIELDS)} FROM users"
_BY_NAME = f"{_USER} WHERE lower(name) = lower(%s)"


class PgAccounts(PgSide):
    """One connection to the database at ``url`` (migrated if need be), used from one thread at a time."""

    # ---- users ----

    def _user(self, row: tuple[Any, ...] | None) -> User | None:
        if row is None:
            return None
        departments = [d for (d,) in self.all(
            "SELECT department FROM user_departments WHERE user_id = %s ORDER BY department", (row[0],))]
        return mapping.user(row, departments)

    def _by_id(self, user_id: int) -> User | None:
        return self._user(self.one(f"{_USER} WHERE id = %s", (user_id,)))

    def _set_departments(self, user_id: int, departments: Sequence[str]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany("INSERT INTO user_departments (user_id, department) VALUES (%s, %s) "
                            "ON CONFLICT DO NOTHING", [(user_id, d) for d in departments])

    def add_user(self, name: str, role: str, password_hash: str, departments: Sequence[str], *, at: int,
                 actor: Actor) -> User:
        try:
            with self.write():
                row = self.one("INSERT INTO users (name, role, password_hash, created_at) VALUES (%s, %s, %s, %s) "
                               "RETURNING id", (name, role, password_hash, at))
                assert row is not None
                self._set_departments(int(row[0]), departments)
                user = self._by_id(int(row[0]))
                assert user is not None
                self.audit("user.add", user.name, at=at, actor=actor, before=None, after=user.audit_view())
        except psycopg.errors.UniqueViolation:
            raise UserExists(f"a user named {name!r} exists already") from None
        return user

    def user(self, name: str) -> User | None:
        return self._user(self.one(_BY_NAME, (name,)))

    def users(self) -> list[User]:
        return [u for u in map(self._user, self.all(f"{_USER} ORDER BY lower(name)")) if u is not None]

    def any_users(self) -> bool:
        row = self.one("SELECT EXISTS (SELECT 1 FROM users)")
        return bool(row and row[0])

    def password_hash(self, user_id: int) -> str | None:
        row = self.one("SELECT password_hash FROM users WHERE id = %s", (user_id,))
        return None if row is None else str(row[0])

    def set_password(self, user_id: int, password_hash: str, *, at: int, actor: Actor | None,
                     revoke_tokens: bool = False, keep_session: str = "") -> int:
        with self.write() as conn:
            conn.execute("UPDATE users SET password_hash = %s, failed_logins = 0, locked_until = 0 WHERE id = %s",
                         (password_hash, user_id))
            if actor is None:  # a silent rehash at sign-in: nothing else changes
                return 0
            # a new password: every session ends but the one it was changed from (and, for a reset, every token)
            sessions = conn.execute("DELETE FROM sessions WHERE user_id = %s AND digest <> %s",
                                    (user_id, keep_session)).rowcount
            tokens = conn.execute("DELETE FROM api_tokens WHERE user_id = %s", (user_id,)).rowcount \
                if revoke_tokens else 0
            user = self._by_id(user_id)
            if user is not None:
                self.audit("user.password", user.name, at=at, actor=actor, before=None,
                           after={"sessions_ended": sessions, "tokens_revoked": tokens})
        return tokens

    def _last_admin(self, user: User) -> bool:
        if user.role != "admin":
            return False
        # Locked in the change's transaction: two admins demoting each other at once cannot leave none.
        row = self.one("SELECT count(*) FROM (SELECT id FROM users WHERE role = 'admin' FOR UPDATE) AS a")
        return row is not None and int(row[0]) <= 1

    def remove_user(self, name: str, *, at: int, actor: Actor, keep_an_admin: bool = False) -> User | None:
        with self.write() as conn:
            user = self.user(name)
            if user is None:
                return None
            if keep_an_admin and self._last_admin(user):
                raise LastAdmin(f"{user.name} is the last admin; make another admin first")
            conn.execute("DELETE FROM users WHERE id = %s", (user.id,))  # sessions, tokens, departments cascade
            self.audit("user.remove", user.name, at=at, actor=actor, before=user.audit_view(), after=None)
            self._disown_schedules(user.name, at, actor)
        return user

    def _disown_schedules(self, name: str, at: int, actor: Actor) -> None:
        """Give the removed user's report schedules, and their mails still to send, `removed_owner`: owners are
        names, and a new user of the same name must not inherit them."""
        former = removed_owner(name)
        rows = self.all("SELECT id, name, owner FROM report_schedules WHERE lower(owner) = lower(%s) ORDER BY id "
                        "FOR UPDATE", (name,))
        for schedule_id, schedule_name, owner in rows:
            self.conn.execute("UPDATE report_schedules SET owner = %s WHERE id = %s", (former, schedule_id))
            # the outbox knows a console schedule as db:<id> (smdrd.mail.schedule_key) and its owner from the spec
            self.conn.execute("UPDATE mail_outbox SET spec = jsonb_set(spec::jsonb, '{owner}', to_jsonb(%s::text))"
                              "::text WHERE owner = %s AND state = 'pending'", (former, f"db:{schedule_id}"))
            self.audit("schedule.disown", schedule_name, at=at, actor=actor, before={"owner": owner},
                       after={"owner": former})

    def change_user(self, name: str, *, role: str, departments: Sequence[str], at: int,
                    actor: Actor) -> tuple[User, User] | None:
        with self.write() as conn:
            before = self.user(name)
            if before is None:
                return None
            if role != "admin" and self._last_admin(before):
                raise LastAdmin(f"{before.name} is the last admin; make another admin first")
            conn.execute("UPDATE users SET role = %s WHERE id = %s", (role, before.id))
            conn.execute("DELETE FROM user_departments WHERE user_id = %s", (before.id,))
            self._set_departments(before.id, departments)
            after = self._by_id(before.id)
            assert after is not None
            if after.audit_view() != before.audit_view():
                self.audit("user.change", after.name, at=at, actor=actor, before=before.audit_view(),
                           after=after.audit_view())
        return before, after

    def unlock_user(self, name: str, *, at: int, actor: Actor) -> User | None:
        with self.write() as conn:
            user = self.user(name)
            if user is None:
                return None
            conn.execute("UPDATE users SET failed_logins = 0, locked_until = 0 WHERE id = %s", (user.id,))
            self.audit("user.unlock", user.name, at=at, actor=actor,
                       before={"failed_logins": user.failed_logins, "locked_until": user.locked_until},
                       after={"failed_logins": 0, "locked_until": 0})
        return self._by_id(user.id)

    def login_failed(self, user_id: int, *, at: int, lock_after: int, lock_seconds: int) -> User:
        with self.write() as conn:
            conn.execute(
                "UPDATE users SET failed_logins = failed_logins + 1, "
                "locked_until = CASE WHEN failed_logins + 1 >= %s THEN %s ELSE locked_until END WHERE id = %s",
                (lock_after, at + lock_seconds, user_id))
            user = self._by_id(user_id)
        assert user is not None
        return user

    def login_succeeded(self, user_id: int) -> None:
        self.conn.execute("UPDATE users SET failed_logins = 0, locked_until = 0 WHERE id = %s AND "
                          "(failed_logins <> 0 OR locked_until <> 0)", (user_id,))

    # ---- sessions ----

    def create_session(self, user_id: int, id_digest: str, csrf: str, *, at: int, expires_at: int) -> None:
        self.conn.execute("INSERT INTO sessions (digest, user_id, csrf, created_at, expires_at) "
                          "VALUES (%s, %s, %s, %s, %s)", (id_digest, user_id, csrf, at, expires_at))

    def session(self, id_digest: str, *, at: int) -> SessionInfo | None:
        row = self.one("SELECT user_id, csrf, expires_at FROM sessions WHERE digest = %s AND expires_at > %s",
                       (id_digest, at))
        if row is None:
            return None
        user = self._by_id(int(row[0]))
        return None if user is None else SessionInfo(user, str(row[1]), int(row[2]))

    def end_session(self, id_digest: str) -> None:
        self.conn.execute("DELETE FROM sessions WHERE digest = %s", (id_digest,))

    def prune_sessions(self, at: int) -> int:
        return self.conn.execute("DELETE FROM sessions WHERE expires_at <= %s", (at,)).rowcount

    # ---- personal API tokens ----

    def create_token(self, user_id: int, name: str, digest: str, *, at: int, actor: Actor) -> ApiToken:
        with self.write():
            row = self.one("INSERT INTO api_tokens (user_id, name, digest, created_at) VALUES (%s, %s, %s, %s) "
                           "RETURNING id", (user_id, name, digest, at))
            assert row is not None
            token = ApiToken(int(row[0]), user_id, name, at, None)
            user = self._by_id(user_id)
            self.audit("token.create", user.name if user else str(user_id), at=at, actor=actor, before=None,
                       after={"id": token.id, "name": name})
        return token

    def tokens(self, user_id: int) -> list[ApiToken]:
        rows = self.all("SELECT id, user_id, name, created_at, last_used_at FROM api_tokens WHERE user_id = %s "
                        "ORDER BY id", (user_id,))
        return [ApiToken(int(r[0]), int(r[1]), r[2], int(r[3]), None if r[4] is None else int(r[4])) for r in rows]

    def token_user(self, digest: str, *, at: int) -> User | None:
        row = self.one("SELECT id, user_id, last_used_at FROM api_tokens WHERE digest = %s", (digest,))
        if row is None:
            return None
        if row[2] is None or at - int(row[2]) >= 60:  # noted once a minute at most: no write per request
            self.conn.execute("UPDATE api_tokens SET last_used_at = %s WHERE id = %s", (at, row[0]))
        return self._by_id(int(row[1]))

    def revoke_token(self, user_id: int, token_id: int, *, at: int, actor: Actor) -> bool:
        with self.write() as conn:
            row = self.one("SELECT name FROM api_tokens WHERE id = %s AND user_id = %s", (token_id, user_id))
            if row is None:
                return False
            conn.execute("DELETE FROM api_tokens WHERE id = %s", (token_id,))
            user = self._by_id(user_id)
            self.audit("token.revoke", user.name if user else str(user_id), at=at, actor=actor,
                       before={"id": token_id, "name": row[0]}, after=None)
        return True

    # ---- the audit log ----

    def record(self, action: str, target: str, *, at: int, actor: Actor,
               before: dict[str, Any] | None = None, after: dict[str, Any] | None = None) -> None:
        self.audit(action, target, at=at, actor=actor, before=before, after=after)

    def entries(self, limit: int = 100, before_id: int | None = None) -> list[AuditEntry]:
        rows = self.all(f"SELECT {', '.join(mapping.AUDIT_FIELDS)} FROM audit_log WHERE id < %s "
                        "ORDER BY id DESC LIMIT %s", (before_id if before_id is not None else 2**63 - 1, limit))
        return [mapping.audit_entry(r) for r in rows]
