"""``/healthz``: is this daemon collecting? JSON, HTTP 200 when healthy, 503 with the reasons when not.

Built by `smdrd.daemon.Daemon.build` as the ``health`` feature (independent of ``metrics``). The route is
public even when the HTTP server has a token, so what everyone sees is states and reasons a person can act on
("not connected to the PBX (connection refused)"): never exception text, peer addresses, paths, call data or
secrets. A request with the token (or any request when no token is configured) also sees the details: each
source's last error in full, the failed task's error, counts and times.

The rules (each failing rule adds one reason):

* **No supervised task has died.** A task that ended with an error (a bug in the journal writer, the MQTT
  publisher, retention...) makes the daemon unhealthy until it is restarted (the watchdog stops being fed, so
  systemd restarts it).

* **The database is writable.** Unhealthy while the journal writer's last commit attempt failed (disk full,
  read-only file system, a lock held past the busy timeout), and while the pending queue is full (sources are
  paused). One successful commit makes it healthy again.
* **Every enabled source is up.** A source that holds a link (``tcp-client``, ``serial``, a followed ``file``)
  must be connected. A ``tcp-server`` source is up while a PBX is connected, or when its last line came in
  the last `PUSH_IDLE_GRACE` seconds: some PBXs (3CX) open a connection per record, so "no connection right
  now" is routine for them; a push source that has received nothing since it started is down. A ``file`` read
  once is up (it finishes by design).

To a recognised request the body also shows each source's last line time and counts, and the journal's, for a
human reading it; everyone else sees the states (up, connected, writable) and the reasons.

**Degraded, not unhealthy:** MQTT delivery that cannot reach its broker (``[mqtt] enabled`` and not connected
after a failed attempt or a lost connection) turns ``status`` to ``degraded`` with HTTP 200, and says how many
alerts wait in the outbox: the PBX path still collects, journals and stores every call (and the outbox keeps the
alerts until the broker is back), so a monitor that restarts smdrd on 503 must not restart it for that.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from smdrd import __version__
from smdrd.core import Entry
from smdrd.http import Request, Response

if TYPE_CHECKING:
    from smdrd.daemon import Daemon

__all__ = ["PUSH_IDLE_GRACE", "Health", "HealthMonitor", "install", "source_down"]

#: how long a ``tcp-server`` source with no PBX connected stays healthy after its last line, in seconds.
PUSH_IDLE_GRACE = 900.0


@dataclass(slots=True)
class Health:
    """A verdict: healthy or not, why not, and what was looked at."""

    healthy: bool
    reasons: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)
    #: what works less well without failing the PBX path (MQTT delivery down): still HTTP 200.
    degraded: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return "unhealthy" if not self.healthy else "degraded" if self.degraded else "ok"

    def response(self) -> Response:
        body = {"status": self.status, "reasons": self.reasons, "degraded": self.degraded, **self.detail}
        return Response(200 if self.healthy else 503, (json.dumps(body, indent=2) + "\n").encode(),
                        "application/json")


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


class HealthMonitor:
    """Watches the journal's commits and judges the daemon's health on request."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon
        self.last_commit_at: float | None = None
        # The writer counts failed attempts; a failure after the last success means commits fail right now.
        self._failures_at_last_commit = daemon.writer.stats.failures

    def on_commit(self, entries: list[Entry], seconds: float) -> None:
        self.last_commit_at = time.time()
        self._failures_at_last_commit = self._daemon.writer.stats.failures

    def check(self, now: float | None = None, *, detail: bool = True) -> Health:
        """Apply the rules in the module docstring; ``detail=False`` is the public view (no errors' text)."""
        now = time.time() if now is None else now
        daemon = self._daemon
        reasons: list[str] = []
        failed = dict(daemon.failed_tasks)
        for name in sorted(failed):
            reasons.append(f"{name}: stopped by an internal error (see the log); smdrd must be restarted")
        writer = daemon.writer
        failing = writer.stats.failures - self._failures_at_last_commit
        if failing > 0:
            reasons.append(f"database: not writable ({failing} commit attempt(s) failed since the last "
                           f"successful commit; {writer.pending} line(s) waiting)")
        if writer.pending >= writer.max_pending:
            reasons.append(f"database: the journal is full ({writer.pending} lines pending, limit "
                           f"{writer.max_pending}); sources are paused")
        database: dict[str, Any] = {"writable": failing <= 0}
        if detail:  # counts and times: for a recognised request only, as each source's below
            database.update({"pending_rows": writer.pending, "committed_lines": writer.stats.lines,
                             "committed_calls": writer.stats.calls, "last_commit": _iso(self.last_commit_at)})
        sources: dict[str, Any] = {}
        for cfg in daemon.settings.sources:
            if not cfg.enabled:
                continue
            rs = daemon.sources.get(cfg.name)
            if rs is None:
                sources[cfg.name] = {"kind": cfg.kind, "up": False, "connected": False,
                                     **({"last_line": None} if detail else {})}
                reasons.append(f"source {cfg.name}: not running")
                continue
            status = rs.source.status
            last = rs.ingest.counters.last_line_at
            why = source_down(cfg.kind, bool(getattr(cfg, "follow", False)), status.connected, last, now)
            info: dict[str, Any] = {"kind": cfg.kind, "up": why is None, "connected": status.connected}
            if detail:
                info.update({"last_line": _iso(last),
                             "last_line_age_seconds": None if last is None else round(now - last, 3),
                             "lines": rs.ingest.counters.lines, "parse_errors": rs.ingest.counters.errors,
                             "reconnects": status.reconnects})
                if cfg.kind == "spool":
                    info.update({"files_read": status.files_read, "last_file": status.last_file})
            if detail and status.last_error:
                info["last_error"] = status.last_error
            elif status.last_error_reason:
                info["last_error"] = status.last_error_reason
            sources[cfg.name] = info
            if why is not None:
                reasons.append(f"source {cfg.name}: {why}"
                               + (f" ({status.last_error_reason})" if status.last_error_reason else ""))
        body: dict[str, Any] = {"version": __version__, "database": database, "sources": sources}
        degraded: list[str] = []
        mqtt = self._mqtt(detail)
        if mqtt is not None:
            body["mqtt"] = mqtt
            if mqtt["status"] == "degraded":
                waiting = mqtt["pending_alerts"]
                degraded.append("mqtt: not connected to the broker" + (
                    "" if waiting is None else f"; {waiting} alert(s) waiting in the outbox"))
        if detail and failed:
            body["failed_tasks"] = failed
        return Health(not reasons, reasons, body, degraded)

    def _mqtt(self, detail: bool) -> dict[str, Any] | None:
        """MQTT delivery's state, or None when the daemon has no MQTT delivery."""
        features = self._daemon.features
        delivery = features.mqtt
        if delivery is None:
            return None
        pending = features.alerts.pending if features.alerts is not None else None
        publisher = delivery.publisher
        if not delivery.config.enabled or publisher is None:
            return {"enabled": delivery.config.enabled, "status": "off" if not delivery.config.enabled else
                    "starting", "connected": False, "pending_alerts": pending}
        stats = publisher.stats
        if publisher.connected:
            status = "ok"
        elif stats.connects or stats.connect_failures:
            status = "degraded"  # lost, or refused at least once: not merely still connecting at start
        else:
            status = "connecting"
        out: dict[str, Any] = {"enabled": True, "status": status, "connected": publisher.connected,
                               "pending_alerts": pending}
        if detail:
            out.update({"broker": f"{delivery.config.host}:{delivery.config.port}", "last_error": stats.last_error,
                        "connect_failures": stats.connect_failures,
                        "retained_pending": publisher.retained_pending})
        return out


def source_down(kind: str, follow: bool, connected: bool, last_line: float | None, now: float) -> str | None:
    """Why a running source counts as down, or None when it is up."""
    if connected:
        return None
    if kind == "tcp-server":
        if last_line is None:
            return "no PBX has connected and sent a line since the source started"
        if now - last_line > PUSH_IDLE_GRACE:
            return f"no PBX connected, and the last line came {int(now - last_line)} s ago"
        return None
    if kind == "file" and not follow:
        return None
    return {"tcp-client": "not connected to the PBX", "serial": "the serial port is not open",
            "file": "the followed file is not open",
            "spool": "the spool directory cannot be read"}.get(kind, "not connected")


def install(daemon: Daemon) -> HealthMonitor:
    """Watch commits and serve ``/healthz`` on the daemon's HTTP server."""
    monitor = HealthMonitor(daemon)
    daemon.commit_listeners.append(monitor.on_commit)
    if daemon.http is not None:
        async def serve_health(request: Request) -> Response:
            return monitor.check(detail=request.authenticated).response()

        daemon.http.route("/healthz", serve_health)
    return monitor
