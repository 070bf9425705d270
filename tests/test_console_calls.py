"""The console's call search and call pages over HTTP, against a real daemon process on a real port: filters in
the URL, keyset pages, sorting, a page per call with its raw line, legs and rating; each role's view (a manager
sees only their departments' calls); a wrong value named beside its field, never a 500. The search's SQL is
checked to use the calls' indexes."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import MultiDict

from smdrd.accounts import hash_password
from smdrd.console.calls import parse_search
from smdrd.reports.queries import context_from
from smdrd.store import open_store
from smdrd.store.api import Actor, CallQuery
from smdrd.store.call_reads import search_sql
from smdrd.store.sqlite.schema import connect
from smdrd.testing import DaemonProcess, daemon_config, free_port
from tests.test_console_http import PASSWORDS, Site, sign_in
from tests.test_reports import CALLS, DEPARTMENTS, settings_for, write_calls

SERVICE_TOKEN = "calls-service-token-0123456789"
MARCH = {"from": "2026-03-01", "to": "2026-03-31"}


def serve(folder: Path, **sections: Any) -> Iterator[Site]:
    """A daemon on ``folder``'s database with users alice (admin), victor (viewer) and maria (manager of
    Sales), the report tests' departments and the service token; stopped, its log checked, at the end."""
    accounts = open_store(folder / "smdrd.db").accounts()  # in-process: quicker than three `smdrd user add`
    try:
        for name, role, departments in (("alice", "admin", ()), ("victor", "viewer", ()),
                                        ("maria", "manager", ("Sales",))):
            accounts.add_user(name, role, hash_password(PASSWORDS[name]), departments, at=int(time.time()),
                              actor=Actor("test"))
    finally:
        accounts.close()
    port = free_port()
    http = {"listen": f"127.0.0.1:{port}", "token": SERVICE_TOKEN, **sections.pop("http", {})}
    daemon = DaemonProcess(folder, daemon_config(folder, http=http, departments=DEPARTMENTS, **sections))
    try:
        yield Site(daemon.start(), port)
        daemon.terminate()
        daemon.assert_clean_log()
    finally:
        daemon.kill()


def console_daemon(folder: Path) -> Iterator[Site]:
    """The daemon of `tests.conftest.console_site`: calls, names, alerts, users (see there)."""
    from tests.test_console_alerts import store_alerts

    db = folder / "smdrd.db"
    asyncio.run(write_calls(db, CALLS))
    asyncio.run(store_alerts(db))
    directory = open_store(db).directory()
    try:
        directory.learn_names([("300", "Reception <desk>")], at=0)
    finally:
        directory.close()
    yield from serve(folder, tariff={"currency": "EUR"}, retention={"calls_days": 0, "lines_days": 0},
                     privacy={"mask_digits": 3}, http={"max_upload_mb": 1})


@pytest.fixture
def site(console_site: Site) -> Site:
    return console_site


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                     timeout=aiohttp.ClientTimeout(total=30)) as s:
        yield s


async def signed_in(site: Site, session: aiohttp.ClientSession, name: str) -> aiohttp.ClientSession:
    assert (await sign_in(site, session, name)).status == 303
    return session


async def api(session: aiohttp.ClientSession, url: str, **params: str) -> tuple[int, Any]:
    async with session.get(url, params=params) as response:
        return response.status, await response.json()


async def test_the_search_filters_sorts_and_pages_with_a_cursor(site: Site, session: aiohttp.ClientSession) -> None:
    await signed_in(site, session, "victor")
    status, body = await api(session, f"{site.base}/api/calls", **MARCH)
    assert status == 200
    calls = body["calls"]
    assert isinstance(calls, list)
    assert len(calls) == 11, "every March call, every direction and leg"
    starts = [c["start"] for c in calls]
    assert starts == sorted(starts, reverse=True), "newest first by default"
    # Pages of 4 follow each other with no gap and no repeat.
    seen: list[int] = []
    params = {**MARCH, "page_size": "4"}
    url = f"{site.base}/api/calls"
    while True:
        status, page = await api(session, url, **params)
        assert status == 200
        seen += [c["id"] for c in page["calls"]]
        if page["next"] is None:
            break
        params["after"] = str(page["next"])
    assert seen == [c["id"] for c in calls]
    _, by_cost = await api(session, url, **MARCH, sort="cost", order="desc", page_size="2")
    assert [c["cost"] for c in by_cost["calls"]] == ["3.50", "2.00"]
    _, mobile = await api(session, url, **MARCH, number="600123")
    assert [c["extension"] for c in mobile["calls"]] == ["201"]
    _, ext = await api(session, url, **MARCH, extension="205", cost_min="1")
    assert [c["cost"] for c in ext["calls"]] == ["2.00"]
    _, intl = await api(session, url, **MARCH, **{"class": "international"})
    assert {c["extension"] for c in intl["calls"]} == {"205", "300"}


async def test_the_search_page_works_without_javascript(site: Site, session: aiohttp.ClientSession) -> None:
    await signed_in(site, session, "alice")
    async with session.get(f"{site.base}/calls", params={**MARCH, "extension": "300", "page_size": "1"}) as r:
        assert r.status == 200
        text = await r.text()
    assert 'value="300"' in text, "the filter is echoed in its field"
    assert "300 Reception &lt;desk&gt;" in text, "the extension's name beside its number, as text"
    assert "0:10:00" in text and "3.50 EUR" in text, "duration h:mm:ss, money with its currency"
    assert 'id="next-page"' in text and "after=" in text


async def test_a_call_page_shows_its_raw_line_legs_and_rating(site: Site, session: aiohttp.ClientSession) -> None:
    await signed_in(site, session, "alice")
    _, found = await api(session, f"{site.base}/api/calls", **MARCH, extension="301")
    (leg,) = found["calls"]
    status, call = await api(session, f"{site.base}/api/calls/{leg['id']}")
    assert status == 200
    assert [lg["extension"] for lg in call["legs"]] == ["300", "301"]
    assert call["rating"]["rule"] == "rule" and call["rating"]["call_class"] == "national"
    assert call["lines"][0]["raw"].startswith("line ")
    assert str(call["tester"]).startswith("/rates/test?number=")
    async with session.get(f"{site.base}/calls/{leg['id']}") as page:
        assert page.status == 200
        text = await page.text()
    assert "Journal line" in text and re.search(r'<pre class="raw-line">line \d+</pre>', text)
    assert 'href="/rates/test?number=' in text
    for missing in ("999999", "abc", "1" * 30):
        async with session.get(f"{site.base}/calls/{missing}") as page:
            assert page.status == 404


async def test_numbers_are_masked_for_the_roles_that_need_not_see_them(
        site: Site, session: aiohttp.ClientSession) -> None:
    """[privacy] mask_digits = 3: a viewer sees 0221234***, an admin the whole number."""
    await signed_in(site, session, "victor")
    _, found = await api(session, f"{site.base}/api/calls", **MARCH, extension="211")
    (call,) = found["calls"]
    assert call["number"] == "0221234***" and call["e164"] == "+48221234***"
    status, detail = await api(session, f"{site.base}/api/calls/{call['id']}")
    assert status == 200 and detail["rating"]["e164"] == "+48221234***" and detail["tester"] is None
    async with session.get(f"{site.base}/calls/{call['id']}") as page:
        text = await page.text()
    assert "0221234567" not in text and "0221234***" in text
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as admin:
        await signed_in(site, admin, "alice")
        _, whole = await api(admin, f"{site.base}/api/calls/{call['id']}")
    assert whole["number"] == "0221234567"


async def test_a_masked_number_search_cannot_tell_the_hidden_digits(site: Site,
                                                                    session: aiohttp.ClientSession) -> None:
    """With the last 3 digits hidden from a viewer, searching the exact whole number of a call and a near miss
    that differs only in those digits answers the same calls, in the page and the JSON, with a note beside the
    field; so does a part of a number that reaches into the hidden digits. An admin (numbers whole) tells them
    apart, so the check is not vacuous."""
    exact, near = "0221234567", "0221234999"
    parts = ("34567", "34999")

    async def ids(client: aiohttp.ClientSession, number: str) -> list[int]:
        status, body = await api(client, f"{site.base}/api/calls", **MARCH, direction="outbound", number=number)
        assert status == 200, body
        return [c["id"] for c in body["calls"]]

    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as admin:
        await signed_in(site, admin, "alice")
        whole = await ids(admin, exact)
        assert whole and await ids(admin, near) == [], "an admin's search compares every digit"
    await signed_in(site, session, "victor")
    seen = await ids(session, exact)
    assert seen == await ids(session, near) and set(whole) <= set(seen)
    assert await ids(session, parts[0]) == await ids(session, parts[1]) == seen
    assert await ids(session, "567") == await ids(session, "568") == [], "hidden digits alone find nothing"
    _, body = await api(session, f"{site.base}/api/calls", **MARCH, number=exact, page_size="2")
    assert "0221234***" in body["notes"]["number"] and len(body["calls"]) == 2 and body["next"]
    pages = [c["id"] for c in body["calls"]]
    while body["next"]:  # pages of 2 follow each other with no gap and no repeat
        _, body = await api(session, f"{site.base}/api/calls", **MARCH, number=exact, page_size="2",
                            after=str(body["next"]))
        pages += [c["id"] for c in body["calls"]]
    _, every = await api(session, f"{site.base}/api/calls", **MARCH, number=exact)
    assert pages == [c["id"] for c in every["calls"]]
    for number in (exact, near):
        params = {**MARCH, "direction": "outbound", "number": number}
        async with session.get(f"{site.base}/calls", params=params) as page:
            text = await page.text()
        assert page.status == 200 and 'id="n-number"' in text and 'aria-describedby="n-number"' in text
        table = text[text.index("<tbody>"):text.index("</table>")]
        assert table.count('class="call-link"') == len(seen) and "0221234***" in table and exact not in table


async def test_a_manager_sees_only_their_departments_calls(site: Site, session: aiohttp.ClientSession) -> None:
    await signed_in(site, session, "maria")
    status, body = await api(session, f"{site.base}/api/calls", **MARCH)
    assert status == 200
    # Sales is 200-209 and Sales North 210-219; 205 moved to Support on 16 March.
    got = sorted((c["extension"], c["start"][:10]) for c in body["calls"])
    assert got == [("201", "2026-03-02"), ("201", "2026-03-03"), ("201", "2026-03-06"), ("201", "2026-03-06"),
                   ("205", "2026-03-10"), ("211", "2026-03-05")]
    _, support = await api(session, f"{site.base}/api/calls", **MARCH, extension="300")
    assert support["calls"] == []
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {SERVICE_TOKEN}"}) as service:
        _, every = await api(service, f"{site.base}/api/calls", **MARCH, extension="300")
    other = every["calls"][0]["id"]
    async with session.get(f"{site.base}/api/calls/{other}") as r:
        assert r.status == 404, "another department's call does not exist for them"
    async with session.get(f"{site.base}/calls/{other}") as r:
        assert r.status == 404


BAD = [
    ({"from": "2026-02-30"}, "from"), ({"to": "yesterday"}, "to"), ({"from": "2026-03-10", "to": "2026-03-01"}, "to"),
    ({"from": "2020-01-01", "to": "2026-01-01"}, "from"), ({"cost_min": "-1"}, "cost_min"),
    ({"cost_min": "abc"}, "cost_min"), ({"cost_max": "1e999999"}, "cost_max"), ({"page_size": "100000"}, "page_size"),
    ({"sort": "name"}, "sort"), ({"class": "weird"}, "class"), ({"after": "x"}, "after"),
    ({"direction": "sideways"}, "direction"),
]


async def test_a_bad_value_is_named_beside_its_field_never_a_500(site: Site, session: aiohttp.ClientSession) -> None:
    await signed_in(site, session, "victor")
    for params, field in BAD:
        async with session.get(f"{site.base}/calls", params=params) as page:
            assert page.status == 400, params
            text = await page.text()
        assert f'id="e-{field}"' in text, (params, text[-3000:])
        status, body = await api(session, f"{site.base}/api/calls", **params)
        assert status == 400 and field in body["fields"], params


async def test_signed_out_nobody_reads_calls(site: Site, session: aiohttp.ClientSession) -> None:
    async with session.get(f"{site.base}/api/calls") as r:
        assert r.status == 401
    async with session.get(f"{site.base}/calls", headers={"Accept": "text/html"}, allow_redirects=False) as r:
        assert r.status == 303


@given(st.dictionaries(st.sampled_from(["from", "to", "number", "extension", "cost_min", "cost_max", "sort", "order",
                                        "page_size", "after", "class", "direction"]), st.text(max_size=30)))
@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
def test_any_query_string_gives_a_search_or_named_problems(params: dict[str, str]) -> None:
    ctx = context_from(settings_for(Path("unused.db")))
    form = parse_search(MultiDict(params), ctx, date(2026, 3, 31))
    assert (form.query is None) == bool(form.errors)
    assert set(form.errors) <= {*params, "from", "to"}


def test_every_search_reads_through_an_index(tmp_path: Path) -> None:
    """On a database of any size the search is a range read of ``calls_start`` (or ``calls_extension``), never
    a scan of the whole table (bench/calls.py times it on a million calls)."""
    conn = connect(str(tmp_path / "plan.db"))
    conn.execute("CREATE TEMP TABLE report_selection (extension TEXT, first TEXT, last TEXT, site TEXT)")
    try:
        for q in (CallQuery(0, 10), CallQuery(0, 10, number="600", sort="cost"),
                  CallQuery(0, 10, extension="201", after=(5, 7)), CallQuery(0, 10, call_id="x", account="9"),
                  CallQuery(0, 10, sort="duration", descending=False, scope=(("201", "2026-01-01", "2026-12-31"),))):
            sql, params = search_sql(q)
            plan = " | ".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            assert re.search(r"SEARCH c USING (INDEX|COVERING INDEX) calls_(start|extension)", plan), plan
            if q.number and not q.extension:
                assert "calls_start_numbers" in plan, plan
            assert "SCAN c" not in plan, plan
    finally:
        conn.close()


def test_times_are_read_in_the_sites_timezone() -> None:
    ctx = context_from(settings_for(Path("unused.db")))
    form = parse_search(MultiDict({"from": "2026-03-01", "to": "2026-03-01"}), ctx, date(2026, 3, 31))
    assert form.query is not None
    assert form.query.lo == int(
        __import__("datetime").datetime(2026, 3, 1, tzinfo=ZoneInfo("Europe/Warsaw")).timestamp())
    assert form.query.hi - form.query.lo == 86400


def test_the_search_is_read_only(tmp_path: Path) -> None:
    conn = connect(str(tmp_path / "ro.db"))
    conn.close()
    reader = open_store(tmp_path / "ro.db").calls()
    try:
        with pytest.raises(sqlite3.OperationalError):
            reader.conn.execute("DELETE FROM calls")  # type: ignore[attr-defined]
    finally:
        reader.close()
