"""Calls, alerts and upload in a real headless Chromium against a real daemon process: search a call, open its
page and see its raw line; acknowledge and snooze an alert; upload a log with a few bad lines and see them
listed by line number. Skipped only when Chromium, chromedriver or selenium is missing and ``CI`` is unset
(as `tests.test_reports_browser`)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest

from tests.test_console_alerts import alert, store_alerts
from tests.test_console_browser import at, shows, sign_in, submit
from tests.test_console_http import Site
from tests.test_console_upload import BAD_AT, log_file
from tests.test_reports_browser import MISSING, browser

__all__ = ["browser"]  # the fixture

pytestmark = pytest.mark.skipif(bool(MISSING) and not os.environ.get("CI"),
                                reason=f"not installed: {', '.join(MISSING)} (under CI=true this fails)")


@pytest.fixture
def site(console_site: Site) -> Site:
    return console_site


def test_search_a_call_and_read_its_raw_line(site: Site, browser: Any) -> None:
    sign_in(browser, "alice", f"{site.base}/calls?from=2026-03-01&to=2026-03-31")
    assert shows(browser, "Calls from 2026-03-01 to 2026-03-31")
    box = browser.find_element("id", "f-extension")
    box.clear()
    box.send_keys("300")
    submit(browser, browser.find_element("id", "search"))
    assert shows(browser, "0:10:00"), "the international call of 300, ten minutes"
    rows = browser.find_elements("css selector", "#calls tbody tr")
    assert len(rows) == 2 and all("300" in r.text for r in rows)
    assert "extension=300" in browser.current_url, "the search is in the URL: a bookmark gives it again"
    rows[0].find_element("css selector", "a.call-link").click()
    assert shows(browser, "Journal line")
    raw = browser.find_element("css selector", "pre.raw-line").text
    assert raw.startswith("line "), raw
    assert "international" in browser.find_element("id", "rating").text
    assert browser.find_element("id", "tester").get_attribute("href").startswith(f"{site.base}/rates/test?number=")


def test_acknowledge_and_snooze_an_alert(site: Site, browser: Any) -> None:
    asyncio.run(store_alerts(site.daemon.db, [alert("high_risk:browser:1", "high_risk", "critical", "Sales", "a call "
                                                    "to Cuba"), alert("cost:browser:2", "cost", "warning", "Support",
                                                                      "a call over 9.00 EUR")]))
    sign_in(browser, "alice", f"{site.base}/alerts")
    assert shows(browser, "a call to Cuba")
    row = browser.find_element("css selector", 'tr[data-alert="high_risk:browser:1"]')
    submit(browser, row.find_element("css selector", "button.ack"))
    assert at(browser, f"{site.base}/alerts")
    assert "high_risk:browser:1" not in browser.find_element("id", "alerts").get_attribute("innerHTML"), \
        "acknowledged: no longer among the open ones"
    row = browser.find_element("css selector", 'tr[data-alert="cost:browser:2"]')
    row.find_element("css selector", "select[name=minutes]").send_keys("4 hours")
    submit(browser, row.find_element("css selector", "button.snooze"))
    assert at(browser, f"{site.base}/alerts")
    browser.get(f"{site.base}/alerts?state=any")
    assert shows(browser, "acknowledged by alice at")
    assert shows(browser, "snoozed by alice until")


def test_upload_a_log_and_see_its_bad_lines_by_number(site: Site, browser: Any, tmp_path: Path) -> None:
    saved = tmp_path / "pbx-log.smdr"
    saved.write_bytes(log_file())
    sign_in(browser, "alice", f"{site.base}/upload")
    assert shows(browser, "Upload a PBX log")
    browser.find_element("id", "f-file").send_keys(str(saved))
    browser.find_element("id", "upload").click()
    assert shows(browser, "pbx-log.smdr")
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 90, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: d.find_element("id", "job").get_attribute("data-state") != "running")
    assert browser.find_element("id", "job").get_attribute("data-state") == "done"
    numbers = [r.find_elements("css selector", "td")[0].text
               for r in browser.find_elements("css selector", "#failed-lines tbody tr")]
    assert numbers == [str(n) for n in BAD_AT]
    refused = [e["message"] for e in browser.get_log("browser")
               if e["level"] == "SEVERE" and "favicon" not in e["message"]]
    assert not refused, "the job page's script runs under its Content-Security-Policy"
