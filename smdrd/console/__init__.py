"""The web console's people and rights: sign-in and sign-out pages, sessions, personal API tokens, the users and
audit pages, on the daemon's HTTP server (`smdrd.http`).

A daemon feature: ``install(daemon)`` makes the server recognise users (`Console.authenticate`): a session
cookie, a personal API token (``Authorization: Bearer smdrd_pat_...``) or the shared ``[http] token`` (the
``service`` role, as before). The rights themselves are checked by the server for every route, from the roles
each route declares (`smdrd.http.requires`). Pages are Jinja2 templates (autoescaped) shipped in the package with
their CSS; they need no JavaScript and load nothing from elsewhere.

Secrets stay secret: a session id lives only in its cookie (``HttpOnly; SameSite=Strict``, ``Secure`` under TLS
or ``[http] secure_cookies``) and in the store as a digest; a personal token is shown once and stored as a
digest; a password is hashed (Argon2id) on the console's hashing thread, one at a time, so that sign-ins
cannot take more than one hash's memory (64 MiB) however many arrive. None of them is ever logged, put in an
audit entry or shown on an error page. Sign-ins are throttled per account (`LOCK_AFTER` failures in a row lock
it for `LOCK_SECONDS`) and per client address (`ADDRESS_FAILURES` in `ADDRESS_WINDOW`), each with an audit
entry; so is a wrong current password given to change one's own (`smdrd.console.users`). The store is used
from one thread of its own, never from the event loop.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import jinja2
import structlog
from aiohttp import web

from smdrd.accounts import TOKEN_PREFIX, digest, hash_password, new_secret, new_token, verify_password
from smdrd.http import (
    ADMIN,
    CSRF_FIELD,
    MAX_BODY,
    USERS,
    HttpServer,
    Principal,
    principal_of,
    public,
    requires,
)
from smdrd.reports.config import UNASSIGNED
from smdrd.store import open_store
from smdrd.store.api import Accounts, Actor, MailStore, User

if TYPE_CHECKING:
    from smdrd.config import Settings
    from smdrd.daemon import Daemon

__all__ = [
    "ADDRESS_FAILURES",
    "ADDRESS_WINDOW",
    "LOCK_AFTER",
    "LOCK_SECONDS",
    "SESSION_COOKIE",
    "SESSION_SECONDS",
    "AddressThrottle",
    "Console",
    "install",
    "safe_next",
]

log = structlog.get_logger(__name__)

#: the session cookie's name, and the login form's own CSRF cookie (there is no session yet to hold its token).
SESSION_COOKIE = "smdrd_session"
LOGIN_COOKIE = "smdrd_login"
#: a session lasts this long from sign-in (then the user signs in again).
SESSION_SECONDS = 12 * 3600
#: failed sign-ins in a row that lock an account, and for how long.
LOCK_AFTER = 5
LOCK_SECONDS = 15 * 60
#: failed sign-ins from one client address within `ADDRESS_WINDOW` seconds before it is refused (429).
ADDRESS_FAILURES = 20
ADDRESS_WINDOW = 15 * 60
#: client addresses remembered by the throttle at most (the oldest is forgotten first): bounded memory.
MAX_ADDRESSES = 4096
#: seconds between two deletions of expired sessions.
PRUNE_INTERVAL = 3600.0
#: the longest cookie or token value looked at; anything longer is no credential of ours.
MAX_SECRET = 200

_CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'")

T = TypeVar("T")


class AddressThrottle:
    """Failed sign-ins per client address in a fixed window, for at most `MAX_ADDRESSES` addresses."""

    def __init__(self, limit: int = ADDRESS_FAILURES, window: float = ADDRESS_WINDOW) -> None:
        self.limit = limit
        self.window = window
        self._failures: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def blocked(self, address: str, now: float) -> bool:
        start, count = self._failures.get(address, (now, 0))
        if now - start >= self.window:
            self._failures.pop(address, None)
            return False
        return count >= self.limit

    def failed(self, address: str, now: float) -> bool:
        """Count a failure; True when this one reached the limit."""
        start, count = self._failures.pop(address, (now, 0))
        if now - start >= self.window:
            start, count = now, 0
        self._failures[address] = (start, count + 1)
        while len(self._failures) > MAX_ADDRESSES:
            self._failures.popitem(last=False)
        return count + 1 == self.limit


@dataclass(frozen=True, slots=True)
class _Form:
    fields: Mapping[str, str]

    def get(self, name: str, limit: int = 1024) -> str:
        return self.fields.get(name, "")[:limit]


#: the heading of `Console.error_page` by status.
_ERROR_TITLES = {403: "Not for your role", 404: "Not found", 405: "Not found"}


class Console:
    """The console of one daemon: its store connection (on its own thread), templates and sign-in throttle."""

    def __init__(self, settings: Settings, server: HttpServer, *, clock: Callable[[], float] = time.time) -> None:
        self.server = server
        self.settings = settings
        #: the daemon this console is part of (set by `install`; None for a console built on its own).
        self.daemon: Daemon | None = None
        self.site = settings.site.name
        self.secure_cookies = settings.http.secure_cookies
        self.path = settings.database.target
        self.clock = clock
        self.throttle = AddressThrottle()
        #: the departments a manager may be given (the reports' directory replaces it: it follows reloads).
        self.departments: Callable[[], Sequence[str]] = lambda: [d.name for d in settings.departments]
        self._accounts: Accounts | None = None
        #: called on the store's thread when the console closes (a page module's own connection).
        self.closers: list[Callable[[], None]] = []
        #: called on the loop when a person changed what the overview shows besides calls (an alert acknowledged
        #: or snoozed): its figures are computed again at once rather than when the next call or minute comes.
        self.changed_listeners: list[Callable[[], None]] = []
        #: the store's one thread: every query of the console runs there, in order.
        self._db = ThreadPoolExecutor(1, thread_name_prefix="smdrd-console-db")
        #: Argon2 hashing, one at a time (each takes 64 MiB for a few tens of milliseconds).
        self._hashing = ThreadPoolExecutor(1, thread_name_prefix="smdrd-console-hash")
        self.templates = jinja2.Environment(loader=jinja2.PackageLoader("smdrd.console", "templates"),
                                            autoescape=True, undefined=jinja2.StrictUndefined)
        self.templates.globals["UNASSIGNED"] = UNASSIGNED  # the department of no department, named once

    # ---- plumbing ----

    async def _store(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        def call() -> T:
            if self._accounts is None:
                self._accounts = open_store(self.path).accounts()
            return fn(self._accounts, *args, **kwargs)

        return await asyncio.get_running_loop().run_in_executor(self._db, call)

    async def mail(self, fn: Callable[[MailStore], T]) -> T:
        """``fn`` of the store's mail part (schedules, users' e-mail addresses), opened and closed for it on the
        console's store thread."""
        def call() -> T:
            store = open_store(self.path).mail()
            try:
                return fn(store)
            finally:
                store.close()

        return await asyncio.get_running_loop().run_in_executor(self._db, call)

    async def _verify(self, encoded: str | None, password: str) -> tuple[bool, bool]:
        return await asyncio.get_running_loop().run_in_executor(self._hashing, verify_password, encoded, password)

    async def _hash(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(self._hashing, hash_password, password)

    def close(self) -> None:
        def close() -> None:
            if self._accounts is not None:
                self._accounts.close()
                self._accounts = None
            for closer in self.closers:  # the pages' own store connections, on the thread that used them
                closer()

        self._db.submit(close)
        self._db.shutdown(wait=True)
        self._hashing.shutdown(wait=False, cancel_futures=True)

    async def prune_sessions(self) -> int:
        """Delete the sessions that have expired; how many."""
        return await self._store(lambda a: a.prune_sessions(self.now()))

    def now(self) -> int:
        return int(self.clock())

    def render(self, request: web.Request, template: str, status: int = 200, **values: Any) -> web.Response:
        principal = principal_of(request)
        page = self.templates.get_template(template).render(
            site=self.site, me=principal if principal is not None and principal.user_id is not None else None,
            csrf_field=CSRF_FIELD, **values)
        return web.Response(status=status, text=page, content_type="text/html", charset="utf-8",
                            headers={"Content-Security-Policy": _CSP, "Referrer-Policy": "no-referrer"})

    def _cookie(self, response: web.StreamResponse, request: web.Request, name: str, value: str, *, path: str,
                max_age: int | None) -> None:
        response.set_cookie(name, value, path=path, max_age=max_age, httponly=True, samesite="Strict",
                            secure=self.secure_cookies or request.secure)

    @staticmethod
    async def _form(request: web.Request) -> _Form:
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=request.content_length)
        data = await request.post()
        return _Form({k: v for k, v in data.items() if isinstance(v, str)})

    @staticmethod
    def _address(request: web.Request) -> str:
        return (request.remote or "")[:64]

    # ---- who is asking ----

    async def authenticate(self, request: web.Request) -> Principal | None:
        """The request's `Principal`: a personal token, the shared token, a session cookie; or anyone's when
        neither a shared token nor a user exists (the daemon as it was before users)."""
        principal = await self._credentials(request)
        if principal is None and not self.server.token and not await self._store(lambda a: a.any_users()):
            return Principal("anonymous", "service", "open")
        return principal

    async def _credentials(self, request: web.Request) -> Principal | None:
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
            if given.startswith(TOKEN_PREFIX) and len(given) <= MAX_SECRET:
                user = await self._store(lambda a: a.token_user(digest(given), at=self.now()))
                return None if user is None else _principal(user, "token")
            return self.server.service_principal(request)
        service = self.server.service_principal(request)  # ?token= on a page, as before
        if service is not None:
            return service
        cookie = request.cookies.get(SESSION_COOKIE, "")
        if cookie and len(cookie) <= MAX_SECRET:
            key = digest(cookie)
            info = await self._store(lambda a: a.session(key, at=self.now()))
            if info is not None:
                return _principal(info.user, "session", csrf=info.csrf, session=key)
        return None

    # ---- pages ----

    def routes(self) -> None:
        """Add the console's routes to the server."""
        router = self.server.app.router
        router.add_get("/login", self.login_page)
        router.add_post("/login", self.login)
        router.add_post("/logout", self.logout)
        router.add_get("/account/tokens", self.tokens_page)
        router.add_post("/account/tokens", self.create_token)
        router.add_post("/account/tokens/revoke", self.revoke_token)
        router.add_get("/audit", self.audit_page)
        router.add_get("/console/static/console.css", self.css)
        self.server.login_path = "/login"
        self.server.error_page = self.error_page
        router.add_get("/directory", self.directory)
        from smdrd.console import overview

        overview.register(self)  # "/": the overview
        from smdrd.console import users

        users.register(self)
        from smdrd.console import calls

        calls.register(self)
        from smdrd.console import alerts_inbox

        alerts_inbox.register(self)
        from smdrd.console import upload

        upload.register(self)
        from smdrd.console import rates

        rates.register(self)  # /rates, /rates/test, /api/tariff
        from smdrd.console import directory

        directory.register(self)  # /directory/..., /api/directory/...
        from smdrd.console import schedules

        schedules.register(self)  # /schedules: scheduled reports and their deliveries
        from smdrd.console import reports

        reports.register(self)  # /reports: every report kind, rendered here

    def error_page(self, request: web.Request, status: int, what: str) -> web.StreamResponse:
        """A page for a person who asked for one that does not exist or is not for their role: the console's
        own layout and menu, a way on, and the status a script would get."""
        return self.render(request, "error.html", status=status, title=_ERROR_TITLES.get(status, "Error"),
                           what=what)

    @public
    async def directory(self, request: web.Request) -> web.StreamResponse:
        """``/directory``: the menu's Directory is its extensions page."""
        raise web.HTTPSeeOther("/directory/extensions")

    @public
    async def css(self, request: web.Request) -> web.StreamResponse:
        from importlib import resources

        body = resources.files("smdrd.console").joinpath("static/console.css").read_bytes()
        return web.Response(body=body, content_type="text/css", charset="utf-8",
                            headers={"Cache-Control": "max-age=3600"})

    @public
    async def login_page(self, request: web.Request) -> web.StreamResponse:
        principal = principal_of(request)
        target = safe_next(request.query.get("next", ""))
        if principal is not None and principal.user_id is not None:
            raise web.HTTPSeeOther(target)
        return await self._login_form(request, target)

    async def _login_form(self, request: web.Request, target: str, *, status: int = 200, error: str = "",
                          name: str = "") -> web.StreamResponse:
        token = new_secret()
        no_users = not await self._store(lambda a: a.any_users())
        response = self.render(request, "login.html", status=status, title="Sign in", csrf=token, next=target,
                               error=error, name=name, no_users=no_users)
        self._cookie(response, request, LOGIN_COOKIE, token, path="/login", max_age=3600)
        return response

    @public
    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await self._form(request)
        target = safe_next(form.get("next", 2000))
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if not expected or not hmac.compare_digest(form.get(CSRF_FIELD, MAX_SECRET).encode(), expected.encode()):
            return web.Response(status=403, text="forbidden: the form's CSRF token is missing or wrong; reload "
                                                 "the sign-in page and try again\n")
        address = self._address(request)
        name, password = form.get("name", 64), form.get("password", 1025)
        wrong = "Wrong name or password, or the account is locked for a while after too many failed attempts."
        now = self.clock()
        if self.throttle.blocked(address, now):
            return await self._login_form(request, target, status=429, name=name,
                                          error="Too many failed sign-ins from this address; try again later.")
        user = await self._store(lambda a: a.user(name)) if name else None
        encoded = await self._store(lambda a: a.password_hash(user.id)) if user is not None else None
        ok, rehash = await self._verify(encoded, password[:1024])
        ok = ok and len(password) <= 1024
        locked = user is not None and user.locked_until > int(now)
        if user is None or not ok or locked:
            await self._failed(user, address, int(now), locked=locked)
            return await self._login_form(request, target, status=401, error=wrong, name=name)
        if rehash:
            new_hash = await self._hash(password)
            await self._store(lambda a: a.set_password(user.id, new_hash, at=int(now), actor=None))
        session, csrf = new_secret(), new_secret()
        actor = Actor(user.name, address)

        def sign_in(a: Accounts) -> None:
            a.login_succeeded(user.id)
            a.create_session(user.id, digest(session), csrf, at=int(now), expires_at=int(now) + SESSION_SECONDS)
            a.record("login", user.name, at=int(now), actor=actor)

        await self._store(sign_in)
        log.info("console.login", user=user.name, address=address)
        response = web.HTTPSeeOther(target)
        self._cookie(response, request, SESSION_COOKIE, session, path="/", max_age=SESSION_SECONDS)
        response.del_cookie(LOGIN_COOKIE, path="/login")
        raise response

    async def _failed(self, user: User | None, address: str, now: int, *, locked: bool,
                      action: str = "login") -> None:
        """Count a failed sign-in against the account and the address, with audit entries. A name that is no
        user's is not recorded (people type their password into the name field). ``action`` ``"password"``: a
        wrong current password on the account page, counted as a failed sign-in is (``password.failed``)."""
        target = user.name if user is not None else "(unknown name)"
        actor = Actor(target, address)

        def count(a: Accounts) -> bool:
            just_locked = False
            if user is not None and not locked:
                after = a.login_failed(user.id, at=now, lock_after=LOCK_AFTER, lock_seconds=LOCK_SECONDS)
                just_locked = after.locked_until > now and after.failed_logins == LOCK_AFTER
            a.record(f"{action}.failed", target, at=now, actor=actor, after={"locked": locked} if locked else None)
            if just_locked:
                a.record("login.locked", target, at=now, actor=actor, after={"until": now + LOCK_SECONDS})
            return just_locked

        just_locked = await self._store(count)
        if self.throttle.failed(address, now):
            await self._store(lambda a: a.record("login.throttled", address, at=now, actor=actor,
                                                 after={"failures": ADDRESS_FAILURES, "window": ADDRESS_WINDOW}))
            log.warning("console.login_throttled", address=address, failures=ADDRESS_FAILURES)
        log.info(f"console.{action}_failed", user=target, address=address, locked=locked or just_locked)

    @requires(*USERS)
    async def logout(self, request: web.Request) -> web.StreamResponse:
        principal = principal_of(request)
        assert principal is not None
        if principal.session:
            actor = Actor(principal.name, self._address(request))

            def sign_out(a: Accounts) -> None:
                a.end_session(principal.session)
                a.record("logout", principal.name, at=self.now(), actor=actor)

            await self._store(sign_out)
        response = web.HTTPSeeOther("/login")
        response.del_cookie(SESSION_COOKIE, path="/")
        raise response

    # ---- personal API tokens ----

    @requires(*USERS)
    async def tokens_page(self, request: web.Request) -> web.StreamResponse:
        return await self._tokens(request)

    async def _tokens(self, request: web.Request, *, status: int = 200, created: str = "",
                      error: str = "") -> web.StreamResponse:
        principal = principal_of(request)
        assert principal is not None
        assert principal.user_id is not None
        if principal.via != "session":  # a token never mints or revokes tokens: a leaked one could not be undone
            return web.Response(status=403, text="forbidden: API tokens are managed from a signed-in session\n")
        user_id = principal.user_id
        tokens = await self._store(lambda a: a.tokens(user_id))
        return self.render(request, "tokens.html", status=status, title="API tokens", tokens=tokens,
                           created=created, error=error, csrf=principal.csrf, when=_when)

    async def _session_form(self, request: web.Request) -> tuple[Principal, int, _Form] | None:
        """The signed-in person, their user id and the posted form; ``None`` when the request did not come
        with a session (tokens are managed from a signed-in session only)."""
        principal = principal_of(request)
        assert principal is not None
        assert principal.user_id is not None
        if principal.via != "session":
            return None
        return principal, principal.user_id, await self._form(request)

    @requires(*USERS)
    async def create_token(self, request: web.Request) -> web.StreamResponse:
        signed_in = await self._session_form(request)
        if signed_in is None:
            return await self._tokens(request)
        principal, user_id, form = signed_in
        name = form.get("name", 200).strip()
        if not name or len(name) > 64 or any(ord(c) < 32 for c in name):
            return await self._tokens(request, status=400, error="Name: expected 1 to 64 characters, no "
                                                                  "control characters.")
        token, actor = new_token(), Actor(principal.name, self._address(request))
        await self._store(lambda a: a.create_token(user_id, name, digest(token), at=self.now(), actor=actor))
        return await self._tokens(request, created=token)  # shown once, in this page only (never in a URL)

    @requires(*USERS)
    async def revoke_token(self, request: web.Request) -> web.StreamResponse:
        signed_in = await self._session_form(request)
        if signed_in is None:
            return await self._tokens(request)
        principal, user_id, form = signed_in
        raw = form.get("id", 20)
        if not raw.isascii() or not raw.isdigit():
            return await self._tokens(request, status=400, error="No such token.")
        actor = Actor(principal.name, self._address(request))
        if not await self._store(lambda a: a.revoke_token(user_id, int(raw), at=self.now(), actor=actor)):
            return await self._tokens(request, status=404, error="No such token.")
        raise web.HTTPSeeOther("/account/tokens")

    # ---- administration ----

    @requires(*ADMIN)
    async def audit_page(self, request: web.Request) -> web.StreamResponse:
        raw = request.query.get("before", "")
        before = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else None
        entries = await self._store(lambda a: a.entries(100, before))
        return self.render(request, "audit.html", title="Audit log", entries=entries, when=_when, changes=changes,
                           older=entries[-1].id if len(entries) == 100 else None)


def _shown(value: Any) -> str:
    """An audited value as a person reads it: text as it is, a list of plain values joined, anything else as
    compact JSON; at most 200 characters."""
    if isinstance(value, str):
        text = value
    elif isinstance(value, dict) and isinstance(value.get("count"), int) and isinstance(value.get("items"), list):
        # a collection the entry counts (a directory's departments, memberships, names): how many, and which
        named = [str(i.get("name") or i.get("extension") or "") if isinstance(i, dict) else str(i)
                 for i in value["items"]]
        text = f"{value['count']}" + (f" ({', '.join(n for n in named if n)})" if any(named) else "")
    elif isinstance(value, list) and all(isinstance(v, str | int | float | bool) or v is None for v in value):
        text = ", ".join("" if v is None else str(v) for v in value) or "none"
    elif value is None:
        text = "none"
    else:
        text = json.dumps(value, separators=(", ", ": "), ensure_ascii=False, default=str)
    return text if len(text) <= 200 else text[:199] + "…"


def changes(before: Any, after: Any) -> list[tuple[str, str, str]]:
    """What an audit entry changed, key by key: ``(key, before, after)`` as text (`_shown`), ``""`` for a side
    that has no such key; only the keys whose value differs (every key of an addition or a removal). A value
    that is not a mapping is one row with an empty key."""
    if not isinstance(before, dict) and not isinstance(after, dict):
        return [] if before is None and after is None else [
            ("", "" if before is None else _shown(before), "" if after is None else _shown(after))]
    old = before if isinstance(before, dict) else {}
    new = after if isinstance(after, dict) else {}
    return [(str(key), _shown(old[key]) if key in old else "", _shown(new[key]) if key in new else "")
            for key in dict.fromkeys([*old, *new]) if old.get(key, ...) != new.get(key, ...)]


def _principal(user: User, via: str, *, csrf: str = "", session: str = "") -> Principal:
    return Principal(user.name, user.role, via, user.id, user.departments, csrf, session)


def _when(seconds: int | None) -> str:
    if seconds is None:
        return "never"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


def safe_next(target: str) -> str:
    """Where to go after signing in: a path on this server only (never ``//host`` or a scheme: no open
    redirect)."""
    parts = urlsplit(target)
    if (not target.startswith("/") or target.startswith("//") or "\\" in target or parts.scheme or parts.netloc
            or any(ord(c) < 32 for c in target)):
        return "/"
    return target


def install(daemon: Daemon) -> Console | None:
    """Add the console to ``daemon``'s HTTP server (nothing when HTTP is disabled)."""
    if daemon.http is None:
        return None
    console = Console(daemon.settings, daemon.http)
    console.daemon = daemon
    reports = daemon.features.reports
    if reports is not None:
        console.departments = lambda: reports.context.directory.names
    daemon.http.authenticator = console.authenticate
    console.routes()

    async def console_store() -> None:
        try:
            while True:  # until the daemon stops: expired sessions leave the database
                pruned = await console.prune_sessions()
                if pruned:
                    log.info("console.sessions_pruned", sessions=pruned)
                await asyncio.sleep(PRUNE_INTERVAL)
        finally:
            await asyncio.to_thread(console.close)

    daemon.add_task("console-store", console_store)
    return console
