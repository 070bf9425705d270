"""The ``[smtp]`` section: the mail server scheduled reports and e-mail alerts go through, and its password.

The password is never in the configuration file: ``password_file`` names a file (mode 0600, or a systemd
credential under ``/run/credentials/``), or ``password_credential`` names a credential that systemd hands the
service in ``$CREDENTIALS_DIRECTORY`` (``LoadCredential=smtp-password:/etc/smdrd/smtp-password``). An error
about either names the file, never its content. `smdrd.config` composes this section into
`~smdrd.config.Settings`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from smdrd.section import Section

__all__ = ["MAX_PASSWORD_LENGTH", "SmtpConfig", "check_address", "check_addresses", "smtp_password",
           "smtp_password_path"]

#: the longest password read from a file (a longer file is refused, never read whole).
MAX_PASSWORD_LENGTH = 1024
#: an e-mail address as smdrd accepts it: one ``@``, no spaces, no angle brackets or commas (header injection).
_ADDRESS = re.compile(r"^[^@\s<>,;\"()\[\]\\]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,253})$")


def check_address(value: str) -> str:
    """``value`` stripped, if it is one plain e-mail address (``name@example.com``).

    Raises:
        ValueError: saying what was expected.
    """
    text = value.strip()
    if not _ADDRESS.match(text) or ".." in text.partition("@")[2]:
        raise ValueError(f"expected one e-mail address such as finance@example.com, got {value[:80]!r}")
    return text


def check_addresses(values: list[str]) -> list[str]:
    """Each of ``values`` checked by `check_address`, once each, in their order."""
    return list(dict.fromkeys(check_address(a) for a in values))


class SmtpConfig(Section):
    """The mail server (docs/reports.md#scheduled-reports-by-e-mail)."""

    #: off by default: with no mail server, schedules and e-mail alerts wait in the outbox.
    enabled: bool = False
    host: str = "localhost"
    #: 587 is submission with STARTTLS; 465 is TLS from the first byte; 25 is plain relay.
    port: int = Field(default=587, ge=1, le=65535)
    #: ``starttls`` (upgrade a plain connection; refused if the server cannot), ``tls`` (TLS from the start) or
    #: ``none`` (plain text: a relay on the box or the LAN only).
    security: Literal["starttls", "tls", "none"] = "starttls"
    #: a CA bundle (PEM) to verify the server with instead of the system's (a private CA); certificates are
    #: always verified.
    ca_file: Path | None = None
    #: log in with this name (and the password below); empty: no authentication.
    username: str = ""
    password_file: Path | None = None
    #: the name of a systemd credential (read from ``$CREDENTIALS_DIRECTORY``).
    password_credential: str = ""
    #: the sender of every mail smdrd sends.
    from_address: str = "smdrd@localhost"
    #: seconds for connecting and for each command.
    timeout: float = Field(default=30.0, gt=0, le=600)
    #: a mail that could not be sent is tried again after a growing delay, from this many seconds...
    retry_min: float = Field(default=30.0, gt=0, le=86400)
    #: ...to at most this many.
    retry_max: float = Field(default=3600.0, gt=0, le=86400)
    #: sent and failed mails are listed (in the console) this many days, then deleted; 0 keeps them for ever.
    history_days: int = Field(default=400, ge=0)

    @field_validator("from_address")
    @classmethod
    def _from(cls, v: str) -> str:
        return check_address(v)

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        if not v.strip() or any(c.isspace() for c in v.strip()):
            raise ValueError(f"expected a host name or address, got {v!r}")
        return v.strip()

    @field_validator("password_credential")
    @classmethod
    def _credential(cls, v: str) -> str:
        if v and (not re.fullmatch(r"[A-Za-z0-9_.@-]{1,128}", v) or v in (".", "..")):
            raise ValueError(f"expected a credential name such as smtp-password, got {v[:80]!r}")
        return v

    @model_validator(mode="after")
    def _one_password(self) -> SmtpConfig:
        if self.password_file is not None and self.password_credential:
            raise ValueError("password_file and password_credential: set one, not both")
        if (self.password_file is not None or self.password_credential) and not self.username:
            raise ValueError("a password is set but no username: set username too (or remove the password)")
        return self


def smtp_password_path(cfg: SmtpConfig) -> Path | None:
    """Where the password is read from (``None`` when there is none, or the credential is absent here)."""
    if cfg.password_file is not None:
        return cfg.password_file
    if cfg.password_credential:
        folder = os.environ.get("CREDENTIALS_DIRECTORY")
        return Path(folder) / cfg.password_credential if folder else None
    return None


def smtp_password(cfg: SmtpConfig, base_dir: Path | None = None) -> str | None:
    """The SMTP password, or ``None`` without authentication.

    Raises:
        ValueError: the file cannot be read, is not text, is empty or too long; the credential is not there.
            The message names the file, never its content.
    """
    if cfg.password_credential and "CREDENTIALS_DIRECTORY" not in os.environ:
        raise ValueError(f"systemd credential {cfg.password_credential!r}: $CREDENTIALS_DIRECTORY is not set "
                         "(LoadCredential= in the unit; outside the service use password_file)")
    path = smtp_password_path(cfg)
    if path is None:
        return None
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_PASSWORD_LENGTH + 2)
    except FileNotFoundError:
        raise ValueError(f"cannot read {str(path)!r}: file not found") from None
    except OSError as exc:
        raise ValueError(f"cannot read {str(path)!r}: {(exc.strerror or type(exc).__name__).lower()}") from None
    except ValueError:
        raise ValueError(f"cannot read {str(path)!r}: not a valid path") from None
    if len(data) > MAX_PASSWORD_LENGTH + 1:
        raise ValueError(f"{str(path)!r} is too long; expected a password of at most {MAX_PASSWORD_LENGTH} bytes")
    try:
        password = data.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise ValueError(f"{str(path)!r} is not UTF-8 text; expected the password on one line") from None
    if not password or "\n" in password:
        raise ValueError(f"{str(path)!r}: expected the password on one line, and not empty")
    return password
