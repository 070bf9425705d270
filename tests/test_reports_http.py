"""The reports on the daemon's HTTP server, over real loopback HTTP: JSON, CSV, errors, token, page, reload."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from smdrd.daemon import Daemon
from smdrd.reports.queries import context_from, parse_query, run_report
from smdrd.reports.render import to_dict
from smdrd.reports.rollup import connect_readonly
from tests.test_reports import CALLS, DEPARTMENTS, settings_for, write_calls


async def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    def fetch() -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    return await asyncio.to_thread(fetch)


async def start(tmp_path: Path, **http: Any) -> tuple[Daemon, asyncio.Task[int]]:
    db = tmp_path / "smdrd.db"
    await write_calls(db, CALLS)
    settings = settings_for(db, http={"listen": "127.0.0.1:0", **http})
    daemon = Daemon(settings, extensions=("smdrd.reports.http",))
    task = asyncio.create_task(daemon.run())
    await asyncio.wait_for(daemon.ready.wait(), 10)
    return daemon, task


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    d, task = await start(tmp_path)
    yield d
    d.request_stop()
    await task


def port_of(d: Daemon) -> int:
    assert d.http is not None
    return d.http.bound_port


MARCH = "from=2026-03-01&to=2026-03-31"


async def test_json_report_matches_the_builder(daemon: Daemon) -> None:
    """/api/reports/extensions returns exactly what the CLI's JSON holds, with exact money strings."""
    status, headers, body = await get(port_of(daemon), f"/api/reports/extensions?{MARCH}")
    assert status == 200 and headers["Content-Type"] == "application/json"
    data = json.loads(body)
    ctx = context_from(daemon.settings)
    conn = connect_readonly(daemon.settings.database.path)
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
        lines = list(csv.reader(io.StringIO(body.decode())))
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


async def test_index_lists_departments_for_the_page(daemon: Daemon) -> None:
    """The page builds its department filter from /api/reports, Unassigned included."""
    _, _, body = await get(port_of(daemon), "/api/reports")
    data = json.loads(body)
    assert [d["name"] for d in data["departments"]] == ["Company", "Sales", "Sales North", "Support", "Unassigned"]
    assert data["currency"] == "EUR" and "international" in data["classes"]


async def test_page_is_self_contained_with_a_strict_policy(daemon: Daemon) -> None:
    """The page loads nothing from elsewhere (it must work without internet), and only its own script runs."""
    status, headers, body = await get(port_of(daemon), "/reports")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'sha256-" in policy and "connect-src 'self'" in policy
    text = body.decode()
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text
    assert ".innerHTML" not in text and "insertAdjacentHTML" not in text and "<script src" not in text


async def test_token_is_required_when_configured(tmp_path: Path) -> None:
    """With [http] token set, reports need it (header or ?token=); without it they answer 401."""
    d, task = await start(tmp_path, token="s3cret")
    try:
        port = port_of(d)
        assert (await get(port, f"/api/reports/extensions?{MARCH}"))[0] == 401
        assert (await get(port, "/reports"))[0] == 401
        assert (await get(port, f"/api/reports/extensions?{MARCH}&token=s3cret"))[0] == 200
        status, _, _ = await get(port, f"/api/reports/days?{MARCH}", {"Authorization": "Bearer s3cret"})
        assert status == 200
    finally:
        d.request_stop()
        await task


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
