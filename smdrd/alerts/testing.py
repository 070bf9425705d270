"""Test helpers for the alerts: a real Mosquitto broker on a free loopback port, started and killed at will.

Nothing here is used by the daemon itself. (A candidate for `smdrd.testing` once the alerts land.)
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from smdrd.testing import free_port

MOSQUITTO_CANDIDATES = ("mosquitto", "/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def password_hash(password: str, salt: bytes | None = None) -> str:
    """A Mosquitto 2 password-file hash (PBKDF2-SHA512, 101 rounds), as ``mosquitto_passwd`` writes it."""
    salt = salt or os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101)
    return f"$7$101${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def mosquitto_path() -> str | None:
    """The ``mosquitto`` binary, or ``None`` when it is not installed."""
    for candidate in MOSQUITTO_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


class Broker:
    """A Mosquitto broker listening on ``127.0.0.1:<port>``, anonymous, configured in ``directory``.

    Args:
        directory: where its configuration (and persistence file, if any) and log are written.
        persistence: keep sessions and queued QoS-1 messages across a stop, as a production broker does (saved
            every second and at a clean stop); off by default.
        users: user name -> password; when given, anonymous clients are refused.
    """

    def __init__(self, directory: Path, *, persistence: bool = False, binary: str | None = None,
                 users: dict[str, str] | None = None) -> None:
        self.directory = directory
        self.persistence = persistence
        self.users = users or {}
        self.binary = binary or mosquitto_path() or "mosquitto"
        self.host = "127.0.0.1"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        self.config_path = directory / "mosquitto.conf"
        self.log_path = directory / "mosquitto.log"

    def _write_config(self) -> None:
        lines = [f"listener {self.port} {self.host}"]
        if os.geteuid() == 0:
            # Run as root, mosquitto drops to the "mosquitto" user, which cannot read or write a test's folder.
            lines.append("user root")
        if self.users:
            passwords = self.directory / "passwords"
            passwords.write_text("".join(f"{u}:{password_hash(p)}\n" for u, p in self.users.items()))
            passwords.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.directory}/",
                      "persistence_file mosquitto.db", "autosave_interval 1"]
        else:
            lines.append("persistence false")
        lines += ["log_dest stderr", "log_type error", "log_type warning", "log_type notice",
                  "max_queued_messages 100000"]
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self, within: float = 10.0) -> None:
        """Start it and wait until it accepts connections."""
        self._write_config()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([self.binary, "-c", str(self.config_path)], stdout=log, stderr=log)
        deadline = time.monotonic() + within
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.process.returncode}: "
                                   f"{self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def stop(self, sig: int = signal.SIGKILL) -> None:
        """Stop it (SIGKILL by default: a crash; SIGTERM: a clean stop that saves its persistence file)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, sig)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None
