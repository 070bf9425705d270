"""The serial adapter is unplugged and plugged back (a pty pair behind a udev-style symlink), through a real
daemon process."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pytest

from smdrd.testing import DaemonProcess, open_pty
from tests.faults.conftest import Ledger, base_config, ipo_lines, scaled, stored_lines

pytestmark = pytest.mark.faults


def point(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` in one step, as udev moves a /dev/serial/by-id link."""
    tmp = link.with_name(link.name + ".new")
    os.symlink(target, tmp)
    os.replace(tmp, link)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view[:512]):]
        time.sleep(0.0005)  # about 1 MB/s: no faster than the daemon reads a pty


def wait_stored_sync(db: Path, source: str, n: int, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while len(stored_lines(db, source)) < n:
        assert time.monotonic() < deadline, f"fewer than {n} lines stored"
        time.sleep(0.05)


def test_serial_adapter_unplugged_and_replugged_loses_nothing_it_received(
        tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    """The USB serial adapter is pulled (the by-id link disappears, the port errors) and plugged back three
    times; between unplug and replug the daemon retries quietly. Every line written while the port was open is
    journalled once, in order, and the daemon reopens the port each time without a restart. A user would have
    to restart smdrd after every adapter hiccup, losing calls meanwhile."""
    link = tmp_path / "usb-FTDI_PBX-if00-port0"
    ledger = Ledger("rs232")
    source = {"name": "rs232", "kind": "serial", "format": "avaya-ipo", "device": str(link), "baudrate": 9600,
              "reopen_interval": 0.1}
    d = DaemonProcess(tmp_path, base_config(tmp_path, [source]))
    daemons.append(d)
    rounds = scaled(3, 1)
    master, path = open_pty()
    os.symlink(path, link)
    d.start()
    try:
        for r in range(rounds + 1):
            d.wait_event("source.port_opened", r + 1)  # pyserial flushes input on open: talk once it is open
            batch = ipo_lines(400, seed=61 + r)
            write_all(master, b"".join(line + b"\r\n" for line in batch))
            ledger.written.extend(batch)
            wait_stored_sync(d.db, "rs232", len(ledger.written))
            if r == rounds:
                break
            link.unlink()  # unplugged: udev removes the link, the open port errors
            os.close(master)
            # (repeats of this warning are throttled: only the first is certain to be logged)
            d.wait_event("source.port_unavailable", 1)
            time.sleep(0.5)  # away for a while: reopening fails and is retried
            master, path = open_pty()
            point(link, path)  # plugged back: the link names the new node
    finally:
        with contextlib.suppress(OSError):
            os.close(master)
    d.terminate()
    ledger.check(d.db)
    opened = d.events("source.port_opened")
    print(f"port opened {len(opened)} times, unplugged {rounds} times")
    assert len(opened) == rounds + 1
    d.assert_clean_log()
