"""`smdrd.testing.free_port` under parallel tests: a port once handed out is not handed out again, and workers
draw from disjoint blocks outside the kernel's ephemeral range (a CI run once failed when another worker's client
connection took a port between the check and the daemon's bind)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from smdrd.testing import free_port


def ephemeral_range() -> range:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return range(int(low), int(high) + 1)


def test_ports_are_not_handed_out_twice_and_the_kernel_never_picks_them() -> None:
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == 200
    assert not set(ports) & set(ephemeral_range())
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))  # and each is really free


def test_two_workers_get_disjoint_ports() -> None:
    code = "from smdrd.testing import free_port; print(*(free_port() for _ in range(300)))"
    drawn = []
    for worker in ("gw0", "gw1"):
        env = {**os.environ, "PYTEST_XDIST_WORKER": worker}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        drawn.append(set(map(int, out.stdout.split())))
    assert len(drawn[0]) == len(drawn[1]) == 300
    assert not drawn[0] & drawn[1]
