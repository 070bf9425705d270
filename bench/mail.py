"""Mail benchmark: what a scheduled report costs to make and send, and how fast the outbox plans alert digests.

    python bench/mail.py [--calls 200000] [--repeat 3]

1. Generates a year of calls (`bench.reports.call_rows`: 310 extensions in 12 departments).
2. Times `smdrd.reports.mail.render_report_mail` (the report, then each attachment through the exporters,
   written to a temporary file first) for a month: the departments report as CSV, XLSX and PDF, and the call
   details of one department as CSV and XLSX; then the same mail sent to a real SMTP server (aiosmtpd on
   loopback) through `smdrd.mailer.send_mail`. Reports the median and slowest of ``--repeat`` runs, the mail's
   size and the process's peak resident memory.
3. Times `smdrd.mail.alert_digests` and the outbox's ``plan`` for a burst of 1,000 alerts (one digest per
   recipient).
Prints a table on stderr and JSON on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import tempfile
import time
from datetime import date
from email.message import EmailMessage
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._util import report  # noqa: E402
from bench.reports import YEAR, generate, settings  # noqa: E402
from smdrd.mail import alert_digests  # noqa: E402
from smdrd.mail_config import SmtpConfig  # noqa: E402
from smdrd.mailer import send_mail  # noqa: E402
from smdrd.reports.mail import ReportMail, render_report_mail  # noqa: E402
from smdrd.reports.queries import context_from  # noqa: E402
from smdrd.reports.schedules import ScheduleConfig  # noqa: E402
from smdrd.store import open_store  # noqa: E402
from smdrd.store.api import PendingAlert  # noqa: E402
from smdrd.store.sqlite.schema import connect  # noqa: E402
from smdrd.testing import free_port  # noqa: E402

SCHEDULES: dict[str, dict[str, Any]] = {
    "departments, csv+xlsx+pdf": {"kind": "departments", "formats": ["csv", "xlsx", "pdf"]},
    "calls of one department, csv+xlsx": {"kind": "calls", "formats": ["csv", "xlsx"],
                                          "filters": {"department": ["Dept 01"]}},
}


def message_of(made: ReportMail) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "smdrd@example.com", "finance@example.com", made.title
    msg.set_content(made.body)
    for a in made.attachments:
        maintype, _, subtype = a.content_type.partition("/")
        msg.add_attachment(a.data, maintype=maintype, subtype=subtype, filename=a.filename)
    return msg


async def send_all(messages: list[EmailMessage]) -> list[float]:
    from aiosmtpd.controller import Controller

    class Sink:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 OK"

    port = free_port()
    controller = Controller(Sink(), hostname="127.0.0.1", port=port, data_size_limit=64 * 1024 * 1024)
    controller.start()
    try:
        cfg = SmtpConfig(enabled=True, host="127.0.0.1", port=port, security="none")
        out = []
        for msg in messages:
            started = time.perf_counter()
            await send_mail(cfg, None, msg)
            out.append(time.perf_counter() - started)
        return out
    finally:
        controller.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="smdrd-bench-") as tmp:
        db = Path(tmp) / "mail.db"
        conn = connect(str(db))
        try:
            generate(conn, args.calls)
        finally:
            conn.close()
        s = settings(db)
        ctx, store = context_from(s), open_store(db)
        first, last = date(YEAR, 6, 1), date(YEAR, 6, 30)
        results: dict[str, Any] = {"calls": args.calls, "schedules": {}}
        rows: list[tuple[str, str]] = [("calls stored", f"{args.calls:,}")]
        for name, spec in SCHEDULES.items():
            schedule = ScheduleConfig.model_validate({"name": name, "recipients": ["f@example.com"], **spec})
            times, made = [], None
            for _ in range(args.repeat):
                started = time.perf_counter()
                made = render_report_mail(store, schedule, first, last, ctx=ctx, site="bench")
                times.append(time.perf_counter() - started)
            assert made is not None
            msg = message_of(made)
            size = len(msg.as_bytes())
            sent = asyncio.run(send_all([msg] * args.repeat))
            results["schedules"][name] = {
                "render_median_s": round(statistics.median(times), 3), "render_max_s": round(max(times), 3),
                "send_median_s": round(statistics.median(sent), 3), "mail_bytes": size,
                "attachments": {a.filename: len(a.data) for a in made.attachments}}
            rows.append((f"{name} (June)", f"made in {statistics.median(times):.2f} s (max {max(times):.2f}), "
                                           f"sent in {statistics.median(sent):.2f} s, {size / 1024:,.0f} KiB"))
        payload = json.dumps({"rule": "velocity", "state": "raised", "severity": "critical", "reason": "burst",
                              "extension": "201", "raised_at": "2026-03-04T10:00:00+00:00"})
        alerts = [PendingAlert(i, f"a{i}", "velocity", payload) for i in range(1, 1001)]
        s = s.model_copy(update={"alerts": s.alerts.model_copy(update={"email": s.alerts.email.model_copy(
            update={"enabled": True, "recipients": ["it@example.com", "sec@example.com"]})})})
        mail = store.mail()
        try:
            started = time.perf_counter()
            mails = alert_digests(alerts, s, mail.manager_emails, now=0)
            added = mail.plan(mails, {"alerts": 1000})
            planned = time.perf_counter() - started
        finally:
            mail.close()
        results["digest_1000_alerts"] = {"mails": added, "seconds": round(planned, 4)}
        rows.append(("1,000 alerts to 2 recipients", f"{added} digests planned in {planned * 1000:.0f} ms"))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        results["peak_rss_mib"] = peak
        rows.append(("peak resident memory", f"{peak} MiB"))
        report("mail", results, rows)


if __name__ == "__main__":
    main()
