"""The link to the PBX fails: a connection dropped every second or two, a PBX restarted, a daemon stopped with
a PBX still connected. A real daemon process, a fake PBX on loopback, the ledger as the judge."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from pathlib import Path

import pytest

from smdrd.testing import DaemonProcess, free_port, tcp_client_source, tcp_server_source
from tests.faults.conftest import Ledger, ListeningPbx, base_config, ipo_lines, scaled, stored_lines, wait_stored

pytestmark = pytest.mark.faults


async def test_connection_dropped_every_second_or_two_loses_and_doubles_nothing(
        tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    """The PBX (listen mode, tcp-client source) closes the connection every 1-2 s while writing 400 lines a
    second; it holds lines while nobody is connected. Every line it wrote is journalled once, in order. A user
    on a flaky link would see calls missing, or counted twice after each reconnect."""
    port = free_port()
    ledger = Ledger("ipo")
    d = DaemonProcess(tmp_path, base_config(tmp_path, [tcp_client_source("ipo", port)]))
    daemons.append(d)
    seconds = scaled(10, 5)
    lines = ipo_lines(400 * seconds, seed=11)
    async with ListeningPbx(port, ledger) as pbx:
        d.start()
        producer = asyncio.create_task(pbx.produce(lines, rate=400))
        rng = random.Random(3)
        drops = 0
        while not producer.done():
            await asyncio.sleep(rng.uniform(1.0, 2.0))
            if pbx.connected:
                pbx.drop()
                drops += 1
        await producer
        await pbx.wait_drained()
        await wait_stored(d.db, "ipo", len(ledger.written))
        await d.aterminate()
    ledger.check(d.db)
    print(f"connection dropped {drops} times; the daemon connected {pbx.connections} times")
    # the daemon reconnects after every drop (the last one only if there was more to read)
    assert drops >= seconds // 2 and pbx.connections >= drops
    d.assert_clean_log()


async def test_pbx_restarted_lines_it_held_meanwhile_all_arrive(
        tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    """The PBX goes away for 3 s (a reboot, a firmware update) while calls keep ending, then listens again
    and writes what it held: every line is journalled once, in order, and the daemon never gave up. A user would
    see the calls of every PBX maintenance window missing."""
    port = free_port()
    ledger = Ledger("ipo")
    d = DaemonProcess(tmp_path, base_config(tmp_path, [tcp_client_source("ipo", port)]))
    daemons.append(d)
    rounds = scaled(3, 1)
    async with ListeningPbx(port, ledger) as pbx:
        d.start()
        for r in range(rounds):
            producer = asyncio.create_task(pbx.produce(ipo_lines(1800, seed=100 + r), rate=300))
            await asyncio.sleep(1.5)
            pbx.stop()
            held_from = len(pbx.buffer)
            await asyncio.sleep(3.0)
            held = len(pbx.buffer) - held_from
            pbx.start()
            await producer
            print(f"restart {r + 1}: the PBX held {held}+ lines while it was down")
            assert held > 0
        await pbx.wait_drained()
        await wait_stored(d.db, "ipo", len(ledger.written))
        await d.aterminate()
    ledger.check(d.db)
    assert pbx.connections >= rounds + 1
    d.assert_clean_log()


def test_stopping_with_a_pbx_connected_logs_no_traceback(
        tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    """SIGTERM while a PBX is connected to a tcp-server source: exit 0, the line it sent is journalled, and the
    log holds no "Exception in callback ... CancelledError" traceback (Python 3.11's asyncio printed one for
    each connected peer at every stop). A user would find alarming tracebacks in the journal after each
    routine restart."""
    port = free_port()
    d = DaemonProcess(tmp_path, base_config(tmp_path, [tcp_server_source("push", port)]))
    daemons.append(d)
    d.start()
    d.wait_event("source.listening")
    ledger = Ledger("push")
    peers = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
    for i, peer in enumerate(peers):
        line = ipo_lines(3, seed=7)[i]
        peer.sendall(line + b"\r\n")
        ledger.written.append(line)
    deadline = time.monotonic() + 10
    while len(stored_lines(d.db, "push")) < len(ledger.written):
        assert time.monotonic() < deadline, "the lines were not journalled"
        time.sleep(0.05)
    d.terminate()
    for peer in peers:
        peer.close()
    ledger.check(d.db)
    d.assert_clean_log()
