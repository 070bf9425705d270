"""The serial source (`smdrd.sources.serial`) on a real pty pair: the master plays the PBX's serial port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import termios
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from smdrd.config import SerialSource
from smdrd.sources.factory import build_source
from smdrd.sources.serial import SerialPort
from smdrd.testing import CollectingIngest, open_pty
from tests.test_sources_tcp import TIMEOUT, chunked, make_lines, running, wait_until


def serial_config(device: str | Path, **overrides: Any) -> SerialSource:
    fields: dict[str, Any] = {
        "name": "pbx-serial",
        "kind": "serial",
        "format": "avaya-ipo",
        "device": str(device),
        "baudrate": 9600,
        "reopen_interval": 0.05,
        **overrides,
    }
    return SerialSource(**fields)


@contextlib.contextmanager
def pty_pair() -> Iterator[tuple[int, str]]:
    master, path = open_pty()
    try:
        yield master, path
    finally:
        with contextlib.suppress(OSError):
            os.close(master)


def _write_all(fd: int, data: bytes, rng: random.Random) -> None:
    for chunk in chunked(data, rng, 300):
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view) :]


async def play(master: int, data: bytes, seed: int = 0) -> None:
    """Write ``data`` to the pty's master in random pieces, in a thread: a full pty blocks its writer."""
    await asyncio.to_thread(_write_all, master, data, random.Random(seed))


def _pty_rejects(**settings: Any) -> bool:
    import serial

    with pty_pair() as (_, path):
        try:
            port = serial.serial_for_url(path, **settings)
            port.timeout = 0  # what the asyncio transport does next, and where termios objects
            port.close()
        except termios.error:
            return True
    return False


def point(link: Path, target: str) -> None:
    """Point ``link`` at ``target`` in one step, as udev moves /dev/serial/by-id links."""
    tmp = link.with_name(link.name + ".new")
    os.symlink(target, tmp)
    os.replace(tmp, link)


async def test_serial_reads_every_line_in_order() -> None:
    """A user with an RS-232 SMDR port would see call records missing or garbled."""
    with pty_pair() as (master, path):
        ingest = CollectingIngest()
        source = build_source(serial_config(path), ingest)
        assert isinstance(source, SerialPort)
        lines = make_lines(1000)
        async with running(source):
            # pyserial flushes the input when it opens the port, so the PBX "talks" once it is open
            await wait_until(lambda: source.status.connected)
            await play(master, b"\r\n".join(lines) + b"\r\n", seed=1)
            await wait_until(lambda: len(ingest.lines) >= len(lines))
        assert ingest.lines == lines
        assert ingest.streams[0].peer == path
        assert ingest.streams[0].closed
        assert source.status.bytes_read == sum(len(line) + 2 for line in lines)


async def test_serial_resumes_after_the_adapter_is_unplugged_and_replugged(tmp_path: Path) -> None:
    """A user would have to restart smdrd after every USB serial adapter hiccup, losing calls meanwhile."""
    link = tmp_path / "usb-FTDI_PBX-if00-port0"
    ingest = CollectingIngest()
    with pty_pair() as (master1, path1):
        os.symlink(path1, link)
        source = build_source(serial_config(link), ingest)
        async with running(source):
            await wait_until(lambda: source.status.connected)
            before = make_lines(200, tag="before-")
            await play(master1, b"\n".join(before) + b"\n", seed=2)
            await wait_until(lambda: len(ingest.lines) >= len(before))

            # unplugged: udev removes the by-id link, and the open port errors
            # (the link goes first here, so no other pty that reuses the number can be opened through it)
            link.unlink()
            os.close(master1)
            await wait_until(lambda: not source.status.connected, what="the source noticed the unplug")
            await wait_until(lambda: ingest.streams[0].closed)
            # while the adapter is away, reopening fails (and is retried)
            await wait_until(lambda: source.status.last_error is not None)
            await asyncio.sleep(0.15)
            assert source.status.connections == 1

            with pty_pair() as (master2, path2):
                point(link, path2)  # replugged: udev points the by-id link at the new node
                await wait_until(lambda: source.status.connected, what="the source reopened the port")
                after = make_lines(200, tag="after-")
                await play(master2, b"\n".join(after) + b"\n", seed=3)
                await wait_until(lambda: len(ingest.lines) >= len(before) + len(after))
    assert ingest.lines == before + after
    assert [stream.peer for stream in ingest.streams] == [str(link), str(link)]
    assert source.status.connections == 2
    assert source.status.reconnects == 1


async def test_serial_waits_for_a_device_that_is_not_there_yet(tmp_path: Path) -> None:
    """A user who starts smdrd before plugging the adapter in would get no records until a restart."""
    link = tmp_path / "ttyPBX"
    ingest = CollectingIngest()
    source = build_source(serial_config(link), ingest)
    async with running(source):
        await wait_until(lambda: source.status.last_error is not None)
        assert not source.status.connected
        with pty_pair() as (master, path):
            point(link, path)
            await wait_until(lambda: source.status.connected)
            await play(master, b"late but here\n")
            await wait_until(lambda: ingest.lines == [b"late but here"])


async def test_serial_cancel_drains_what_was_already_sent() -> None:
    """A user would lose the records a serial PBX printed just before smdrd was stopped."""
    with pty_pair() as (master, path):
        ingest = CollectingIngest()
        source = build_source(serial_config(path), ingest)
        task = asyncio.create_task(source.run())
        await wait_until(lambda: source.status.connected)
        lines = make_lines(30)  # small enough to sit in the pty's buffer without anyone reading
        os.write(master, b"\n".join(lines) + b"\nunterminated tail")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, TIMEOUT)
    assert ingest.lines == [*lines, b"unterminated tail"]
    assert ingest.streams[0].closed
    assert not source.status.connected


async def test_serial_passes_port_settings_to_pyserial() -> None:
    """A user with a slow, two-stop-bit PBX port would read garbage because its settings were ignored."""
    with pty_pair() as (_, path):
        source = SerialPort(
            serial_config(path, baudrate=1200, parity="N", bytesize=8, stopbits=2, flow_control="xonxoff"),
            CollectingIngest(),
        )
        assert source._port_settings() == {
            "baudrate": 1200, "parity": "N", "bytesize": 8, "stopbits": 2,
            "rtscts": False, "xonxoff": True, "dsrdtr": False,
        }
        async with running(source):
            await wait_until(lambda: source.status.connected, what="pyserial accepted the settings")
            assert source.status.last_error is None


async def test_serial_keeps_retrying_settings_the_port_rejects() -> None:
    """A user with a setting the adapter refuses would see the source die instead of an error it retries."""
    if not _pty_rejects(parity="E"):
        pytest.skip("this kernel's ptys accept even parity; nothing here to reject a setting")
    with pty_pair() as (_, path):
        # Linux ptys refuse parity changes (termios says EINVAL), as some USB adapters refuse speeds
        source = SerialPort(serial_config(path, parity="E"), CollectingIngest())
        async with running(source) as task:
            await wait_until(lambda: source.status.last_error is not None)
            assert "Invalid argument" in (source.status.last_error or "")
            await asyncio.sleep(0.12)  # a few reopen intervals
            assert not task.done()
