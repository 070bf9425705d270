"""Scheduled reports and alert digests by e-mail, end to end: a real daemon process, a real SMTP server
(aiosmtpd on a free loopback port, started and stopped by the test), schedules a few seconds ahead in real time.

What a user would see fail: a report that does not arrive, arrives twice (after the mail server was down, or
after a restart across its time), carries totals that differ from the report on screen, or an alert burst
that floods the mailbox.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import io
import json
import shutil
import signal
import sqlite3
import ssl
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from smdrd.reports.queries import context_from, parse_query, run_report
from smdrd.reports.render import to_dict
from smdrd.store.sqlite.reports import SqliteReports
from smdrd.testing import DaemonProcess, config_toml, daemon_config, free_port
from tests.test_reports import DEPARTMENTS, Call, settings_for, write_calls

WARSAW = ZoneInfo("Europe/Warsaw")
#: seconds a daemon may take to start: a shared, busy test box takes more than 20.
STARTUP = 60.0


class Inbox:
    """What the SMTP server received, as parsed messages."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        self.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos)))
        return "250 OK"

    def wait(self, n: int, within: float = 30.0) -> list[EmailMessage]:
        deadline = time.monotonic() + within
        while len(self.messages) < n:
            assert time.monotonic() < deadline, f"{len(self.messages)} mails arrived, expected {n}"
            time.sleep(0.05)
        return self.messages


class SmtpServer:
    """aiosmtpd in its own thread on ``127.0.0.1:port``; `start` and `stop` may be called again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.inbox = Inbox()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer(free_port())
    yield server
    server.stop()


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    """The daemons a test starts, killed at its end whatever happened (a start that timed out included)."""
    made: list[DaemonProcess] = []
    yield made
    for daemon in made:
        daemon.kill()


def start_daemon(daemons: list[DaemonProcess], tmp_path: Path, cfg: dict[str, Any]) -> DaemonProcess:
    daemon = DaemonProcess(tmp_path, cfg)
    daemons.append(daemon)
    return daemon.start(STARTUP)


def seconds_ahead(n: float) -> tuple[str, float]:
    """A local ``HH:MM:SS`` ``n`` seconds from now (a whole second), and its epoch time."""
    at = datetime.now(WARSAW).replace(microsecond=0) + timedelta(seconds=n + 1)
    return at.strftime("%H:%M:%S"), at.timestamp()


def yesterday() -> str:
    return (datetime.now(WARSAW).date() - timedelta(days=1)).isoformat()


def calls_of_yesterday() -> list[Call]:
    day = yesterday()
    return [Call(f"{day}T09:15:00", "201", "outbound", "national", 125, "0.51"),
            Call(f"{day}T10:00:00", "205", "outbound", "international", 301, "2.07", trunk="T2",
                 e164="+442071234567"),
            Call(f"{day}T11:30:00", "300", "outbound", "mobile", 61, "0.33", e164="+48600123456"),
            Call(f"{day}T12:00:00", "211", "outbound", "national", 90, "0.35")]


def config(tmp_path: Path, smtp_port: int, **sections: Any) -> dict[str, Any]:
    return daemon_config(
        tmp_path, http={"enabled": False}, tariff={"currency": "EUR", "decimals": 2}, departments=DEPARTMENTS,
        smtp={"enabled": True, "host": "127.0.0.1", "port": smtp_port, "security": "none",
              "from_address": "smdrd@example.com", "retry_min": 0.3, "retry_max": 1.0, "timeout": 5},
        **sections)


async def schedule_soon(daemon: DaemonProcess, cfg: dict[str, Any], seconds: float) -> float:
    """Add a daily departments report ``seconds`` from now to the running daemon (a reload, faster than a
    start on a busy box) once it has seen it; its time (epoch seconds)."""
    at, when = seconds_ahead(seconds)
    cfg["reports"] = {"schedules": [{"name": "daily departments", "kind": "departments", "period": "yesterday",
                                     "formats": ["csv", "xlsx", "pdf"], "recipients": ["finance@example.com"],
                                     "when": "daily", "at": at}]}
    seen = len(daemon.events("mail.schedule_added"))
    daemon.config_path.write_text(config_toml(cfg))
    daemon.send_signal(signal.SIGHUP)
    [*_, added] = await daemon.await_event("mail.schedule_added", seen + 1)
    assert datetime.fromisoformat(added["timestamp"]).timestamp() < when, "the box is too slow for this test"
    return when


def attachments(message: EmailMessage) -> dict[str, bytes]:
    out = {}
    for part in message.iter_attachments():
        assert isinstance(part, EmailMessage)
        data = part.get_content()
        out[str(part.get_filename())] = data if isinstance(data, bytes) else str(data).encode()
    return out


def expected_report(db: Path) -> dict[str, Any]:
    ctx = context_from(settings_for(db, DEPARTMENTS))
    day = yesterday()
    reader = SqliteReports(str(db))
    try:
        report = run_report(reader, parse_query({"kind": ["departments"], "from": [day], "to": [day]}, ctx), ctx)
    finally:
        reader.close()
    data: dict[str, Any] = json.loads(json.dumps(to_dict(report), default=str))
    return data


def xlsx_total_cost(data: bytes) -> Decimal:
    wb = openpyxl.load_workbook(io.BytesIO(data))
    ws = wb.worksheets[0]
    rows = [list(r) for r in ws.iter_rows(values_only=True)]
    head = next(r for r in rows if "Cost" in [str(c) for c in r])
    total = next(r for r in rows if r and str(r[0]).startswith("Total"))
    value = total[[str(c) for c in head].index("Cost")]
    assert isinstance(value, int | float | Decimal), total
    return Decimal(str(value)).quantize(Decimal("0.01"))


def pdf_text(data: bytes, tmp_path: Path) -> str:
    tool = shutil.which("pdftotext")
    if tool is None:
        pytest.skip("pdftotext is not installed (apt install poppler-utils)")
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(data)
    return subprocess.run([tool, "-layout", str(pdf), "-"], check=True, capture_output=True, text=True).stdout


def only_report_mails(inbox: Inbox) -> list[EmailMessage]:
    return [m for m in inbox.messages if "daily departments" in str(m["Subject"])]


async def test_a_scheduled_report_arrives_once_with_totals_equal_to_the_json_report(
        tmp_path: Path, smtp: SmtpServer, daemons: list[DaemonProcess]) -> None:
    await write_calls(tmp_path / "smdrd.db", calls_of_yesterday())
    smtp.start()
    cfg = config(tmp_path, smtp.port)
    daemon = start_daemon(daemons, tmp_path, cfg)
    try:
        when = await schedule_soon(daemon, cfg, 2)
        [message] = await asyncio.to_thread(smtp.inbox.wait, 1)
        assert time.time() >= when - 0.1  # not before its time
        await asyncio.sleep(2.5)  # more ticks of the mail feature: still one
        assert len(smtp.inbox.messages) == 1
    finally:
        await daemon.aterminate()
    daemon.assert_clean_log()
    assert smtp.inbox.envelopes == [("smdrd@example.com", ["finance@example.com"])]
    day = yesterday()
    assert str(message["Subject"]).endswith(f"daily departments, {day} to {day}")
    assert message["Message-ID"]
    files = attachments(message)
    stem = f"smdrd-departments-{day}-{day}"
    assert sorted(files) == [f"{stem}.csv", f"{stem}.pdf", f"{stem}.xlsx"]

    expected = expected_report(tmp_path / "smdrd.db")
    cost = Decimal(expected["totals"]["cost"])
    assert cost == Decimal("3.26")  # the four calls, to the cent
    assert xlsx_total_cost(files[f"{stem}.xlsx"]) == cost
    csv_total = next(line for line in files[f"{stem}.csv"].decode().splitlines() if line.startswith("Total"))
    assert str(cost) in csv_total.split(",")
    text = pdf_text(files[f"{stem}.pdf"], tmp_path)
    total_line = next(line for line in text.splitlines() if line.strip().startswith("Total"))
    assert str(cost) in total_line, total_line
    body = message.get_body(("plain",))
    assert body is not None and f"Cost: {cost} EUR" in body.get_content()


async def test_a_report_due_while_the_mail_server_is_down_arrives_later_once(
        tmp_path: Path, smtp: SmtpServer, daemons: list[DaemonProcess]) -> None:
    cfg = config(tmp_path, smtp.port)
    daemon = start_daemon(daemons, tmp_path, cfg)
    try:
        await schedule_soon(daemon, cfg, 1)
        await daemon.await_event("mail.send_failed")  # due, and nothing listens
        smtp.start()
        await asyncio.to_thread(smtp.inbox.wait, 1)
        await asyncio.sleep(2.5)
        assert len(only_report_mails(smtp.inbox)) == 1
    finally:
        await daemon.aterminate()
    daemon.assert_clean_log()


async def test_a_daemon_stopped_over_the_time_sends_once_when_it_starts(tmp_path: Path, smtp: SmtpServer,
                                                                       daemons: list[DaemonProcess]) -> None:
    smtp.start()
    cfg = config(tmp_path, smtp.port)
    daemon = start_daemon(daemons, tmp_path, cfg)
    try:
        when = await schedule_soon(daemon, cfg, 8)  # time enough to stop on a busy box
    finally:
        await daemon.aterminate()  # the schedule's cursor is saved: it was seen before its time
    assert time.time() < when, "the daemon took longer to stop than the margin: the test proves nothing"
    assert smtp.inbox.messages == []
    await asyncio.sleep(when - time.time() + 0.5)  # its time passes while the daemon is stopped
    daemon.start(STARTUP)
    try:
        await asyncio.to_thread(smtp.inbox.wait, 1)
    finally:
        await daemon.aterminate()
    daemon.start(STARTUP)  # and again: nothing more
    try:
        await asyncio.sleep(2.0)
    finally:
        await daemon.aterminate()
    assert len(smtp.inbox.messages) == 1
    daemon.assert_clean_log()


async def test_a_burst_of_200_velocity_alerts_is_one_digest_per_recipient(
        tmp_path: Path, smtp: SmtpServer, daemons: list[DaemonProcess]) -> None:
    from smdrd.parsers.avaya_ipo import AvayaIPOfficeParser
    from smdrd.record import CallRecord, Direction
    from smdrd.testing import open_connection_retry, tcp_server_source

    smtp.start()
    port = free_port()
    cfg = config(tmp_path, smtp.port, sources=[tcp_server_source("ipo", port)],
                 alerts={"velocity": {"extension_calls": 1, "snooze_minutes": 0},
                         "email": {"enabled": True, "recipients": ["alerts@example.com"],
                                   "rules": {"velocity": ["security@example.com"]}, "digest_seconds": 2}})
    daemon = start_daemon(daemons, tmp_path, cfg)
    try:
        await asyncio.to_thread(daemon.wait_port, port)
        start = datetime(2026, 3, 4, 10, 0, tzinfo=WARSAW)
        lines = [AvayaIPOfficeParser.render(CallRecord(
            format="avaya-ipo", start=start + timedelta(seconds=i), duration=60, direction=Direction.OUTBOUND,
            extension="201", number=f"0221234{i:03d}", answered=True, call_id=str(1_000_000 + i)))[0]
            for i in range(201)]
        _, writer = await open_connection_retry("127.0.0.1", port)
        writer.write("".join(f"{line}\r\n" for line in lines).encode())
        await writer.drain()
        messages = await asyncio.to_thread(smtp.inbox.wait, 2)
        await asyncio.sleep(3.0)  # a digest later would be a second mail
        writer.close()
    finally:
        await daemon.aterminate()
    daemon.assert_clean_log()
    assert sorted(to for _, [to] in smtp.inbox.envelopes) == ["alerts@example.com", "security@example.com"]
    for message in messages:
        body = message.get_body(("plain",))
        assert body is not None
        text = body.get_content()
        assert text.count("] velocity:") == 200, text[:2000]
        assert "200 alerts" in str(message["Subject"])


async def test_starttls_to_a_self_signed_server_with_a_login_from_a_password_file(tmp_path: Path) -> None:
    """The certificate is verified (against ``ca_file``), the login goes over TLS only, a wrong password is an
    error that never shows it, and a server that cannot STARTTLS is refused rather than spoken to in clear."""
    from aiosmtpd.smtp import AuthResult, LoginPassword

    from smdrd.mail_config import SmtpConfig, smtp_password
    from smdrd.mailer import SendError, send_mail
    from tests.test_http_tls_proxy import make_certificate

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = make_certificate(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    secret = "correct-horse-staple-42"

    def authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                     data: object) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login == b"smdrd" and data.password == secret.encode()
        return AuthResult(success=ok)

    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=server_tls, require_starttls=True,
                            auth_required=True, authenticator=authenticate)
    controller.start()
    try:
        password_file = tmp_path / "smtp-password"
        password_file.write_text(secret + "\n")
        cfg = SmtpConfig(enabled=True, host="127.0.0.1", port=port, security="starttls", ca_file=cert,
                         username="smdrd", password_file=password_file, from_address="smdrd@example.com",
                         timeout=10)
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = "smdrd@example.com", "it@example.com", "hello"
        message.set_content("over TLS")
        await send_mail(cfg, smtp_password(cfg), message)
        assert [str(m["Subject"]) for m in inbox.messages] == ["hello"]

        with pytest.raises(SendError) as wrong:  # tried again later: the password is fixed in the configuration
            await send_mail(cfg.model_copy(update={"timeout": 2}), "a-wrong-password-99", message)
        assert not wrong.value.permanent and "a-wrong-password-99" not in str(wrong.value)

        with pytest.raises(SendError) as unverified:  # the system's CAs do not know the test's certificate
            await send_mail(cfg.model_copy(update={"ca_file": None}), secret, message)
        assert "CERTIFICATE_VERIFY_FAILED" in str(unverified.value) and secret not in str(unverified.value)
    finally:
        controller.stop()

    plain = SmtpServer(free_port())
    plain.start()
    try:
        with pytest.raises(SendError):
            await send_mail(cfg.model_copy(update={"port": plain.port}), secret, message)
        assert plain.inbox.messages == []
    finally:
        plain.stop()


class Greylisting(Inbox):
    """Puts ``b@example.com`` off once (451, as greylisting does) and refuses ``nobody@example.com`` for good."""

    def __init__(self) -> None:
        super().__init__()
        self.put_off = 0

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if address == "nobody@example.com":
            return "550 5.1.1 no such user"
        if address == "b@example.com" and not self.put_off:
            self.put_off += 1
            return "451 4.7.1 greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"


async def test_a_recipient_put_off_gets_the_report_later_and_nobody_gets_it_twice(
        tmp_path: Path, daemons: list[DaemonProcess]) -> None:
    """The server took the mail for a@ while it put b@ off (451) and refused nobody@ (550): aiosmtplib reports
    that instead of raising, and the mail was marked sent, so b@ never had it. Now b@ alone gets it again
    later, and the refusal of nobody@ is noted on the delivery."""
    smtp = SmtpServer(free_port())
    smtp.inbox = Greylisting()
    smtp.start()
    try:
        cfg = config(tmp_path, smtp.port)
        daemon = start_daemon(daemons, tmp_path, cfg)
        try:
            at, _ = seconds_ahead(1)
            cfg["reports"] = {"schedules": [{
                "name": "daily departments", "kind": "departments", "period": "yesterday", "formats": ["csv"],
                "recipients": ["a@example.com", "b@example.com", "nobody@example.com"], "when": "daily", "at": at}]}
            daemon.config_path.write_text(config_toml(cfg))
            daemon.send_signal(signal.SIGHUP)
            await asyncio.to_thread(smtp.inbox.wait, 2)
            await asyncio.sleep(2.0)  # nothing more comes
            assert [rcpts for _, rcpts in smtp.inbox.envelopes] == [["a@example.com"], ["b@example.com"]]
            assert smtp.inbox.messages[0]["Message-ID"] == smtp.inbox.messages[1]["Message-ID"]
        finally:
            await daemon.aterminate()
        daemon.assert_clean_log()
        assert daemon.events("mail.recipients_refused")
    finally:
        smtp.stop()
    conn = sqlite3.connect(tmp_path / "smdrd.db")
    [(state, attempts, error)] = conn.execute("SELECT state, attempts, last_error FROM mail_outbox").fetchall()
    conn.close()
    assert (state, attempts, error) == ("sent", 2, "refused for good: nobody@example.com: 550 5.1.1 no such user")
