"""What both stores do alike that is not SQL: rows read back into the plain values of `smdrd.store.api`, names
cleaned before they are kept, the audit log's JSON, the tariff document's text.

`smdrd.store.sqlite` and `smdrd.store.postgres` select the same columns in the same order (the tuples below name
them) and map the rows here, so a console page or a report reads the same values from either store.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from typing import Any

from smdrd.store.api import (
    AuditEntry,
    InboxAlert,
    MailItem,
    StoredCall,
    StoredLine,
    StoredSchedule,
    TariffVersionInfo,
    User,
)

__all__ = ["AUDIT_FIELDS", "CALL_FIELDS", "INBOX_FIELDS", "LINE_FIELDS", "MAIL_FIELDS", "MAX_ERROR",
           "MAX_NAME_CHARS", "SCHEDULE_FIELDS", "TARIFF_FIELDS", "USER_FIELDS", "alert_view", "audit_entry",
           "audit_text", "clean_name", "inbox_alert", "iso_day", "mail_item", "rule_count", "stored_call",
           "stored_line", "stored_schedule", "tariff_info", "tariff_text", "user"]

#: the longest extension name kept (a PBX field may hold more; the rest is cut).
MAX_NAME_CHARS = 100

#: the longest error kept with a mail (an SMTP server's reply can be long).
MAX_ERROR = 500

#: a `StoredCall`'s columns of ``calls``, in `stored_call`'s order.
CALL_FIELDS = ("id", "line_id", "source", "format", "call_key", "leg", "start", "start_utc", "duration", "ring",
               "direction", "extension", "number", "trunk", "account", "call_id", "answered", "transfer", "extra",
               "e164", "region", "call_class", "rule", "prefix", "cost_micros", "currency", "tariff_version")
#: a `StoredLine`'s columns of ``lines``.
LINE_FIELDS = ("id", "source", "peer", "received_at", "format", "raw", "status", "error")
#: a `User`'s columns of ``users`` (its departments are read apart).
USER_FIELDS = ("id", "name", "role", "created_at", "failed_logins", "locked_until")
#: an `AuditEntry`'s columns of ``audit_log``.
AUDIT_FIELDS = ("id", "at", "actor", "address", "action", "target", "before", "after")
#: a `MailItem`'s columns of ``mail_outbox``.
MAIL_FIELDS = ("id", "key", "kind", "owner", "message_id", "recipients", "subject", "spec", "state", "attempts",
               "last_error", "created_at", "due_at", "next_attempt_at", "sent_at")
#: a `StoredSchedule`'s columns of ``report_schedules``.
SCHEDULE_FIELDS = ("id", "name", "owner", "spec", "created_at", "updated_at")
#: a `TariffVersionInfo`'s columns of ``tariff_versions`` (then ``document`` for a whole version).
TARIFF_FIELDS = ("version", "created_at", "actor", "note", "rules")
#: what an inbox read selects: the alert's outbox columns, its state, then what people and the rule did.
INBOX_FIELDS = ("id", "alert_id", "rule", "severity", "created_at", "payload", "state", "acked_by", "acked_at",
                "snoozed_until", "snoozed_by", "resolved_at")


def clean_name(name: str) -> str:
    """A name as kept: control characters become spaces, runs of spaces one, at most `MAX_NAME_CHARS`."""
    return " ".join("".join(c if c.isprintable() else " " for c in name).split())[:MAX_NAME_CHARS]


def iso_day(value: str | None) -> date | None:
    """A stored ISO day (``None`` stays ``None``)."""
    return None if value is None else date.fromisoformat(value)


def _json_object(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        value = {}
    return value if isinstance(value, dict) else {}


def stored_call(row: Sequence[Any]) -> StoredCall:
    """A row of `CALL_FIELDS`, and then the call's site name when the read selects it."""
    return StoredCall(
        id=int(row[0]), line_id=int(row[1]), source=row[2], format=row[3], call_key=row[4], leg=int(row[5]),
        start=row[6], start_utc=int(row[7]), duration=int(row[8]), ring=None if row[9] is None else int(row[9]),
        direction=row[10], extension=row[11], number=row[12], trunk=row[13], account=row[14], call_id=row[15],
        answered=bool(row[16]), transfer=row[17], extra=_json_object(row[18]), e164=row[19],
        region=row[20] or "", call_class=row[21], rule=row[22], prefix=row[23],
        cost_micros=None if row[24] is None else int(row[24]), currency=row[25], tariff_version=row[26],
        site=str(row[27] or "") if len(row) > len(CALL_FIELDS) else "")


def stored_line(row: Sequence[Any]) -> StoredLine:
    """A row of `LINE_FIELDS`."""
    return StoredLine(int(row[0]), row[1], row[2], int(row[3]), row[4], bytes(row[5]), row[6], row[7])


def user(row: Sequence[Any], departments: Sequence[str]) -> User:
    """A row of `USER_FIELDS` and the user's departments."""
    return User(int(row[0]), row[1], row[2], tuple(departments), int(row[3]), int(row[4]), int(row[5]))


def audit_text(value: dict[str, Any] | None) -> str | None:
    """An audit entry's before or after as stored: a JSON object with sorted keys (``None`` stays)."""
    return None if value is None else json.dumps(value, sort_keys=True)


def audit_entry(row: Sequence[Any]) -> AuditEntry:
    """A row of `AUDIT_FIELDS`."""
    return AuditEntry(int(row[0]), int(row[1]), row[2], row[3], row[4], row[5],
                      None if row[6] is None else json.loads(row[6]), None if row[7] is None else json.loads(row[7]))


def mail_item(row: Sequence[Any]) -> MailItem:
    """A row of `MAIL_FIELDS`."""
    return MailItem(int(row[0]), row[1], row[2], row[3], row[4], tuple(json.loads(row[5])), row[6], row[7], row[8],
                    int(row[9]), row[10], int(row[11]), int(row[12]), int(row[13]),
                    None if row[14] is None else int(row[14]))


def stored_schedule(row: Sequence[Any] | None) -> StoredSchedule | None:
    """A row of `SCHEDULE_FIELDS` (``None``: no such schedule)."""
    return None if row is None else StoredSchedule(int(row[0]), row[1], row[2], row[3], int(row[4]), int(row[5]))


def tariff_info(row: Sequence[Any]) -> TariffVersionInfo:
    """A row of `TARIFF_FIELDS`."""
    return TariffVersionInfo(int(row[0]), int(row[1]), str(row[2]), str(row[3]), int(row[4]))


def tariff_text(document: dict[str, Any]) -> str:
    """A tariff document as a version stores it."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def rule_count(document: dict[str, Any]) -> int:
    """How many rules a tariff document holds."""
    return len(document.get("rules", ()))


def inbox_alert(row: Sequence[Any]) -> InboxAlert:
    """A row of `INBOX_FIELDS`."""
    return InboxAlert(int(row[0]), row[1], row[2], row[3], int(row[4]), _json_object(row[5]), row[6], row[7], row[8],
                      row[9], row[10], row[11])


def alert_view(alert: InboxAlert) -> dict[str, Any]:
    """What the audit log keeps of an alert's state before and after a change."""
    return {"state": alert.state, "acked_by": alert.acked_by, "acked_at": alert.acked_at,
            "snoozed_until": alert.snoozed_until, "snoozed_by": alert.snoozed_by}
