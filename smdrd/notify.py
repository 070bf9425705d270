"""systemd's notify protocol (``sd_notify``): READY, STOPPING, WATCHDOG and STATUS, in plain stdlib.

A no-op when ``NOTIFY_SOCKET`` is not set (not started by systemd with ``Type=notify``).
"""

from __future__ import annotations

import os
import socket


def notify(*fields: str) -> bool:
    """Send ``fields`` (``"READY=1"``, ``"STATUS=..."``) to systemd. Returns whether a message was sent."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        # Never block the event loop: a listener that stops reading (a full queue of 10 datagrams) costs a
        # message (False), not the daemon.
        sock.setblocking(False)
        try:
            sock.connect(address)
            sock.sendall("\n".join(fields).encode())
        except OSError:
            return False
    return True


def watchdog_interval() -> float | None:
    """Half the watchdog timeout systemd set (``WATCHDOG_USEC``) in seconds, or ``None`` without a watchdog."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2_000_000
    except ValueError:
        return None
