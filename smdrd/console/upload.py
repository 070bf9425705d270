"""The console's upload: an admin imports a saved PBX log file (``/upload``) through the same path as
``smdrd import``, and follows it on a job page that lists the lines that failed by number.

The file is streamed to disk as it arrives (never held in memory), refused past ``[http] max_upload_mb`` with
nothing of it kept, and its format detected from its first lines (`smdrd.parsing.detect_formats`) unless the
admin chose one. The import itself is ``smdrd import`` run as a child process (which parses in a worker
process of its own), so not one line of it is parsed or committed on the daemon's event loop: live ingest
goes on, and the import's commits are small batches (`IMPORT_BATCH` rows). Lines are journalled under the
source ``upload``, with the uploaded file as their peer; a line already stored (the same file uploaded again)
is recognised and adds no call. Progress and errors are read back from the journal: how many of the file's
lines are in, by status, and each line that could not be parsed with its number, its bytes and why.

One upload is imported at a time; the last `MAX_JOBS` jobs are remembered until the daemon stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import BodyPartReader, ClientPayloadError, web

from smdrd.console.calls import on_thread
from smdrd.console.streamed import UploadProblem, open_form, text_field, too_large
from smdrd.http import ADMIN, csrf_in_stream, principal_of, public, requires
from smdrd.parsing import ParserContext, detect_formats, format_names
from smdrd.store import open_store
from smdrd.store.api import CallReader

if TYPE_CHECKING:
    from smdrd.console import Console

__all__ = ["IMPORT_BATCH", "MAX_JOBS", "UPLOAD_SOURCE", "UploadJob", "Uploads", "register"]

log = structlog.get_logger(__name__)

#: the source name uploaded lines are journalled under (``smdrd errors --source upload`` lists their failures).
UPLOAD_SOURCE = "upload"
#: rows per commit of an upload's import: short write transactions, so the live journal writer never waits long.
IMPORT_BATCH = 2000
#: files smaller than this are parsed in the import's own process, larger ones in its worker process too.
IN_PROCESS_BYTES = 8 << 20
#: jobs remembered (the oldest finished one is forgotten first).
MAX_JOBS = 20
#: failed lines listed on a job's page.
ERRORS_SHOWN = 200
#: bytes read from the start of a file to detect its format.
DETECT_BYTES = 1 << 16
DETECT_LINES = 30
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_JOB_ID = re.compile(r"[0-9a-f]{12}")
_CSP = ("default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")


@dataclass
class UploadJob:
    """One uploaded file and its import."""

    id: str
    name: str
    path: Path
    size: int
    lines: int
    format: str
    detected: bool
    by: str
    started_at: int  # UTC microseconds
    #: the source its lines are journalled under: a live source's name, so that the lines that source already
    #: received are recognised (a call is the same call only from the same source), or `UPLOAD_SOURCE`.
    source: str = "upload"
    state: str = "running"  # running | done | failed
    summary: str = ""
    finished_at: int | None = None
    statuses: dict[str, int] = field(default_factory=dict)

    def view(self) -> dict[str, Any]:
        done = sum(n for s, n in self.statuses.items() if s != "flushed")
        percent = 100 if self.state != "running" else min(99, done * 100 // max(self.lines, 1))
        return {"id": self.id, "name": self.name, "size": self.size, "lines": self.lines, "format": self.format,
                "detected": self.detected, "by": self.by, "source": self.source, "state": self.state,
                "summary": self.summary,
                "journalled": done, "percent": percent,
                "calls": self.statuses.get("parsed", 0), "duplicates": self.statuses.get("duplicate", 0),
                "errors": self.statuses.get("error", 0), "skipped": self.statuses.get("skipped", 0),
                "held": self.statuses.get("held", 0),
                "started_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started_at / 1e6))}


def detect(path: Path, country: str | None) -> str | None:
    """The format of the file at ``path`` from its first lines, or None when no format reads them."""
    from smdrd.framing import Framer

    with path.open("rb") as fh:
        head = fh.read(DETECT_BYTES)
    lines = [f.decode("utf-8", errors="replace") for f in Framer(1 << 20).feed(head)[:DETECT_LINES]
             if isinstance(f, bytes)]
    found = detect_formats(lines, ParserContext(country=country))
    return found[0].format if found and found[0].score > 0 else None


class Uploads:
    """The upload routes of one console, its jobs, and the one import running."""

    def __init__(self, console: Console) -> None:
        self.console = console
        settings = console.settings
        #: the SQLite file, or a PostgreSQL database's URL (then the import reads it from the configuration).
        self.db: Path | str = settings.database.target
        resolved = Path(settings.database.path).resolve()
        #: where uploads are written: beside the database, named after it (``smdrd.db.uploads``), one folder per job
        #: (on PostgreSQL, beside the SQLite path the configuration names: the daemon's state directory).
        self.folder = resolved.with_name(resolved.name + ".uploads")
        self.max_bytes = settings.http.max_upload_mb * 1024 * 1024
        self.country = settings.site.country
        daemon = console.daemon
        self.config_path = daemon.config_path if daemon is not None else None
        self.jobs: OrderedDict[str, UploadJob] = OrderedDict()
        self.running: UploadJob | None = None
        #: the file being received, claimed before its first byte is read: one upload at a time, from the
        #: stream's start to its import's end (two at once would each fill the disk up to the limit).
        self.receiving: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._db = ThreadPoolExecutor(1, thread_name_prefix="smdrd-console-upload")
        # Files of uploads a stopped daemon was importing (or receiving) are not needed any more: only job
        # folders (named by their id) are removed, nothing else that may be there.
        with contextlib.suppress(OSError):
            for leftover in self.folder.iterdir():
                if _JOB_ID.fullmatch(leftover.name) and leftover.is_dir():
                    shutil.rmtree(leftover, ignore_errors=True)

    def source_names(self) -> list[str]:
        """The configured sources an upload may be journalled as (the configuration as reloaded)."""
        daemon = self.console.daemon
        settings = daemon.settings if daemon is not None else self.console.settings
        return [src.name for src in settings.sources]

    def default_source(self) -> str:
        """The source an upload is journalled under when the form names none: the site's only source (a saved
        log of that PBX overlaps what it sent live), else `UPLOAD_SOURCE`."""
        names = self.source_names()
        return names[0] if len(names) == 1 else UPLOAD_SOURCE

    # ---- pages ----

    def _page(self, request: web.Request, *, status: int = 200, problem: UploadProblem | None = None,
              chosen: str = "") -> web.StreamResponse:
        principal = principal_of(request)
        return self.console.render(
            request, "upload_form.html", status=status, title="Upload a PBX log",
            formats=format_names(), chosen=chosen, max_mb=self.max_bytes // (1024 * 1024),
            errors={problem.field: str(problem)} if problem else {}, running=self.running, receiving=self.receiving,
            sources=self.source_names(), upload_source=UPLOAD_SOURCE, chosen_source=self.default_source(),
            jobs=[j.view() for j in reversed(self.jobs.values())],
            csrf=principal.csrf if principal is not None else "")

    @requires(*ADMIN)
    async def form(self, request: web.Request) -> web.StreamResponse:
        return self._page(request)

    @csrf_in_stream
    @requires(*ADMIN)
    async def upload(self, request: web.Request) -> web.StreamResponse:
        json_wanted = request.path.startswith("/api/")
        chosen = ""
        try:
            job, chosen = await self._receive(request)
        except UploadProblem as exc:
            if json_wanted:
                return web.json_response({"error": str(exc), "field": exc.field}, status=exc.status)
            response = self._page(request, status=exc.status, problem=exc, chosen=chosen)
            if exc.status == 413:
                response.force_close()  # the rest of the body is not read
            return response
        self._start(job)
        if json_wanted:
            return web.json_response({"job": job.id, "url": f"/api/upload/jobs/{job.id}"}, status=202)
        raise web.HTTPSeeOther(f"/upload/jobs/{job.id}")

    async def _receive(self, request: web.Request) -> tuple[UploadJob, str]:
        """Check the form's fields in order (CSRF token, format, file) and stream the file to disk."""
        principal = principal_of(request)
        assert principal is not None
        reader, part = await open_form(request, "file")
        chosen = ""
        if isinstance(part, BodyPartReader) and part.name == "format":
            chosen = await text_field(part, "format") or ""
            part = await reader.next()
        if chosen and chosen not in format_names():
            raise UploadProblem("format", f"unknown format {chosen[:40]!r}; choose one from the list")
        source = self.default_source()
        if isinstance(part, BodyPartReader) and part.name == "source":
            source = await text_field(part, "source") or source
            part = await reader.next()
            if source not in (*self.source_names(), UPLOAD_SOURCE):
                raise UploadProblem("source", f"unknown source {source[:40]!r}; choose one from the list")
        if not isinstance(part, BodyPartReader) or part.name != "file" or not part.filename:
            raise UploadProblem("file", "choose a file to upload")
        busy = self.running.name if self.running is not None else self.receiving
        if busy is not None:
            raise UploadProblem("file", f"{busy} is being uploaded or imported; upload again when it is done", 409)
        job_id = secrets.token_hex(6)
        name = _SAFE_NAME.sub("_", Path(part.filename).name)[-100:].lstrip(".") or "upload.log"
        self.receiving = name  # no await since the check above: no other upload can pass it now
        try:
            job, chosen = await self._stream(part, principal.name, job_id, name, chosen)
            job.source = source
            return job, chosen
        finally:
            self.receiving = None

    async def _stream(self, part: BodyPartReader, owner: str, job_id: str, name: str,
                      chosen: str) -> tuple[UploadJob, str]:
        """Write the file part to the job's folder and make its job (the format detected when not chosen)."""
        folder = self.folder / job_id
        path = folder / name
        size, lines, last = 0, 0, b"\n"
        try:
            await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
            with path.open("wb") as out:
                while chunk := await part.read_chunk(1 << 16):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise too_large("file", self.max_bytes)
                    lines += chunk.count(b"\n")
                    last = chunk[-1:]
                    await asyncio.to_thread(out.write, chunk)
            if size == 0:
                raise UploadProblem("file", "the file is empty")
            fmt: str | None = chosen or await asyncio.to_thread(detect, path, self.country)
            if fmt is None:
                raise UploadProblem("format", "the format could not be recognised from the file's first lines; "
                                              "choose it")
        except (ClientPayloadError, ConnectionError, asyncio.IncompleteReadError):
            shutil.rmtree(folder, ignore_errors=True)
            raise UploadProblem("file", "the upload was interrupted; send the file again") from None
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        lines += last != b"\n"
        job = UploadJob(job_id, name, path, size, lines, fmt, not chosen, owner, time.time_ns() // 1000)
        return job, chosen

    # ---- the import ----

    def _start(self, job: UploadJob) -> None:
        self.jobs[job.id] = job
        while len(self.jobs) > MAX_JOBS:
            oldest = next((k for k, j in self.jobs.items() if j.state != "running"), None)
            if oldest is None:
                break
            del self.jobs[oldest]
        self.running = job
        task = asyncio.get_running_loop().create_task(self._import(job), name=f"upload-{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _import(self, job: UploadJob) -> None:
        args = [sys.executable, "-m", "smdrd", "import", str(job.path), "--format", job.format, "--source",
                job.source, "--batch", str(IMPORT_BATCH)]
        if isinstance(self.db, Path):
            args += ["--database", str(self.db)]  # else the configuration's [database] url
        if self.config_path is not None:
            args += ["--config", str(self.config_path)]
        if job.size < IN_PROCESS_BYTES and isinstance(self.db, Path):  # --in-process imports into SQLite only
            args.append("--in-process")  # a second process to start would take longer than the parsing
        log.info("upload.import_started", job=job.id, file=job.name, bytes=job.size, format=job.format, by=job.by,
                 source=job.source)
        proc: asyncio.subprocess.Process | None = None
        try:
            proc = await asyncio.create_subprocess_exec(*args, stdin=subprocess.DEVNULL,
                                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            tail = b""
            assert proc.stderr is not None
            while chunk := await proc.stderr.read(1 << 14):
                tail = (tail + chunk)[-8192:]  # bounded: only the end (the summary) is kept
            code = await proc.wait()
            text = tail.decode(errors="replace").strip()
            summary = next((line for line in text.splitlines() if line.startswith("imported ")), "")
            job.state = "done" if code in (0, 1) and summary else "failed"
            job.summary = summary or (text.splitlines()[-1] if text else f"the import ended with status {code}")
        except asyncio.CancelledError:
            job.state, job.summary = "failed", "the daemon stopped during the import"
            raise
        except Exception as exc:  # could not start it: say so on the job's page
            job.state, job.summary = "failed", f"the import could not run: {type(exc).__name__}"
            log.error("upload.import_failed", job=job.id, error=type(exc).__name__)
        finally:
            if proc is not None and proc.returncode is None:  # the daemon stops: so does the import
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(proc.wait(), 5)
            job.finished_at = time.time_ns() // 1000
            self.running = None
            shutil.rmtree(job.path.parent, ignore_errors=True)
        with contextlib.suppress(Exception):
            job.statuses = await self._read(lambda r: r.peer_statuses(str(job.path), job.started_at))
        log.info("upload.import_done", job=job.id, state=job.state, **job.statuses)

    async def _read(self, fn: Any) -> Any:
        return await on_thread(self._db, lambda: open_store(self.db).calls(), fn)

    # ---- a job ----

    async def _job(self, request: web.Request) -> tuple[UploadJob, list[dict[str, Any]]] | None:
        job = self.jobs.get(request.match_info.get("id", ""))
        if job is None:
            return None
        peer, since = str(job.path), job.started_at

        def read(reader: CallReader) -> tuple[dict[str, int], list[tuple[int, Any]]]:
            return reader.peer_statuses(peer, since), reader.peer_errors(peer, since, ERRORS_SHOWN)

        statuses, errors = await self._read(read)
        if job.state == "running" or not job.statuses:
            job.statuses = statuses
        return job, [{"line": n, "raw": line.raw.decode("utf-8", errors="replace"), "error": line.error or ""}
                     for n, line in errors]

    @requires(*ADMIN)
    async def job_page(self, request: web.Request) -> web.StreamResponse:
        found = await self._job(request)
        if found is None:
            return self.console.render(request, "upload_missing.html", status=404, title="No such upload")
        job, errors = found
        response = self.console.render(request, "upload_job.html", title=f"Upload {job.name}", job=job.view(),
                                       errors=errors, shown=ERRORS_SHOWN)
        response.headers["Content-Security-Policy"] = _CSP  # its own script, and its fetches to this server
        return response

    @public
    async def script(self, request: web.Request) -> web.StreamResponse:
        body = resources.files("smdrd.console").joinpath("static/upload.js").read_bytes()
        return web.Response(body=body, content_type="text/javascript", charset="utf-8",
                            headers={"Cache-Control": "max-age=3600"})

    @requires(*ADMIN)
    async def api_job(self, request: web.Request) -> web.StreamResponse:
        found = await self._job(request)
        if found is None:
            return web.json_response({"error": "no such upload"}, status=404)
        job, errors = found
        return web.json_response({**job.view(), "failed_lines": errors})


def register(console: Console) -> Uploads:
    """Add the upload routes to ``console``'s server."""
    uploads = Uploads(console)
    router = console.server.app.router
    router.add_get("/upload", uploads.form)
    router.add_post("/upload", uploads.upload)
    router.add_post("/api/upload", uploads.upload)
    router.add_get("/upload/jobs/{id}", uploads.job_page)
    router.add_get("/api/upload/jobs/{id}", uploads.api_job)
    router.add_get("/console/static/upload/upload.js", uploads.script)
    return uploads
