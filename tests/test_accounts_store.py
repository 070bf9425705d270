"""People and rights in the store: users, sessions, personal API tokens and the audit log, on a real SQLite
database file and again on a real PostgreSQL database, with the Argon2id hashes and digests of `smdrd.accounts`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from smdrd.accounts import (
    TOKEN_PREFIX,
    digest,
    hash_password,
    name_problem,
    new_token,
    password_problem,
    verify_password,
)
from smdrd.store import open_store
from smdrd.store.api import Accounts, Actor, UserExists

ADMIN = Actor("cli:root")
T0 = 1_800_000_000


@pytest.fixture(params=["sqlite", "postgres"])
def accounts(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Accounts]:
    database = tmp_path / "smdrd.db" if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))
    store = open_store(database).accounts()
    try:
        yield store
    finally:
        store.close()


def test_a_user_is_added_found_listed_and_removed_with_audit_entries(accounts: Accounts) -> None:
    assert not accounts.any_users()
    alice = accounts.add_user("alice", "admin", hash_password("correct horse battery"), [], at=T0, actor=ADMIN)
    bob = accounts.add_user("bob", "manager", "x", ["Sales", "Support"], at=T0 + 1, actor=ADMIN)
    assert accounts.any_users()
    assert accounts.user("ALICE") == alice, "names are found without regard to case"
    assert bob.departments == ("Sales", "Support") and bob.role == "manager"
    assert [u.name for u in accounts.users()] == ["alice", "bob"]
    with pytest.raises(UserExists):
        accounts.add_user("Alice", "viewer", "x", [], at=T0, actor=ADMIN)
    removed = accounts.remove_user("bob", at=T0 + 2, actor=ADMIN)
    assert removed == bob and accounts.user("bob") is None
    assert accounts.remove_user("bob", at=T0 + 3, actor=ADMIN) is None
    log = accounts.entries()
    assert [(e.action, e.target, e.actor) for e in log] == [
        ("user.remove", "bob", "cli:root"), ("user.add", "bob", "cli:root"), ("user.add", "alice", "cli:root")]
    assert log[0].before == {"name": "bob", "role": "manager", "departments": ["Sales", "Support"]}
    assert log[0].after is None and log[1].before is None and log[1].after == log[0].before
    assert "hash" not in repr(log) and "argon2" not in repr(log), "no secret reaches the audit log"


def test_an_unknown_role_is_refused_by_the_database(accounts: Accounts) -> None:
    import sqlite3

    import psycopg

    with pytest.raises((sqlite3.IntegrityError, psycopg.errors.CheckViolation)):
        accounts.add_user("eve", "root", "x", [], at=T0, actor=ADMIN)
    assert not accounts.any_users() and accounts.entries() == []


def test_password_hashes_are_argon2id_and_verify() -> None:
    encoded = hash_password("correct horse battery")
    assert encoded.startswith("$argon2id$")
    assert verify_password(encoded, "correct horse battery") == (True, False)
    assert verify_password(encoded, "wrong horse battery")[0] is False
    assert verify_password(None, "anything at all")[0] is False, "an unknown user never signs in"
    assert verify_password("not a hash", "anything at all")[0] is False


def test_names_and_passwords_are_checked_without_repeating_them() -> None:
    assert name_problem("alice.smith@example") is None
    assert name_problem("") and name_problem("-x") and name_problem("a b") and name_problem("x" * 65)
    assert password_problem("correct horse battery") is None
    for bad in ("Pw4!x", "x" * 1025, "tab\there and long"):
        problem = password_problem(bad)
        assert problem is not None and bad not in problem


def test_failed_logins_lock_and_a_new_password_unlocks(accounts: Accounts) -> None:
    user = accounts.add_user("carol", "viewer", "x", [], at=T0, actor=ADMIN)
    for i in range(4):
        after = accounts.login_failed(user.id, at=T0 + i, lock_after=5, lock_seconds=900)
        assert after.failed_logins == i + 1 and after.locked_until == 0
    locked = accounts.login_failed(user.id, at=T0 + 10, lock_after=5, lock_seconds=900)
    assert locked.locked_until == T0 + 910
    accounts.set_password(user.id, "y", at=T0 + 20, actor=ADMIN)
    fresh = accounts.user("carol")
    assert fresh is not None and fresh.failed_logins == 0 and fresh.locked_until == 0
    assert accounts.password_hash(user.id) == "y"
    accounts.login_failed(user.id, at=T0 + 30, lock_after=5, lock_seconds=900)
    accounts.login_succeeded(user.id)
    fresh = accounts.user("carol")
    assert fresh is not None and fresh.failed_logins == 0


def test_sessions_are_found_by_digest_until_they_expire_or_end(accounts: Accounts) -> None:
    user = accounts.add_user("dave", "admin", "x", [], at=T0, actor=ADMIN)
    accounts.create_session(user.id, digest("session-one"), "csrf-one", at=T0, expires_at=T0 + 100)
    accounts.create_session(user.id, digest("session-two"), "csrf-two", at=T0, expires_at=T0 + 100)
    info = accounts.session(digest("session-one"), at=T0 + 50)
    assert info is not None and info.user.name == "dave" and info.csrf == "csrf-one"
    assert accounts.session("session-one", at=T0 + 50) is None, "the id itself is not a key: only its digest"
    assert accounts.session(digest("session-one"), at=T0 + 100) is None, "expired"
    accounts.end_session(digest("session-two"))
    assert accounts.session(digest("session-two"), at=T0 + 50) is None
    assert accounts.prune_sessions(T0 + 100) == 1


def test_a_new_password_or_removal_ends_every_session(accounts: Accounts) -> None:
    user = accounts.add_user("erin", "admin", "x", [], at=T0, actor=ADMIN)
    accounts.create_session(user.id, digest("s1"), "c", at=T0, expires_at=T0 + 100)
    accounts.set_password(user.id, "rehashed", at=T0, actor=None)
    assert accounts.session(digest("s1"), at=T0) is not None, "a silent rehash at sign-in keeps the session"
    accounts.set_password(user.id, "new", at=T0, actor=ADMIN)
    assert accounts.session(digest("s1"), at=T0) is None
    accounts.create_session(user.id, digest("s2"), "c", at=T0, expires_at=T0 + 100)
    token = new_token()
    accounts.create_token(user.id, "script", digest(token), at=T0, actor=ADMIN)
    accounts.remove_user("erin", at=T0, actor=ADMIN)
    assert accounts.session(digest("s2"), at=T0) is None
    assert accounts.token_user(digest(token), at=T0) is None
    assert [e.action for e in accounts.entries()] == ["user.remove", "token.create", "user.password", "user.add"]


def test_a_reset_revokes_the_users_api_tokens_and_counts_what_ended(accounts: Accounts) -> None:
    user = accounts.add_user("hank", "viewer", "x", [], at=T0, actor=ADMIN)
    other = accounts.add_user("ivy", "viewer", "x", [], at=T0, actor=ADMIN)
    tokens = [new_token() for _ in range(3)]
    for i, token in enumerate(tokens[:2]):
        accounts.create_token(user.id, f"script {i}", digest(token), at=T0, actor=ADMIN)
    accounts.create_token(other.id, "ivy's", digest(tokens[2]), at=T0, actor=ADMIN)
    accounts.create_session(user.id, digest("hank-1"), "c", at=T0, expires_at=T0 + 100)
    assert accounts.set_password(user.id, "rehash", at=T0, actor=None, revoke_tokens=True) == 0, "a rehash: none"
    accounts.create_session(user.id, digest("hank-2"), "c", at=T0, expires_at=T0 + 100)
    assert accounts.set_password(user.id, "own", at=T0, actor=Actor("hank"), keep_session=digest("hank-2")) == 0
    assert accounts.session(digest("hank-1"), at=T0) is None, "every other session ends"
    assert accounts.session(digest("hank-2"), at=T0) is not None, "the one it was changed from stays"
    assert len(accounts.tokens(user.id)) == 2, "tokens stay unless asked"
    assert accounts.set_password(user.id, "reset", at=T0 + 1, actor=ADMIN, revoke_tokens=True) == 2
    assert accounts.tokens(user.id) == [] and accounts.token_user(digest(tokens[0]), at=T0 + 2) is None
    assert accounts.token_user(digest(tokens[2]), at=T0 + 2) == other, "another user's token stays"
    first, second = [e for e in accounts.entries() if e.action == "user.password"][:2]
    assert (first.target, first.before, first.after) == ("hank", None, {"sessions_ended": 1, "tokens_revoked": 2})
    assert (second.actor, second.after) == ("hank", {"sessions_ended": 1, "tokens_revoked": 0})


def test_personal_tokens_are_stored_as_digests_and_revoked(accounts: Accounts, tmp_path: Path) -> None:
    user = accounts.add_user("frank", "viewer", "x", [], at=T0, actor=ADMIN)
    other = accounts.add_user("grace", "viewer", "x", [], at=T0, actor=ADMIN)
    token = new_token()
    assert token.startswith(TOKEN_PREFIX) and len(token) > 40
    made = accounts.create_token(user.id, "export script", digest(token), at=T0, actor=Actor("frank", "10.0.0.5"))
    assert accounts.token_user(digest(token), at=T0 + 5) == accounts.user("frank")
    assert accounts.tokens(user.id)[0].last_used_at == T0 + 5
    if (tmp_path / "smdrd.db").exists():
        assert token.encode() not in (tmp_path / "smdrd.db").read_bytes(), "the token itself is never stored"
    assert not accounts.revoke_token(other.id, made.id, at=T0, actor=ADMIN), "not someone else's token"
    assert accounts.revoke_token(user.id, made.id, at=T0 + 9, actor=Actor("frank", "10.0.0.5"))
    assert accounts.token_user(digest(token), at=T0 + 10) is None and accounts.tokens(user.id) == []
    revoke = accounts.entries(1)[0]
    assert (revoke.action, revoke.target, revoke.address, revoke.before) == (
        "token.revoke", "frank", "10.0.0.5", {"id": made.id, "name": "export script"})


def test_the_audit_log_pages_newest_first(accounts: Accounts) -> None:
    for i in range(5):
        accounts.record("login", f"u{i}", at=T0 + i, actor=Actor(f"u{i}", "127.0.0.1"), after={"n": i})
    first = accounts.entries(2)
    assert [e.target for e in first] == ["u4", "u3"]
    assert [e.target for e in accounts.entries(10, before_id=first[-1].id)] == ["u2", "u1", "u0"]


def test_removing_a_user_disowns_their_schedules_so_a_namesake_gets_none(any_database: Path | str) -> None:
    """Schedules are owned by a user name: removing Mona leaves hers (and their mails still to send) to
    ``removed user mona``, with an audit entry each, so a new user named Mona later neither owns them nor has
    their mail sent in her scope; someone else's schedule and mails already sent stay as they were."""
    import json

    from smdrd.mail import out_of_scope, report_digits
    from smdrd.privacy import PrivacyConfig
    from smdrd.store.api import NewMail, removed_owner

    accounts, mail = open_store(any_database).accounts(), open_store(any_database).mail()
    try:
        accounts.add_user("mona", "manager", "x", ["Sales"], at=T0, actor=ADMIN)
        accounts.add_user("nina", "manager", "x", ["Sales"], at=T0, actor=ADMIN)
        spec = json.dumps({"name": "weekly", "filters": {"department": ["Sales"]}})
        hers = mail.save_schedule(None, "weekly", "mona", spec, at=T0, actor=Actor("mona"))
        theirs = mail.save_schedule(None, "nina's", "nina", spec, at=T0, actor=Actor("nina"))

        def queued(key: str, schedule_id: int, owner: str) -> NewMail:
            body = json.dumps({"schedule": json.loads(spec), "owner": owner, "first": "2026-03-02"})
            return NewMail(key, "report", f"db:{schedule_id}", f"<{key}@x>", ("a@example.com",), key, body, T0)

        mail.plan([queued("sent", hers.id, "mona"), queued("pending", hers.id, "mona"),
                   queued("nina", theirs.id, "nina")], {})
        sent = next(i for i in mail.due(T0 + 1) if i.key == "sent")
        mail.mark_sent(sent.id, T0 + 1)

        assert accounts.remove_user("MONA", at=T0 + 2, actor=ADMIN) is not None
        former = removed_owner("mona")
        assert {s.name: s.owner for s in mail.schedules()} == {"weekly": former, "nina's": "nina"}
        owners = {i.key: json.loads(i.spec)["owner"] for i in mail.deliveries()}
        assert owners == {"sent": "mona", "pending": former, "nina": "nina"}, "what went stays as it went"
        disowned = accounts.entries(2)
        assert [(e.action, e.target, e.actor, e.before, e.after) for e in disowned] == [
            ("schedule.disown", "weekly", "cli:root", {"owner": "mona"}, {"owner": former}),
            ("user.remove", "mona", "cli:root", {"name": "mona", "role": "manager", "departments": ["Sales"]},
             None)]

        # A namesake, even an admin, is handed nothing: her pending mail goes as a removed owner's (masked).
        accounts.add_user("Mona", "admin", "x", [], at=T0 + 3, actor=ADMIN)
        assert [s for s in mail.schedules() if s.owner.casefold() == "mona"] == []
        pending = next(i for i in mail.due(T0 + 4) if i.key == "pending")
        assert report_digits(mail, pending, PrivacyConfig(mask_digits=3)) == 3
        assert out_of_scope(mail, pending) is None, "it still goes: an admin deletes it if it should not"
        assert name_problem(former) is not None, "no user can ever be named so"
    finally:
        mail.close()
        accounts.close()
