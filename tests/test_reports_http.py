"""The reports on the daemon's HTTP server, over real loopback HTTP: JSON, CSV, errors, token, page, reload."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import threading
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from smdrd.daemon import Daemon
from smdrd.http import CHUNK
from smdrd.reports.http import RETRY_AFTER
from smdrd.reports.queries import MAX_PAGE_SIZE, context_from, parse_query, run_report
from smdrd.reports.render import render, to_dict
from smdrd.store.sqlite.reports import SqliteReports
from smdrd.testing import running_daemon
from tests.test_http import get as raw_get
from tests.test_reports import CALLS, DEPARTMENTS, Call, settings_for, write_calls


async def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    def fetch() -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    return await asyncio.to_thread(fetch)


@asynccontextmanager
async def reports_daemon(tmp_path: Path, **http: Any) -> AsyncIterator[Daemon]:
    """The reports feature on a daemon over `CALLS` (`smdrd.testing.running_daemon`), HTTP on a free port."""
    db = tmp_path / "smdrd.db"
    await write_calls(db, CALLS)
    settings = settings_for(db, http={"listen": "127.0.0.1:0", **http})
    async with running_daemon(settings, features=("reports",)) as daemon:
        yield daemon


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    async with reports_daemon(tmp_path) as d:
        yield d


def port_of(d: Daemon) -> int:
    assert d.http is not None
    return d.http.bound_port


MARCH = "from=2026-03-01&to=2026-03-31"
REPORT_TOKEN = "s3cret-report-token-0042"


async def test_json_report_matches_the_builder(daemon: Daemon) -> None:
    """/api/reports/extensions returns exactly what the CLI's JSON holds, with exact money strings."""
    status, headers, body = await get(port_of(daemon), f"/api/reports/extensions?{MARCH}")
    assert status == 200 and headers["Content-Type"] == "application/json"
    data = json.loads(body)
    ctx = context_from(daemon.settings)
    conn = SqliteReports(daemon.settings.database.path)
    try:
        expected = to_dict(run_report(conn, parse_query({"kind": ["extensions"], "from": ["2026-03-01"],
                                                         "to": ["2026-03-31"]}, ctx), ctx))
    finally:
        conn.close()
    assert data == json.loads(json.dumps(expected))
    assert data["totals"] == {"calls": 8, "duration": 1600, "average": 200.0, "cost": "8.35"}


async def test_every_kind_is_served_as_json_and_csv(daemon: Daemon) -> None:
    """Each report kind answers in JSON and as a CSV download whose Total line matches the JSON totals."""
    port = port_of(daemon)
    for kind in ("extensions", "departments", "calls", "destinations", "trunks", "days"):
        status, _, body = await get(port, f"/api/reports/{kind}?{MARCH}")
        assert status == 200, (kind, body)
        totals = json.loads(body)["totals"]
        status, headers, body = await get(port, f"/api/reports/{kind}?{MARCH}&format=csv")
        assert status == 200 and headers["Content-Type"].startswith("text/csv")
        assert "attachment" in headers["Content-Disposition"]
        assert body.startswith(b"\xef\xbb\xbf"), "a report CSV starts with a BOM: Excel reads it as UTF-8"
        lines = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
        header, total = lines[0], lines[-1]
        assert total[0] == "Total"
        assert total[header.index("cost")] == totals["cost"], kind
        if "calls" in header:  # call details have no calls column: each line is one leg
            assert total[header.index("calls")] == str(totals["calls"]), kind


async def test_filters_work_over_http(daemon: Daemon) -> None:
    """department, direction and class in the query string narrow the report as on the command line."""
    port = port_of(daemon)
    _, _, body = await get(port, f"/api/reports/departments?{MARCH}&department=Sales")
    assert [r["department"] for r in json.loads(body)["rows"]] == ["Sales", "Sales North"]
    _, _, body = await get(port, f"/api/reports/extensions?{MARCH}&direction=all&class=international,national")
    assert json.loads(body)["totals"]["calls"] == 7


async def test_bad_parameters_answer_400_with_the_reason(daemon: Daemon) -> None:
    """A typo in the URL says what is wrong instead of an empty or wrong report."""
    port = port_of(daemon)
    status, _, body = await get(port, "/api/reports/extensions?from=yesterday")
    assert status == 400 and b"from: expected a date" in body
    status, _, body = await get(port, f"/api/reports/extensions?{MARCH}&format=xml")
    assert status == 400 and b"format:" in body
    status, _, _ = await get(port, "/api/reports/everything")
    assert status == 404


async def test_index_lists_departments_for_a_client(daemon: Daemon) -> None:
    """A client builds its department filter from /api/reports, Unassigned included."""
    _, _, body = await get(port_of(daemon), "/api/reports")
    data = json.loads(body)
    assert [d["name"] for d in data["departments"]] == ["Company", "Sales", "Sales North", "Support", "Unassigned"]
    assert data["currency"] == "EUR" and "international" in data["classes"]


async def test_token_is_required_when_configured(tmp_path: Path) -> None:
    """With [http] token set, reports need it (header or ?token=); without it they answer 401."""
    async with reports_daemon(tmp_path, token=REPORT_TOKEN) as d:
        port = port_of(d)
        assert (await get(port, f"/api/reports/extensions?{MARCH}"))[0] == 401
        assert (await get(port, f"/api/reports/extensions?{MARCH}&token={REPORT_TOKEN}"))[0] == 200
        status, _, _ = await get(port, f"/api/reports/days?{MARCH}", {"Authorization": f"Bearer {REPORT_TOKEN}"})
        assert status == 200


async def test_reload_takes_new_departments_and_keeps_old_on_error(daemon: Daemon, tmp_path: Path) -> None:
    """After SIGHUP with new departments, reports re-attribute at once; a contradictory file is refused."""
    port = port_of(daemon)
    without_support = [dep for dep in DEPARTMENTS if dep["name"] != "Support"]
    for listener in daemon.reload_listeners:
        listener(settings_for(daemon.settings.database.path, without_support))
    _, _, body = await get(port, f"/api/reports/extensions?{MARCH}&extension=300")
    assert json.loads(body)["rows"][0]["department"] == "Unassigned"
    clash = [*without_support, {"name": "Other", "extensions": ["200-209"]}]
    for listener in daemon.reload_listeners:
        listener(settings_for(daemon.settings.database.path, clash))
    _, _, body = await get(port, "/api/reports")
    assert "Other" not in [x["name"] for x in json.loads(body)["departments"]]


# ---- bounded pages, streamed exports, the reports' own threads (issue 11, findings 4 and 13) ----


@pytest.mark.parametrize("size", ["0", "-1", "1001", "99999999999999999999"])
async def test_every_page_is_bounded(daemon: Daemon, size: str) -> None:
    """page_size=0 once returned every call (102 MB for 403k calls): over HTTP a page holds at most
    MAX_PAGE_SIZE calls, and anything else is a 400 that says so and where every call is."""
    status, _, body = await get(port_of(daemon), f"/api/reports/calls?{MARCH}&page_size={size}")
    assert status == 400, body
    assert body.startswith(b"page_size: expected a whole number from 1 to 1000"), body
    status, _, body = await get(port_of(daemon), f"/api/reports/calls?{MARCH}&page_size=1000")
    assert status == 200 and json.loads(body)["page_size"] == MAX_PAGE_SIZE == 1000


@pytest.mark.parametrize("query", ["from=9999-12-01", "from=9999-12-01&to=9999-12-31", "from=9999-12&to=9999-12",
                                   "from=0001-01-01&to=0001-01-31", "from=1979-12-01&to=1979-12-31",
                                   "from=2026-03-01&to=2100-01-01", "to=9999-12-31"])
async def test_dates_outside_any_call_are_400_not_500(daemon: Daemon, query: str) -> None:
    """from=9999-12-01 gave a 500 (a date overflow in a worker thread): a parameter's fault is a 400 naming it."""
    for kind in ("calls", "days", "extensions"):
        status, _, body = await get(port_of(daemon), f"/api/reports/{kind}?{query}")
        assert status == 400, (kind, query, body)
        assert b"expected a date" in body and b"Traceback" not in body


async def test_all_calls_as_csv_stream_exactly_what_the_cli_writes(daemon: Daemon) -> None:
    """calls?format=csv is every call of the range (page and page_size do not apply), streamed in chunks from
    a cursor, and byte for byte the CSV `smdrd report calls --format csv` writes, filters included."""
    ctx = context_from(daemon.settings)
    for extra in ("", "&department=Sales", "&direction=all&page=3&page_size=1"):
        status, headers, body = await get(port_of(daemon), f"/api/reports/calls?{MARCH}{extra}&format=csv")
        assert status == 200 and headers["Transfer-Encoding"] == "chunked"
        assert headers["Content-Disposition"] == 'attachment; filename="smdrd-calls-2026-03-01-2026-03-31.csv"'
        params = {"kind": ["calls"], "from": ["2026-03-01"], "to": ["2026-03-31"], "page_size": ["0"]}
        for key, _, value in (p.partition("=") for p in extra.split("&") if p):
            if key not in ("page", "page_size"):
                params[key] = [value]
        conn = SqliteReports(daemon.settings.database.path)
        try:
            expected = render(run_report(conn, parse_query(params, ctx), ctx), "csv")
        finally:
            conn.close()
        assert body.decode() == expected, extra
        assert body.decode().splitlines()[-1].startswith("Total,")


async def test_a_large_csv_export_spans_many_chunks(tmp_path: Path) -> None:
    """3,000 calls (more than one CHUNK of CSV): streamed whole, one line per call plus header and Total."""
    db = tmp_path / "smdrd.db"
    many = [Call(f"2026-03-{1 + i // 120:02d}T{8 + i // 60 % 2:02d}:{i % 60:02d}:00", str(200 + i % 50),
                 "outbound", "national", 60 + i, "0.25", key=f"K{i}") for i in range(3000)]
    await write_calls(db, many)
    async with running_daemon(settings_for(db, http={"listen": "127.0.0.1:0"}), features=("reports",)) as d:
        status, _, body = await get(port_of(d), f"/api/reports/calls?{MARCH}&format=csv")
        assert status == 200 and len(body) > 2 * CHUNK
        assert body.startswith(b"\xef\xbb\xbfstart,") and body.count(b"\xef\xbb\xbf") == 1  # one BOM, first
        rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
        assert len(rows) == 3000 + 2 and rows[-1][0] == "Total"
        service = d.features.reports
        assert service is not None and service.active == 0, "the export's slot was not given back"


async def test_reports_beyond_max_reports_answer_503_with_retry_after(tmp_path: Path) -> None:
    """At most [http] max_reports report requests run or wait at once: one more is a 503 with Retry-After,
    not another queued query; once a slot is free, reports are served again."""
    async with reports_daemon(tmp_path, max_reports=1) as d:
        service = d.features.reports
        assert service is not None and service.max_reports == 1
        assert service._enter()  # a report in progress holds the one slot
        status, headers, body = await get(port_of(d), f"/api/reports/extensions?{MARCH}")
        assert status == 503 and headers["Retry-After"] == str(RETRY_AFTER) and b"too many report" in body
        service._leave()
        assert (await get(port_of(d), f"/api/reports/extensions?{MARCH}"))[0] == 200


async def test_reports_run_on_their_own_threads_never_the_default_executor(tmp_path: Path) -> None:
    """Twelve concurrent reports once queued in the default executor in front of the file sources' reads
    (commit latency 0.10 s -> 1.88 s). They run on at most report_workers "smdrd-report" threads, and the
    default executor (asyncio's threads) gains none. The client here uses no thread of its own."""
    def threads(prefix: str) -> set[str]:
        return {t.name for t in threading.enumerate() if t.name.startswith(prefix)}

    async with reports_daemon(tmp_path, max_reports=12) as daemon:
        before = threads("asyncio_")
        results = await asyncio.gather(*(raw_get(port_of(daemon), f"/api/reports/{kind}?{MARCH}&direction=all")
                                         for kind in ("extensions", "departments", "calls", "days") * 3))
        assert [status for status, _, _ in results] == [200] * 12
        assert threads("asyncio_") == before, "a report ran in the default executor"
        report_threads = threads("smdrd-report")
        assert 1 <= len(report_threads) <= daemon.settings.http.report_workers == 2
