"""Finding 8 of issue 11 against a real daemon: a corrupt Mitel 5000 length prefix costs no call.

Before the fix, a record, then ``f0 ff ff 7f``, then 1,000 good records gave 2 frames: the framer believed the
corrupt length (2 GiB), skipped everything after it, and 86,004 bytes of calls disappeared without a trace.
Here a fake Mitel 5000 on loopback (the daemon's ``tcp-client`` source connects and logs in, as to a real 5000
CP) sends exactly that stream; a second one sends thousands of records with random noise between some of them.
Every record is journalled and stored as a call, in order; each burst of noise is one ``error`` line holding
its bytes exactly and saying how many were skipped; the daemon stays healthy and stops cleanly.
"""

from __future__ import annotations

import asyncio
import json
import random
import struct
import urllib.request
from pathlib import Path

import pytest

from smdrd.parsing import get_parser_class
from smdrd.simulator import Traffic, render_calls
from smdrd.testing import DaemonProcess, free_port

from .conftest import base_config, compare_ledger, query, scaled, stored_lines, wait_stored

pytestmark = pytest.mark.faults

CORRUPT = b"\xf0\xff\xff\x7f"
LOGIN = b"\x02\x00\x00\x00\x84\x00"  # no password


def records(n: int, seed: int) -> list[bytes]:
    """``n`` distinct 80-character Mitel 5000 call records, as the simulator's 5000 writes them."""
    cls = get_parser_class("mitel-5000")
    lines = (line for line in render_calls(cls, Traffic(seed=seed, country="PL", format="mitel-5000"), None)
             if not line.startswith(("TYP", "Station")))
    out = [next(lines).encode() for _ in range(n)]
    assert len(set(out)) == n
    return out


def framed(record: bytes) -> bytes:
    payload = record + b"\r\n"
    return struct.pack("<I", len(payload)) + payload


class FakeMitel5000:
    """A 5000 CP's SMDR socket on 127.0.0.1: checks the collector's login, then writes ``stream`` and keeps the
    connection open until the test is done (a real PBX does not hang up after a burst)."""

    def __init__(self, stream: bytes) -> None:
        self.stream = stream
        self.logins = 0
        self.done = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> FakeMitel5000:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.done.set()
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if await reader.readexactly(len(LOGIN)) != LOGIN:
                return
            self.logins += 1
            if self.logins == 1:  # the whole stream once; a reconnect would get nothing new
                writer.write(self.stream)
                await writer.drain()
            await self.done.wait()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def source(name: str, port: int) -> dict[str, object]:
    return {"name": name, "kind": "tcp-client", "format": "mitel-5000", "host": "127.0.0.1", "port": port,
            "reconnect_min": 0.05, "reconnect_max": 0.5}


async def healthz(port: int) -> dict[str, object]:
    def get() -> dict[str, object]:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as resp:
            assert resp.status == 200
            body: dict[str, object] = json.load(resp)
            return body
    return await asyncio.to_thread(get)


async def test_a_corrupt_length_prefix_costs_no_call(tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    # The finding's stream: a record, f0 ff ff 7f, then 1,000 records.
    good = records(1001, seed=8)
    finding = framed(good[0]) + CORRUPT + b"".join(framed(r) for r in good[1:])
    # Noise: more records, with a burst of random bytes (up to 4 KiB, so one line each) before some of them.
    rng = random.Random(1108)
    noisy_records = records(scaled(3000, 500), seed=11)
    noisy, noisy_rows = b"", []
    for i, record in enumerate(noisy_records):
        if i % 50 == 25:
            burst = rng.randbytes(rng.randint(1, 4096))
            noisy += burst
            noisy_rows.append(burst)
        noisy += framed(record)
        noisy_rows.append(record)

    http_port = free_port()
    async with FakeMitel5000(finding) as pbx, FakeMitel5000(noisy) as noisy_pbx:
        config = base_config(tmp_path, [source("m5000", pbx.port), source("noisy", noisy_pbx.port)],
                             http={"enabled": True, "listen": f"127.0.0.1:{http_port}"})
        d = DaemonProcess(tmp_path, config)
        daemons.append(d)
        d.start()
        assert await wait_stored(d.db, "m5000", len(good) + 1, within=60) >= len(good) + 1
        assert await wait_stored(d.db, "noisy", len(noisy_rows), within=60) >= len(noisy_rows)
        health = await healthz(http_port)
        assert health["status"] == "ok", health
        assert d.alive()
        await d.aterminate()
    d.assert_clean_log()

    compare_ledger([good[0], CORRUPT, *good[1:]], stored_lines(d.db, "m5000"), "m5000")
    compare_ledger(noisy_rows, stored_lines(d.db, "noisy"), "noisy")
    for name, bursts in (("m5000", 1), ("noisy", len(noisy_rows) - len(noisy_records))):
        errors = query(d.db, "SELECT raw, error FROM lines WHERE source = ? AND status = 'error' ORDER BY id", name)
        assert len(errors) == bursts, errors[:3]
        for raw, error in errors:
            assert error.startswith(f"skipped {len(raw)} bytes that are not a length-prefixed record"), error
        statuses = dict(query(d.db, "SELECT status, count(*) FROM lines WHERE source = ? GROUP BY status", name))
        calls = query(d.db, "SELECT count(*) FROM calls WHERE source = ?", name)[0][0]
        print(f"{name}: lines by status {statuses}, calls {calls}")
        assert statuses == {"parsed": calls, "error": bursts}
    assert query(d.db, "SELECT count(*) FROM calls WHERE source = 'm5000'")[0][0] == len(good)
    assert query(d.db, "SELECT count(*) FROM calls WHERE source = 'noisy'")[0][0] == len(noisy_records)
