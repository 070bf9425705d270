"""E-mail: the daemon's feature that plans scheduled reports and alert digests into the mail outbox and sends
what the outbox holds through ``[smtp]``.

Three steps, each tick (`TICK` seconds, or at once when woken):

1. **Schedules** (``[[reports.schedules]]`` and those made in the console): every instant a schedule fired since
   its saved cursor (`smdrd.reports.schedules.occurrences`) becomes one outbox row keyed by the schedule and the
   report's period, added with the new cursor in one transaction. A schedule seen for the first time starts
   from now; a daemon that was stopped over the hour plans what it missed when it starts (at most
   `~smdrd.reports.schedules.MAX_CATCH_UP_DAYS` days back).
2. **Alert digests** (``[alerts.email]``): alerts of the alert outbox after the mail cursor wait until the
   oldest is ``digest_seconds`` old, then each recipient gets one mail with all of them (a burst of 200
   velocity alerts is one mail), added with the cursor in one transaction.
3. **Sending**: each due row is rendered (a report from the store, in a thread) and sent; accepted rows are
   marked ``sent``; a server that is down or answers 4xx leaves the row pending, retried with capped, jittered
   backoff (`smdrd.backoff.Backoff`); a 5xx refusal, or a report that cannot be made, marks it ``failed`` with
   the error. Every attempt of a row carries the same Message-ID.

So each mail goes out once; the one gap is a crash after the server accepted a mail and before it was marked
(then it goes again, with the same Message-ID, which receivers may drop as a copy). The store is used from one
thread of its own, never from the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from email.message import EmailMessage
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from smdrd.backoff import Backoff
from smdrd.errors import SmdrdError
from smdrd.mail_config import smtp_password
from smdrd.mailer import Refusal, SendError, send_mail
from smdrd.privacy import PrivacyConfig, Role, hidden_digits, masked_payload
from smdrd.reports.schedules import ScheduleConfig, occurrences, period_of
from smdrd.store import open_store
from smdrd.store.api import MailItem, MailStore, NewMail, PendingAlert, StoreUnavailable

if TYPE_CHECKING:
    from smdrd.config import Settings
    from smdrd.daemon import Daemon

__all__ = ["ALERTS_CURSOR", "TICK", "MailDelivery", "alert_digests", "digest_text", "install", "out_of_scope",
           "report_mails", "schedule_key", "schedules_of"]

log = structlog.get_logger("smdrd.mail")

#: seconds between two looks at the schedules, the alerts and the outbox.
TICK = 1.0
#: the mail cursor over the alert outbox.
ALERTS_CURSOR = "alerts"
#: alerts read (and mailed) at most at once.
MAX_DIGEST = 1000
#: mails sent at most per tick (the rest wait for the next).
SEND_BATCH = 20
#: seconds between two prunings of the mail history.
PRUNE_INTERVAL = 3600.0

T = TypeVar("T")


def schedule_key(source: str, name_or_id: str | int) -> str:
    """A schedule's key in the outbox: ``config:<name>`` or ``db:<id>``."""
    return f"{source}:{name_or_id}"


def schedules_of(settings: Settings, stored: Sequence[tuple[int, str, str]]
                 ) -> list[tuple[str, ScheduleConfig, str]]:
    """The enabled schedules with their keys and owners (``''`` for the configuration's): the configuration's,
    then the console's (``(id, spec JSON, owner)``; one that no longer validates is skipped and logged)."""
    out = [(schedule_key("config", s.name), s, "") for s in settings.reports.schedules if s.enabled]
    for schedule_id, spec, owner in stored:
        try:
            schedule = ScheduleConfig.model_validate_json(spec)
        except ValueError as exc:
            log.error("mail.schedule_invalid", schedule=schedule_id, error=str(exc)[:300])
            continue
        if schedule.enabled:
            out.append((schedule_key("db", schedule_id), schedule, owner))
    return out


def _message_id(key: str, domain: str) -> str:
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:32]}.{int(time.time())}@{domain}>"


def _domain(settings: Settings) -> str:
    return settings.smtp.from_address.rpartition("@")[2] or "localhost"


def report_mails(settings: Settings, key: str, schedule: ScheduleConfig, fired: Sequence[tuple[int, date]],
                 owner: str = "") -> list[NewMail]:
    """The outbox rows of ``schedule`` (made in the console by ``owner``) for the instants it ``fired`` at
    (``(UTC seconds, local day)``)."""
    out = []
    for at, day in fired:
        first, last = period_of(schedule.period, day)
        row_key = f"report:{key}:{first}:{last}"
        spec = json.dumps({"schedule": schedule.model_dump(mode="json"), "first": first.isoformat(),
                           "last": last.isoformat(), "owner": owner})
        subject = f"{settings.site.name}: {schedule.name}, {first} to {last}"
        out.append(NewMail(row_key, "report", key, _message_id(row_key, _domain(settings)),
                           tuple(schedule.recipients), subject, spec, at))
    return out


def alert_digests(alerts: Sequence[PendingAlert], settings: Settings, managers: Callable[[str], list[str]],
                  now: int) -> list[NewMail]:
    """One mail per recipient with every alert of ``alerts`` meant for them (`[alerts.email]`)."""
    cfg = settings.alerts.email
    if not alerts:
        return []
    mine: dict[str, list[dict[str, Any]]] = {}
    # The addresses the configuration names are the admin's choice and get numbers whole; a department's
    # managers get them as the console shows them to a manager (`[privacy]`).
    configured = {*cfg.recipients, *(a for addresses in cfg.rules.values() for a in addresses)}
    manager_digits = hidden_digits(Role("manager"), settings.privacy)
    for alert in alerts:
        payload = json.loads(alert.payload)
        if payload.get("state") == "resolved" and not cfg.resolved:
            continue
        to = [*cfg.recipients, *cfg.rules.get(alert.rule, ())]
        department = payload.get("department")
        if cfg.managers and alert.rule.startswith("budget") and isinstance(department, str):
            to += managers(department)
        for address in dict.fromkeys(to):
            digits = 0 if address in configured else manager_digits
            mine.setdefault(address, []).append(masked_payload(payload, digits))
    span = f"{alerts[0].row}-{alerts[-1].row}"
    out = []
    for address, payloads in mine.items():
        key = f"alerts:{span}:{address}"
        raised = [p for p in payloads if p.get("state") != "resolved"]
        if len(payloads) == 1:
            p = payloads[0]
            what = "resolved" if p.get("state") == "resolved" else str(p.get("severity", ""))
            subject = f"{settings.site.name}: alert {p.get('rule')} ({what}): {str(p.get('reason', ''))[:120]}"
        else:
            rules = sorted({str(p.get("rule")) for p in payloads})
            subject = (f"{settings.site.name}: {len(raised)} alerts, {len(payloads) - len(raised)} resolved "
                       f"({', '.join(rules)[:120]})")
        spec = json.dumps({"alerts": payloads})
        out.append(NewMail(key, "alerts", ALERTS_CURSOR, _message_id(key, _domain(settings)), (address,), subject,
                           spec, now))
    return out


def digest_text(payloads: list[dict[str, Any]], site: str) -> str:
    """The text of an alert digest: each alert (or resolved notice) with its time, rule, reason and where."""
    lines = [f"smdrd at {site}: {len(payloads)} alert event(s), oldest first.", ""]
    for p in payloads:
        state = "RESOLVED" if p.get("state") == "resolved" else str(p.get("severity", "")).upper()
        where = ", ".join(f"{k} {p[k]}" for k in ("extension", "department", "number", "source") if p.get(k))
        cost = f", cost {p['cost']} {p.get('currency') or ''}".rstrip() if p.get("cost") else ""
        lines.append(f"- {p.get('raised_at', '')} [{state}] {p.get('rule')}: {p.get('reason', '')}")
        if where or cost:
            lines.append(f"  {where}{cost}")
        lines.append(f"  id {p.get('id')}")
    lines += ["", "-- ", "smdrd, call accounting. Recipients are set in [alerts.email]; docs/alerts.md."]
    return "\n".join(lines) + "\n"


#: how a mail's note names a recipient the server refused for good (5xx), and one it put off (4xx) until later.
REFUSED = "refused for good:"
PUT_OFF = "put off:"


def _refused_for_good(note: str) -> str:
    """The recipients an earlier attempt's note says were refused for good (they stay noted once it is sent)."""
    return "; ".join(part for part in note.split("; ") if part.startswith(REFUSED))


class MailDelivery:
    """The mail feature of one daemon (`install`); `run` is its task."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.settings = daemon.settings
        self.store = open_store(self.settings.database.target)
        self._mail: MailStore | None = None
        self._db = ThreadPoolExecutor(1, thread_name_prefix="smdrd-mail-db")
        self._wake = asyncio.Event()
        #: when the mail history was last pruned (epoch seconds).
        self._pruned = 0.0
        #: set while the mail server fails: no other mail is tried before this (loop time).
        self._server_retry_at = 0.0
        self._server_backoff = Backoff(self.settings.smtp.retry_min, self.settings.smtp.retry_max)

    async def _store(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(mail store, *args)`` on the store's thread."""
        def call() -> T:
            if self._mail is None:
                self._mail = self.store.mail()
            return fn(self._mail, *args)

        return await asyncio.get_running_loop().run_in_executor(self._db, call)

    def wake(self) -> None:
        """Look at the schedules and the outbox now (a schedule was saved in the console)."""
        self._wake.set()

    def reloaded(self, settings: Settings) -> None:
        self.settings = settings
        self._server_backoff = Backoff(settings.smtp.retry_min, settings.smtp.retry_max)
        self._server_retry_at = 0.0
        self._wake.set()

    async def run(self) -> None:
        """Plan and send until cancelled."""
        try:
            while True:
                try:
                    await self.tick()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a locked database, a bug: logged, tried again at the next tick
                    log.error("mail.tick_failed", error=repr(exc)[:500])
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), TICK)
        finally:
            def close() -> None:
                if self._mail is not None:
                    self._mail.close()
                    self._mail = None

            self._db.submit(close)
            self._db.shutdown(wait=False)

    async def tick(self) -> None:
        now = int(time.time())
        await self._plan_schedules(now)
        if self.settings.alerts.email.enabled:
            await self._plan_alerts(now)
        if self.settings.smtp.enabled:
            await self._send_due(now)
        days = self.settings.smtp.history_days
        if days and now - self._pruned >= PRUNE_INTERVAL:
            self._pruned = now
            pruned = await self._store(lambda m, before: m.prune(before), now - days * 86400)
            if pruned:
                log.info("mail.pruned", mails=pruned, older_than_days=days)

    # ---- planning ----

    async def _plan_schedules(self, now: int) -> None:
        settings = self.settings
        stored = await self._store(lambda m: [(s.id, s.spec, s.owner) for s in m.schedules()])
        for key, schedule, owner in schedules_of(settings, stored):
            cursor_name = f"schedule:{key}"
            cursor = await self._store(lambda m, c: m.cursor(c), cursor_name)
            if cursor is None:  # a new schedule: from now on
                await self._store(lambda m, c: m.plan([], c), {cursor_name: now})
                log.info("mail.schedule_added", schedule=schedule.name, key=key, when=schedule.describe_when())
                continue
            fired = occurrences(schedule, settings.site.tz, cursor, now)
            if not fired:
                continue
            mails = report_mails(settings, key, schedule, [(o.at, o.day) for o in fired], owner)
            added = await self._store(lambda m, ms, c: m.plan(ms, c), mails, {cursor_name: fired[-1].at})
            for mail in mails[-added:] if added else ():
                log.info("mail.report_planned", schedule=schedule.name, key=mail.key, due=mail.due_at)

    async def _plan_alerts(self, now: int) -> None:
        cursor = await self._store(lambda m: m.cursor(ALERTS_CURSOR))
        if cursor is None:  # the first time: from now on, not the history
            await self._store(lambda m: m.plan([], {ALERTS_CURSOR: m.last_alert()}))
            return
        alerts = await self._store(lambda m: m.alerts_after(cursor, MAX_DIGEST))
        if not alerts:
            return
        oldest = _raised_at(alerts[0]) or now
        if now - oldest < self.settings.alerts.email.digest_seconds and len(alerts) < MAX_DIGEST:
            return  # the burst may go on: wait for the digest to fill

        def plan(m: MailStore) -> int:
            mails = alert_digests(alerts, self.settings, m.manager_emails, now)
            return m.plan(mails, {ALERTS_CURSOR: alerts[-1].row})

        added = await self._store(plan)
        log.info("mail.alerts_planned", alerts=len(alerts), mails=added)

    # ---- sending ----

    async def _send_due(self, now: int) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() < self._server_retry_at:
            return
        due = await self._store(lambda m: m.due(now, SEND_BATCH))
        if not due:
            return
        smtp = self.settings.smtp
        try:
            password = smtp_password(smtp, self.daemon.base_dir)
        except ValueError as exc:
            self._server_down(str(exc), due)
            for item in due:
                await self._store(lambda m, i, r: m.mark_retry(i, r, now), item.id, str(exc))
            return
        for item in due:
            refused = await self._store(out_of_scope, item)
            if refused is not None:
                log.warning("mail.out_of_scope", key=item.key, reason=refused)
                await self._store(lambda m, i, r: m.mark_failed(i, r), item.id, refused)
                continue
            hidden = await self._store(report_digits, item, self.settings.privacy)
            try:
                try:
                    message = await asyncio.to_thread(self._message, item, hidden)
                except StoreUnavailable:
                    raise RuntimeError("the database is busy") from None
            except (ValueError, KeyError, SmdrdError) as exc:  # it cannot be made (a filter that no longer fits,
                reason = f"cannot make the mail: {exc}"[:500]  # too large): give it up, saying why
                log.error("mail.render_failed", key=item.key, error=reason)
                await self._store(lambda m, i, r: m.mark_failed(i, r), item.id, reason)
                continue
            except Exception as exc:  # the database busy or gone: the same mail can be made later
                reason = f"cannot make the mail now: {type(exc).__name__}: {exc}"[:500]
                log.warning("mail.render_delayed", key=item.key, error=reason)
                await self._store(lambda m, i, r, t: m.mark_retry(i, r, t), item.id, reason,
                                  int(time.time() + smtp.retry_min))
                continue
            try:
                refusals = await send_mail(smtp, password, message)
            except SendError as exc:
                if exc.permanent:
                    log.error("mail.refused", key=item.key, error=exc.reason)
                    await self._store(lambda m, i, r: m.mark_failed(i, r), item.id, exc.reason)
                    continue
                delay = Backoff(smtp.retry_min, smtp.retry_max)
                delay.attempt = item.attempts
                retry = int(time.time() + delay.next_delay())
                await self._store(lambda m, i, r, t: m.mark_retry(i, r, t), item.id, exc.reason, retry)
                self._server_down(exc.reason, due)
                return
            self._server_backoff.reset()
            if refusals:
                await self._refused(item, refusals)
                continue
            sent = int(time.time())
            # recipients refused for good by an earlier attempt stay noted on the mail
            kept = _refused_for_good(item.last_error)
            await self._store(lambda m, i, t, n: m.mark_sent(i, t, n), item.id, sent, kept)
            log.info("mail.sent", key=item.key, kind=item.kind, to=len(item.recipients), attempts=item.attempts + 1)

    async def _refused(self, item: MailItem, refusals: list[Refusal]) -> None:
        """The server took ``item`` for some recipients and refused the others: those it put off (a 4xx, such as
        greylisting) get the same mail later, alone; those it refused for good (a 5xx) are given up, logged and
        noted on the mail. Nobody who has it gets it twice."""
        reason = "; ".join([*filter(None, [_refused_for_good(item.last_error)]),
                            *(f"{REFUSED if r.permanent else PUT_OFF} {r.address}: {r.code} {r.reason}"
                              for r in refusals)])[:500]
        later = [r.address for r in refusals if not r.permanent]
        log.warning("mail.recipients_refused", key=item.key, refused=reason, retried=len(later),
                    delivered=len(item.recipients) - len(refusals))
        if later:
            delay = Backoff(self.settings.smtp.retry_min, self.settings.smtp.retry_max)
            delay.attempt = item.attempts
            retry = int(time.time() + delay.next_delay())
            await self._store(lambda m, i, a, r, t: m.mark_partial(i, a, r, t), item.id, later, reason, retry)
        elif len(refusals) == len(item.recipients):
            await self._store(lambda m, i, r: m.mark_failed(i, r), item.id, reason)
        else:  # sent to the others: the refusals stay noted on it
            await self._store(lambda m, i, t, r: m.mark_sent(i, t, r), item.id, int(time.time()), reason)

    def _server_down(self, reason: str, due: list[MailItem]) -> None:
        delay = self._server_backoff.next_delay()
        self._server_retry_at = asyncio.get_running_loop().time() + delay
        level = log.warning if self._server_backoff.attempt == 1 else log.debug
        level("mail.send_failed", error=reason, waiting=len(due), retry_in=round(delay, 1))

    def _message(self, item: MailItem, hidden: int = 0) -> EmailMessage:
        """The mail of ``item`` (blocking: a report reads the store), a report's numbers with ``hidden`` last
        digits masked (`report_digits`)."""
        settings = self.settings
        msg = EmailMessage()
        msg["From"] = settings.smtp.from_address
        msg["To"] = ", ".join(item.recipients)
        msg["Subject"] = item.subject
        msg["Message-ID"] = item.message_id
        msg["Date"] = formatdate(localtime=False)
        msg["Auto-Submitted"] = "auto-generated"
        spec = json.loads(item.spec)
        if item.kind == "report":
            from smdrd.reports.mail import render_report_mail
            from smdrd.reports.queries import context_from

            schedule = ScheduleConfig.model_validate(spec["schedule"])
            first, last = date.fromisoformat(spec["first"]), date.fromisoformat(spec["last"])
            made = render_report_mail(self.store, schedule, first, last, ctx=context_from(settings),
                                      site=settings.site.name, mask_digits=hidden)
            msg.set_content(made.body)
            for a in made.attachments:
                maintype, _, subtype = a.content_type.partition("/")
                msg.add_attachment(a.data, maintype=maintype, subtype=subtype, filename=a.filename)
        else:
            msg.set_content(digest_text(spec["alerts"], settings.site.name))
        return msg


def report_digits(mail: MailStore, item: MailItem, privacy: PrivacyConfig) -> int:
    """How many last digits of each number a scheduled report's mail hides: as many as its owner sees hidden
    in the console (`[privacy]`); a schedule of the configuration is the admin's; one whose owner is gone
    hides what `[privacy]` hides from anyone not named (fail closed)."""
    if item.kind != "report":
        return 0
    owner = json.loads(item.spec).get("owner") or ""
    if not owner:
        return hidden_digits(Role("admin"), privacy)
    scope = mail.user_scope(owner)
    return hidden_digits(Role(scope[0]) if scope is not None else None, privacy)


def out_of_scope(mail: MailStore, item: MailItem) -> str | None:
    """Why a manager's scheduled report may no longer go (None when it may): its owner is still a manager of
    every department it covers (a manager moved to other departments, or made a viewer, stops it)."""
    if item.kind != "report":
        return None
    spec = json.loads(item.spec)
    owner = spec.get("owner") or ""
    if not owner:
        return None
    scope = mail.user_scope(owner)
    if scope is None or scope[0] == "admin":
        return None  # an admin's (or a removed user's: admins see and delete it in the console)
    role, departments = scope
    wanted = spec["schedule"].get("filters", {}).get("department", [])
    if role != "manager" or not wanted or any(d not in departments for d in wanted):
        return (f"{owner} ({role}) no longer manages every department this schedule covers "
                f"({', '.join(wanted) or 'the whole site'}); an admin can change it")
    return None


def _raised_at(alert: PendingAlert) -> int | None:
    try:
        text = json.loads(alert.payload).get("raised_at")
        return int(datetime.fromisoformat(text).timestamp()) if isinstance(text, str) else None
    except ValueError:
        return None


def install(daemon: Daemon) -> MailDelivery:
    """Add e-mail (scheduled reports, alert digests) to ``daemon``."""
    delivery = MailDelivery(daemon)
    daemon.reload_listeners.append(delivery.reloaded)
    daemon.add_task("mail", delivery.run)
    return delivery
