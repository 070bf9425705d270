"""People and rights, without I/O: roles, what a valid user name and password are, Argon2id password hashes,
and the random secrets (session ids, CSRF tokens, personal API tokens) with the digests the store keeps of them.

Used by ``smdrd user`` and by the console (`smdrd.console`). A secret never goes into an exception message,
a log event or a ``repr``: the functions here return problems as sentences that name no value.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from smdrd.store.api import ROLES, User

if TYPE_CHECKING:
    from argon2 import PasswordHasher

__all__ = [
    "MAX_PASSWORD",
    "MIN_PASSWORD",
    "ROLES",
    "TOKEN_PREFIX",
    "departments_problem",
    "digest",
    "hash_password",
    "name_problem",
    "new_secret",
    "new_token",
    "password_problem",
    "role_problem",
    "user_json",
    "verify_password",
]

#: the shortest password accepted (a passphrase of a few words is longer).
MIN_PASSWORD = 10
#: the longest: bounds the work and memory of one sign-in.
MAX_PASSWORD = 1024
#: personal API tokens start with this, so the server knows one from the shared service token at a glance.
TOKEN_PREFIX = "smdrd_pat_"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a user name (None when it can)."""
    if not _NAME.fullmatch(name):
        return ("expected 1 to 64 characters: ASCII letters, digits, '.', '_', '@' or '-', starting with a letter "
                "or digit")
    return None


def role_problem(role: str) -> str | None:
    """Why ``role`` is no role (None when it is one)."""
    return None if role in ROLES else f"expected one of {', '.join(ROLES)}"


def departments_problem(role: str, departments: Sequence[str], known: Collection[str] | None = None) -> str | None:
    """Why a user of ``role`` cannot have ``departments`` (None when they can): only a manager has any, and at
    least one; with ``known``, each must be one of them."""
    if departments and role != "manager":
        return "only a manager has departments (admins and viewers see them all)"
    if role == "manager" and not departments:
        return "a manager needs at least one department"
    if known is not None:
        unknown = [d for d in departments if d not in known]
        if unknown:
            return f"no such department: {', '.join(unknown)[:200]}"
    return None


def user_json(user: User, now: int) -> dict[str, Any]:
    """A user as ``smdrd user list --json`` and ``/api/users`` show them (never a secret)."""
    return {"name": user.name, "role": user.role, "departments": list(user.departments),
            "created": datetime.fromtimestamp(user.created_at, UTC).isoformat(),
            "locked": user.locked_until > now}


def password_problem(password: str) -> str | None:
    """Why ``password`` is refused (None when it is fine); the message never repeats it."""
    if len(password) < MIN_PASSWORD:
        return f"too short: expected at least {MIN_PASSWORD} characters"
    if len(password) > MAX_PASSWORD:
        return f"too long: expected at most {MAX_PASSWORD} characters"
    if any(ord(c) < 32 or ord(c) == 127 for c in password):
        return "control characters (a newline, a tab...) are not allowed"
    return None


@cache
def _hasher() -> PasswordHasher:
    from argon2 import PasswordHasher, Type

    # argon2-cffi's defaults are RFC 9106's second recommendation (3 passes, 64 MiB, 4 lanes), Argon2id.
    return PasswordHasher(type=Type.ID)


def hash_password(password: str) -> str:
    """The Argon2id hash of ``password``, with its salt and parameters."""
    return _hasher().hash(password)


@cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def verify_password(encoded: str | None, password: str) -> tuple[bool, bool]:
    """``(matches, needs_rehash)``. With ``encoded`` None (no such user) a dummy hash is checked all the same,
    so a sign-in takes as long for an unknown name as for a wrong password."""
    from argon2.exceptions import InvalidHashError, VerificationError

    hasher = _hasher()
    try:
        hasher.verify(encoded if encoded is not None else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return False, False
    if encoded is None:
        return False, False
    return True, hasher.check_needs_rehash(encoded)


def new_secret() -> str:
    """A 256-bit random value, URL-safe (a session id or a CSRF token)."""
    return secrets.token_urlsafe(32)


def new_token() -> str:
    """A new personal API token."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """What the store keeps of a session id or an API token: its SHA-256, in hex."""
    return hashlib.sha256(secret.encode()).hexdigest()
