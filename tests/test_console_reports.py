"""The console's reports page (``/reports``) over HTTP, as each role sees it, on the shared console daemon
(`tests.conftest.console_site`: the report tests' calls, alice admin, victor viewer, maria manager of Sales,
numbers masked for all but admins). The browser walk, JavaScript off, is tests/test_reports_browser.py."""

from __future__ import annotations

import html
import re

import aiohttp

from tests.test_console_calls import MARCH, api, session, signed_in, site
from tests.test_console_http import Site

__all__ = ["session", "site"]

PERIOD = f"from={MARCH['from']}&to={MARCH['to']}"


async def page(session: aiohttp.ClientSession, url: str) -> tuple[int, str, dict[str, str]]:
    async with session.get(url) as response:
        return response.status, await response.text(), dict(response.headers)


def cells(text: str, key: str) -> list[str]:
    """The text of every body cell of column ``key`` (subtotal and totals rows left out)."""
    body = text[text.index('<table id="report">'):text.index("<tfoot>") if "<tfoot>" in text else None]
    return [html.unescape(cell) for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
            for cell in re.findall(rf'<td data-key="{key}"[^>]*>([^<]*)</td>', row)]


async def test_a_manager_is_offered_and_shown_only_their_departments(site: Site,
                                                                    session: aiohttp.ClientSession) -> None:
    await signed_in(site, session, "maria")
    status, text, _ = await page(session, f"{site.base}/reports?{PERIOD}")
    assert status == 200
    extensions = cells(text, "extension")
    # Sales is 200-209 and Sales North 210-219; 205 moved to Support on 16 March (its calls after are not hers).
    assert extensions == ["201", "205", "211"], extensions
    _, expected = await api(session, f"{site.base}/api/reports/extensions", **MARCH)
    total = f"{expected['totals']['cost']} EUR"
    assert f'<td data-key="cost" class="num">{total}</td></tr></tfoot>' in text, "the totals are her API's"
    options = re.findall(r'<option value="([^"]*)"', text[text.index('id="department"'):])
    assert "Support" not in options and "Company" not in options and {"Sales", "Sales North"} <= set(options)
    assert "Reception" not in text, "no other department's names"
    status, text, _ = await page(session, f"{site.base}/reports?{PERIOD}&department=Support&kind=calls")
    assert status == 403 and 'id="e-department"' in text and 'id="report"' not in text
    # A department that does not exist is named wrong with her departments as the choices, not everyone's.
    status, text, _ = await page(session, f"{site.base}/reports?{PERIOD}&department=Nowhere")
    assert status == 400 and "(known: Sales, Sales North)" in text and "Support" not in text
    async with session.get(f"{site.base}/api/reports/calls", params={**MARCH, "department": "Nowhere"}) as r:
        assert r.status == 400 and "(known: Sales, Sales North)" in (answer := await r.text()), answer
        assert "Support" not in answer and "Unassigned" not in answer
    for kind in ("departments", "calls", "department-details", "trunks"):
        status, text, _ = await page(session, f"{site.base}/reports?{PERIOD}&kind={kind}&direction=all")
        assert status == 200 and "Support" not in text.split('id="report"')[1] and "Reception" not in text, kind


async def test_a_viewer_sees_every_department_with_numbers_masked(site: Site,
                                                                 session: aiohttp.ClientSession) -> None:
    await signed_in(site, session, "victor")
    status, text, headers = await page(session, f"{site.base}/reports?{PERIOD}&kind=calls&extension=300")
    assert status == 200
    assert cells(text, "number") == ["0221234***", "0221234***"] and "0221234567" not in text
    assert cells(text, "name") == ["Reception <desk>", "Reception <desk>"], "names beside extensions, as text"
    assert "Reception &lt;desk&gt;" in text
    assert "default-src 'none'" in headers["Content-Security-Policy"] and "<script" not in text
    status, text, _ = await page(session, f"{site.base}/reports?{PERIOD}&kind=departments")
    assert status == 200 and {"Sales", "Support"} <= set(cells(text, "department"))
    assert 'id="csv" href="/api/reports/departments?from=2026-03-01&amp;to=2026-03-31&amp;format=csv"' in text
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as admin:
        await signed_in(site, admin, "alice")
        _, text, _ = await page(admin, f"{site.base}/reports?{PERIOD}&kind=calls&extension=300")
    assert cells(text, "number") == ["0221234567", "0221234567"], "an admin sees them whole"


async def test_a_viewer_may_not_change_anything_here(site: Site, session: aiohttp.ClientSession) -> None:
    """The page is a GET form: there is nothing to post."""
    await signed_in(site, session, "victor")
    async with session.post(f"{site.base}/reports", data={"kind": "calls"}) as response:
        assert response.status == 405
