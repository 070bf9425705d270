"""SIGHUP to a real daemon: a changed tariff rates new calls only, a bad one is refused and named.

The configuration reads a rate deck relative to its own folder (``decks = ["rates.csv"]``) and has one inline
rule, so both ways of pricing are reloaded. Lines stream in over one tcp-server connection that stays open
across the reload.
"""

from __future__ import annotations

import signal
import socket
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from smdrd.testing import DaemonProcess, daemon_config, free_port, tcp_server_source
from tests.test_backup import count, wait_calls
from tests.test_daemon import LINE


def reloadable_daemon(folder: Path, port: int) -> DaemonProcess:
    """The daemon these tests reload: the shared test configuration with one tcp-server source, "pbx", a 20 ms
    commit interval, and a tariff of the deck ``folder/rates.csv`` (the tests write it) plus an inline rule."""
    tariff = {"currency": "PLN", "decimals": 2, "decks": ["rates.csv"],
              "rules": [{"name": "Warsaw", "prefixes": ["4822"], "rate": "0.05"}]}
    config = daemon_config(folder, [tcp_server_source("pbx", port)], database={"commit_interval_ms": 20},
                           tariff=tariff)
    d = DaemonProcess(folder, config).start()
    d.wait_port(port)
    return d


DECK = "name,prefix,call_class,rate,billing_unit\nPL mobile,486,mobile,{rate},60\n"

#: each call lasts 61 s: two started minutes.
MOBILE_OLD, MOBILE_NEW, WARSAW = 200_000, 600_000, 100_000


def call_lines(n: int, start: int, *, warsaw: bool = False) -> bytes:
    """``n`` distinct calls (ids from ``start``) to a mobile, or to a Warsaw landline."""
    out = []
    for i in range(n):
        line = LINE.format(id=start + i)
        if warsaw:
            line = line.replace("600988600,0600988600", "221234567,0221234567")
        out.append(line.encode() + b"\r\n")
    return b"".join(out)


def costs(db: Path) -> list[tuple[int, str, int]]:
    """``(line_id, rule, cost_micros)`` of every call, in journal order."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT line_id, rule, cost_micros FROM calls ORDER BY line_id").fetchall()
    finally:
        conn.close()


@pytest.mark.slow
def test_sighup_with_a_new_rate_rates_new_calls_only_and_loses_no_line(
        tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    """The carrier raises the mobile rate: after `systemctl reload smdrd` new calls cost the new rate, calls
    already stored keep theirs, the inline rule still applies, and no line sent around the reload is lost
    or stored twice. The PBX's connection stays up."""
    (tmp_path / "rates.csv").write_text(DECK.format(rate="0.10"))
    port = free_port()
    d = reloadable_daemon(tmp_path, port)
    daemons.append(d)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(call_lines(50, 1_000_000) + call_lines(10, 1_100_000, warsaw=True))
    wait_calls(d.db, 60)

    # A steady stream runs across the reload, so a line in flight while the tariff swaps is tested too.
    stop = threading.Event()
    sent = [0]

    def stream() -> None:
        while not stop.is_set():
            sock.sendall(call_lines(1, 2_000_000 + sent[0]))
            sent[0] += 1
            time.sleep(0.002)

    streamer = threading.Thread(target=stream, daemon=True)
    streamer.start()
    time.sleep(0.3)
    (tmp_path / "rates.csv").write_text(DECK.format(rate="0.30"))
    d.send_signal(signal.SIGHUP)
    (reloaded,) = d.wait_event("daemon.reloaded")
    time.sleep(0.3)
    stop.set()
    streamer.join()
    sock.sendall(call_lines(50, 3_000_000) + call_lines(10, 3_100_000, warsaw=True))
    total = 60 + sent[0] + 60
    wait_calls(d.db, total)
    sock.close()
    d.terminate()

    assert reloaded["unchanged"] == ["pbx"] and reloaded["changed"] == []
    assert count(d.db, "lines") == total, "a line was lost or doubled around the reload"
    rows = costs(d.db)
    assert len(rows) == total
    before, during, after = rows[:60], rows[60:60 + sent[0]], rows[60 + sent[0]:]
    assert [c for _, rule, c in before if rule == "PL mobile"] == [MOBILE_OLD] * 50
    assert [c for _, rule, c in after if rule == "PL mobile"] == [MOBILE_NEW] * 50
    assert [c for _, rule, c in before + after if rule == "Warsaw"] == [WARSAW] * 20
    # Around the swap: old prices, then new ones, never back again (one assignment, no mix).
    stream_costs = [c for _, _, c in during]
    assert set(stream_costs) <= {MOBILE_OLD, MOBILE_NEW}
    switch = stream_costs.index(MOBILE_NEW) if MOBILE_NEW in stream_costs else len(stream_costs)
    assert stream_costs == [MOBILE_OLD] * switch + [MOBILE_NEW] * (len(stream_costs) - switch)
    assert MOBILE_OLD in stream_costs and MOBILE_NEW in stream_costs


@pytest.mark.slow
def test_sighup_with_a_bad_deck_keeps_the_old_tariff_and_names_the_line(
        tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    """A typo in the deck (`zero` as a rate on line 3): the reload is refused, the log names rates.csv:3 and
    the column, and calls go on being rated with the tariff that was running. Fixing the file and reloading
    again applies it."""
    deck = tmp_path / "rates.csv"
    deck.write_text(DECK.format(rate="0.10"))
    port = free_port()
    d = reloadable_daemon(tmp_path, port)
    daemons.append(d)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(call_lines(5, 1_000_000))
    wait_calls(d.db, 5)

    deck.write_text(DECK.format(rate="0.30") + "PL premium,48700,premium,zero,60\n")
    d.send_signal(signal.SIGHUP)
    (rejected,) = d.wait_event("daemon.reload_rejected")
    assert f"{deck}:3" in rejected["reason"] and "rate" in rejected["reason"] and "'zero'" in rejected["reason"]
    assert rejected["level"] == "error"
    sock.sendall(call_lines(5, 2_000_000))
    wait_calls(d.db, 10)
    assert [c for _, _, c in costs(d.db)] == [MOBILE_OLD] * 10, "a refused reload must keep the old tariff"

    deck.write_text(DECK.format(rate="0.30"))
    d.send_signal(signal.SIGHUP)
    d.wait_event("daemon.reloaded")
    sock.sendall(call_lines(5, 3_000_000))
    wait_calls(d.db, 15)
    sock.close()
    d.terminate()
    assert [c for _, _, c in costs(d.db)] == [MOBILE_OLD] * 10 + [MOBILE_NEW] * 5
    assert not d.events("daemon.reloaded")[0]["changed"]


@pytest.mark.slow
@pytest.mark.parametrize("bad", ["cell", "nesting"])
def test_sighup_with_a_file_python_cannot_parse_keeps_the_running_configuration(
        tmp_path: Path, daemons: list[DaemonProcess], bad: str) -> None:
    """A deck cell over csv's 128 KiB limit (a _csv.Error), or TOML nested past Python's recursion limit,
    escaped the reload's error handling: no `daemon.reload_rejected`, and the reload task died silently.
    Both are refused, named, and the running tariff keeps rating calls."""
    deck = tmp_path / "rates.csv"
    deck.write_text(DECK.format(rate="0.10"))
    port = free_port()
    d = reloadable_daemon(tmp_path, port)
    daemons.append(d)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(call_lines(5, 1_000_000))
    wait_calls(d.db, 5)

    config = tmp_path / "smdrd.toml"
    good_config = config.read_text()
    if bad == "cell":
        deck.write_text(DECK.format(rate="0.30") + '"' + "x" * 200_000 + '",48700,premium,0.30,60\n')
    else:
        config.write_text(good_config + "deep = " + "[" * 50_000 + "]" * 50_000 + "\n")
    d.send_signal(signal.SIGHUP)
    (rejected,) = d.wait_event("daemon.reload_rejected")
    if bad == "cell":
        assert f"{deck}:3" in rejected["reason"] and "a cell longer than" in rejected["reason"]
    else:
        assert "nested too deeply" in rejected["reason"]
    sock.sendall(call_lines(5, 2_000_000))
    wait_calls(d.db, 10)
    assert [c for _, _, c in costs(d.db)] == [MOBILE_OLD] * 10, "a refused reload must keep the old tariff"
    sock.close()
    d.terminate()
