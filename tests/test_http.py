"""The daemon's HTTP server (aiohttp underneath) over real loopback sockets: the route adapter, HEAD, the token
and `Request.authenticated`, errors that never show exception text, and the bounds of issue 11, finding 7 and 4:
the connection cap, the request-head and keep-alive timeouts, the size of a request head, and the write timeout
that drops a client that stops reading."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import pytest
from structlog.testing import capture_logs

from smdrd.config import HttpConfig
from smdrd.http import BadRequest, HttpServer, Request, Response

TOKEN = "http-test-token-0123456789"
BIG = 8 * 1024 * 1024


async def request(port: int, head: str, *, within: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send ``head`` (a complete request, ``Connection: close``), read to EOF: (status, headers, body)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode("latin-1"))
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), within)
    finally:
        writer.close()
    raw_head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = raw_head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


async def get(port: int, target: str, extra: str = "", method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    return await request(port, f"{method} {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n")


class Routes:
    """A few handlers that record what they saw."""

    def __init__(self) -> None:
        self.seen: list[Request] = []
        self.stream_closed = asyncio.Event()
        self.chunks_sent = 0

    def last_authenticated(self) -> bool:
        return self.seen[-1].authenticated

    async def echo(self, req: Request) -> Response:
        self.seen.append(req)
        return Response.text(f"{req.method} {req.path} {req.arg('a')} {req.authenticated}\n")

    async def bad(self, req: Request) -> Response:
        raise BadRequest("a: expected a number, got 'x'")

    async def bug(self, req: Request) -> Response:
        raise RuntimeError("secret-internal-detail in the exception")

    async def big(self, req: Request) -> Response:
        return Response(200, b"x" * BIG, "application/octet-stream")

    async def stream(self, req: Request) -> Response:
        async def chunks() -> AsyncGenerator[bytes, None]:
            try:
                for _ in range(10_000):  # up to 640 MB: far more than any socket buffer holds
                    self.chunks_sent += 1
                    yield b"y" * 65536
            finally:
                self.stream_closed.set()

        gen = chunks()
        return Response(200, content_type="application/octet-stream", stream=gen)


@contextlib.asynccontextmanager
async def serving(token: str | None = None, **limits: Any) -> AsyncIterator[tuple[HttpServer, Routes]]:
    server = HttpServer("127.0.0.1:0", token, config=HttpConfig(**limits))
    routes = Routes()
    server.route("/healthz", routes.echo)
    server.route("/echo", routes.echo)
    server.route("/bad", routes.bad)
    server.route("/bug", routes.bug)
    server.route("/big", routes.big)
    server.route("/stream", routes.stream)
    await server.start()
    try:
        yield server, routes
    finally:
        await server.close()


async def test_get_head_and_the_query_reach_the_handler() -> None:
    async with serving() as (server, routes):
        port = server.bound_port
        status, headers, body = await get(port, "/echo?a=1&a=2")
        assert status == 200 and body == b"GET /echo 1 True\n"
        assert routes.seen[-1].query == {"a": ["1", "2"]}
        assert headers["cache-control"] == "no-store" and headers["x-content-type-options"] == "nosniff"
        assert headers["server"] == "smdrd", "the server does not advertise its library and version"
        status, headers, body = await get(port, "/echo", method="HEAD")
        assert status == 200 and body == b"" and headers["content-length"] == str(len(b"HEAD /echo None True\n"))
        assert (await get(port, "/echo", method="POST"))[0] == 405
        status, headers, _ = await get(port, "/nowhere")
        assert status == 404 and headers["x-content-type-options"] == "nosniff"


async def test_two_requests_on_one_keep_alive_connection() -> None:
    async with serving() as (server, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.bound_port)
        for _ in range(2):
            writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            assert head.startswith(b"HTTP/1.1 200")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            assert await asyncio.wait_for(reader.readexactly(length), 10) == b"GET /echo None True\n"
        writer.close()


async def test_token_private_routes_public_health_and_authenticated() -> None:
    """Every route but /healthz needs the token (header or ?token=); /healthz answers everyone and tells the
    handler whether the request was authenticated."""
    async with serving(TOKEN) as (server, routes):
        port = server.bound_port
        status, headers, _ = await get(port, "/echo")
        assert status == 401 and headers["www-authenticate"] == "Bearer"
        assert (await get(port, "/echo", "Authorization: Bearer wrong\r\n"))[0] == 401
        assert (await get(port, f"/echo?token={TOKEN[:-1]}"))[0] == 401
        assert (await get(port, "/echo", f"Authorization: Bearer {TOKEN}\r\n"))[0] == 200
        assert routes.last_authenticated()
        assert (await get(port, f"/echo?token={TOKEN}"))[0] == 200
        status, _, body = await get(port, "/healthz")
        assert status == 200 and body.endswith(b"False\n") and not routes.last_authenticated()
        status, _, body = await get(port, "/healthz", f"Authorization: Bearer {TOKEN}\r\n")
        assert status == 200 and body.endswith(b"True\n") and routes.last_authenticated()


async def test_a_bad_parameter_is_400_and_a_bug_is_500_without_its_text() -> None:
    async with serving() as (server, _):
        status, _, body = await get(server.bound_port, "/bad")
        assert status == 400 and body == b"a: expected a number, got 'x'\n"
        status, _, body = await get(server.bound_port, "/bug")
        assert status == 500 and body == b"internal error\n"


async def test_request_heads_are_bounded() -> None:
    """A request line or header line over MAX_LINE, or too many headers, is refused with a 4xx, not read on."""
    async with serving() as (server, _):
        port = server.bound_port
        status, _, _ = await get(port, "/echo?a=" + "x" * 9000)
        assert 400 <= status < 500
        status, _, _ = await get(port, "/echo", "X-Long: " + "y" * 9000 + "\r\n")
        assert 400 <= status < 500
        status, _, _ = await get(port, "/echo", "".join(f"X-H{i}: v\r\n" for i in range(200)))
        assert 400 <= status < 500


async def closed_by_server(reader: asyncio.StreamReader, within: float = 10.0) -> bool:
    """True when the server closes the connection (EOF or reset) within ``within`` seconds."""
    try:
        while await asyncio.wait_for(reader.read(65536), within):
            pass
    except (ConnectionError, TimeoutError) as exc:
        return not isinstance(exc, TimeoutError)
    return True


async def test_connections_over_the_cap_get_503_and_are_closed_at_once() -> None:
    """With max_connections = 4 and four idle connections open, a fifth is answered 503 and closed at once
    (never queued); when one of the four leaves, requests are served again."""
    async with serving(max_connections=4, head_timeout=60) as (server, _):
        port = server.bound_port
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
        for _ in range(50):  # each is registered before the next (bounded wait, no timing claim)
            if server.open_connections == 4:
                break
            await asyncio.sleep(0.02)
        assert server.open_connections == 4
        status, headers, body = await request(port, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 503 and headers["retry-after"] == "1" and b"too many connections" in body
        assert server.refused == 1
        _, writer = held.pop()
        writer.close()
        for _ in range(250):
            if server.open_connections < 4:
                break
            await asyncio.sleep(0.02)
        assert (await get(port, "/echo"))[0] == 200
        for _, w in held:
            w.close()


async def test_a_connection_that_never_completes_its_head_is_closed() -> None:
    """Slowloris: half a request head, then nothing: closed after head_timeout, and its slot is free again."""
    async with serving(max_connections=2, head_timeout=0.3, keepalive_timeout=60) as (server, _):
        port = server.bound_port
        silent = await asyncio.open_connection("127.0.0.1", port)
        half = await asyncio.open_connection("127.0.0.1", port)
        half[1].write(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
        await half[1].drain()
        assert await closed_by_server(silent[0])
        assert await closed_by_server(half[0])
        assert (await get(port, "/echo"))[0] == 200
        silent[1].close()
        half[1].close()


async def test_an_idle_keep_alive_connection_is_closed() -> None:
    async with serving(keepalive_timeout=0.3, head_timeout=60) as (server, _):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.bound_port)
        writer.write(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).startswith(b"HTTP/1.1 200")
        assert await closed_by_server(reader)
        writer.close()


async def stalled_client(port: int, target: str) -> tuple[socket.socket, asyncio.StreamReader, asyncio.StreamWriter]:
    """A client with a tiny receive buffer that sends a request and then never reads."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    return sock, reader, writer


async def test_a_client_that_stops_reading_is_dropped_after_the_write_timeout() -> None:
    """An 8 MB response to a client that never reads: after write_timeout the connection is aborted, the
    response freed and counted; the client, reading at last, gets less than the whole body."""
    async with serving(write_timeout=0.5) as (server, _):
        _, reader, writer = await stalled_client(server.bound_port, "/big")
        for _ in range(500):
            if server.write_timeouts:
                break
            await asyncio.sleep(0.02)
        assert server.write_timeouts == 1
        received = 0
        with contextlib.suppress(ConnectionError):
            while chunk := await asyncio.wait_for(reader.read(1 << 20), 10):
                received += len(chunk)
        assert received < BIG, "the whole body arrived: the client was not cut off"
        for _ in range(250):
            if server.open_connections == 0:
                break
            await asyncio.sleep(0.02)
        assert server.open_connections == 0
        writer.close()


async def test_a_stream_is_written_as_read_and_closed_when_the_client_stops_reading() -> None:
    """A streamed body is produced only as fast as the client reads (so memory holds a few chunks), and its
    generator is closed, releasing what it holds, when the write timeout drops the client."""
    async with serving(write_timeout=0.5) as (server, routes):
        _, _, writer = await stalled_client(server.bound_port, "/stream")
        await asyncio.wait_for(routes.stream_closed.wait(), 30)
        assert server.write_timeouts == 1
        assert routes.chunks_sent < 200, f"{routes.chunks_sent} chunks of 64 KiB produced for a client that reads none"
        writer.close()


async def test_a_stream_reaches_a_reading_client_whole() -> None:
    async with serving() as (server, routes):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.bound_port)
        writer.write(b"GET /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert b"Transfer-Encoding: chunked" in head
        total = 0
        while chunk := await asyncio.wait_for(reader.read(1 << 20), 30):
            total += len(chunk)
        assert total > 10_000 * 65536 and routes.stream_closed.is_set()
        writer.close()


@pytest.mark.parametrize("value", ["0", "70000"])
def test_http_limits_are_validated(value: str) -> None:
    with pytest.raises(ValueError, match="max_connections"):
        HttpConfig.model_validate({"max_connections": value})


async def test_a_client_that_hangs_up_mid_response_is_no_error() -> None:
    """A client that resets its connection while a large response is being written (a Prometheus scrape that
    timed out, a closed tab) is logged as gone, not as a failed handler with a traceback, and is not taken for a
    client that stopped reading."""
    async with serving(write_timeout=30) as (server, _):
        with capture_logs() as logs:
            sock, reader, writer = await stalled_client(server.bound_port, "/big")
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)  # the response is under way
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = reset
            writer.transport.abort()
            for _ in range(500):
                if any(e["event"] == "http.client_gone" for e in logs):
                    break
                await asyncio.sleep(0.02)
        events = [e["event"] for e in logs]
        assert "http.client_gone" in events
        assert "http.handler_failed" not in events
        assert server.write_timeouts == 0
