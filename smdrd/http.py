"""The daemon's small HTTP server: metrics, health and reports on one port.

An asyncio edge with no framework: GET and HEAD only, one request per connection (``Connection: close``), which is
all that Prometheus scrapes, health checks and a report page need. Routes are registered by the modules that
serve them (``server.route("/metrics", handler)``). Bound to localhost by default; with a token configured,
every route except ``/healthz`` requires ``Authorization: Bearer <token>`` (or ``?token=`` for a browser).
Request heads are limited in size and time, so a slow or hostile client cannot hold memory or a task for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import structlog

from smdrd.config import parse_hostport

log = structlog.get_logger(__name__)

MAX_HEAD = 16 * 1024
HEAD_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed request: method, path, query parameters (each a list, as repeated keys are allowed), headers."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The first value of query parameter ``name``."""
        values = self.query.get(name)
        return values[0] if values else default


@dataclass(slots=True)
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def text(cls, text: str, status: int = 200) -> Response:
        return cls(status, text.encode())


Handler = Callable[[Request], Awaitable[Response]]


class HttpServer:
    """``server = HttpServer("127.0.0.1:9464", token)``; ``server.route(...)``; ``await server.start()``."""

    def __init__(self, listen: str, token: str | None = None, *, public: tuple[str, ...] = ("/healthz",)) -> None:
        self.host, self.port = parse_hostport(listen, "127.0.0.1")
        self.token = token
        self.public = public
        self.routes: dict[str, Handler] = {}
        self._server: asyncio.Server | None = None

    def route(self, path: str, handler: Handler) -> None:
        """Serve GET (and HEAD) ``path`` with ``handler``."""
        self.routes[path] = handler

    @property
    def bound_port(self) -> int:
        """The port actually bound (useful with port 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the HTTP server is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, self.host, self.port, limit=MAX_HEAD)
        log.info("http.listening", host=self.host, port=self.bound_port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
                return
            request = _parse_head(head)
            if request is None:
                response = Response.text("bad request\n", 400)
            else:
                response = await self._dispatch(request)
            await _send(writer, response, head_only=request is not None and request.method == "HEAD")
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _dispatch(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            return Response(405, b"method not allowed\n", headers={"Allow": "GET, HEAD"})
        handler = self.routes.get(request.path)
        if handler is None:
            return Response.text("not found\n", 404)
        if self.token and request.path not in self.public and not self._authorised(request):
            return Response(401, b"a token is required\n", headers={"WWW-Authenticate": "Bearer"})
        try:
            return await handler(request)
        except ValueError as exc:  # a bad query parameter: the handler says which
            return Response.text(f"{exc}\n", 400)
        except Exception as exc:
            log.exception("http.handler_failed", path=request.path, error=repr(exc))
            return Response.text("internal error\n", 500)

    def _authorised(self, request: Request) -> bool:
        assert self.token is not None
        given = request.headers.get("authorization", "")
        candidate = given[7:] if given.lower().startswith("bearer ") else (request.arg("token") or "")
        return hmac.compare_digest(candidate.encode(), self.token.encode())


def _parse_head(head: bytes) -> Request | None:
    try:
        text = head.decode("latin-1")
        request_line, *header_lines = text.split("\r\n")
        method, target, _version = request_line.split(" ", 2)
    except ValueError:
        return None
    headers = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    parts = urlsplit(target)
    return Request(method.upper(), parts.path or "/", parse_qs(parts.query), headers)


async def _send(writer: asyncio.StreamWriter, response: Response, *, head_only: bool) -> None:
    reason = HTTPStatus(response.status).phrase if response.status in HTTPStatus._value2member_map_ else ""
    headers = {"Content-Type": response.content_type, "Content-Length": str(len(response.body)),
               "Connection": "close", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
               **response.headers}
    head = f"HTTP/1.1 {response.status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(head.encode("latin-1") + b"\r\n" + (b"" if head_only else response.body))
    await writer.drain()
