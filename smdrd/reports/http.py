"""The reports on the daemon's HTTP server: ``/api/reports/<kind>`` (JSON, CSV, XLSX, PDF); the console's
``/reports`` page (`smdrd.console.reports`) runs its reports here too (`ReportService.report`).

A daemon extension: ``install(daemon)`` adds the routes and a reload listener (a changed ``[[departments]]``
re-attributes reports at once; an inconsistent one keeps the previous departments and says why). Each request
runs on its own report reader (a read-only connection) in the reports' own thread pool (``[http]
report_workers`` threads, never the default executor that the journal and file sources use), so a year's report
never blocks the event loop, the journal writer or a source. At most ``[http] max_reports`` report requests run
or wait at once; one more is answered 503 with ``Retry-After``. Every page of call details is bounded
(`MAX_PAGE_SIZE`); every call of a range is ``calls?format=csv``, streamed from a cursor a chunk at a time, so
its size never becomes memory. This module never writes to the database, and never puts a value into HTML.

Who may read: admins, viewers and the service token every department; a ``manager`` only the departments
assigned to them and those under them (`scoped`): a report asked for without a department covers theirs, and
one asked for another department is refused 403. ``/metrics`` (every department) stays closed to managers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from smdrd.config import Settings
from smdrd.csvsafe import BOM, SafeCsvWriter
from smdrd.errors import ConfigError
from smdrd.http import CHUNK, READERS, BadRequest, Principal, Request, Response
from smdrd.privacy import hidden_digits
from smdrd.rating.classes import CALL_CLASSES
from smdrd.reports import export
from smdrd.reports.config import UNASSIGNED
from smdrd.reports.queries import (
    DIRECTIONS,
    KINDS,
    LISTING_KINDS,
    NO_NAMES,
    Context,
    Query,
    Report,
    context_from,
    every_row,
    parse_query,
    run_report,
)
from smdrd.reports.render import CONTENT_TYPES, csv_lines, render
from smdrd.store import open_store

if TYPE_CHECKING:
    from smdrd.daemon import Daemon
    from smdrd.store.api import ReportReader, Store

log = structlog.get_logger(__name__)

API = "/api/reports"
#: seconds a client told "too many reports at once" (503) is asked to wait.
RETRY_AFTER = 2
#: who may read reports: `READERS`, and managers for their own departments (`scoped`).
REPORT_READERS = READERS | {"manager"}
#: seconds the store's site names are kept before they are read again (a new site shows within this).
SITES_SECONDS = 30.0

T = TypeVar("T")


def scoped(query: Query, principal: Principal | None, ctx: Context) -> Query | None:
    """``query`` as ``principal`` may run it: unchanged for every role but ``manager``; for a manager, limited to
    their departments when it names none, and None (refused) when it names one that is neither theirs nor under
    one of theirs."""
    if principal is None or principal.role != "manager":
        return query
    directory = ctx.directory
    mine = set(principal.departments)
    if not query.departments:
        known = tuple(d for d in principal.departments if d in directory.names)
        return dataclasses.replace(query, departments=known) if known else None
    if all(mine & set(directory.ancestors(name)) for name in query.departments):
        return query
    return None


def visible_departments(principal: Principal | None, ctx: Context) -> list[tuple[str, str | None]]:
    """``(name, parent)`` of each department ``principal`` may report on, parents before their children, then
    ``Unassigned``: every one, or for a manager their departments and those under them."""
    d = ctx.directory
    departments: list[tuple[str, str | None]] = [(n, d.parents[n]) for n in d.tree_order()]
    departments.append((UNASSIGNED, None))
    if principal is not None and principal.role == "manager":
        mine = set(principal.departments)
        departments = [(n, p) for n, p in departments if mine & set(d.ancestors(n))]
    return departments


class ReportService:
    """The report routes of one daemon: the database path and the current report `Context`."""

    def __init__(self, settings: Settings, config_path: Path | None = None) -> None:
        self.store: Store = open_store(settings.database.target)
        self.context: Context = context_from(settings, path=str(config_path) if config_path else None)
        #: how much of each dialled number each role sees (`smdrd.privacy`), as of the last (re)load.
        self.privacy = settings.privacy
        #: the reports' own threads: a burst of reports never queues in front of the journal or a source.
        self.executor = ThreadPoolExecutor(settings.http.report_workers, thread_name_prefix="smdrd-report")
        #: report requests running or waiting at once, at most; `active` now.
        self.max_reports = settings.http.max_reports
        self.active = 0
        self._sites: tuple[float, list[str]] | None = None

    def close(self) -> None:
        """Stop the report threads (a report still running finishes; waiting ones are dropped)."""
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    def _enter(self) -> bool:
        if self.active >= self.max_reports:
            return False
        self.active += 1
        return True

    def _leave(self) -> None:
        self.active -= 1

    def reload(self, settings: Settings) -> None:
        """Take the new departments, site and tariff decimals; keep the old ones if the new are inconsistent."""
        self.privacy = settings.privacy
        try:
            self.context = context_from(settings)
        except ConfigError as exc:
            log.error("reports.reload_rejected", reason=str(exc), kept="the previous departments")

    async def index(self, request: Request) -> Response:
        """What a client needs to build its filters (kinds, directions, classes, the departments it may see, the
        store's named sites)."""
        ctx = self.context
        departments = [{"name": n, "parent": p} for n, p in visible_departments(request.principal, ctx)]
        body = {"kinds": list(KINDS), "directions": [*DIRECTIONS, "all"], "classes": list(CALL_CLASSES),
                "departments": departments, "sites": await self.site_names(),
                "timezone": str(ctx.timezone), "currency": ctx.currency, "decimals": ctx.decimals}
        return Response(200, json.dumps(body).encode(), "application/json")

    async def report(self, query: Query, ctx: Context) -> Report | None:
        """The report ``query`` asks for (its page), built in a report thread; None when `max_reports` report
        requests run or wait already (the caller says "try again shortly")."""
        if not self._enter():
            return None
        try:
            return await self._run(self._report, query, ctx)
        finally:
            self._leave()

    async def site_names(self) -> list[str]:
        """The named sites whose calls the store holds (`smdrd.store.api.ReportReader.sites`), read in a report
        thread at most every `SITES_SECONDS`: a page's site filter is offered when there are two or more."""
        loop = asyncio.get_running_loop()
        if self._sites is None or loop.time() - self._sites[0] >= SITES_SECONDS:
            self._sites = (loop.time(), await self._run(self._site_names))
        return self._sites[1]

    def _site_names(self) -> list[str]:
        reader = self.store.reports()
        try:
            return [site.name for site in reader.sites()]
        finally:
            reader.close()

    def _report(self, query: Query, ctx: Context) -> Report:
        reader = self.store.reports()
        try:
            return run_report(reader, query, ctx, self.names())
        finally:
            reader.close()

    def handler(self, kind: str) -> Any:
        async def handle(request: Request) -> Response:
            fmt = request.arg("format", "json") or "json"
            if fmt not in CONTENT_TYPES and fmt not in export.FORMATS:
                raise BadRequest(f"format: expected json, csv, html, table, xlsx or pdf, got {fmt[:40]!r}")
            paper = request.arg("paper", "a4") or "a4"
            if paper not in export.PAPERS:
                raise BadRequest(f"paper: expected a4 or letter, got {paper[:40]!r}")
            ctx = self.context
            try:
                query = parse_query({**request.query, "kind": [kind]}, ctx, bounded=True,
                                    listed=[n for n, _ in visible_departments(request.principal, ctx)])
            except ValueError as exc:  # the parameter and what was expected
                raise BadRequest(str(exc)) from None
            allowed = scoped(query, request.principal, ctx)
            if allowed is None:
                return Response(403, b"forbidden: a manager sees only the departments assigned to them\n")
            # Numbers as this reader may see them ([privacy]): every format, the exports included.
            query = dataclasses.replace(allowed, mask_digits=hidden_digits(request.principal, self.privacy))
            if not self._enter():
                return Response(503, b"too many report requests at once; try again shortly\n",
                                headers={"Retry-After": str(RETRY_AFTER)})
            headers = {}
            if fmt == "csv" or fmt in export.FORMATS:
                headers["Content-Disposition"] = f'attachment; filename="{export.filename(kind, query, fmt)}"'
            streaming = False
            try:
                if fmt in export.FORMATS:  # XLSX, PDF: smdrd.reports.http_export
                    from smdrd.reports.http_export import export_stream

                    stream = export_stream(self, query, ctx, fmt, paper)  # owns the slot, as below
                    streaming = True
                    await anext(stream)
                    return Response(200, b"", export.CONTENT_TYPES[fmt], headers=headers, stream=stream)
                if kind in LISTING_KINDS and fmt == "csv":
                    stream = self._calls_csv(query, ctx)  # owns the slot from here: it leaves when it ends
                    streaming = True
                    await anext(stream)  # opened, totals counted: errors so far are still a clean 500
                    return Response(200, b"", CONTENT_TYPES[fmt], headers=headers, stream=stream)
                text = await self._run(self._build, query, ctx, fmt)
                return Response(200, text.encode(), CONTENT_TYPES[fmt], headers=headers)
            finally:
                if not streaming:
                    self._leave()

        return handle

    def names(self) -> Mapping[str, str]:
        """Extension -> name from the directory, shown beside the extensions (blocking: a report thread's)."""
        return export.names_of(self.store)

    def _build(self, query: Query, ctx: Context, fmt: str) -> str:
        return render(self._report(query, ctx), fmt)

    async def _calls_csv(self, query: Query, ctx: Context) -> AsyncGenerator[bytes, None]:
        """Every call of ``query`` as CSV (what `render.to_csv` gives for the whole range), a chunk of about
        `CHUNK` bytes at a time, each read from the cursor in a report thread only when the client has taken
        the one before. The first item is ``b""``: the export is open and its totals counted."""
        export: _CallsCsv | None = None
        try:
            export = await self._run(lambda: _CallsCsv(self.store, query, ctx, self.names()))
            yield b""
            while chunk := await self._run(export.next_chunk):
                yield chunk
        finally:
            self._leave()
            if export is not None:
                try:
                    await self._run(export.close)
                except RuntimeError:  # the pool is shut down (the daemon is stopping)
                    export.close()


class _CallsCsv:
    """An open export of every call of a listing query (``calls``, the details kinds): a report reader and its
    cursors, rendered as CSV in chunks (`smdrd.reports.render.csv_lines`: a header line, one line per call, the
    details' subtotal lines, a last ``Total`` line)."""

    def __init__(self, store: Store, query: Query, ctx: Context, names: Mapping[str, str] = NO_NAMES) -> None:
        self.reader: ReportReader = store.reports()
        try:
            self.lines: Iterator[list[str]] = csv_lines(every_row(self.reader, query, ctx, names))
        except BaseException:
            self.reader.close()
            raise
        self.done = False
        self.started = False

    def next_chunk(self) -> bytes:
        """The next chunk of CSV, ``b""`` after the ``Total`` line; the first starts with `BOM`, as every
        report CSV does (Excel reads it as UTF-8)."""
        if self.done:
            return b""
        out = io.StringIO()
        if not self.started:
            self.started = True
            out.write(BOM)
        writer = SafeCsvWriter(out)
        while out.tell() < CHUNK:
            line = next(self.lines, None)
            if line is None:
                self.done = True
                break
            writer.writerow(line)
        return out.getvalue().encode()

    def close(self) -> None:
        self.reader.close()


def install(daemon: Daemon) -> ReportService | None:
    """Add the report routes to ``daemon``'s HTTP server (nothing when HTTP is disabled)."""
    if daemon.http is None:
        return None
    service = ReportService(daemon.settings, daemon.config_path)
    daemon.http.route(API, service.index, REPORT_READERS)
    for kind in KINDS:
        daemon.http.route(f"{API}/{kind}", service.handler(kind), REPORT_READERS)
    daemon.reload_listeners.append(service.reload)

    async def report_pool() -> None:
        try:
            await asyncio.Event().wait()  # until the daemon stops
        finally:
            service.close()

    daemon.add_task("report-pool", report_pool)
    return service
