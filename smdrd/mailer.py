"""The SMTP edge: one mail to the ``[smtp]`` server with aiosmtplib (STARTTLS or TLS, verified certificates,
optional login), and what a failure means.

Every aiosmtplib call of smdrd is in this module. A failure is a `SendError` that says whether trying again
can help (``permanent``: the server refused the sender, a recipient or the content with a 5xx reply) and why,
in words that never hold the password (the error text is shown in the console and logged).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib

from smdrd.errors import SmdrdError
from smdrd.mail_config import SmtpConfig

__all__ = ["Refusal", "SendError", "send_mail", "tls_context"]


class SendError(SmdrdError):
    """A mail was not accepted. ``permanent``: the same mail will be refused again (a 5xx reply)."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


def tls_context(cfg: SmtpConfig) -> ssl.SSLContext:
    """A client context that verifies the server (against ``ca_file`` when set)."""
    return ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file is not None else None)


def _reason(exc: BaseException, password: str | None) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if password:
        text = text.replace(password, "********")
    return " ".join(text.split())[:400]


@dataclass(frozen=True, slots=True)
class Refusal:
    """A recipient the server refused while it took the mail for others: its reply code and text."""

    address: str
    code: int
    reason: str

    @property
    def permanent(self) -> bool:
        """A 5xx reply: this address will be refused again (a 4xx, such as greylisting, may pass later)."""
        return 500 <= self.code < 600


async def send_mail(cfg: SmtpConfig, password: str | None, message: EmailMessage) -> list[Refusal]:
    """Send ``message`` to its recipients (``To``) through the server of ``cfg``.

    Returns:
        The recipients the server refused while it accepted the mail for the others (aiosmtplib reports these
        instead of raising), for the caller to send to again or give up on: empty when every one took it.

    Raises:
        SendError: not accepted for anybody (never holds the password).
    """
    tls = cfg.security != "none"
    try:
        refused, _ = await aiosmtplib.send(
            message, hostname=cfg.host, port=cfg.port, username=cfg.username or None,
            password=password if cfg.username else None, use_tls=cfg.security == "tls",
            start_tls=True if cfg.security == "starttls" else False,  # noqa: SIM210 (None would mean "if offered")
            tls_context=tls_context(cfg) if tls else None, timeout=cfg.timeout)
    except aiosmtplib.SMTPRecipientsRefused as exc:
        codes = {r.code for r in exc.recipients}
        raise SendError(_reason(exc, password), permanent=all(500 <= c < 600 for c in codes)) from None
    except aiosmtplib.SMTPAuthenticationError as exc:  # a wrong password is fixed in the config, then retried
        raise SendError(f"the server refused the login of {cfg.username!r} ({exc.code})") from None
    except aiosmtplib.SMTPResponseException as exc:
        raise SendError(_reason(exc, password), permanent=500 <= exc.code < 600) from None
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise SendError(_reason(exc, password)) from None
    return [Refusal(address, reply.code, " ".join(reply.message.split())[:200])
            for address, reply in sorted(refused.items())]
