"""The overview in a real headless Chromium against a real daemon process: an admin signs in and sees today's
figures; a call sent to the daemon's PBX port changes them without a reload (server-sent events); a manager sees
only their departments; the page is laid out at 1366 and 390 px wide (screenshots kept for a person to look at,
in ``$SMDRD_SCREENSHOTS`` when set).

Skipped only when Chromium, chromedriver or selenium is missing AND the ``CI`` environment variable is unset
(as `tests.test_reports_browser`).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.test_console_browser import at, shows, sign_in
from tests.test_console_overview import Overview, avaya_line, site
from tests.test_reports_browser import MISSING, browser

__all__ = ["browser", "site"]  # the fixtures

pytestmark = pytest.mark.skipif(bool(MISSING) and not os.environ.get("CI"),
                                reason=f"not installed: {', '.join(MISSING)} (under CI=true this fails)")


def text(driver: Any, css: str) -> str:
    """The element's text; the live updates replace the figures, so an element found just before one is
    stale when read: find it again."""
    from selenium.common.exceptions import StaleElementReferenceException

    for _ in range(5):
        try:
            return str(driver.find_element("css selector", css).text)
        except StaleElementReferenceException:
            continue
    return str(driver.find_element("css selector", css).text)


def wait_for(driver: Any, condition: Any, within: float = 45) -> bool:
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, within, ignored_exceptions=(StaleElementReferenceException,)).until(condition)
    except TimeoutException:
        return False
    return True


def test_the_overview_follows_a_new_call_without_a_reload(site: Overview, browser: Any,
                                                           tmp_path: Path) -> None:
    browser.set_window_size(1366, 900)
    sign_in(browser, "alice", f"{site.base}/login?next=/")
    assert at(browser, f"{site.base}/"), browser.current_url
    assert shows(browser, "Cost by class")
    assert text(browser, "#ov-today .ov-calls") == "5"
    assert text(browser, "#ov-today .ov-cost") == "130.30 EUR"
    assert wait_for(browser, lambda d: "Live" in text(d, "#overview-status")), text(browser, "#overview-status")
    browser.execute_script("window.smdrdNoReload = true")
    with socket.create_connection(("127.0.0.1", site.pbx)) as pbx:
        pbx.sendall(avaya_line("203", "221234567", 95))
    assert wait_for(browser, lambda d: text(d, "#ov-today .ov-calls") == "6"), text(browser, "#ov-today")
    assert browser.execute_script("return window.smdrdNoReload") is True, "the page was not reloaded"
    assert "203" in text(browser, "#ov-extensions-today")
    shots = Path(os.environ.get("SMDRD_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(shots / "overview-1366.png"))
    assert browser.execute_script("return [...document.querySelectorAll('.ov-grid > section')].every("
                                  "s => s.scrollWidth <= s.clientWidth)"), "the top-N tables fit at 1366 px"
    browser.execute_script("document.getElementById('ov-budgets').scrollIntoView()")
    browser.save_screenshot(str(shots / "overview-1366-budgets.png"))
    browser.set_window_size(390, 844)
    browser.save_screenshot(str(shots / "overview-390.png"))
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth"), \
        "no sideways scrolling of the page at 390 px (a wide table scrolls in its own box)"
    browser.set_window_size(1366, 900)


def test_a_manager_sees_only_their_departments(site: Overview, browser: Any) -> None:
    sign_in(browser, "maria", f"{site.base}/login?next=/")
    assert at(browser, f"{site.base}/"), browser.current_url
    budgets = text(browser, "#ov-budgets")
    assert "Sales" in budgets and "Support" not in budgets
    assert "301" not in text(browser, "#ov-extensions-today")
    assert wait_for(browser, lambda d: "Live" in text(d, "#overview-status"))
