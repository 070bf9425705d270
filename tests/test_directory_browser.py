"""The directory in a real headless Chromium against a real daemon process fed over TCP (issue 15, acceptance): an
admin moves an extension to another department in the console and the report bills its new calls to the new
department (its earlier ones stay); a PBX line whose name field holds ``<script>`` or ``<img onerror>`` shows as
text on the extensions page and in the reports, and nothing runs.

Skipped only when Chromium, chromedriver or selenium is missing AND the ``CI`` environment variable is unset
(as `tests.test_reports_browser`).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from smdrd.directory import add_department, move_extension
from smdrd.store import open_store
from smdrd.store.api import Actor, DirectorySnapshot
from smdrd.testing import DaemonProcess, daemon_config, free_port, tcp_server_source
from tests.test_console_browser import at, shows, sign_in
from tests.test_console_overview import add_users
from tests.test_directory_names import ipo
from tests.test_reports_browser import MISSING, browser, table, wait_loaded

__all__ = ["browser"]

pytestmark = pytest.mark.skipif(bool(MISSING) and not os.environ.get("CI"),
                                reason=f"not installed: {', '.join(MISSING)} (under CI=true this fails)")

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(1)>"
ZONE = ZoneInfo("Europe/Warsaw")  # daemon_config's site


class Running:
    def __init__(self, base: str, daemon: DaemonProcess, pbx: int) -> None:
        self.base, self.daemon, self.pbx = base, daemon, pbx

    def send(self, *lines: bytes) -> None:
        with socket.create_connection(("127.0.0.1", self.pbx)) as pbx:
            pbx.sendall(b"".join(line + b"\r\n" for line in lines))

    def calls(self) -> int:
        reports = open_store(self.daemon.db).export()
        try:
            return sum(1 for _ in reports.rows(None, None))
        finally:
            reports.close()

    def wait_calls(self, n: int) -> None:
        deadline = time.monotonic() + 20
        while self.calls() < n:
            assert time.monotonic() < deadline, self.daemon.log_text()[-3000:]
            time.sleep(0.1)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    folder = tmp_path_factory.mktemp("directory-browser")
    db = folder / "smdrd.db"
    add_users(db, ("alice", "admin", ()))
    directory = open_store(db).directory()
    try:  # Sales (with 201) and Support, as an earlier import would have left them
        snap = DirectorySnapshot((), (), 0)
        for name in ("Sales", "Support"):
            change = add_department(snap, name)
            snap = DirectorySnapshot(change.departments, change.memberships, snap.version)
        change = move_extension(snap, "201", "Sales", datetime(2020, 1, 1).date())
        change.write(directory, directory.snapshot(), at=0, actor=Actor("test"))
    finally:
        directory.close()
    port, pbx = free_port(), free_port()
    daemon = DaemonProcess(folder, daemon_config(folder, [tcp_server_source("pbx", pbx)],
                                                 http={"listen": f"127.0.0.1:{port}"},
                                                 directory={"source": "database"}))
    try:
        running = Running(f"http://127.0.0.1:{port}", daemon.start(), pbx)
        daemon.wait_port(pbx)
        yield running
        daemon.terminate()
        daemon.assert_clean_log()
    finally:
        daemon.kill()


def no_alert(driver: Any) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018 - reading it is what raises when no alert is open


def test_move_an_extension_and_markup_names_stay_text(site: Running, browser: Any) -> None:
    from selenium.webdriver.support.ui import Select

    now = datetime.now(ZONE)
    today, yesterday = now.date(), (now - timedelta(days=1)).date()
    stamp = (now - timedelta(days=1)).strftime("%Y/%m/%d 10:00:00")
    # a call from 201 yesterday (Sales), with the PBX naming its users with markup
    site.send(ipo("201", SCRIPT, when=stamp), ipo("202", IMG, when=stamp.replace("10:00", "10:05")))
    site.wait_calls(2)

    sign_in(browser, "alice", f"{site.base}/login?next=/directory/extensions")
    assert at(browser, f"{site.base}/directory/extensions"), browser.current_url
    assert browser.find_element("css selector", "#ext-201 .ext-name").text == SCRIPT
    assert browser.find_element("css selector", "#ext-202 .ext-name").text == IMG
    assert browser.find_element("css selector", "#ext-201 .ext-department").text == "Sales"
    assert browser.find_elements("id", "name-201-site") == []  # one box: no site to name it at
    assert browser.find_elements("css selector", "#extensions img, #extensions script") == []
    assert browser.execute_script("return document.scripts.length") == 0
    no_alert(browser)

    # 201 moves to Support from today (the form's date is today's by default)
    assert browser.find_element("id", "move-201-from").get_attribute("value") == today.isoformat()
    Select(browser.find_element("id", "move-201-department")).select_by_visible_text("Support")
    browser.find_element("css selector", "#move-201 button").click()
    assert shows(browser, "Extension moved."), browser.page_source[:2000]
    assert browser.find_element("css selector", "#ext-201 .ext-department").text == "Support"

    # a new call from 201 today: billed to Support; yesterday's stays with Sales
    site.send(ipo("201", SCRIPT, when=now.strftime("%Y/%m/%d %H:%M:%S")))
    site.wait_calls(3)
    browser.get(f"{site.base}/reports?kind=departments&from={yesterday}&to={today}")
    wait_loaded(browser, 1)
    _, rows, _ = table(browser)
    calls = {r["department"]: r["calls"] for r in rows}
    assert calls.get("Sales") == "1" and calls.get("Support") == "1", rows

    # the names in the reports: text, never markup
    browser.get(f"{site.base}/reports?kind=extensions&from={yesterday}&to={today}")
    wait_loaded(browser, 1)
    _, rows, _ = table(browser)
    assert {r["extension"]: r["name"] for r in rows} == {"201": SCRIPT, "202": IMG}
    assert browser.find_elements("css selector", "#report img, #report script") == []
    no_alert(browser)
