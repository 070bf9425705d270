"""Users in the console, for admins: add a user (a role, and departments for a manager), change their role,
departments or e-mail address, reset their password, unlock them, remove them; as pages (``/users``,
``/users/<name>``) and as a JSON API (``/api/users``: GET, POST; ``/api/users/<name>``: GET, PUT, DELETE). Every
signed-in user sees their own account (``/account``) and sets their own e-mail address there (a manager's
receives their departments' budget alerts) and changes their own password: the current one, and the new one
twice, from a signed-in session only (a personal API token cannot: one that leaked could take the account
over). A wrong current password counts as a failed sign-in of the account (`LOCK_AFTER` in a row lock it) and
of the client address; the change ends every other session of the user and keeps the one it was made from,
and revokes the user's API tokens when asked to.

The store refuses, in the change's own transaction, to remove or demote the last admin (`LastAdmin`), so two
admins demoting each other at once still leave one. Every change is written with its audit entry (who, from
where, the before and the after; never a password or a hash). An admin's reset of a password ends the
user's sessions and revokes their personal API tokens. A
mistake is answered beside its field (the page again, ``400``; or ``{"errors": {field: message}}``), never as a
500. Passwords are hashed on the console's hashing thread, one at a time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from smdrd.accounts import (
    MAX_PASSWORD,
    ROLES,
    departments_problem,
    name_problem,
    password_problem,
    role_problem,
    user_json,
)
from smdrd.console import _when
from smdrd.http import ADMIN, MAX_BODY, USERS, principal_of, requires
from smdrd.mail_config import check_address
from smdrd.store.api import Actor, LastAdmin, User, UserExists

if TYPE_CHECKING:
    from smdrd.console import Console

__all__ = ["UserAdmin", "register"]

#: what a page says after a change that sent the browser on (a fixed text per key: nothing from the URL is shown).
DONE = {"added": "User added.", "changed": "Role and departments saved.",
        "password": "Password reset; their sessions have ended and their API tokens are revoked.",
        "unlocked": "Unlocked.", "removed": "User removed. Their scheduled reports, if they made any, "
        "keep going as a removed user's: change or delete them under Schedules.", "email": "E-mail address saved.",
        "own-password": "Password changed; your other sessions have ended.",
        "own-password-tokens": "Password changed; your other sessions have ended and your API tokens are revoked."}
#: the longest e-mail address field read.
MAX_EMAIL = 320


@dataclass(slots=True)
class Outcome:
    """What a change came to: the user after it (None once removed), or the problems by field, with a status."""

    user: User | None = None
    errors: dict[str, str] = field(default_factory=dict)
    status: int = 200


class UserAdmin:
    """The user pages and API of one console. Every change goes through `add`, `change`, `reset_password`,
    `unlock` or `remove`, shared by the pages and the API."""

    def __init__(self, console: Console) -> None:
        self.console = console

    # ---- the changes ----

    def _actor(self, request: web.Request) -> Actor:
        principal = principal_of(request)
        assert principal is not None
        return Actor(principal.name, self.console._address(request))

    def _departments_problem(self, role: str, departments: Sequence[str]) -> str | None:
        return departments_problem(role, departments, self.console.departments())

    async def add(self, request: web.Request, name: str, role: str, departments: Sequence[str],
                  password: str) -> Outcome:
        errors = {key: problem for key, problem in (
            ("name", name_problem(name)), ("role", role_problem(role)),
            ("departments", None if role_problem(role) else self._departments_problem(role, departments)),
            ("password", password_problem(password))) if problem is not None}
        if errors:
            return Outcome(errors=errors, status=400)
        password_hash = await self.console._hash(password)
        actor, now = self._actor(request), self.console.now()
        try:
            user = await self.console._store(lambda a: a.add_user(name, role, password_hash, departments, at=now,
                                                                 actor=actor))
        except UserExists:
            return Outcome(errors={"name": "a user of that name exists already"}, status=409)
        return Outcome(user, status=201)

    async def change(self, request: web.Request, name: str, role: str | None,
                     departments: Sequence[str] | None) -> Outcome:
        """Give ``name`` a role and departments (None: keep the current one; a role other than manager's
        has no departments)."""
        current = await self.console._store(lambda a: a.user(name))
        if current is None:
            return Outcome(errors={"name": "no such user"}, status=404)
        role = current.role if role is None else role
        if departments is None:
            departments = current.departments if role == "manager" else ()
        problem = role_problem(role)
        errors = {"role": problem} if problem else {}
        problem = None if errors else self._departments_problem(role, departments)
        if problem:
            errors["departments"] = problem
        if errors:
            return Outcome(current, errors, 400)
        actor, now, wanted = self._actor(request), self.console.now(), tuple(departments)
        try:
            changed = await self.console._store(lambda a: a.change_user(name, role=role, departments=wanted, at=now,
                                                                       actor=actor))
        except LastAdmin:
            return Outcome(current, {"role": "this is the last admin: make another admin first"}, 409)
        if changed is None:
            return Outcome(errors={"name": "no such user"}, status=404)
        return Outcome(changed[1])

    async def reset_password(self, request: web.Request, name: str, password: str) -> Outcome:
        user = await self.console._store(lambda a: a.user(name))
        if user is None:
            return Outcome(errors={"name": "no such user"}, status=404)
        problem = password_problem(password)
        if problem is not None:
            return Outcome(user, {"password": problem}, 400)
        password_hash = await self.console._hash(password)
        actor, now = self._actor(request), self.console.now()
        # A reset is what follows a compromise: the tokens a leaked password could have minted go with it.
        await self.console._store(lambda a: a.set_password(user.id, password_hash, at=now, actor=actor,
                                                           revoke_tokens=True))
        return Outcome(user)

    async def set_email(self, request: web.Request, name: str, address: str) -> Outcome:
        """Give ``name`` the e-mail address ``address`` (empty: none), checked as the configuration's are."""
        user = await self.console._store(lambda a: a.user(name))
        if user is None:
            return Outcome(errors={"name": "no such user"}, status=404)
        text = address.strip()
        if text:
            try:
                text = check_address(text[:MAX_EMAIL])
            except ValueError as exc:
                return Outcome(user, {"email": str(exc)}, 400)
        actor, now = self._actor(request), self.console.now()
        await self.console.mail(lambda m: m.set_user_email(user.name, text, at=now, actor=actor))
        return Outcome(user)

    async def emails(self) -> dict[str, str]:
        """Every user's e-mail address, by name."""
        return await self.console.mail(lambda m: m.user_emails())

    async def change_own_password(self, request: web.Request, current: str, password: str, confirm: str, *,
                                  revoke_tokens: bool) -> Outcome:
        """The signed-in person's new password, given their current one. The new one is checked first (a
        mistake there reveals nothing about the current one and counts against nobody); then the current one,
        unless the account is locked or the address throttled (``429``); a wrong one counts as a failed
        sign-in (``400``)."""
        principal = principal_of(request)
        assert principal is not None
        assert principal.user_id is not None
        user_id, address, now = principal.user_id, self.console._address(request), self.console.now()
        user = await self.console._store(lambda a: a.user(principal.name))
        if user is None or user.id != user_id:
            return Outcome(errors={"current": "no such user"}, status=404)
        problem = password_problem(password)
        if problem is not None:
            return Outcome(user, {"password": problem}, 400)
        if password != confirm:
            return Outcome(user, {"confirm": "the two passwords differ"}, 400)
        if user.locked_until > now or self.console.throttle.blocked(address, now):
            return Outcome(user, {"current": "too many wrong passwords; try again later"}, 429)
        encoded = await self.console._store(lambda a: a.password_hash(user_id))
        ok, _ = await self.console._verify(encoded, current[:MAX_PASSWORD])
        if not ok or len(current) > MAX_PASSWORD:
            await self.console._failed(user, address, now, locked=False, action="password")
            return Outcome(user, {"current": "wrong password"}, 400)
        if current == password:
            return Outcome(user, {"password": "that is your current password: choose another"}, 400)
        password_hash = await self.console._hash(password)
        actor, keep = self._actor(request), principal.session
        await self.console._store(lambda a: a.set_password(user_id, password_hash, at=now, actor=actor,
                                                           keep_session=keep, revoke_tokens=revoke_tokens))
        return Outcome(user)

    async def unlock(self, request: web.Request, name: str) -> Outcome:
        actor, now = self._actor(request), self.console.now()
        user = await self.console._store(lambda a: a.unlock_user(name, at=now, actor=actor))
        return Outcome(user) if user is not None else Outcome(errors={"name": "no such user"}, status=404)

    async def remove(self, request: web.Request, name: str) -> Outcome:
        actor, now = self._actor(request), self.console.now()
        try:
            user = await self.console._store(lambda a: a.remove_user(name, at=now, actor=actor, keep_an_admin=True))
        except LastAdmin:
            current = await self.console._store(lambda a: a.user(name))
            return Outcome(current, {"remove": "this is the last admin: make another admin first"}, 409)
        return Outcome() if user is not None else Outcome(errors={"name": "no such user"}, status=404)

    # ---- pages ----

    async def _list(self, request: web.Request, *, status: int = 200, errors: Mapping[str, str] | None = None,
                    form: Mapping[str, Any] | None = None) -> web.StreamResponse:
        principal = principal_of(request)
        assert principal is not None
        users = await self.console._store(lambda a: a.users())
        done = DONE.get(request.query.get("done", ""), "")
        return self.console.render(request, "users.html", status=status, title="Users", users=users,
                                   emails=await self.emails(),
                                   now=self.console.now(), when=_when, roles=ROLES,
                                   known=self.console.departments(), errors=errors or {}, form=form or {},
                                   csrf=principal.csrf, done=done)

    async def _edit(self, request: web.Request, user: User, *, status: int = 200,
                    errors: Mapping[str, str] | None = None, email: str | None = None) -> web.StreamResponse:
        principal = principal_of(request)
        assert principal is not None
        done = DONE.get(request.query.get("done", ""), "")
        if email is None:
            email = (await self.emails()).get(user.name, "")
        return self.console.render(request, "users_edit.html", status=status, title=f"User {user.name}",
                                   user=user, now=self.console.now(), when=_when, roles=ROLES,
                                   known=self.console.departments(), errors=errors or {}, csrf=principal.csrf,
                                   done=done, email=email)

    async def _user_or_404(self, request: web.Request) -> User:
        name = request.match_info["name"][:64]
        user: User | None = await self.console._store(lambda a: a.user(name))
        if user is None:
            raise web.HTTPNotFound(text="no such user\n")
        return user

    @staticmethod
    async def _posted(request: web.Request) -> tuple[dict[str, str], list[str]]:
        """The form's text fields, and its departments (a repeated field)."""
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
        data = await request.post()
        fields = {k: v[:1025] for k, v in data.items() if isinstance(v, str)}
        departments = [v[:200] for v in data.getall("departments", []) if isinstance(v, str)][:200]
        return fields, departments

    @requires(*ADMIN)
    async def list_page(self, request: web.Request) -> web.StreamResponse:
        return await self._list(request)

    @requires(*ADMIN)
    async def add_form(self, request: web.Request) -> web.StreamResponse:
        fields, departments = await self._posted(request)
        errors: dict[str, str] = {}
        if fields.get("password", "") != fields.get("confirm", ""):
            errors["confirm"] = "the two passwords differ"
        name, role = fields.get("name", "").strip(), fields.get("role", "")
        outcome = await self.add(request, name, role, departments, fields.get("password", "")) if not errors else \
            Outcome(errors=errors, status=400)
        if outcome.errors:
            return await self._list(request, status=outcome.status, errors=outcome.errors,
                                    form={"name": name, "role": role, "departments": departments})
        raise web.HTTPSeeOther(f"/users?done=added#user-{name.lower()}")

    @requires(*ADMIN)
    async def edit_page(self, request: web.Request) -> web.StreamResponse:
        return await self._edit(request, await self._user_or_404(request))

    async def _after(self, request: web.Request, user: User, outcome: Outcome, done: str) -> web.StreamResponse:
        if outcome.errors:
            return await self._edit(request, outcome.user or user, status=outcome.status, errors=outcome.errors)
        raise web.HTTPSeeOther(f"/users/{user.name}?done={done}")

    @requires(*ADMIN)
    async def change_form(self, request: web.Request) -> web.StreamResponse:
        user = await self._user_or_404(request)
        fields, departments = await self._posted(request)
        outcome = await self.change(request, user.name, fields.get("role", ""), departments)
        return await self._after(request, user, outcome, "changed")

    @requires(*ADMIN)
    async def password_form(self, request: web.Request) -> web.StreamResponse:
        user = await self._user_or_404(request)
        fields, _ = await self._posted(request)
        if fields.get("password", "") != fields.get("confirm", ""):
            outcome = Outcome(user, {"confirm": "the two passwords differ"}, 400)
        else:
            outcome = await self.reset_password(request, user.name, fields.get("password", ""))
        return await self._after(request, user, outcome, "password")

    @requires(*ADMIN)
    async def email_form(self, request: web.Request) -> web.StreamResponse:
        user = await self._user_or_404(request)
        fields, _ = await self._posted(request)
        address = fields.get("email", "")
        outcome = await self.set_email(request, user.name, address)
        if outcome.errors:
            return await self._edit(request, outcome.user or user, status=outcome.status, errors=outcome.errors,
                                    email=address[:MAX_EMAIL])
        raise web.HTTPSeeOther(f"/users/{user.name}?done=email")

    # ---- one's own account ----

    async def _account(self, request: web.Request, *, status: int = 200, errors: Mapping[str, str] | None = None,
                       email: str | None = None) -> web.StreamResponse:
        principal = principal_of(request)
        assert principal is not None
        user = await self.console._store(lambda a: a.user(principal.name))
        if user is None or principal.user_id is None:
            raise web.HTTPForbidden(text="forbidden: the account page is for signed-in users\n")
        if email is None:
            email = (await self.emails()).get(user.name, "")
        return self.console.render(request, "account.html", status=status, title="Your account", user=user,
                                   email=email, errors=errors or {}, csrf=principal.csrf,
                                   done=DONE.get(request.query.get("done", ""), "") if status == 200 else "")

    @requires(*USERS)
    async def account_page(self, request: web.Request) -> web.StreamResponse:
        return await self._account(request)

    @requires(*USERS)
    async def account_password(self, request: web.Request) -> web.StreamResponse:
        principal = principal_of(request)
        assert principal is not None
        if principal.via != "session":  # a token that leaked must not be able to take the account over
            return web.Response(status=403, text="forbidden: a password is changed from a signed-in session\n")
        fields, _ = await self._posted(request)
        revoke = fields.get("revoke_tokens", "") == "yes"
        outcome = await self.change_own_password(request, fields.get("current", ""), fields.get("password", ""),
                                                 fields.get("confirm", ""), revoke_tokens=revoke)
        if outcome.errors:
            return await self._account(request, status=outcome.status, errors=outcome.errors)
        raise web.HTTPSeeOther("/account?done=own-password" + ("-tokens" if revoke else ""))

    @requires(*USERS)
    async def account_email(self, request: web.Request) -> web.StreamResponse:
        principal = principal_of(request)
        assert principal is not None
        fields, _ = await self._posted(request)
        address = fields.get("email", "")
        outcome = await self.set_email(request, principal.name, address)
        if outcome.errors:
            return await self._account(request, status=outcome.status, errors=outcome.errors,
                                       email=address[:MAX_EMAIL])
        raise web.HTTPSeeOther("/account?done=email")

    @requires(*ADMIN)
    async def unlock_form(self, request: web.Request) -> web.StreamResponse:
        user = await self._user_or_404(request)
        await self._posted(request)
        return await self._after(request, user, await self.unlock(request, user.name), "unlocked")

    @requires(*ADMIN)
    async def remove_form(self, request: web.Request) -> web.StreamResponse:
        user = await self._user_or_404(request)
        await self._posted(request)
        outcome = await self.remove(request, user.name)
        if outcome.errors:
            return await self._edit(request, outcome.user or user, status=outcome.status, errors=outcome.errors)
        raise web.HTTPSeeOther("/users?done=removed")

    # ---- the JSON API ----

    def _json(self, outcome: Outcome) -> web.Response:
        if outcome.errors:
            return web.json_response({"errors": outcome.errors}, status=outcome.status)
        if outcome.user is None:
            return web.Response(status=204)
        return web.json_response(user_json(outcome.user, self.console.now()), status=outcome.status)

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
        try:
            body = json.loads(await request.read() or b"{}")
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested thousands deep
            body = None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text=json.dumps({"errors": {"body": "expected a JSON object"}}),
                                     content_type="application/json")
        return body

    @staticmethod
    def _text(body: Mapping[str, Any], key: str, errors: dict[str, str]) -> str | None:
        value = body.get(key)
        if value is None or isinstance(value, str):
            return value
        errors[key] = "expected a string"
        return None

    @staticmethod
    def _departments(body: Mapping[str, Any], errors: dict[str, str]) -> list[str] | None:
        value = body.get("departments")
        if value is None:
            return None
        if not isinstance(value, list) or len(value) > 200 or not all(isinstance(d, str) for d in value):
            errors["departments"] = "expected a list of department names"
            return None
        return list(dict.fromkeys(value))

    @requires(*ADMIN)
    async def api_list(self, request: web.Request) -> web.StreamResponse:
        users = await self.console._store(lambda a: a.users())
        now, emails = self.console.now(), await self.emails()
        return web.json_response({"users": [{**user_json(u, now), "email": emails.get(u.name, "")} for u in users]})

    @requires(*ADMIN)
    async def api_get(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"][:64]
        user = await self.console._store(lambda a: a.user(name))
        if user is None:
            return self._json(Outcome(errors={"name": "no such user"}, status=404))
        email = (await self.emails()).get(user.name, "")
        return web.json_response({**user_json(user, self.console.now()), "email": email})

    @requires(*ADMIN)
    async def api_add(self, request: web.Request) -> web.StreamResponse:
        body, errors = await self._body(request), dict[str, str]()
        name, role = self._text(body, "name", errors), self._text(body, "role", errors)
        password, departments = self._text(body, "password", errors), self._departments(body, errors)
        email = self._text(body, "email", errors)
        if email and email.strip():
            try:
                check_address(email.strip()[:MAX_EMAIL])  # checked before the user is made: all or nothing
            except ValueError as exc:
                errors["email"] = str(exc)
        unknown = sorted(set(body) - {"name", "role", "password", "departments", "email"})
        if unknown:  # a misspelt field would otherwise be dropped without a word (as a change refuses it)
            errors[unknown[0][:40]] = "unknown field; expected name, role, password, departments or email"
        if errors:
            return self._json(Outcome(errors=errors, status=400))
        created = await self.add(request, name or "", role or "", departments or [], password or "")
        if email and not created.errors:
            mailed = await self.set_email(request, name or "", email)
            if mailed.errors:
                return self._json(mailed)
        return self._json(created)

    @requires(*ADMIN)
    async def api_change(self, request: web.Request) -> web.StreamResponse:
        """Any of ``role``, ``departments``, ``email``, ``password`` (a reset) and ``unlock: true``, in that
        order."""
        name = request.match_info["name"][:64]
        body, errors = await self._body(request), dict[str, str]()
        role, departments = self._text(body, "role", errors), self._departments(body, errors)
        password, email = self._text(body, "password", errors), self._text(body, "email", errors)
        unlock = body.get("unlock", False)
        if not isinstance(unlock, bool):
            errors["unlock"] = "expected true or false"
        unknown = sorted(set(body) - {"role", "departments", "email", "password", "unlock"})
        if unknown:
            errors[unknown[0][:40]] = "unknown field; expected role, departments, email, password or unlock"
        if errors:
            return self._json(Outcome(errors=errors, status=400))
        outcome = await self.change(request, name, role, departments) if role is not None or \
            departments is not None else None
        if email is not None and (outcome is None or not outcome.errors):
            outcome = await self.set_email(request, name, email)
        if outcome is None or not outcome.errors:
            if password is not None:
                outcome = await self.reset_password(request, name, password)
            if unlock and (outcome is None or not outcome.errors):
                outcome = await self.unlock(request, name)
        if outcome is None or not outcome.errors:
            return await self.api_get(request)
        return self._json(outcome)

    @requires(*ADMIN)
    async def api_remove(self, request: web.Request) -> web.StreamResponse:
        return self._json(await self.remove(request, request.match_info["name"][:64]))


def register(console: Console) -> UserAdmin:
    """Add the user pages and API to ``console``'s server."""
    admin = UserAdmin(console)
    router = console.server.app.router
    router.add_get("/users", admin.list_page)
    router.add_post("/users", admin.add_form)
    router.add_get("/users/{name}", admin.edit_page)
    router.add_post("/users/{name}", admin.change_form)
    router.add_post("/users/{name}/password", admin.password_form)
    router.add_post("/users/{name}/email", admin.email_form)
    router.add_post("/users/{name}/unlock", admin.unlock_form)
    router.add_post("/users/{name}/remove", admin.remove_form)
    router.add_get("/account", admin.account_page)
    router.add_post("/account/email", admin.account_email)
    router.add_post("/account/password", admin.account_password)
    router.add_get("/api/users", admin.api_list)
    router.add_post("/api/users", admin.api_add)
    router.add_get("/api/users/{name}", admin.api_get)
    router.add_put("/api/users/{name}", admin.api_change)
    router.add_delete("/api/users/{name}", admin.api_remove)
    return admin
