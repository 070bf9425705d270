"""``smdrd user add|list|passwd|remove|email``: the console's users, from the shell (the first admin is made here).

A password is never taken from the command line (``ps`` and the shell history would show it): it is asked for
twice on the terminal, or read as one line from standard input with ``--password-stdin``. It is stored as an
Argon2id hash. Every change is written to the audit log as ``cli:<login name>``. Safe while the daemon runs:
each change is one short transaction, and a changed password or a removed user ends their sessions at once
(and revokes their personal API tokens).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from typing import TYPE_CHECKING

from smdrd.cli._common import database_actions, settings_from, store_of
from smdrd.errors import SmdrdError

if TYPE_CHECKING:
    from smdrd.store.api import Accounts, Actor, User

ROLES = ("admin", "manager", "viewer")  # smdrd.store.api.ROLES, without importing it for --help


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``user`` command and its sub-commands to the ``smdrd`` parser."""
    p = sub.add_parser(
        "user", help="add, list, change the password of, or remove the console's users",
        description="Manage the web console's users. Roles: admin (everything), manager (reports and alerts of "
        "the departments given with --department), viewer (read-only reports). Passwords are asked for twice on "
        "the terminal, or read as one line from standard input with --password-stdin; never from the command "
        "line.")
    action = database_actions(p, run)
    add = action("add", "add a user")
    add.add_argument("name", help="the user name: 1 to 64 ASCII letters, digits, '.', '_', '@' or '-'")
    add.add_argument("--role", required=True, choices=ROLES, help="what the user may do")
    add.add_argument("--department", action="append", default=[], metavar="NAME",
                     help="a configured department a manager sees (repeat for several); managers only")
    add.add_argument("--password-stdin", action="store_true", help="read the password as one line from stdin")
    add.add_argument("--email", metavar="ADDRESS", default="",
                     help="their e-mail address (a manager's receives their departments' budget alerts)")
    listing = action("list", "list the users (never their passwords)")
    listing.add_argument("--json", action="store_true", help="one JSON object per user")
    passwd = action("passwd", "set a user's password (their sessions end and their API tokens are revoked)")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password as one line from stdin")
    remove = action("remove", "remove a user, their sessions and their API tokens (their report schedules "
                    "stay, disowned)")
    remove.add_argument("name")
    mail = action("email", "set a user's e-mail address (a manager's receives their departments' budget alerts)")
    mail.add_argument("name")
    mail.add_argument("address", help="the address; an empty string ('') removes it")


def _actor() -> Actor:
    from smdrd.store.api import Actor

    try:
        login = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for this uid (a container), no LOGNAME
        login = "unknown"
    return Actor(f"cli:{login}")


def read_password(args: argparse.Namespace) -> str:
    """The new password: one line of stdin with ``--password-stdin``, else asked twice on the terminal.

    Raises:
        SmdrdError: no password to be had, the two differ, or it is too weak (the message never shows it).
    """
    from smdrd.accounts import password_problem

    if args.password_stdin:
        line = sys.stdin.readline(4096)
        password = line[:-1] if line.endswith("\n") else line
        password = password[:-1] if password.endswith("\r") else password
    else:
        if not sys.stdin.isatty():
            raise SmdrdError("no terminal to ask for the password on: pass --password-stdin and write it to stdin")
        password = getpass.getpass("New password: ")
        if getpass.getpass("Again: ") != password:
            raise SmdrdError("the two passwords differ; nothing was changed")
    problem = password_problem(password)
    if problem is not None:
        raise SmdrdError(f"password {problem}; nothing was changed")
    return password


def run(args: argparse.Namespace) -> int:
    """Carry out ``args.action``."""
    from smdrd.store import open_store

    settings, _ = settings_from(args, existing_database=args.action != "add")
    args.database_path = store_of(args, settings)
    if args.action == "add" and args.role == "manager":
        from smdrd.directory import resolve

        # the console's rule: a manager's departments are configured ones (or, with [directory] source =
        # "database", the directory's)
        args.known_departments = [d.name for d in resolve(settings, args.database_path).departments]
    else:
        args.known_departments = None
    accounts = open_store(args.database_path).accounts()
    try:
        return _ACTIONS[args.action](args, accounts)
    finally:
        accounts.close()


def _add(args: argparse.Namespace, accounts: Accounts) -> int:
    from smdrd.accounts import departments_problem, hash_password, name_problem

    problem = name_problem(args.name)
    if problem is not None:
        args.parser.error(f"name: {problem}")
    problem = departments_problem(args.role, args.department, args.known_departments)
    if problem is not None:
        args.parser.error(f"--department: {problem}")
    if accounts.user(args.name) is not None:
        raise SmdrdError(f"a user named {args.name!r} exists already (smdrd user passwd changes a password)")
    address = _address(args)
    password = read_password(args)
    user = accounts.add_user(args.name, args.role, hash_password(password), args.department,
                             at=int(time.time()), actor=_actor())
    if address:
        _set_email(args, user.name, address)
    departments = f" for {', '.join(user.departments)}" if user.departments else ""
    print(f"added {user.name} ({user.role}{departments})")
    return 0


def _list(args: argparse.Namespace, accounts: Accounts) -> int:
    from smdrd.accounts import user_json

    now = int(time.time())
    for user in accounts.users():
        locked = user.locked_until > now
        if args.json:
            print(json.dumps(user_json(user, now)))
        else:
            extra = f"  departments: {', '.join(user.departments)}" if user.departments else ""
            print(f"{user.name}\t{user.role}{'  (locked)' if locked else ''}{extra}")
    return 0


def _existing(accounts: Accounts, name: str) -> User:
    user = accounts.user(name)
    if user is None:
        raise SmdrdError(f"no user named {name!r} (smdrd user list shows them)")
    return user


def _passwd(args: argparse.Namespace, accounts: Accounts) -> int:
    from smdrd.accounts import hash_password

    user = _existing(accounts, args.name)
    password = read_password(args)
    revoked = accounts.set_password(user.id, hash_password(password), at=int(time.time()), actor=_actor(),
                                    revoke_tokens=True)
    tokens = f"their {revoked} API token{'s were' if revoked != 1 else ' was'} revoked" if revoked else \
        "they had no API token"
    print(f"password of {user.name} changed; their sessions have ended and {tokens}")
    return 0


def _remove(args: argparse.Namespace, accounts: Accounts) -> int:
    from smdrd.store.api import removed_owner

    user = _existing(accounts, args.name)
    if user.role == "admin" and sum(u.role == "admin" for u in accounts.users()) == 1:
        print(f"smdrd user: note: {user.name} was the last admin; `smdrd user add NAME --role admin` makes another",
              file=sys.stderr)
    kept = _schedules_of(args, user.name)
    accounts.remove_user(user.name, at=int(time.time()), actor=_actor())
    print(f"removed {user.name}")
    if kept:
        many = kept != 1
        print(f"smdrd user: note: the {kept} scheduled report{'s' if many else ''} {user.name} made "
              f"{'keep' if many else 'keeps'} going, now owned by nobody (shown as {removed_owner(user.name)!r}); "
              f"an admin changes or deletes {'them' if many else 'it'} in the console (/schedules)",
              file=sys.stderr)
    return 0


def _schedules_of(args: argparse.Namespace, name: str) -> int:
    """How many report schedules ``name`` owns (their removal leaves them to `removed_owner`)."""
    from smdrd.store import open_store

    mail = open_store(args.database_path).mail()
    try:
        return sum(s.owner.casefold() == name.casefold() for s in mail.schedules())
    finally:
        mail.close()


def _address(args: argparse.Namespace) -> str:
    """The e-mail address given (``--email`` or the ``address`` argument), checked; ``''`` for none."""
    from smdrd.mail_config import check_address

    option, given = ("--email", args.email) if args.action == "add" else ("address", args.address)
    if not str(given).strip():
        return ""
    try:
        return check_address(str(given))
    except ValueError as exc:
        args.parser.error(f"{option}: {exc}")
    raise AssertionError("unreachable")  # parser.error exits


def _set_email(args: argparse.Namespace, name: str, address: str) -> None:
    from smdrd.store import open_store

    mail = open_store(args.database_path).mail()
    try:
        mail.set_user_email(name, address, at=int(time.time()), actor=_actor())
    finally:
        mail.close()


def _email(args: argparse.Namespace, accounts: Accounts) -> int:
    user = _existing(accounts, args.name)
    address = _address(args)
    _set_email(args, user.name, address)
    print(f"e-mail address of {user.name} {'set to ' + address if address else 'removed'}")
    return 0


_ACTIONS = {"add": _add, "list": _list, "passwd": _passwd, "remove": _remove, "email": _email}
