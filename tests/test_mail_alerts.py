"""E-mail alerts, who gets what: every recipient one digest of what is meant for them; a budget alert (and its
resolved notice) also to the department's managers, set up with ``smdrd user email``; nobody else's budget."""

from __future__ import annotations

import io
import json
from datetime import date
from pathlib import Path

import pytest

from smdrd.cli import main
from smdrd.config import Settings
from smdrd.mail import alert_digests, digest_text
from smdrd.store import open_store
from smdrd.store.api import Actor, PendingAlert


def payload(alert_id: str, rule: str, *, department: str | None = None, state: str = "raised") -> str:
    return json.dumps({"id": alert_id, "rule": rule, "state": state, "severity": "warning",
                       "reason": f"{rule} happened", "department": department, "extension": "201",
                       "raised_at": "2026-03-04T10:00:00.000+00:00"})


def test_budget_alerts_reach_the_departments_managers_and_only_theirs(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "smdrd.db"
    accounts = open_store(db).accounts()
    try:
        for name, department in (("bob", "Sales"), ("carol", "Support")):
            accounts.add_user(name, "manager", "not-a-hash", [department], at=1, actor=Actor("test"))
    finally:
        accounts.close()
    assert main(["user", "email", "bob", "bob@example.com", "--database", str(db)]) == 0
    assert capsys.readouterr().out == "e-mail address of bob set to bob@example.com\n"
    with pytest.raises(SystemExit) as bad:
        main(["user", "email", "carol", "carol@example.com, eve@example.com", "--database", str(db)])
    assert bad.value.code == 2 and "expected one e-mail address" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("dora's long passphrase\n"))
    config = tmp_path / "smdrd.toml"
    config.write_text('[[departments]]\nname = "Sales"\nextensions = ["200-209"]\n')
    assert main(["user", "add", "dora", "--role", "manager", "--department", "Sales", "--email",
                 "dora@example.com", "--password-stdin", "--database", str(db), "--config", str(config)]) == 0

    settings = Settings.model_validate({"database": {"path": str(db)}, "site": {"name": "HQ"},
                                        "alerts": {"email": {"enabled": True, "recipients": ["ops@example.com"]}}})
    alerts = [PendingAlert(1, "a1", "velocity", payload("a1", "velocity")),
              PendingAlert(2, "b1", "budget", payload("b1", "budget", department="Sales")),
              PendingAlert(3, "b1:resolved", "budget", payload("b1:resolved", "budget", department="Sales",
                                                               state="resolved"))]
    mail = open_store(db).mail()
    try:
        assert mail.user_emails() == {"bob": "bob@example.com", "dora": "dora@example.com"}
        mail.set_user_email("carol", "carol@example.com", at=2, actor=Actor("test"))
        mail.set_user_email("dora", "", at=2, actor=Actor("test"))
        assert mail.manager_emails("Sales") == ["bob@example.com"]
        mails = alert_digests(alerts, settings, mail.manager_emails, now=100)
    finally:
        mail.close()
    by_to = {m.recipients: m for m in mails}
    assert sorted(by_to) == [("bob@example.com",), ("ops@example.com",)]
    ops = [a["id"] for a in json.loads(by_to["ops@example.com",].spec)["alerts"]]
    bob = json.loads(by_to["bob@example.com",].spec)["alerts"]
    assert ops == ["a1", "b1", "b1:resolved"]
    assert [a["id"] for a in bob] == ["b1", "b1:resolved"]
    text = digest_text(bob, "HQ")
    assert "[WARNING] budget: budget happened" in text and "[RESOLVED] budget" in text
    assert by_to["bob@example.com",].key == "alerts:1-3:bob@example.com"  # planned again: the same row


def test_a_managers_schedule_stops_when_they_no_longer_manage_its_departments(tmp_path: Path) -> None:
    from smdrd.mail import out_of_scope, report_mails
    from smdrd.reports.schedules import ScheduleConfig

    db = tmp_path / "smdrd.db"
    settings = Settings.model_validate({"database": {"path": str(db)}})
    accounts = open_store(db).accounts()
    try:
        accounts.add_user("maria", "manager", "not-a-hash", ["Sales"], at=1, actor=Actor("test"))
        schedule = ScheduleConfig(name="s", recipients=["m@example.com"], filters={"department": ["Sales"]})
        [mine] = report_mails(settings, "db:1", schedule, [(100, date(2026, 3, 1))], "maria")
        mail = open_store(db).mail()
        try:
            mail.plan([mine], {})
            [item] = mail.due(200)
            assert out_of_scope(mail, item) is None
            accounts.change_user("maria", role="manager", departments=["Support"], at=2, actor=Actor("test"))
            reason = out_of_scope(mail, item)
            assert reason is not None and "maria (manager) no longer manages every department" in reason
        finally:
            mail.close()
    finally:
        accounts.close()


def test_a_managers_mail_hides_the_digits_the_console_hides_from_them(tmp_path: Path) -> None:
    """`[privacy] mask_digits = 3` (managers not among `unmasked_roles`): a department manager's budget digest
    shows 022-123-4***, in the number and in the reason (which a rule writes with the digits alone); the address
    the configuration names gets it whole."""
    db = tmp_path / "smdrd.db"
    accounts = open_store(db).accounts()
    try:
        accounts.add_user("bob", "manager", "not-a-hash", ["Sales"], at=1, actor=Actor("test"))
    finally:
        accounts.close()
    settings = Settings.model_validate({"database": {"path": str(db)}, "site": {"name": "HQ"},
                                        "privacy": {"mask_digits": 3},
                                        "alerts": {"email": {"enabled": True, "recipients": ["ops@example.com"]}}})
    body = json.loads(payload("b1", "budget", department="Sales"))
    body |= {"number": "022-123-4567", "reason": "Sales passed its budget with a call to 0221234567"}
    mail = open_store(db).mail()
    try:
        mail.set_user_email("bob", "bob@example.com", at=2, actor=Actor("test"))
        mails = alert_digests([PendingAlert(1, "b1", "budget", json.dumps(body))], settings, mail.manager_emails,
                              now=100)
    finally:
        mail.close()
    by_to = {m.recipients[0]: m for m in mails}
    bob, ops = by_to["bob@example.com"], by_to["ops@example.com"]
    assert "4567" not in bob.spec and "4567" not in bob.subject
    (alert,) = json.loads(bob.spec)["alerts"]
    assert alert["number"] == "022-123-4***" and "0221234***" in alert["reason"]
    assert json.loads(ops.spec)["alerts"][0]["number"] == "022-123-4567"


@pytest.mark.parametrize(("owner", "role", "hidden"), [("", None, 0), ("alice", "admin", 0), ("maria", "manager", 3),
                                                        ("victor", "viewer", 3), ("gone", None, 3)])
def test_a_scheduled_reports_numbers_are_masked_as_its_owner_sees_them(tmp_path: Path, owner: str,
                                                                       role: str | None, hidden: int) -> None:
    """A schedule made in the console mails what its owner may see; one of the configuration is the admin's;
    one whose owner was removed hides what `[privacy]` hides from anyone (fail closed)."""
    from smdrd.mail import report_digits, report_mails
    from smdrd.reports.schedules import ScheduleConfig

    db = tmp_path / "smdrd.db"
    settings = Settings.model_validate({"database": {"path": str(db)}, "privacy": {"mask_digits": 3}})
    if role is not None:
        accounts = open_store(db).accounts()
        try:
            accounts.add_user(owner, role, "not-a-hash", ["Sales"] if role == "manager" else [], at=1,
                              actor=Actor("test"))
        finally:
            accounts.close()
    schedule = ScheduleConfig(name="s", recipients=["m@example.com"])
    [mine] = report_mails(settings, "db:1", schedule, [(100, date(2026, 3, 1))], owner)
    mail = open_store(db).mail()
    try:
        mail.plan([mine], {})
        [item] = mail.due(200)
        assert report_digits(mail, item, settings.privacy) == hidden
    finally:
        mail.close()
