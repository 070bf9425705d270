"""bench/live.py's PBX (`bench.live.sender`, run as its own process by `bench._util.send_lines`) writes the lines the
benchmark says it writes, each one different and stamped with its send time, and `bench._util.CommitClock` times
the rate sustained from the first line's send, whatever the sender's start-up cost."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest

from bench._util import CommitClock, send_lines
from bench.live import TEMPLATE
from smdrd.testing import free_port


async def _receive(rate: float, seconds: float, distinct: int) -> tuple[int, bytes]:
    port = free_port()
    chunks: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            chunks.append(data)
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", port)
    async with server:
        sent = await send_lines(port, rate, seconds, distinct)
        for _ in range(100):  # the connection's last bytes and its end, after the sender's exit
            if sum(c.count(b"\n") for c in chunks) >= sent:
                break
            await asyncio.sleep(0.01)
    return sent, b"".join(chunks)


def _fields(line: bytes) -> list[bytes]:
    return line.split(b",")


async def test_the_sender_writes_the_template_lines_each_new_and_stamped_when_sent() -> None:
    before = time.time_ns() // 1000
    sent, data = await _receive(2000, 0.5, 0)
    after = time.time_ns() // 1000
    lines = data.split(b"\r\n")
    assert lines[-1] == b""  # every line ends with CRLF
    lines = lines[:-1]
    assert sent == len(lines) > 500
    for n, line in enumerate(lines, 1):
        f = _fields(line)
        stamp = int(f[7])
        assert before <= stamp <= after
        expected = TEMPLATE.format(date=f[0].decode(), ext=200 + n % 50, num=1_700_000_000 + n, sent=stamp,
                                   cid=1_000_000 + n).encode()
        assert line == expected
    assert len({_fields(line)[5] for line in lines}) == len(lines)  # a new number every line


async def test_the_sender_cycles_through_distinct_numbers_when_asked() -> None:
    sent, data = await _receive(2000, 0.3, 7)
    lines = data.split(b"\r\n")[:-1]
    assert sent == len(lines) > 100
    assert {_fields(line)[5] for line in lines} == {f"0{1_700_000_000 + i}".encode() for i in range(7)}
    assert len({_fields(line)[9] for line in lines}) == len(lines)  # the call ids stay unique


def _entry(sent_us: int) -> Any:
    return SimpleNamespace(raw=f"2026/11/30 00:00:00,00:01:01,3,200,O,01,01,{sent_us},0,1,0".encode())


async def test_the_clock_times_the_rate_from_the_first_send_to_the_last_commit() -> None:
    clock = CommitClock()
    now = time.time_ns() // 1000
    # 300 lines sent over the last 3 seconds, committed in two batches: the later batch holds the earliest send
    clock.committed([_entry(now - 1_000_000 + i) for i in range(100)], 0.0)
    clock.committed([_entry(now - 3_000_000 + i) for i in range(200)], 0.0)
    assert clock.first_sent == now - 3_000_000
    seconds = (clock.last_commit_us - clock.first_sent) / 1e6
    assert 3.0 <= seconds < 30  # the time taken between the two calls above is all that adds to it
    assert clock.sustained() == pytest.approx(300 / seconds)
    assert len(clock.latencies) == 300
    assert CommitClock().sustained() == 0.0
