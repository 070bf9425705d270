"""Garbage at full speed on one source (random bytes, a line that never ends) while another source delivers
normal calls: the normal calls all arrive and the daemon's memory stays bounded."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import pytest

from smdrd.testing import DaemonProcess, free_port, tcp_server_source
from tests.faults.conftest import Ledger, base_config, ipo_lines, push_lines, query, scaled, wait_stored

pytestmark = pytest.mark.faults

#: max_pending_rows here; what bounds memory when the writer falls behind (see tests/test_flood.py).
MAX_PENDING = 20_000
#: peak resident memory allowed (MiB). Measured about 95 MiB for a 20,000-row backlog of call lines
#: (tests/test_flood.py); this scenario measured 66 MiB (garbage lines are rows too, backpressure holds them).
MEMORY_BOUND_MIB = 128


async def garbage(port: int, seconds: float, kind: str) -> int:
    """Write garbage as fast as the daemon takes it for ``seconds``; return the bytes written."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = 0
    deadline = time.monotonic() + seconds
    endless = b"M" * 65536
    try:
        while time.monotonic() < deadline:
            chunk = os.urandom(65536) if kind == "random" else endless
            writer.write(chunk)
            sent += len(chunk)
            await writer.drain()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return sent


async def test_garbage_at_full_speed_on_one_source_does_not_cost_another_source_a_call(
        tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    """Source "noise" gets random bytes and a line that never ends, as fast as the daemon reads, for several
    seconds; meanwhile source "pbx" delivers 200 calls a second. Every "pbx" line is journalled once, in
    order, and parsed; the garbage is journalled as errors under "noise" only; the daemon's peak memory
    (VmHWM) stays under the bound. A user whose PBX port was hit by a scanner or a misconfigured device would
    lose real calls, or see the daemon killed for its memory."""
    noise_port, pbx_port = free_port(), free_port()
    config = base_config(tmp_path, [tcp_server_source("noise", noise_port), tcp_server_source("pbx", pbx_port)],
                         database={"max_pending_rows": MAX_PENDING})
    d = DaemonProcess(tmp_path, config)
    daemons.append(d)
    d.start()
    d.wait_event("source.listening", 2)
    start_mib = d.vm_kib() / 1024
    seconds = scaled(8, 4)
    ledger = Ledger("pbx")
    calls = asyncio.create_task(push_lines(pbx_port, ipo_lines(200 * (seconds + 2), seed=71), 200, ledger))
    sent = await asyncio.gather(garbage(noise_port, seconds, "random"), garbage(noise_port, seconds, "endless"),
                                garbage(noise_port, seconds / 2, "random"))
    peak_during = d.vm_kib() / 1024
    await calls
    assert await wait_stored(d.db, "pbx", len(ledger.written), within=90) >= len(ledger.written)
    peak_mib = d.vm_kib() / 1024
    assert d.alive(), d.log_text()[-3000:]
    await d.aterminate()
    ledger.check(d.db)
    statuses = dict(query(d.db, "SELECT status, count(*) FROM lines WHERE source = 'pbx' GROUP BY status"))
    noise = dict(query(d.db, "SELECT status, count(*) FROM lines WHERE source = 'noise' GROUP BY status"))
    print(f"garbage: {sum(sent) / 2**20:.0f} MiB in {seconds} s -> noise rows {noise}; pbx rows {statuses}")
    print(f"memory: VmHWM {start_mib:.0f} MiB at start, {peak_during:.0f} MiB when the garbage stopped, "
          f"{peak_mib:.0f} MiB peak (bound {MEMORY_BOUND_MIB} MiB, max_pending_rows={MAX_PENDING})")
    assert set(statuses) <= {"parsed", "held"}, statuses
    assert noise.get("error", 0) > 0 and "parsed" not in noise
    assert peak_mib < MEMORY_BOUND_MIB
    d.assert_clean_log()
