"""The reports on the daemon's HTTP server: ``/api/reports/<kind>`` (JSON, CSV) and the ``/reports`` page.

A daemon extension: ``install(daemon)`` adds the routes and a reload listener (a changed ``[[departments]]``
re-attributes reports at once; an inconsistent one keeps the previous departments and says why). Each request
runs in a worker thread on its own read-only connection, so a year's report never blocks the event loop or
the journal writer. This module never writes to the database, and never puts a value into HTML: the page
fetches JSON and inserts it with ``textContent``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from smdrd.config import Settings
from smdrd.errors import ConfigError
from smdrd.http import Request, Response
from smdrd.rating.classes import CALL_CLASSES
from smdrd.reports.queries import DIRECTIONS, KINDS, Context, context_from, parse_query, run_report
from smdrd.reports.render import CONTENT_TYPES, render
from smdrd.reports.rollup import connect_readonly

if TYPE_CHECKING:
    from smdrd.daemon import Daemon

log = structlog.get_logger(__name__)

API = "/api/reports"
PAGE = "/reports"


def page_html() -> bytes:
    """The report page (package data ``page.html``)."""
    return resources.files("smdrd.reports").joinpath("page.html").read_bytes()


def _page_headers(page: bytes) -> dict[str, str]:
    # Defence in depth behind textContent: only the page's own inline script (pinned by its hash) may run, and
    # it may talk to this server only. A name from a PBX that slipped into markup still could not execute.
    scripts = re.findall(rb"<script>(.*?)</script>", page, re.S)
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s).digest()).decode()}'" for s in scripts)
    return {"Content-Security-Policy": f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; "
                                       "connect-src 'self'; img-src 'self' data:; form-action 'self'; "
                                       "base-uri 'none'; frame-ancestors 'none'",
            "Referrer-Policy": "no-referrer"}


class ReportService:
    """The report routes of one daemon: the database path and the current report `Context`."""

    def __init__(self, settings: Settings, config_path: Path | None = None) -> None:
        self.database = settings.database.path
        self.context: Context = context_from(settings, path=str(config_path) if config_path else None)
        self.page = page_html()
        self.page_headers = _page_headers(self.page)

    def reload(self, settings: Settings) -> None:
        """Take the new departments, site and tariff decimals; keep the old ones if the new are inconsistent."""
        try:
            self.context = context_from(settings)
        except ConfigError as exc:
            log.error("reports.reload_rejected", reason=str(exc), kept="the previous departments")

    async def index(self, request: Request) -> Response:
        """What the page needs to build its filters."""
        ctx = self.context
        d = ctx.directory
        body = {"kinds": list(KINDS), "directions": [*DIRECTIONS, "all"], "classes": list(CALL_CLASSES),
                "departments": [{"name": n, "parent": d.parents[n]} for n in d.tree_order()]
                + [{"name": "Unassigned", "parent": None}],
                "timezone": str(ctx.timezone), "currency": ctx.currency, "decimals": ctx.decimals}
        return Response(200, json.dumps(body).encode(), "application/json")

    async def serve_page(self, request: Request) -> Response:
        return Response(200, self.page, "text/html; charset=utf-8", headers=dict(self.page_headers))

    def handler(self, kind: str) -> Any:
        async def handle(request: Request) -> Response:
            fmt = request.arg("format", "json") or "json"
            if fmt not in CONTENT_TYPES:
                raise ValueError(f"format: expected json, csv, html or table, got {fmt!r}")
            ctx = self.context
            query = parse_query({**request.query, "kind": [kind]}, ctx)
            text = await asyncio.to_thread(self._build, query, ctx, fmt)
            headers = {}
            if fmt == "csv":
                headers["Content-Disposition"] = (f'attachment; filename="smdrd-{kind}-{query.first}-'
                                                  f'{query.last}.csv"')
            return Response(200, text.encode(), CONTENT_TYPES[fmt], headers=headers)

        return handle

    def _build(self, query: Any, ctx: Context, fmt: str) -> str:
        conn = connect_readonly(self.database)
        try:
            return render(run_report(conn, query, ctx), fmt)
        finally:
            conn.close()


def install(daemon: Daemon) -> None:
    """Add the report routes to ``daemon``'s HTTP server (nothing when HTTP is disabled)."""
    if daemon.http is None:
        return
    service = ReportService(daemon.settings, daemon.config_path)
    daemon.http.route(PAGE, service.serve_page)
    daemon.http.route(API, service.index)
    for kind in KINDS:
        daemon.http.route(f"{API}/{kind}", service.handler(kind))
    daemon.reload_listeners.append(service.reload)
