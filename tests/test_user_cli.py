"""``smdrd user add|list|passwd|remove`` as a user runs it: real processes on a real database, passwords from
stdin (never from the command line), changes in the audit log."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from smdrd.accounts import digest, new_token, verify_password
from smdrd.store import open_store
from smdrd.store.api import Actor

PASSWORD = "correct horse battery staple"


def smdrd(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "smdrd", *args], input=stdin, capture_output=True, text=True,
                          timeout=60, check=False)


def add(db: Path, name: str, role: str, *extra: str, password: str = PASSWORD) -> subprocess.CompletedProcess[str]:
    return smdrd("user", "add", name, "--role", role, *extra, "--password-stdin", "--database", str(db),
                 stdin=password + "\n")


def departments_config(tmp_path: Path) -> Path:
    """A configuration with the departments Sales and Support (a manager's must be configured ones)."""
    config = tmp_path / "smdrd.toml"
    config.write_text('[[departments]]\nname = "Sales"\nextensions = ["200-209"]\n'
                      '[[departments]]\nname = "Support"\nextensions = ["300-309"]\n')
    return config


def test_the_first_admin_is_made_from_the_shell_and_listed(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    done = add(db, "alice", "admin")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "added alice (admin)\n"
    config = str(departments_config(tmp_path))
    bob = add(db, "bob", "manager", "--department", "Sales", "--department", "Support", "--config", config)
    assert bob.returncode == 0, bob.stderr
    listed = smdrd("user", "list", "--json", "--database", str(db))
    assert listed.returncode == 0, listed.stderr
    users = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(u["name"], u["role"], u["departments"], u["locked"]) for u in users] == [
        ("alice", "admin", [], False), ("bob", "manager", ["Sales", "Support"], False)]
    plain = smdrd("user", "list", "--database", str(db)).stdout
    assert "alice\tadmin" in plain and "departments: Sales, Support" in plain
    assert PASSWORD not in listed.stdout + plain
    accounts = open_store(db).accounts()
    try:
        alice = accounts.user("alice")
        assert alice is not None
        assert verify_password(accounts.password_hash(alice.id), PASSWORD)[0]
        entry = accounts.entries(1)[0]
        assert entry.action == "user.add" and entry.target == "bob" and entry.actor.startswith("cli:")
    finally:
        accounts.close()


def test_passwd_changes_the_password_and_remove_removes(tmp_path: Path) -> None:
    db = tmp_path / "smdrd.db"
    assert add(db, "carol", "viewer").returncode == 0
    accounts = open_store(db).accounts()
    try:
        carol = accounts.user("carol")
        assert carol is not None
        for name in ("nightly", "backup"):  # a leaked password could have made these: a reset revokes them
            accounts.create_token(carol.id, name, digest(new_token()), at=1, actor=Actor("carol"))
    finally:
        accounts.close()
    changed = smdrd("user", "passwd", "carol", "--password-stdin", "--database", str(db),
                    stdin="another long passphrase\n")
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout == ("password of carol changed; their sessions have ended and their 2 API tokens were "
                              "revoked\n")
    again = smdrd("user", "passwd", "carol", "--password-stdin", "--database", str(db),
                  stdin="another long passphrase\n")
    assert again.stdout.endswith("and they had no API token\n")
    accounts = open_store(db).accounts()
    try:
        carol = accounts.user("carol")
        assert carol is not None
        encoded = accounts.password_hash(carol.id)
        assert verify_password(encoded, "another long passphrase")[0] and not verify_password(encoded, PASSWORD)[0]
        assert accounts.tokens(carol.id) == []
        entry = accounts.entries(2)[1]
        assert (entry.action, entry.after) == ("user.password", {"sessions_ended": 0, "tokens_revoked": 2})
    finally:
        accounts.close()
    removed = smdrd("user", "remove", "carol", "--database", str(db))
    assert removed.returncode == 0 and removed.stdout == "removed carol\n"
    again = smdrd("user", "remove", "carol", "--database", str(db))
    assert again.returncode == 2 and "no user named 'carol'" in again.stderr


def test_mistakes_are_refused_with_one_line_and_change_nothing(tmp_path: Path) -> None:
    db = tmp_path / "smdrd.db"
    short = add(db, "dave", "admin", password="short")
    assert short.returncode == 2 and "password too short" in short.stderr and "short\n" not in short.stderr
    assert add(db, "dave", "admin").returncode == 0
    dup = add(db, "Dave", "viewer")
    assert dup.returncode == 2 and "exists already" in dup.stderr
    manager = add(db, "erin", "manager")
    assert manager.returncode == 2 and "a manager needs at least one department" in manager.stderr
    viewer = add(db, "erin", "viewer", "--department", "Sales")
    assert viewer.returncode == 2 and "only a manager has departments" in viewer.stderr
    # as in the console: a manager's departments are configured ones ("Nope" would show the manager nothing)
    nope = add(db, "erin", "manager", "--department", "Nope", "--config", str(departments_config(tmp_path)))
    assert nope.returncode == 2 and "no such department: Nope" in nope.stderr
    bad_name = add(db, "no spaces", "viewer")
    assert bad_name.returncode == 2 and "name:" in bad_name.stderr
    no_tty = smdrd("user", "add", "frank", "--role", "viewer", "--database", str(db))
    assert no_tty.returncode == 2 and "--password-stdin" in no_tty.stderr
    argv = smdrd("user", "add", "frank", "--role", "viewer", "--password", PASSWORD, "--database", str(db))
    assert argv.returncode == 2, "there is no way to give a password on the command line"
    missing = smdrd("user", "list", "--database", str(tmp_path / "none.db"))
    assert missing.returncode == 2 and "no such database" in missing.stderr
    assert not (tmp_path / "none.db").exists()
    listed = smdrd("user", "list", "--database", str(db)).stdout
    assert listed.splitlines() == ["dave\tadmin"]


def test_remove_says_what_becomes_of_the_users_schedules(tmp_path: Path) -> None:
    db = tmp_path / "smdrd.db"
    assert add(db, "dora", "viewer").returncode == 0
    mail = open_store(db).mail()
    try:
        for name in ("dora's weekly", "dora's monthly"):
            mail.save_schedule(None, name, "dora", "{}", at=1, actor=Actor("dora"))
    finally:
        mail.close()
    removed = smdrd("user", "remove", "dora", "--database", str(db))
    assert removed.returncode == 0 and removed.stdout == "removed dora\n"
    assert "the 2 scheduled reports dora made keep going, now owned by nobody (shown as 'removed user dora')" \
        in removed.stderr
    mail = open_store(db).mail()
    try:
        assert {s.owner for s in mail.schedules()} == {"removed user dora"}
    finally:
        mail.close()
