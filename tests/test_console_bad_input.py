"""Requests no form sends, answered with a 400 that names what is wrong, never a 500 (a review of the entry
points beside the PBX lines): too many query parameters, a page cursor beyond the store's integers, JSON
nested too deeply for the parser, days no call can have. On the shared console daemon
(`tests.conftest.console_site`)."""

from __future__ import annotations

import aiohttp
import pytest

from smdrd.console.rates import RateAdmin
from tests.test_console_calls import session, signed_in, site
from tests.test_console_http import Site

__all__ = ["session", "site"]


async def test_too_many_query_parameters_is_a_400(site: Site, session: aiohttp.ClientSession) -> None:
    await signed_in(site, session, "alice")
    many = "&".join(f"k{i}=1" for i in range(300))
    for path in ("/api/reports/extensions", "/healthz", "/alerts", "/calls", "/api/calls", "/api/alerts",
                 "/directory/extensions", "/audit", "/reports", "/no-such-page"):
        async with session.get(f"{site.base}{path}?{many}") as r:
            assert r.status == 400 and "more than 200 parameters" in await r.text(), path
        async with session.get(f"{site.base}{path}?{many}", headers={"Accept": "text/html"}) as r:
            assert r.status == 400 and "more than 200 parameters" in await r.text(), path
    async with session.get(f"{site.base}/calls?" + "&".join(f"k{i}=1" for i in range(200))) as r:
        assert r.status == 200, "200 parameters are still a query"


@pytest.mark.parametrize("after", ["99999999999999999999999.1", "-99999999999999999999.1", "1.99999999999999999999"])
async def test_a_cursor_beyond_the_stores_integers_is_a_400(site: Site, session: aiohttp.ClientSession,
                                                            after: str) -> None:
    await signed_in(site, session, "alice")
    async with session.get(f"{site.base}/api/calls", params={"after": after, "sort": "cost"}) as r:
        assert r.status == 400 and "after" in (await r.json())["fields"]


async def test_json_nested_too_deeply_is_a_400(site: Site, session: aiohttp.ClientSession) -> None:
    await signed_in(site, session, "alice")
    async with session.get(f"{site.base}/alerts") as page:
        csrf = (await page.text()).split('name="csrf" value="', 1)[1].split('"', 1)[0]
    async with session.post(f"{site.base}/api/alerts/x/snooze", data=b"[" * 60_000,
                            headers={"X-CSRF-Token": csrf, "Content-Type": "application/json"}) as r:
        assert r.status == 400 and (await r.json()) == {"error": "expected a JSON object"}


@pytest.mark.parametrize(("first", "last", "field"), [("9999-12-30", "9999-12-31", "from"),
                                                     ("0001-01-01", "0001-01-02", "from"),
                                                     ("2026-03-01", "9999-12-31", "to")])
def test_a_rerate_of_days_no_call_can_have_is_named(first: str, last: str, field: str) -> None:
    *_, errors = RateAdmin.period({"from": first, "to": last})
    assert "expected a date from 1980-01-01 to 2099-12-31" in errors[field]


@pytest.mark.parametrize(("minutes", "problem"), [("-5", "minutes: expected a whole number of minutes above 0"),
                                                   ("ten", "minutes: expected a whole number"),
                                                   ("", "until: choose how long"),
                                                   ("0", "until: expected a time in the future")])
def test_a_snooze_of_no_sensible_length_is_named(minutes: str, problem: str) -> None:
    from zoneinfo import ZoneInfo

    from smdrd.console.alerts_inbox import snooze_until
    from smdrd.reports.queries import context_from
    from tests.test_reports import settings_for

    ctx = context_from(settings_for("unused.db"))
    assert ctx.timezone == ZoneInfo("Europe/Warsaw")
    end, why = snooze_until({"minutes": minutes}, ctx, now=1_800_000_000)
    assert end is None and why.startswith(problem)
