"""The systemd unit (`systemd/smdrd.service`): it verifies, it is hardened, and the daemon keeps its contract.

`systemd-analyze verify` refuses a unit whose ExecStart binary does not exist, and `/opt/smdrd/bin/smdrd` only
exists once installed: the tests copy the unit to a temporary folder with ExecStart pointing at a stub script
there (everything else unchanged). The tests that need `systemd-analyze` skip when it is absent, except under
CI (``CI`` set), where its absence is a failure.

The last test plays systemd's part for the daemon: the unit's ExecStart arguments, its Environment=, a notify
socket and the watchdog interval from WatchdogSec=, the signal from ExecReload=, then SIGTERM.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "smdrd.service"
DROPINS = UNIT.parent / "smdrd.service.d"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or (
    "/usr/bin/systemd-analyze" if Path("/usr/bin/systemd-analyze").exists() else None)

needs_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None and not os.environ.get("CI"),
    reason="systemd-analyze is not installed (CI requires it)",
)


def directives(text: str) -> dict[str, list[str]]:
    """``{"Section.Key": [values...]}`` of a unit file (keys may repeat, so each holds a list)."""
    out: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return out


def one(d: dict[str, list[str]], key: str) -> str:
    values = d.get(f"Service.{key}")
    assert values, f"{key}= is missing from the unit"
    return values[-1]


def copy_with_stub(tmp_path: Path, original: Path = UNIT) -> Path:
    """The unit in ``tmp_path`` with its ExecStart binary replaced by an executable stub that exists."""
    stub = tmp_path / "smdrd-stub"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    text = original.read_text()
    assert "ExecStart=/opt/smdrd/bin/smdrd " in text
    unit = tmp_path / original.name
    unit.write_text(text.replace("ExecStart=/opt/smdrd/bin/smdrd ", f"ExecStart={stub} "))
    return unit


def test_the_unit_has_what_the_issue_asks_for() -> None:
    """A reviewer's checklist: a change that drops a protection or the notify/reload contract fails here."""
    d = directives(UNIT.read_text())
    assert one(d, "Type") == "notify"
    assert int(one(d, "WatchdogSec")) > 0
    assert one(d, "Restart") == "on-failure"
    assert one(d, "ExecStart") == "/opt/smdrd/bin/smdrd run --config /etc/smdrd/smdrd.toml"
    assert one(d, "ExecReload") == "/bin/kill -HUP $MAINPID"
    assert "SMDRD_DATABASE__PATH=/var/lib/smdrd/smdrd.db" in d["Service.Environment"]
    assert one(d, "DynamicUser") == "yes" or one(d, "User") not in ("", "root")
    assert one(d, "StateDirectory") == "smdrd"
    assert one(d, "ConfigurationDirectory") == "smdrd"
    for key, value in [("ProtectSystem", "strict"), ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                       ("NoNewPrivileges", "yes"), ("CapabilityBoundingSet", ""),
                       ("MemoryDenyWriteExecute", "yes"), ("DevicePolicy", "closed"),
                       ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6")]:
        assert one(d, key) == value, key
    assert "@system-service" in d["Service.SystemCallFilter"]
    assert "dialout" in one(d, "SupplementaryGroups").split()
    assert {"char-ttyS rw", "char-ttyUSB rw", "char-ttyACM rw"} <= set(d["Service.DeviceAllow"])
    creds = [v.lstrip("-").split(":", 1) for v in d["Service.LoadCredential"]]
    assert ["mqtt-password", "/etc/smdrd/credentials/mqtt-password"] in creds
    assert ["smtp-password", "/etc/smdrd/credentials/smtp-password"] in creds


def _bytes(value: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(value[:-1]) * units[value[-1]] if value[-1] in units else int(value)


def test_the_unit_bounds_descriptors_memory_and_tasks() -> None:
    """Issue 11, finding 7: 1,100 half-open HTTP connections ran the process out of descriptors. The unit
    gives room for the PBX sources plus the HTTP cap, and bounds memory and tasks, so a runaway is stopped and
    restarted rather than taking the box."""
    from smdrd.config import HttpConfig, TcpServerSource

    d = directives(UNIT.read_text())
    nofile = int(one(d, "LimitNOFILE"))
    tcp_default = TcpServerSource.model_fields["max_connections"].default
    assert nofile >= 8 * tcp_default + HttpConfig().max_connections + 256, nofile
    high, hard = _bytes(one(d, "MemoryHigh")), _bytes(one(d, "MemoryMax"))
    assert 256 << 20 <= high < hard <= 4 << 30
    assert 32 < int(one(d, "TasksMax")) <= 1024


#: the central collector's unit (`smdrd central`): hardened like the daemon's, checked by the same tools.
CENTRAL_UNIT = UNIT.parent / "smdrd-central.service"
UNITS = pytest.mark.parametrize("original", [UNIT, CENTRAL_UNIT], ids=lambda p: p.name)


def test_the_central_unit_runs_smdrd_central_with_the_daemons_protections() -> None:
    """smdrd-central.service: notify and watchdog, its own command, and every protection the daemon's unit has
    (it needs no serial port, so no device at all)."""
    d, daemon = directives(CENTRAL_UNIT.read_text()), directives(UNIT.read_text())
    assert one(d, "Type") == "notify" and int(one(d, "WatchdogSec")) > 0
    assert one(d, "ExecStart") == "/opt/smdrd/bin/smdrd central --config /etc/smdrd/central.toml"
    for key in ("ProtectSystem", "ProtectHome", "PrivateTmp", "NoNewPrivileges", "CapabilityBoundingSet",
                "MemoryDenyWriteExecute", "DevicePolicy", "RestrictAddressFamilies", "DynamicUser",
                "SystemCallArchitectures", "RestrictNamespaces", "ProtectKernelTunables", "LockPersonality"):
        assert one(d, key) == one(daemon, key), key
    assert one(d, "PrivateDevices") == "yes" and "Service.DeviceAllow" not in d


@needs_analyze
@UNITS
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path, original: Path) -> None:
    """`systemd-analyze verify` reports no error (a misspelt directive, a bad value, a missing binary)."""
    assert SYSTEMD_ANALYZE is not None
    unit = copy_with_stub(tmp_path, original)
    proc = subprocess.run([SYSTEMD_ANALYZE, "verify", str(unit)], check=False, capture_output=True, text=True,
                          timeout=60)
    # verify exits 0 on an unknown key (it only warns), so the warnings that name the unit count too.
    problems = [line for line in proc.stderr.splitlines() if original.name in line]
    assert proc.returncode == 0 and not problems, proc.stderr


@needs_analyze
@UNITS
def test_systemd_analyze_security_rates_the_unit_ok(tmp_path: Path, original: Path) -> None:
    """`systemd-analyze security --offline=true` gives an overall exposure level of OK (below 2.0 here)."""
    assert SYSTEMD_ANALYZE is not None
    unit = copy_with_stub(tmp_path, original)
    proc = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=true", "--no-pager", str(unit)],
                          check=False, capture_output=True, text=True, timeout=60)
    match = re.search(rf"Overall exposure level for {re.escape(original.name)}: ([0-9.]+) (\w+)", proc.stdout)
    assert match, proc.stdout + proc.stderr
    score, level = float(match.group(1)), match.group(2)
    assert level == "OK", f"exposure {score} {level}"
    assert score <= 2.0, f"exposure {score}: a protection was dropped"


@needs_analyze
@pytest.mark.parametrize("dropin", sorted(DROPINS.glob("*.conf.example")), ids=lambda p: p.name)
def test_each_example_drop_in_verifies(tmp_path: Path, dropin: Path) -> None:
    """Each documented drop-in, installed as documented, still gives a valid unit."""
    assert SYSTEMD_ANALYZE is not None
    unit = copy_with_stub(tmp_path)
    folder = tmp_path / "smdrd.service.d"
    folder.mkdir()
    shutil.copy(dropin, folder / dropin.name.removesuffix(".example"))
    proc = subprocess.run([SYSTEMD_ANALYZE, "verify", str(unit)], check=False, capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    # verify exits 0 on an unknown key (it only warns), so the warnings that name our files count too.
    problems = [line for line in proc.stderr.splitlines() if "smdrd.service" in line]
    assert proc.returncode == 0 and not problems, proc.stderr


def test_the_daemon_pings_twice_per_watchdog_period(monkeypatch: pytest.MonkeyPatch) -> None:
    """systemd passes WatchdogSec= as WATCHDOG_USEC; the daemon pings at half of it, so one late ping is not yet
    a restart. A ping period read in the wrong unit, or as the whole period, would get a healthy daemon killed."""
    from smdrd.notify import watchdog_interval

    watchdog_s = int(one(directives(UNIT.read_text()), "WatchdogSec"))
    monkeypatch.setenv("WATCHDOG_USEC", str(watchdog_s * 1_000_000))
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert watchdog_interval() == watchdog_s / 2
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == watchdog_s / 2
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # meant for another process (ExecStartPre=)
    assert watchdog_interval() is None


@pytest.mark.slow
def test_the_daemon_keeps_the_units_contract(tmp_path: Path) -> None:
    """Run as the unit says (its ExecStart arguments and Environment=, a notify socket, WATCHDOG_USEC from
    WatchdogSec=): READY=1, then watchdog pings that keep coming, the database goes where the environment says,
    ExecReload's signal reloads, SIGTERM stops with exit 0. A daemon that stops pinging would be killed by
    systemd as hung. (The ping period is checked against WatchdogSec below; how soon READY comes is a figure
    for ``bench/lifecycle.py``.)"""
    d = directives(UNIT.read_text())
    argv = shlex.split(one(d, "ExecStart"))
    config = tmp_path / "smdrd.toml"
    config.write_text('[http]\nlisten = "127.0.0.1:0"\n[logging]\nformat = "json"\n')
    args = [str(config) if a == "/etc/smdrd/smdrd.toml" else a for a in argv[1:]]
    env = dict(os.environ)
    for assignment in d["Service.Environment"]:
        key, _, value = assignment.partition("=")
        env[key] = value.replace("/var/lib/smdrd", str(tmp_path / "state"))
    # A short interval so the test sees several pings; the daemon pings at half of it either way.
    env["WATCHDOG_USEC"] = str(400_000)
    notify = tmp_path / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify))
    listener.settimeout(15)
    env["NOTIFY_SOCKET"] = str(notify)
    log = tmp_path / "daemon.log"

    def events() -> list[str]:
        out = log.read_bytes()
        return [json.loads(line).get("event") for line in out.splitlines() if line.startswith(b"{")]

    with log.open("wb") as log_out:
        proc = subprocess.Popen([sys.executable, "-m", "smdrd", *args], env=env, stdout=log_out,
                                stderr=subprocess.STDOUT)
    try:
        messages: list[str] = []
        while not any("READY=1" in m for m in messages):  # the socket's 15 s timeout only stops a hung test
            messages.append(listener.recv(4096).decode())
        pings = 0
        while pings < 3:  # pings go on once the daemon is ready, not just a burst at start
            pings += "WATCHDOG=1" in listener.recv(4096).decode()
        assert (tmp_path / "state" / "smdrd.db").exists()
        reload_signal = one(d, "ExecReload").split()[1]
        assert reload_signal == "-HUP"
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30  # only stops a hung test
        while "daemon.reloaded" not in events():
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text(errors="replace")
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        listener.close()
    assert proc.returncode == 0, log.read_text(errors="replace")
    names = events()
    assert "daemon.reloaded" in names and "daemon.stopped" in names
    conn = sqlite3.connect(tmp_path / "state" / "smdrd.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
