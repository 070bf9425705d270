"""A supervised task that dies of a bug is never silent (issue 11, finding 1).

The journal writer is made to fail with an error no input can cause (a bug injected into its commit step):
the failure is logged with its traceback, ``/healthz`` turns 503 and says so without the error's text (which the
token-protected detail shows), the systemd watchdog stops being fed, and a stop exits at once with status 1 and
a message saying what really happened, instead of waiting for commits that cannot come.
"""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import structlog

from smdrd.config import Settings
from smdrd.daemon import Daemon
from smdrd.testing import daemon_config, free_port, running_daemon, tcp_client_source, tcp_server_source

TOKEN = "t0ken-for-the-supervision-test"
LINE = ("2017/07/01 08:30:22,00:01:01,0,217,O,600988600,0600988600,,0,{id},0,E217,GRZYBEK,T9005,Line 5.0,"
        "0,0,,,,,,,,,,,U,GRZYBEK,,192.168.0.201,20806,192.168.0.201,20809")


def _get(port: int, path: str, token: str | None = None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


async def test_a_writer_that_dies_of_a_bug_is_never_silent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notify_path = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify_path))
    listener.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(notify_path))
    monkeypatch.setenv("WATCHDOG_USEC", "100000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    port = free_port()
    settings = Settings.model_validate(daemon_config(tmp_path, [tcp_server_source("push", port)],
                                                     database={"commit_interval_ms": 20}, http={"token": TOKEN}))
    daemon = Daemon(settings, features=("health",))

    async def bug(*_args: object) -> None:
        raise RuntimeError("an injected bug that no input can cause")

    monkeypatch.setattr(daemon.writer, "_commit_batch", bug)

    def received() -> list[str]:
        out = []
        while True:
            try:
                out.append(listener.recv(4096).decode())
            except BlockingIOError:
                return out

    with structlog.testing.capture_logs() as logs:
        run = asyncio.create_task(daemon.run())
        await asyncio.wait_for(daemon.ready.wait(), 10)
        assert daemon.http is not None
        http_port = daemon.http.bound_port
        before = (await asyncio.to_thread(_get, http_port, "/healthz"))[1]
        assert not any("journal-writer" in r for r in before["reasons"]), before
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(LINE.format(id=1).encode() + b"\r\n")
        await writer.drain()
        for _ in range(500):
            if daemon.failed_tasks:
                break
            await asyncio.sleep(0.02)
        assert "journal-writer" in daemon.failed_tasks
        status, public = await asyncio.to_thread(_get, http_port, "/healthz")
        assert status == 503
        assert any("journal-writer" in r and "internal error" in r for r in public["reasons"]), public
        assert "injected bug" not in json.dumps(public), "the public health must not show an error's text"
        status, detail = await asyncio.to_thread(_get, http_port, "/healthz", TOKEN)
        assert status == 503 and "injected bug" in detail["failed_tasks"]["journal-writer"]
        # The watchdog is no longer fed: after the failure, no WATCHDOG=1 arrives within several intervals.
        received()
        await asyncio.sleep(0.5)
        assert not [m for m in received() if "WATCHDOG=1" in m]
        daemon.request_stop()
        # A stop does not wait STOP_COMMIT_TIMEOUT (20 s) for commits that cannot come.
        assert await asyncio.wait_for(run, 10) == 1
        writer.close()
    listener.close()
    failed = [e for e in logs if e["event"] == "daemon.task_failed"]
    assert failed and failed[0]["task"] == "journal-writer" and failed[0].get("exc_info")
    stop = [e for e in logs if e["event"] == "daemon.stop_after_failure"]
    assert stop and stop[0]["uncommitted_lines"] >= 1


async def test_public_health_shows_reasons_not_errors_or_addresses(tmp_path: Path) -> None:
    """Issue 11, finding 6: the public /healthz said where the PBX is and quoted exception text."""
    closed = free_port()  # nothing listens here: the PBX refuses the connection
    source = tcp_client_source("ipo", closed, reconnect_min=0.05, reconnect_max=0.1)
    settings = Settings.model_validate(daemon_config(tmp_path, [source], http={"token": TOKEN}))
    async with running_daemon(settings, features=("health",)) as daemon:
        assert daemon.http is not None
        port = daemon.http.bound_port
        for _ in range(250):
            if daemon.sources["ipo"].source.status.last_error:
                break
            await asyncio.sleep(0.02)
        status, public = await asyncio.to_thread(_get, port, "/healthz")
        assert status == 503
        text = json.dumps(public)
        assert "connection refused" in text
        assert "127.0.0.1" not in text and str(closed) not in text and "Errno" not in text, text
        status, detail = await asyncio.to_thread(_get, port, "/healthz", TOKEN)
        assert status == 503 and "Errno" in detail["sources"]["ipo"]["last_error"]
