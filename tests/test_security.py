"""Security defaults: the HTTP server stays on localhost and can require a token; secrets never reach the logs
or ``check-config`` output. (Peers outside a tcp-server's allow-list, connection limits and memory under a
flood: tests/test_flood.py.)
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from smdrd.config import HttpConfig, Settings
from smdrd.daemon import Daemon
from smdrd.http import Request, Response
from smdrd.testing import DaemonProcess, daemon_config, free_port, running_daemon
from tests.test_backup import CLI

SECRETS = {"mqtt": "mqtt-Pa55-9f8e7d", "token": "http-T0ken-4c3b2a", "pbx": "pbx-L0gin-1a2b3c",
           "env": "env-Pa55-5e6f7a"}


def listening_addresses(pid: int, port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp) of the sockets listening on ``port`` in ``pid``'s view."""
    found = set()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for row in path.read_text().splitlines()[1:]:
            fields = row.split()
            address, hexport = fields[1].split(":")
            if fields[3] == "0A" and int(hexport, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_http_defaults_to_localhost() -> None:
    assert HttpConfig().listen.startswith("127.0.0.1:")
    assert Settings().http.token is None and Settings().http.enabled


@pytest.mark.slow
def test_http_without_a_host_binds_localhost_only(tmp_path: Path) -> None:
    """`listen = ":PORT"` (no address) listens on 127.0.0.1, not on every interface: the reports and metrics
    of a fresh install are not on the LAN until someone says so."""
    port = free_port()
    config = tmp_path / "smdrd.toml"
    config.write_text(f'[database]\npath = "{tmp_path / "smdrd.db"}"\n[http]\nlisten = ":{port}"\n'
                      '[logging]\nformat = "json"\n')
    proc = subprocess.Popen([sys.executable, "-m", "smdrd", "run", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while not listening_addresses(proc.pid, port):
            assert time.monotonic() < deadline and proc.poll() is None, "the HTTP server did not start"
            time.sleep(0.05)
        assert listening_addresses(proc.pid, port) == {"0100007F"}  # 127.0.0.1, little-endian hex
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
    assert proc.returncode == 0


def add_private_route(daemon: Daemon) -> None:
    """One private route on the daemon's HTTP server, for the token test."""
    assert daemon.http is not None

    async def private(request: Request) -> Response:
        return Response.text("calls\n")

    daemon.http.route("/private", private)


async def get(port: int, target: str, headers: str = "") -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    return int(status_line.split()[1])


async def test_a_configured_token_file_is_required_on_every_private_route(tmp_path: Path) -> None:
    """With `[http] token_file` (a systemd credential), a request without the token, or with a wrong one, gets
    401; the right one as a bearer header or as ?token= gets the page."""
    token_file = tmp_path / "http-token"
    token_file.write_text(SECRETS["token"] + "\n")
    settings = Settings.model_validate({
        "database": {"path": str(tmp_path / "smdrd.db")},
        "http": {"listen": "127.0.0.1:0", "token_file": str(token_file)},
    })
    daemon = Daemon(settings, features=())
    add_private_route(daemon)
    async with running_daemon(daemon):
        assert daemon.http is not None
        port = daemon.http.bound_port
        assert await get(port, "/private") == 401
        assert await get(port, "/private", "Authorization: Bearer wrong\r\n") == 401
        assert await get(port, "/private?token=" + SECRETS["token"][:-1]) == 401
        assert await get(port, "/private", f"Authorization: Bearer {SECRETS['token']}\r\n") == 200
        assert await get(port, f"/private?token={SECRETS['token']}") == 200


class FakePanasonic(threading.Thread):
    """A PBX that prompts for the password, takes it, prints a line and hangs up, again and again."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.port: int = self.server.getsockname()[1]
        self.received = bytearray()
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    self.received += conn.recv(100)
                    conn.sendall(b"Enter Password:")
                    self.received += conn.recv(100)
                    conn.sendall(b"\r\nWRONG LOGIN\r\n")
                except OSError:
                    pass
        self.server.close()


@pytest.mark.slow
def test_secrets_never_appear_in_the_daemons_log_or_in_check_config(tmp_path: Path) -> None:
    """A configured MQTT password, HTTP token and PBX login (and a password from the environment) appear in
    no log line of a real daemon (debug level, a PBX that takes the login and hangs up, over and over, a
    broker that is not there, a reload, a refused reload) and in no
    `check-config --show` output, which masks them. A user would find their passwords in journald."""
    pbx = FakePanasonic()
    pbx.start()
    source = {"name": "pbx", "kind": "tcp-client", "format": "panasonic", "host": "127.0.0.1", "port": pbx.port,
              "password": SECRETS["pbx"], "reconnect_min": 0.1, "reconnect_max": 0.2}
    d = DaemonProcess(tmp_path, daemon_config(
        tmp_path, [source], logging={"level": "debug"}, http={"token": SECRETS["token"]},
        mqtt={"enabled": True, "host": "127.0.0.1", "port": free_port(), "username": "smdrd",
              "password": SECRETS["mqtt"]}))
    config = d.config_path
    text = config.read_text()
    env = {"SMDRD_MQTT__PASSWORD": SECRETS["env"]}
    d.start(env=env)
    assert d.proc is not None
    try:
        # Logins to the PBX (twice: it hangs up, and the source logs in again) and attempts on the dead broker,
        # each logged. Waits for the behaviour, not for a guessed time (startup is slow on a busy machine).
        deadline = time.monotonic() + 60
        while pbx.received.count(SECRETS["pbx"].encode()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        d.proc.send_signal(signal.SIGHUP)
        d.wait_event("daemon.reloaded")
        refused = text.replace("reconnect_min = 0.1", "reconnect_min = -1")
        assert refused != text
        config.write_text(refused)  # a refused reload
        d.proc.send_signal(signal.SIGHUP)
        d.wait_event("daemon.reload_rejected")
    finally:
        d.proc.send_signal(signal.SIGTERM)
        d.proc.wait(timeout=15)
        pbx.halt.set()
        pbx.join()
    assert SECRETS["pbx"].encode() in pbx.received, "the PBX login never ran: the test proves nothing"
    output = d.log_text()
    assert '"daemon.reload_rejected"' in output and '"daemon.reloaded"' in output, output
    for name, secret in SECRETS.items():
        assert secret not in output, f"the {name} secret is in the daemon's log"

    config.write_text(text)
    shown = subprocess.run([*CLI, "check-config", "--show", str(config)], capture_output=True, text=True,
                           env={**os.environ, **env}, timeout=60, check=False)
    assert shown.returncode == 0, shown.stderr
    for name, secret in SECRETS.items():
        assert secret not in shown.stdout + shown.stderr, f"check-config --show prints the {name} secret"
    assert shown.stdout.count('"**********"') >= 3


def test_a_mistyped_secret_is_not_echoed_by_check_config(tmp_path: Path) -> None:
    """`password = 987654321` (unquoted, so an integer) is an error; the error must not print the password."""
    config = tmp_path / "smdrd.toml"
    config.write_text("[mqtt]\npassword = 987654321\n")
    proc = subprocess.run([*CLI, "check-config", str(config)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 1 and "mqtt.password" in proc.stderr
    assert "987654321" not in proc.stdout + proc.stderr


def test_tcp_server_refuses_a_peer_outside_its_allow_list() -> None:
    """The allow-list test the tcp-server source applies to each peer (IPv4, IPv4-mapped IPv6, networks)."""
    from smdrd.config import TcpServerSource

    src = TcpServerSource(name="s", kind="tcp-server", format="avaya-ipo",
                          allowed_peers=["127.0.0.1", "10.1.0.0/16"])
    assert src.peer_allowed("127.0.0.1") and src.peer_allowed("10.1.200.3")
    assert src.peer_allowed("::ffff:10.1.2.3")
    assert not src.peer_allowed("127.0.0.2") and not src.peer_allowed("10.2.0.1")
    assert not src.peer_allowed("garbage")


def test_the_daemon_refuses_to_start_with_an_empty_or_unreadable_token_file(tmp_path: Path) -> None:
    """A token_file holding only a newline (a stray Ctrl-D into `install -m 0600 /dev/stdin`) served /metrics
    and reports to anyone; a missing one was a traceback. The daemon now refuses to start, naming the file."""
    from smdrd.errors import ConfigError

    token_file = tmp_path / "http-token"
    token_file.write_text("\n")
    settings = Settings.model_validate({
        "database": {"path": str(tmp_path / "smdrd.db")},
        "http": {"listen": "127.0.0.1:0", "token_file": str(token_file)},
    })
    with pytest.raises(ConfigError, match="empty token") as exc:
        Daemon(settings, features=())
    assert str(token_file) in str(exc.value)
    token_file.unlink()
    with pytest.raises(ConfigError, match="file not found"):
        Daemon(settings, features=())

    port = free_port()
    config = tmp_path / "smdrd.toml"
    config.write_text(f'[database]\npath = "{tmp_path / "smdrd.db"}"\n[http]\nlisten = "127.0.0.1:{port}"\n'
                      f'token_file = "{token_file}"\n')
    for content in ("\n", "short\n"):
        token_file.write_text(content)
        proc = subprocess.run([*CLI, "run", "--config", str(config)], capture_output=True, text=True,
                              timeout=60, check=False)
        assert proc.returncode == 2, proc.stderr
        assert "http.token_file" in proc.stderr and str(token_file) in proc.stderr
        assert "Traceback" not in proc.stderr and "short" not in proc.stderr.replace("too short", "")
