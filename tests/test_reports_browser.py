"""The ``/reports`` page in a real headless Chromium: it loads, filters, sorts, charts, matches the JSON totals,
and shows markup that arrived from a PBX as text.

Skipped only when Chromium, chromedriver or selenium is missing AND the ``CI`` environment variable is unset:
under CI a missing browser fails, so the page is never silently untested.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from smdrd.daemon import Daemon
from smdrd.reports.render import hms
from smdrd.testing import running_daemon
from tests.test_reports import CALLS, Call, settings_for, write_calls

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
try:
    import selenium  # noqa: F401

    HAVE_SELENIUM = True
except ImportError:
    HAVE_SELENIUM = False
MISSING = [name for name, ok in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER),
                                  ("selenium", HAVE_SELENIUM)) if not ok]

pytestmark = pytest.mark.skipif(bool(MISSING) and not os.environ.get("CI"),
                                reason=f"not installed: {', '.join(MISSING)} (under CI=true this fails)")

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(2)>"
# A PBX that reports markup as a number and as an extension (a caller name field, a misconfigured trunk...).
HOSTILE = [Call("2026-03-09T08:00:00", IMG, "outbound", "national", 45, "0.20", number=SCRIPT)]


class DaemonThread:
    """The daemon (`smdrd.testing.running_daemon`) in its own thread and event loop, so the synchronous
    WebDriver calls cannot starve it."""

    def __init__(self, db: Path) -> None:
        self.settings = settings_for(db, http={"listen": "127.0.0.1:0"})
        self.loop = asyncio.new_event_loop()
        self.daemon: Daemon | None = None
        self.started = threading.Event()
        self.stop = asyncio.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            async with running_daemon(self.settings, features=("reports",)) as daemon:
                self.daemon = daemon
                self.started.set()
                await self.stop.wait()

        try:
            self.loop.run_until_complete(main())
        except BaseException as exc:
            self.error = exc
            self.started.set()

    def __enter__(self) -> DaemonThread:
        self.thread.start()
        assert self.started.wait(60), "daemon did not start"
        if self.error is not None:
            raise self.error
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)
        assert not self.thread.is_alive(), "the daemon did not stop"
        if self.error is not None:
            raise self.error

    @property
    def base(self) -> str:
        assert self.daemon is not None and self.daemon.http is not None
        return f"http://127.0.0.1:{self.daemon.http.bound_port}"

    def json(self, path: str) -> Any:
        with urllib.request.urlopen(self.base + path, timeout=10) as response:
            return json.load(response)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonThread]:
    db = tmp_path_factory.mktemp("browser") / "smdrd.db"
    asyncio.run(write_calls(db, [*CALLS, *HOSTILE]))
    with DaemonThread(db) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if MISSING:
        pytest.fail(f"CI is set but the browser test cannot run: not installed: {', '.join(MISSING)}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="smdrd-chromium-")
    options = webdriver.ChromeOptions()
    assert CHROMIUM is not None and CHROMEDRIVER is not None
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                "--disable-dev-shm-usage"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_loaded(driver: Any, loads: int) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 15).until(lambda d: int(d.find_element("tag name", "body").get_attribute("data-loads")
                                                  or 0) >= loads)
    status = driver.find_element("id", "status")
    assert "error" not in (status.get_attribute("class") or ""), status.text


def table(driver: Any) -> tuple[list[str], list[dict[str, str]], dict[str, str]]:
    """Column keys, body rows and the totals row as the user sees them (text only)."""
    keys = [th.get_attribute("data-key") for th in driver.find_elements("css selector", "#report thead th")]
    rows = [{td.get_attribute("data-key"): td.text for td in tr.find_elements("css selector", "td")}
            for tr in driver.find_elements("css selector", "#report tbody tr")]
    totals = {td.get_attribute("data-key"): td.text
              for td in driver.find_elements("css selector", "#report tfoot td")}
    return keys, rows, totals


MARCH = "from=2026-03-01&to=2026-03-31"


def apply(driver: Any, loads: int, **fields: str) -> None:
    from selenium.webdriver.support.ui import Select

    for name, value in fields.items():
        element = driver.find_element("id", name)
        if element.tag_name == "select":
            Select(element).select_by_value(value)
        else:
            element.clear()
            element.send_keys(value)
    driver.find_element("id", "apply").click()
    wait_loaded(driver, loads)


def test_page_loads_with_the_same_totals_as_the_json(server: DaemonThread, browser: Any) -> None:
    """An accountant opening /reports sees the rows and totals the JSON API (and the CLI) give, and charts."""
    browser.get(f"{server.base}/reports?{MARCH}")
    wait_loaded(browser, 1)
    expected = server.json(f"/api/reports/extensions?{MARCH}")
    keys, rows, totals = table(browser)
    assert keys == ["extension", "department", "calls", "duration", "average", "cost"]
    assert len(rows) == len(expected["rows"])
    assert totals["extension"] == "Total"
    assert (totals["calls"], totals["duration"], totals["cost"]) == (  # h:mm:ss, money with its currency
        str(expected["totals"]["calls"]), hms(expected["totals"]["duration"]), f"{expected['totals']['cost']} EUR")
    assert totals["average"] == hms(Decimal(str(expected["totals"]["average"])))
    departments = server.json(f"/api/reports/departments?{MARCH}")
    top_level = [r for r in departments["rows"] if r["parent"] is None]
    assert len(browser.find_elements("css selector", "#chart-departments g.bar")) == len(top_level)
    assert len(browser.find_elements("css selector", "#chart-days rect.day")) == 31


def test_filtering_by_department_and_direction(server: DaemonThread, browser: Any) -> None:
    """Choosing Sales shows only Sales and Sales North extensions, with the JSON's filtered totals."""
    browser.get(f"{server.base}/reports?{MARCH}")
    wait_loaded(browser, 1)
    apply(browser, 2, department="Sales")
    _, rows, totals = table(browser)
    assert rows and {r["department"] for r in rows} <= {"Sales", "Sales North"}
    expected = server.json(f"/api/reports/extensions?{MARCH}&department=Sales")
    assert (totals["calls"], totals["cost"]) == (str(expected["totals"]["calls"]), f"{expected['totals']['cost']} EUR")
    apply(browser, 3, department="", direction="all", kind="departments")
    _, rows, totals = table(browser)
    expected = server.json(f"/api/reports/departments?{MARCH}&direction=all")
    assert [r["department"] for r in rows] == [r["department"] for r in expected["rows"]]
    assert (totals["calls"], totals["cost"]) == (str(expected["totals"]["calls"]), f"{expected['totals']['cost']} EUR")
    apply(browser, 4, direction="outbound", kind="department-details")
    keys, rows, totals = table(browser)
    expected = server.json(f"/api/reports/department-details?{MARCH}")
    assert keys[:2] == ["extension", "department"] and totals["cost"] == f"{expected['totals']['cost']} EUR"
    subtotals = [r for r in rows if r["extension"].startswith("Subtotal")]
    assert [(r["extension"], r["cost"]) for r in subtotals] == [
        (f"Subtotal {s['title']}", f"{s['totals']['cost']} EUR") for s in expected["sections"]]
    for fmt in ("csv", "xlsx", "pdf"):  # the exports of what is shown, every call of the range
        link = browser.find_element("id", fmt).get_attribute("href")
        assert "/api/reports/department-details?" in link and f"format={fmt}" in link and "page=" not in link


def test_sorting_by_a_column(server: DaemonThread, browser: Any) -> None:
    """Clicking Cost sorts rows by cost (numerically, not as text); clicking again reverses; totals stay."""
    browser.get(f"{server.base}/reports?{MARCH}")
    wait_loaded(browser, 1)
    header = browser.find_element("css selector", "#report thead th[data-key=cost]")
    header.click()
    _, rows, totals_before = table(browser)
    costs = [Decimal(r["cost"].removesuffix(" EUR")) for r in rows]
    assert costs == sorted(costs) and len(set(costs)) > 2
    browser.find_element("css selector", "#report thead th[data-key=cost]").click()
    _, rows, totals = table(browser)
    assert [Decimal(r["cost"].removesuffix(" EUR")) for r in rows] == sorted(costs, reverse=True)
    assert totals == totals_before
    assert browser.find_element("css selector", "#report thead th[data-key=cost]").get_attribute(
        "aria-sort") == "descending"


def test_markup_from_the_pbx_is_shown_as_text(server: DaemonThread, browser: Any) -> None:
    """A number '<script>alert(1)</script>' and an extension '<img onerror=...>' from a PBX appear literally
    in the table and the charts; nothing runs and no element is created from them."""
    from selenium.common.exceptions import NoAlertPresentException

    browser.get(f"{server.base}/reports?{MARCH}&kind=calls")
    wait_loaded(browser, 1)
    _, rows, _ = table(browser)
    hostile = [r for r in rows if r["number"] == SCRIPT]
    assert len(hostile) == 1 and hostile[0]["extension"] == IMG and hostile[0]["department"] == "Unassigned"
    apply(browser, 2, kind="extensions")
    _, rows, _ = table(browser)
    assert IMG in [r["extension"] for r in rows]
    assert browser.find_elements("css selector", "#report img, #report script") == []
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 - reading it is what raises when no alert is open
    assert browser.execute_script("return document.scripts.length") == 1
