"""The demo and the simulator as a new user meets them (issue 18, item 9): the demo's call lines under a
header that explains them, in order, in UTC like the log lines, unanswered calls said so, alerts that name
their call; `make demo` exiting 0 on Ctrl-C; `smdrd simulate --listen --count N` ending without a traceback."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

from smdrd.testing import free_port

ROOT = Path(__file__).resolve().parent.parent
CALL = re.compile(r"^  (\d\d:\d\d:\d\d)Z  (\d\d:\d\d:\d\d)Z +(\d+)  (out|in |int)  (\S+) +(\S+) +"
                  r"(\d+:\d\d:\d\d|unanswered) +(\d+\.\d\d) USD(?:  \(transfer leg\))?(?:  (.+))?$")
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.\d+Z ")


def smdrd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "smdrd", *args], capture_output=True, text=True, timeout=180,
                          check=False, cwd=ROOT)


def test_demo_output_explains_itself_in_order_and_in_utc(tmp_path: Path) -> None:
    """A header with every column explained; call lines in the order the PBX reported them, their times UTC
    and between the daemon's own log lines; unanswered calls say so; each alerted call's alert.raised line
    names the call."""
    result = smdrd("demo", "--database", str(tmp_path / "demo.db"), "--count", "200", "--rate", "300",
                   "--seed", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Traceback" not in out + result.stderr
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["reported", "started"])
    assert lines[header].split()[2:] == ["ext", "dir", "number", "class", "talk", "cost", "alerts"]
    legend = "\n".join(lines[:header])
    for words in ("UTC, like the log lines", "reported:", "started:", "out = outbound", "in = inbound",
                  "int = internal", "h:mm:ss", "unanswered", "alerts"):
        assert words in legend
    calls = [m for m in map(CALL.match, lines) if m]
    assert len(calls) >= 200
    assert not [line for line in lines[header + 1:] if line.startswith("  ") and not CALL.match(line)]

    log_times = [datetime.fromisoformat(m[1]) for m in map(LOG_TIME.match, lines) if m]
    day = f"{log_times[0]:%Y-%m-%d}"
    reported = [datetime.fromisoformat(f"{day}T{m[1]}") for m in calls]
    assert reported == sorted(reported), "call lines out of order"
    assert log_times[0].replace(microsecond=0) <= reported[0] and reported[-1] <= log_times[-1], \
        "call times are not in the log lines' clock (UTC)"
    assert all(datetime.fromisoformat(f"{day}T{m[2]}") <= r for m, r in zip(calls, reported, strict=True))

    assert any(m[7] == "unanswered" and m[8] == "0.00" for m in calls)
    alerted = [m for m in calls if m[9]]
    assert any("high_risk" in m[9] for m in alerted)
    raised = [line for line in lines if "alert.raised" in line]
    for m in alerted:
        for rule in m[9].split(", "):
            assert any(f"rule={rule}" in line and f"extension={m[3]}" in line and f"number={m[5]}" in line
                       and "call=" in line and "reason=" in line for line in raised), (m[0], raised)


def test_simulate_listen_with_a_count_ends_cleanly() -> None:
    """`smdrd simulate --listen ... --count N` sends N calls to the collector, closes, and exits 0 with
    nothing on stderr (it used to end with an asyncio CancelledError traceback)."""
    port = free_port()
    args = ["simulate", "-f", "avaya-ipo", "--count", "5", "--seed", "7"]
    proc = subprocess.Popen([sys.executable, "-m", "smdrd", *args, "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        received = b""
        for _ in range(300):
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("the simulator never listened")
        with conn:
            conn.settimeout(30)
            while chunk := conn.recv(65536):
                received += chunk
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert err == ""
    # the same lines as the same calls written to stdout (5 calls: a transferred one has two lines)
    assert received.decode() == smdrd(*args).stdout.replace("\n", "\r\n")


def _read_until(fd: int, needle: bytes, deadline: float, *, quiet: bool = False) -> bytes:
    """What the terminal shows until ``needle`` (or, ``quiet``, until ``deadline``, whatever it shows)."""
    seen = b""
    while needle not in seen:
        if time.monotonic() > deadline:
            if quiet:
                break
            pytest.fail(f"never saw {needle!r}; got:\n{seen.decode(errors='replace')}")
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the terminal's other end closed
                break
            if not chunk:
                break
            seen += chunk
    return seen


def test_make_demo_exits_0_on_ctrl_c(tmp_path: Path) -> None:
    """Ctrl-C in the terminal running `make demo`: the demo stops as the daemon does and make exits 0
    (make used to get the SIGINT too and exit 130)."""
    make = "/usr/bin/make"
    if not os.path.exists(make):
        pytest.skip("make is not installed")
    pid, fd = pty.fork()
    if pid == 0:  # the child: make in a new session, the pty its controlling terminal, as in a terminal
        try:
            os.execv(make, [make, "-C", str(ROOT), "-o", ".venv/.installed", "demo",
                            f"DEMO_ARGS=--database {tmp_path / 'demo.db'} --rate 20"])
        finally:
            os._exit(127)
    status: int | None = None
    try:
        seen = _read_until(fd, b"reported", time.monotonic() + 120)
        seen += _read_until(fd, b" USD", time.monotonic() + 60)  # a call went through
        os.write(fd, b"\x03")  # Ctrl-C, through the terminal's line discipline
        seen += _read_until(fd, b"daemon.stopped", time.monotonic() + 60)
        deadline = time.monotonic() + 60
        while status is None:
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                status = code
            elif time.monotonic() > deadline:
                pytest.fail("make did not exit after Ctrl-C")
            else:
                seen += _read_until(fd, b"\0", time.monotonic() + 0.2, quiet=True)  # keep the pty drained
    finally:
        if status is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, seen.decode(errors="replace")
    assert b"Traceback" not in seen


def test_demo_opens_the_console_with_an_admin_whose_password_it_shows_once(tmp_path: Path) -> None:
    """Issue 15: `make demo` opens the console with a demo admin, its password printed once (never stored in
    clear); a second run on the same database keeps that user and prints no password."""
    from smdrd.accounts import verify_password
    from smdrd.store import open_store

    db = tmp_path / "demo.db"
    first = smdrd("demo", "--database", str(db), "--count", "5", "--rate", "100", "--seed", "2")
    assert first.returncode == 0, first.stdout + first.stderr
    shown = re.search(r"console: http://127\.0\.0\.1:\d+/ +sign in as admin with password (\S+) \(shown this once",
                      first.stdout)
    assert shown, first.stdout[:2000]
    password = shown[1]
    accounts = open_store(db).accounts()
    try:
        (admin,) = accounts.users()
        assert (admin.name, admin.role) == ("admin", "admin")
        stored = accounts.password_hash(admin.id)
        assert stored is not None and password not in stored
        assert verify_password(stored, password)[0]
    finally:
        accounts.close()
    again = smdrd("demo", "--database", str(db), "--count", "5", "--rate", "100", "--seed", "2")
    assert again.returncode == 0, again.stdout + again.stderr
    assert password not in again.stdout and "with password" not in again.stdout
    assert "sign in as a user of this database (smdrd user list --config" in again.stdout
