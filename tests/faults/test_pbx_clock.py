"""The PBX's own clock and counters misbehave: its date jumps backwards, and a reboot restarts its call IDs
(Avaya IP Office numbers calls from 1000000 again after a restart)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import pytest

from smdrd.parsers.avaya_ipo import AvayaIPOfficeParser
from smdrd.simulator import Traffic, render_calls
from smdrd.testing import DaemonProcess, free_port, tcp_server_source
from tests.faults.conftest import Ledger, base_config, push_lines, query, scaled, wait_stored

pytestmark = pytest.mark.faults


def traffic(calls: int, seed: int, start: datetime) -> list[bytes]:
    """``calls`` calls from a PBX whose call IDs start at 1000000 and whose clock starts at ``start``."""
    t = Traffic(seed=seed, country="PL", format="avaya-ipo", start=start)
    return [line.encode() for line in render_calls(AvayaIPOfficeParser, t, calls)]


async def test_clock_jumps_back_and_call_ids_reset_every_line_stored_every_call_distinct(
        tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    """One stream: a working day; then the PBX's clock jumps back an hour (an NTP correction, DST done by
    hand) and back a day; then the PBX reboots and its call IDs start again at 1000000 (the same IDs as the
    first day's calls, on another date), and once more with its clock reset to a factory date. Every line is
    journalled and parsed, and every call is stored as its own call: none is taken for a re-sent duplicate.
    A user would see calls silently dropped as "duplicates" after every PBX reboot, or after a clock fix."""
    port = free_port()
    n = scaled(400, 150)
    segments = {
        "a normal day": traffic(n, 1, datetime(2026, 3, 2, 8, 0)),
        "clock back an hour": traffic(n, 2, datetime(2026, 3, 2, 9, 0)),
        "clock back a day": traffic(n, 3, datetime(2026, 3, 1, 8, 0)),
        "reboot: call IDs from 1000000 again": traffic(n, 4, datetime(2026, 3, 3, 8, 0)),
        "reboot to the factory date, same IDs": traffic(n, 4, datetime(2000, 1, 1, 0, 0)),
    }
    lines = [line for segment in segments.values() for line in segment]
    ids = [line.split(b",")[9] for line in lines]
    assert len(set(ids)) < len(ids), "the scenario must reuse call IDs"
    ledger = Ledger("pbx")
    d = DaemonProcess(tmp_path, base_config(tmp_path, [tcp_server_source("pbx", port)]))
    daemons.append(d)
    d.start()
    d.wait_event("source.listening")
    await push_lines(port, lines, 2000, ledger)
    await wait_stored(d.db, "pbx", len(lines))
    await asyncio.sleep(0.3)  # the calls of the last line are committed with it
    await d.aterminate()
    ledger.check(d.db)
    statuses = dict(query(d.db, "SELECT status, count(*) FROM lines WHERE source = 'pbx' GROUP BY status"))
    calls, distinct = query(d.db, "SELECT count(*), count(DISTINCT uid) FROM calls")[0]
    print(f"{len(lines)} lines ({len(set(ids))} distinct call IDs): statuses {statuses}; {calls} calls stored, "
          f"{distinct} distinct")
    assert statuses.get("duplicate", 0) == 0 and statuses.get("error", 0) == 0
    assert calls == distinct == len(lines)  # one leg per line, transfers included
    d.assert_clean_log()
