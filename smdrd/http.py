"""The daemon's HTTP server: metrics, health and reports on one port, on aiohttp.web in the daemon's own loop.

Routes are registered by the modules that serve them with a small adapter (``server.route("/metrics",
handler)``, a handler being ``async (Request) -> Response``), so they need no aiohttp of their own; GET and
HEAD are served, anything else is 405. `HttpServer.app` is the `aiohttp.web.Application` underneath, for routes
that want aiohttp itself (the console's forms); such a handler declares who may use it with `requires` or
`public`. Bound to localhost by default.

Rights are checked here, for every route, before its handler runs: each route declares the roles that may use
it (``route(path, handler, roles=READERS)``, `requires`), a route that declares nothing is refused (fail closed),
and the request's `Principal` comes from `HttpServer.authenticator`. Without the console that is the shared
token: with ``[http] token`` configured, every route except ``/healthz`` requires ``Authorization: Bearer
<token>`` (or ``?token=`` for a browser), compared in constant time, and a request that presents it acts as
the ``service`` role; without one, every request does. The console (`smdrd.console`) adds users' sessions and
personal API tokens. With ``[http] tls_cert`` and ``tls_key`` the port speaks HTTPS only; from the
``trusted_proxies``, ``X-Forwarded-For`` and ``X-Forwarded-Proto`` give the request's client address and scheme
(``request.remote``, ``request.secure``) before anything else sees it. A request that changes something (not
GET or HEAD) is refused 403 unless it comes with a personal or service token, or with a session and that
session's CSRF token (`CSRF_FIELD` in the form, or the `CSRF_HEADER` header). `Request.authenticated` says
whether a request may see details.

Bounds, apart from the PBX sources' (``[http]`` in the configuration, see docs/api.md), so that no HTTP client
can take descriptors, memory or time that the PBX path needs:

* at most ``max_connections`` open connections: one more is answered ``503`` and closed at once, never queued;
* a new connection must send a complete request head within ``head_timeout`` seconds, and an idle keep-alive
  connection is closed after ``keepalive_timeout``;
* a request line or header line holds at most `MAX_LINE` bytes, a request at most `MAX_HEADERS` headers;
* a response is written in chunks of `CHUNK` bytes, and a client that stops reading for ``write_timeout``
  seconds is disconnected: its response is dropped, not held. Large responses stream (`Response.stream`).

A handler's `BadRequest` is a 400 with its message; any other exception is logged and answered with a plain
``500 internal error`` that never shows the exception's text.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode

import structlog
from aiohttp import web

from smdrd.errors import SmdrdError
from smdrd.http_config import HttpConfig, tls_context
from smdrd.section import parse_hostport

__all__ = [
    "ADMIN",
    "CHUNK",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "MAX_BODY",
    "MAX_HEADERS",
    "MAX_LINE",
    "PUBLIC",
    "READERS",
    "SERVICE",
    "USERS",
    "Authenticator",
    "BadRequest",
    "Handler",
    "HttpServer",
    "Principal",
    "Request",
    "Response",
    "csrf_in_stream",
    "csrf_matches",
    "principal_of",
    "public",
    "requires",
]

log = structlog.get_logger(__name__)

#: the longest request line or header line, in bytes (a report URL with many filters fits).
MAX_LINE = 8190
#: the most header lines one request may carry.
MAX_HEADERS = 64
#: a response is written this many bytes at a time, each write bounded by ``write_timeout``.
CHUNK = 64 * 1024
#: how often, at most, refused connections are logged (a count, never one line per connection).
REFUSED_LOG_INTERVAL = 60.0
#: the largest request body (a console form); a larger one is refused 413 before it is read.
MAX_BODY = 64 * 1024

#: the role of a request that presents the shared ``[http] token`` (or of every request when there is neither a
#: token nor a user): what that token could always do, read reports and metrics.
SERVICE = "service"
#: anyone, signed in or not (``/healthz``, the sign-in page).
PUBLIC: frozenset[str] = frozenset()
#: who may read reports and metrics (a ``manager`` only sees their departments: not yet scoped, so not here).
READERS = frozenset({"admin", "viewer", SERVICE})
#: every signed-in user (their own sessions and API tokens).
USERS = frozenset({"admin", "manager", "viewer"})
#: administrators only.
ADMIN = frozenset({"admin"})
#: the form field and the header that carry a session's CSRF token.
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
_ROLES_ATTR = "smdrd_roles"
_STREAMS_ATTR = "smdrd_csrf_in_stream"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: the most parameters a query string may hold (more is a 400, not a parse of thousands).
MAX_QUERY_FIELDS = 200

_SECURITY_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 38\r\n"
         b"Retry-After: 1\r\nConnection: close\r\n\r\ntoo many connections; try again later\n")


class BadRequest(Exception):
    """Raised by a handler: the request's parameters are wrong. Answered 400 with the message (say which
    parameter and what was expected; never put a secret or a value from the database in it)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for: a user (``user_id``), the shared token, or anyone (no token, no users)."""

    name: str
    role: str
    #: how it was recognised: ``session`` (a console cookie), ``token`` (a personal API token), ``service``
    #: (the shared token), ``open`` (no token is configured and there are no users).
    via: str
    user_id: int | None = None
    departments: tuple[str, ...] = ()
    #: the session's CSRF token (``via == "session"`` only), and the digest of its id.
    csrf: str = field(default="", repr=False)
    session: str = field(default="", repr=False)


PRINCIPAL = web.RequestKey("principal", Principal)


def principal_of(request: web.Request) -> Principal | None:
    """The `Principal` the middleware found for ``request`` (None: nobody signed in)."""
    return request.get(PRINCIPAL)


#: ``await authenticator(request)``: the request's `Principal`, or None when it presents no valid credential.
Authenticator = Callable[[web.Request], Awaitable[Principal | None]]

AioHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: renders an error for a person (``request``, status, what to say): the console's page, for a browser.
ErrorPage = Callable[[web.Request, int, str], web.StreamResponse]


_H = TypeVar("_H", bound=Callable[..., Awaitable[web.StreamResponse]])


def requires(*roles: str) -> Callable[[_H], _H]:
    """Declare the roles that may use an aiohttp handler (a function or a method; one role is enough)."""
    allowed = frozenset(roles)

    def mark(handler: _H) -> _H:
        setattr(handler, _ROLES_ATTR, allowed)
        return handler

    return mark


def csrf_in_stream(handler: _H) -> _H:
    """Declare that an aiohttp handler (a change, such as an upload larger than `MAX_BODY`) reads its body as
    a stream and checks the CSRF token itself, with `csrf_matches`, from the first field, before it reads or
    does anything else; the server then does not read the body for it."""
    setattr(handler, _STREAMS_ATTR, True)
    return handler


def csrf_matches(principal: Principal, given: str) -> bool:
    """Whether a change by ``principal`` that carries the CSRF token ``given`` may go ahead: always with a
    personal or service token, with a session only when ``given`` is its token, never for anyone else."""
    if principal.via in ("token", "service"):
        return True
    if principal.via != "session" or not principal.csrf:
        return False
    return hmac.compare_digest(given.encode(), principal.csrf.encode())


def public(handler: _H) -> _H:
    """Declare an aiohttp handler open to anyone (it checks what it needs itself, as the sign-in form does)."""
    setattr(handler, _ROLES_ATTR, PUBLIC)
    return handler


@dataclass(frozen=True, slots=True)
class Request:
    """A request as handlers see it: method, path, query parameters (each a list, as repeated keys are
    allowed), headers (names in lower case), and whether it is authenticated (no token is configured, or it
    presented the right one)."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]
    authenticated: bool = False
    principal: Principal | None = None

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The first value of query parameter ``name``."""
        values = self.query.get(name)
        return values[0] if values else default


@dataclass(slots=True)
class Response:
    """What a handler returns. ``stream``, when set, is the body instead of ``body``: an async generator of
    byte chunks, written as they come (chunked), each write bounded by ``write_timeout``; it is closed
    (``aclose``) whether or not the client read to the end, so its ``finally`` releases what it holds."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    stream: AsyncGenerator[bytes, None] | None = None

    @classmethod
    def text(cls, text: str, status: int = 200) -> Response:
        return cls(status, text.encode())


Handler = Callable[[Request], Awaitable[Response]]


class _Refused(asyncio.Protocol):
    """A connection over the cap: answered 503 and closed at once; nothing is read or kept."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        with contextlib.suppress(Exception):
            transport.write(_BUSY)
        transport.close()


class _ProtocolLog(logging.Handler):
    """aiohttp's own messages (a malformed request, a client gone mid-response) as one structlog debug
    event each, without a traceback: they are a client's doing, not ours, and must never flood the log."""

    def emit(self, record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        log.debug("http.protocol_error", message=record.getMessage()[:200],
                  error=type(error).__name__ if error is not None else None)


def _aiohttp_logger() -> logging.Logger:
    logger = logging.getLogger("smdrd.http.aiohttp")
    logger.propagate = False
    if not logger.handlers:
        logger.addHandler(_ProtocolLog())
    logger.setLevel(logging.DEBUG)
    return logger


class HttpServer:
    """``server = HttpServer("127.0.0.1:9464", token, config=settings.http)``; ``server.route(...)``;
    ``await server.start()``; ``await server.close()``."""

    def __init__(self, listen: str, token: str | None = None, *, public: tuple[str, ...] = ("/healthz",),
                 config: HttpConfig | None = None) -> None:
        self.host, self.port = parse_hostport(listen, "127.0.0.1")
        self.token = token
        self.public = public
        self.config = config or HttpConfig()
        #: the TLS context when ``[http] tls_cert`` and ``tls_key`` are set (HTTPS), else None.
        self.ssl = tls_context(self.config)
        #: the reverse proxies whose X-Forwarded-For and X-Forwarded-Proto are believed.
        self.proxies = tuple(ipaddress.ip_network(p.strip(), strict=False) for p in self.config.trusted_proxies)
        self.routes: dict[str, Handler] = {}
        #: recognises the request's `Principal` (the console replaces it; by default, the shared token).
        self.authenticator: Authenticator = self._token_principal
        #: where a browser that is not signed in is sent for a page (set by the console), else it gets 401.
        self.login_path: str | None = None
        #: how a browser is shown "no such page" and "not for your role" (set by the console), else plain text.
        self.error_page: ErrorPage | None = None
        self.app = web.Application(middlewares=[self._guard], client_max_size=MAX_BODY)
        self.app.on_response_prepare.append(_add_security_headers)
        #: connections refused because ``max_connections`` were open, since start.
        self.refused = 0
        #: responses dropped because the client stopped reading for ``write_timeout``, since start.
        self.write_timeouts = 0
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        #: handlers made but not yet connected (see `_protocol`), when each connection opened, and those that
        #: have sent a complete request head; all pruned to the open connections (at most max_connections).
        self._fresh: set[web.RequestHandler] = set()
        self._opened: dict[web.RequestHandler, float] = {}
        self._served: set[web.RequestHandler] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self._refused_logged = 0
        self._refused_log_at = 0.0

    def route(self, path: str, handler: Handler, roles: frozenset[str] | None = None) -> None:
        """Serve GET (and HEAD) ``path`` with ``handler`` to ``roles`` (default: `PUBLIC` for a path in
        ``public``, else `READERS`); before `start`."""
        self.routes[path] = handler

        async def serve(request: web.Request) -> web.StreamResponse:
            return await self._serve(request, handler)

        setattr(serve, _ROLES_ATTR, roles if roles is not None else PUBLIC if path in self.public else READERS)
        self.app.router.add_get(path, serve)

    @property
    def bound_port(self) -> int:
        """The port actually bound (useful with port 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the HTTP server is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def open_connections(self) -> int:
        """HTTP connections open now (a request still being answered counts until it is done)."""
        server = self._runner.server if self._runner is not None else None
        return (len(server.connections) if server is not None else 0) + len(self._fresh)

    async def start(self) -> None:
        cfg = self.config
        self._runner = web.AppRunner(
            self.app, handle_signals=False, access_log=None, logger=_aiohttp_logger(), shutdown_timeout=2.0,
            keepalive_timeout=cfg.keepalive_timeout, max_line_size=MAX_LINE, max_field_size=MAX_LINE,
            max_headers=MAX_HEADERS, lingering_time=min(cfg.head_timeout, 10.0))
        await self._runner.setup()
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(self._protocol, self.host, self.port, reuse_address=True,
                                                    backlog=min(cfg.max_connections * 2, 1024), ssl=self.ssl,
                                                    ssl_handshake_timeout=cfg.head_timeout if self.ssl else None)
        except OSError as exc:  # a name that does not resolve, an address not on this box, a port in use
            await self._runner.cleanup()
            reason = exc.strerror or str(exc)
            raise SmdrdError(f"[http] listen = \"{self.host}:{self.port}\": cannot listen there: {reason} "
                             "(an address of this machine and a free port; 127.0.0.1:9464 by default)") from None
        self._sweeper = loop.create_task(self._sweep(), name="http-head-timeout")
        log.info("http.listening", host=self.host, port=self.bound_port, max_connections=cfg.max_connections,
                 tls=self.ssl is not None, trusted_proxies=len(self.proxies))

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._runner.cleanup(), 5)
            self._runner = None

    # ---- connections ----

    def _protocol(self) -> asyncio.BaseProtocol:
        """The protocol factory behind the listening socket: aiohttp's handler, or `_Refused` over the cap."""
        server = self._aio_server()
        loop = asyncio.get_running_loop()
        if self.open_connections >= self.config.max_connections:
            self._count_refused(loop.time())
            return _Refused()
        handler = server()
        # Counted as open from now: asyncio calls connection_made (which puts it in server.connections) in the
        # callback scheduled right after this one, so no connection slips past the cap in between.
        self._fresh.add(handler)
        loop.call_soon(self._fresh.discard, handler)
        self._opened[handler] = loop.time()
        return handler

    def _aio_server(self) -> web.Server:
        if self._runner is None or self._runner.server is None:
            raise RuntimeError("the HTTP server is not started")
        return self._runner.server

    async def _sweep(self) -> None:
        """Close connections that have not sent a complete request head within ``head_timeout`` (slowloris);
        aiohttp's keep-alive timeout covers a connection after its first request."""
        loop = asyncio.get_running_loop()
        timeout = self.config.head_timeout
        while True:
            await asyncio.sleep(min(max(timeout / 4, 0.05), 1.0))
            live = set(self._aio_server().connections)
            now = loop.time()
            self._served &= live
            self._opened = {h: t for h, t in self._opened.items() if h in live or h in self._fresh}
            for handler in live - self._served:
                if now - self._opened.setdefault(handler, now) >= timeout and handler.transport is not None:
                    log.debug("http.head_timeout", seconds=timeout)
                    handler.force_close()

    def _count_refused(self, now: float) -> None:
        self.refused += 1
        if now - self._refused_log_at >= REFUSED_LOG_INTERVAL:
            log.warning("http.connections_refused", refused=self.refused - self._refused_logged,
                        max_connections=self.config.max_connections,
                        consequence="answered 503 and closed; raise [http] max_connections if this is real load")
            self._refused_log_at = now
            self._refused_logged = self.refused

    @web.middleware
    async def _guard(self, request: web.Request, handler: AioHandler) -> web.StreamResponse:
        """Every request: the keep-alive clock, who it is, whether its route lets that role in, the CSRF token
        of a change made with a session, and a plain 500 (never the exception's text) for a bug."""
        self._served.add(request.protocol)  # a complete head: the keep-alive timeout applies from here
        if self.proxies:
            request = self._behind_proxy(request)
        if request.query_string and request.query_string.count("&") >= MAX_QUERY_FIELDS:
            # No form sends that many; every route refuses them alike, before any handler parses the query.
            problem = f"the query string has more than {MAX_QUERY_FIELDS} parameters"
            if self._for_a_person(request):
                assert self.error_page is not None
                return self.error_page(request, 400, problem[0].upper() + problem[1:] + ".")
            return web.Response(status=400, text=f"{problem}\n")
        missing = request.match_info.http_exception
        if missing is not None:  # 404 or 405: nothing to authorise
            if self._for_a_person(request):
                principal = await self.authenticator(request)  # the page's menu is the person's own
                if principal is not None:
                    request[PRINCIPAL] = principal
                what = "There is no such page." if missing.status == 404 else "This page does not take that."
                assert self.error_page is not None
                return self.error_page(request, missing.status, what)
            return await handler(request)
        roles: frozenset[str] | None = getattr(request.match_info.handler, _ROLES_ATTR, None)
        if roles is None:
            log.error("http.route_without_roles", path=request.path,
                      consequence="refused: every route must declare who may use it")
            return web.Response(status=403, text="forbidden\n")
        try:
            principal = await self.authenticator(request)
            if principal is not None:
                request[PRINCIPAL] = principal
            if roles:
                if principal is None:
                    return self._unauthenticated(request)
                if principal.role not in roles:
                    if principal.via == "open":  # no users yet: the sign-in page says how to make one
                        return self._unauthenticated(request)
                    if self._for_a_person(request):
                        assert self.error_page is not None
                        return self.error_page(request, 403, f"Your role ({principal.role}) may not use this page.")
                    return web.Response(status=403, text="forbidden: your role may not use this page\n")
            # A public route that takes a form (the sign-in) checks its own token: there is no session yet.
            streams = getattr(request.match_info.handler, _STREAMS_ATTR, False)  # checks it in the stream itself
            if roles and request.method not in _SAFE_METHODS and principal is not None and not streams and \
                    not await _csrf_ok(request, principal):
                return web.Response(status=403, text="forbidden: the form's CSRF token is missing or wrong; "
                                                     "reload the page and try again\n")
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception as exc:
            if isinstance(exc, ConnectionResetError) and _client_gone(request):
                # The client went away mid-response (a scrape that timed out, a closed tab): nothing failed here,
                # and aiohttp drops the connection quietly.
                log.info("http.client_gone", path=request.path)
                raise
            log.error("http.handler_failed", path=request.path, error=type(exc).__name__,
                      exc_info=(type(exc), exc, exc.__traceback__))
            return web.Response(status=500, text="internal error\n")

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip().strip("[]"))
        except ValueError:
            return False
        return any(ip in net for net in self.proxies)

    def _behind_proxy(self, request: web.Request) -> web.Request:
        """``request`` as its client made it, when it came through a trusted proxy: the client's address is
        the last hop of ``X-Forwarded-For`` that is not a trusted proxy itself (read from the right, as each
        proxy appends the address it saw; a hop that is no IP address stops the walk), and its scheme is the
        last ``X-Forwarded-Proto`` (``http`` or ``https``). From anyone else those headers change nothing."""
        peer = request.remote or ""
        if not self._trusted(peer):
            return request
        hops = [hop.strip() for header in request.headers.getall("X-Forwarded-For", [])
                for hop in header.split(",")][-32:]
        client = peer
        for hop in reversed(hops):
            if not self._trusted(client):
                break
            try:
                client = str(ipaddress.ip_address(hop.strip("[]")))
            except ValueError:
                break
        protos = [p.strip().lower() for header in request.headers.getall("X-Forwarded-Proto", [])
                  for p in header.split(",")]
        scheme = protos[-1] if protos and protos[-1] in ("http", "https") else request.scheme
        if client == peer and scheme == request.scheme:
            return request
        return request.clone(remote=client, scheme=scheme)

    def _for_a_person(self, request: web.Request) -> bool:
        """A browser asking for a page (not a script, not a form's post), with a console to show it one."""
        return (self.error_page is not None and request.method in ("GET", "HEAD")
                and "text/html" in request.headers.get("Accept", ""))

    def _unauthenticated(self, request: web.Request) -> web.StreamResponse:
        if (self.login_path is not None and request.method in ("GET", "HEAD")
                and "text/html" in request.headers.get("Accept", "")):
            raise web.HTTPSeeOther(f"{self.login_path}?{urlencode({'next': request.path_qs[:2000]})}")
        return web.Response(status=401, text="sign in, or present a token\n",
                            headers={"WWW-Authenticate": "Bearer"})

    async def _token_principal(self, request: web.Request) -> Principal | None:
        """The shared token's `Principal` (``service``), or anyone's when no token is configured."""
        if not self.token:
            return Principal("anonymous", SERVICE, "open")
        return self.service_principal(request)

    def service_principal(self, request: web.Request) -> Principal | None:
        """`SERVICE` if ``request`` presents the shared token (header, or ``?token=``), else None."""
        if not self.token:
            return None
        given = request.headers.get("Authorization", "")
        if given[:7].lower() == "bearer ":
            candidate = given[7:].strip()
        else:
            try:
                values = parse_qs(request.query_string, max_num_fields=MAX_QUERY_FIELDS).get("token")
            except ValueError:  # too many fields: refused with a 400 when the request is served
                values = None
            candidate = values[0] if values else ""
        if hmac.compare_digest(candidate.encode(), self.token.encode()):
            return Principal("service", SERVICE, "service")
        return None

    # ---- requests ----

    async def _serve(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        principal = principal_of(request)
        try:
            query = parse_qs(request.query_string, max_num_fields=MAX_QUERY_FIELDS)
        except ValueError:
            return await self._send(request, Response.text(
                f"the query string has more than {MAX_QUERY_FIELDS} parameters\n", 400))
        headers = {name.lower(): value for name, value in request.headers.items()}
        req = Request(request.method, request.path, query, headers, principal is not None, principal)
        try:
            response = await handler(req)
        except BadRequest as exc:
            response = Response.text(f"{exc}\n", 400)
        except Exception as exc:
            log.error("http.handler_failed", path=request.path, error=type(exc).__name__,
                      exc_info=(type(exc), exc, exc.__traceback__))
            response = Response.text("internal error\n", 500)
        return await self._send(request, response)

    async def _send(self, request: web.Request, response: Response) -> web.StreamResponse:
        """Write ``response`` in bounded chunks; a client that stops reading for ``write_timeout`` is cut off."""
        out = web.StreamResponse(status=response.status,
                                 headers={"Content-Type": response.content_type, **response.headers})
        head_only = request.method == "HEAD"
        stream = response.stream
        if stream is None:
            out.content_length = len(response.body)
        try:
            await self._bounded(request, out.prepare(request))
            if stream is not None:
                async with contextlib.aclosing(stream):
                    if not head_only:
                        async for chunk in stream:
                            await self._write(request, out, chunk)
            elif not head_only:
                body = memoryview(response.body)
                for i in range(0, len(body), CHUNK):
                    await self._write(request, out, body[i:i + CHUNK])
            await self._bounded(request, out.write_eof())
        except _WriteTimeout:
            pass  # the transport is aborted; aiohttp's own write_eof then fails quietly as a lost connection
        return out

    async def _write(self, request: web.Request, out: web.StreamResponse, chunk: bytes | memoryview) -> None:
        for i in range(0, len(chunk), CHUNK):
            await self._bounded(request, out.write(chunk[i:i + CHUNK]))

    async def _bounded(self, request: web.Request, write: Awaitable[Any]) -> None:
        try:
            await asyncio.wait_for(write, self.config.write_timeout)
        except TimeoutError:
            self.write_timeouts += 1
            log.warning("http.write_timeout", path=request.path, seconds=self.config.write_timeout,
                        consequence="the client stopped reading; disconnected and its response dropped")
            transport = request.transport
            if transport is not None:
                transport.abort()
            raise _WriteTimeout from None


async def _csrf_ok(request: web.Request, principal: Principal) -> bool:
    """A change may be made with a personal or service token (a browser never adds one by itself), or with a
    session and its CSRF token; never by an ``open`` principal (anyone)."""
    if principal.via != "session" or not principal.csrf:
        return csrf_matches(principal, "")
    given = request.headers.get(CSRF_HEADER, "")
    if not given and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        if request.content_length is not None and request.content_length > MAX_BODY:
            return False
        value = (await request.post()).get(CSRF_FIELD, "")
        given = value if isinstance(value, str) else ""
    return csrf_matches(principal, given)


def _client_gone(request: web.Request) -> bool:
    """Whether ``request``'s client has closed its connection (a write to it then fails with a reset)."""
    transport = request.transport
    return transport is None or transport.is_closing()


class _WriteTimeout(Exception):
    """A client stopped reading for ``write_timeout``; its connection has been aborted."""


async def _add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers["Server"] = "smdrd"  # not the library and its version
