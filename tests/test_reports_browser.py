"""The console's ``/reports`` page in a real headless Chromium with JavaScript off: the table is the server's,
with the JSON API's figures; a kind and filters picked in the form land in the URL; columns sort by links; a
mistake is named beside its field; markup from a PBX shows as text; at phone width the table scrolls in its own
box. (The ``browser`` fixture, JavaScript on, serves the other browser tests.)

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
import urllib.error
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
            async with running_daemon(self.settings, features=("reports", "console")) as daemon:
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


def chromium(*, javascript: bool = True) -> Iterator[Any]:
    """A headless Chromium driven by selenium (JavaScript off with ``javascript=False``), quit at the end."""
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
                "--disable-dev-shm-usage", "--lang=en-US"):
        options.add_argument(arg)
    if not javascript:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chromium()


@pytest.fixture(scope="module")
def no_script() -> Iterator[Any]:
    """Chromium with JavaScript off: what a page shows then is the server's alone."""
    yield from chromium(javascript=False)


def wait_loaded(driver: Any, loads: int = 1) -> None:
    """Until the page (server-rendered: loaded is done) shows its report, with no mistake named in its form.
    ``loads`` is kept for the callers written when the page built its table with a script."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 15).until(lambda d: d.execute_script("return document.readyState") == "complete"
                                    and d.find_elements("css selector", "#report, .error"))
    errors = [e.text for e in driver.find_elements("css selector", "main .error")]
    assert not errors, errors


def table(driver: Any) -> tuple[list[str], list[dict[str, str]], dict[str, str]]:
    """Column keys, body rows (subtotal rows too; not the sections' headings) and the totals row as the user
    sees them (text only)."""
    keys = [th.get_attribute("data-key") for th in driver.find_elements("css selector", "#report thead th")]
    rows = [cells for tr in driver.find_elements("css selector", "#report tbody tr")
            if (cells := {td.get_attribute("data-key"): td.text for td in tr.find_elements("css selector", "td")})]
    totals = {td.get_attribute("data-key"): td.text
              for td in driver.find_elements("css selector", "#report tfoot td")}
    return keys, rows, totals


MARCH = "from=2026-03-01&to=2026-03-31"


def apply(driver: Any, **fields: str) -> None:
    """Fill the report form as a person does and send it (a plain GET: no script runs)."""
    from selenium.webdriver.support.ui import Select

    for name, value in fields.items():
        element = driver.find_element("id", name)
        if element.tag_name == "select":
            Select(element).select_by_value(value)
        elif element.get_attribute("type") == "date":  # typed as a person types into the date field
            element.send_keys(value.replace("/", ""))
        else:
            element.clear()
            element.send_keys(value)
    follow(driver, driver.find_element("id", "apply"))


def follow(driver: Any, element: Any) -> None:
    """Click ``element`` (a button or link to another report) and wait for that report. The page it replaces
    already shows one: wait until it is gone first, or the checks after would read the old page."""
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    page = driver.find_element("tag name", "html")
    element.click()
    WebDriverWait(driver, 15).until(expected_conditions.staleness_of(page))
    wait_loaded(driver)


def test_javascript_is_really_off(server: DaemonThread, no_script: Any) -> None:
    """The checks below read only what the server sent: a script on a page does not run in this browser."""
    no_script.get("data:text/html,<title>before</title><script>document.title = 'ran'</script>")
    assert no_script.title == "before"


def test_the_table_is_the_servers_with_the_jsons_figures(server: DaemonThread, no_script: Any) -> None:
    """An accountant opening /reports sees the rows and totals the JSON API (and the CLI) give: durations
    h:mm:ss, money with its currency, a totals row."""
    no_script.get(f"{server.base}/reports?{MARCH}")
    wait_loaded(no_script)
    expected = server.json(f"/api/reports/extensions?{MARCH}")
    keys, rows, totals = table(no_script)
    assert keys == ["extension", "department", "calls", "duration", "average", "cost"]
    assert [(r["extension"], r["calls"], r["cost"]) for r in rows] == [
        (r["extension"], str(r["calls"]), f"{r['cost']} EUR") for r in expected["rows"]]
    assert totals["extension"] == "Total"
    assert (totals["calls"], totals["duration"], totals["cost"]) == (
        str(expected["totals"]["calls"]), hms(expected["totals"]["duration"]), f"{expected['totals']['cost']} EUR")
    assert totals["average"] == hms(Decimal(str(expected["totals"]["average"])))
    assert "Europe/Warsaw" in no_script.find_element("id", "meta").text


def test_a_kind_and_filters_picked_in_the_form_land_in_the_url(server: DaemonThread, no_script: Any) -> None:
    """Choosing Departments, every direction and March in the form shows the JSON's figures, and the URL holds
    the filters (a view to bookmark); then Sales' extensions; then department details with subtotals; each
    with download links to the same query."""
    no_script.get(f"{server.base}/reports")
    wait_loaded(no_script)
    apply(no_script, kind="departments", direction="all", **{"from": "03/01/2026", "to": "03/31/2026"})
    assert "kind=departments" in no_script.current_url and "direction=all" in no_script.current_url
    assert "from=2026-03-01" in no_script.current_url
    _, rows, totals = table(no_script)
    expected = server.json(f"/api/reports/departments?{MARCH}&direction=all")
    assert [r["department"] for r in rows] == [r["department"] for r in expected["rows"]]
    assert (totals["calls"], totals["cost"]) == (str(expected["totals"]["calls"]), f"{expected['totals']['cost']} EUR")
    apply(no_script, kind="extensions", direction="outbound", department="Sales")
    _, rows, totals = table(no_script)
    assert rows and {r["department"] for r in rows} <= {"Sales", "Sales North"}
    expected = server.json(f"/api/reports/extensions?{MARCH}&department=Sales")
    assert (totals["calls"], totals["cost"]) == (str(expected["totals"]["calls"]), f"{expected['totals']['cost']} EUR")
    no_script.get(f"{server.base}/reports?{MARCH}&kind=department-details")
    wait_loaded(no_script)
    _, rows, totals = table(no_script)
    expected = server.json(f"/api/reports/department-details?{MARCH}")
    assert totals["cost"] == f"{expected['totals']['cost']} EUR"
    subtotals = [r for r in rows if r["start"].startswith("Subtotal")]
    assert [(r["start"], r["cost"]) for r in subtotals] == [
        (f"Subtotal {s['title']}", f"{s['totals']['cost']} EUR") for s in expected["sections"]]
    for fmt in ("csv", "xlsx", "pdf"):  # the exports of what is shown, every call of the range
        link = no_script.find_element("id", fmt).get_attribute("href")
        assert "/api/reports/department-details?" in link and f"format={fmt}" in link and "page=" not in link
        assert "from=2026-03-01" in link and "to=2026-03-31" in link


def test_days_and_departments_draw_their_cost_as_bars(server: DaemonThread, no_script: Any) -> None:
    """Without a script: a bar per day of March, a bar per top department, each titled with its cost."""
    no_script.get(f"{server.base}/reports?{MARCH}&kind=days")
    wait_loaded(no_script)
    days = no_script.find_elements("css selector", "#chart g.bar")
    assert len(days) == 31
    expected = server.json(f"/api/reports/days?{MARCH}")
    assert days[1].find_element("tag name", "title").get_attribute("textContent") == (
        f"2026-03-02: {expected['rows'][1]['cost']} EUR, {expected['rows'][1]['calls']} calls")
    heights = [float(b.find_element("tag name", "rect").get_attribute("height")) for b in days]
    costs = [Decimal(r["cost"]) for r in expected["rows"]]
    assert heights.index(max(heights)) == costs.index(max(costs)) and min(heights) == 0
    no_script.get(f"{server.base}/reports?{MARCH}&kind=departments")
    wait_loaded(no_script)
    bars = [b.text for b in no_script.find_elements("css selector", "#chart g.bar")]
    departments = server.json(f"/api/reports/departments?{MARCH}")
    top = [r for r in departments["rows"] if r["parent"] is None]
    assert len(bars) == len(top) and len(top) >= 2


def test_a_column_sorts_by_its_link(server: DaemonThread, no_script: Any) -> None:
    """Clicking Cost sorts rows by cost (numerically, not as text); clicking again reverses; totals stay."""
    no_script.get(f"{server.base}/reports?{MARCH}")
    wait_loaded(no_script)
    _, _, totals_before = table(no_script)
    follow(no_script, no_script.find_element("css selector", "#report thead th[data-key=cost] a"))
    _, rows, totals = table(no_script)
    costs = [Decimal(r["cost"].removesuffix(" EUR")) for r in rows]
    assert costs == sorted(costs) and len(set(costs)) > 2 and totals == totals_before
    follow(no_script, no_script.find_element("css selector", "#report thead th[data-key=cost] a"))
    _, rows, _ = table(no_script)
    assert [Decimal(r["cost"].removesuffix(" EUR")) for r in rows] == sorted(costs, reverse=True)
    assert no_script.find_element("css selector", "#report thead th[data-key=cost]").get_attribute(
        "aria-sort") == "descending"
    assert "sort=cost" in no_script.current_url and "order=desc" in no_script.current_url


def test_a_mistake_is_named_beside_its_field(server: DaemonThread, no_script: Any) -> None:
    """A day that does not exist and an unknown department: each named beside its field, no table, no 500."""
    no_script.get(f"{server.base}/reports?from=2026-02-30&department=Nowhere&kind=days")
    errors = {e.get_attribute("id"): e.text for e in no_script.find_elements("css selector", "main .error")}
    assert set(errors) == {"e-from", "e-department"}, errors
    assert "2026-03-01" in errors["e-from"] and "Nowhere" in errors["e-department"]
    assert no_script.find_element("id", "from").get_attribute("aria-invalid") == "true"
    assert not no_script.find_elements("id", "report")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{server.base}/reports?from=2026-02-30", timeout=10)
    assert refused.value.code == 400


def test_markup_from_the_pbx_is_shown_as_text(server: DaemonThread, no_script: Any) -> None:
    """A number '<script>alert(1)</script>' and an extension '<img onerror=...>' from a PBX appear literally
    in the table; no element is made of them."""
    no_script.get(f"{server.base}/reports?{MARCH}&kind=calls")
    wait_loaded(no_script)
    _, rows, _ = table(no_script)
    hostile = [r for r in rows if r["number"] == SCRIPT]
    assert len(hostile) == 1 and hostile[0]["extension"] == IMG and hostile[0]["department"] == "Unassigned"
    no_script.get(f"{server.base}/reports?{MARCH}")
    wait_loaded(no_script)
    assert IMG in [r["extension"] for r in table(no_script)[1]]
    assert no_script.find_elements("css selector", "#report img, #report script, script") == []


def test_at_phone_width_the_table_scrolls_in_its_own_box(server: DaemonThread, no_script: Any) -> None:
    """390 px wide: the page itself does not scroll sideways; the call table, wider, scrolls inside its box."""
    no_script.set_window_size(390, 844)
    try:
        no_script.get(f"{server.base}/reports?{MARCH}&kind=calls")
        wait_loaded(no_script)
        width = no_script.execute_script("return document.documentElement.clientWidth")
        page = no_script.execute_script("return document.documentElement.scrollWidth")
        box = no_script.execute_script("const b = document.querySelector('.scroll'); "
                                       "return [b.scrollWidth, b.clientWidth]")
        assert page <= width, (page, width)
        assert box[0] > box[1], box
    finally:
        no_script.set_window_size(1280, 900)
