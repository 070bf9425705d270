"""The ``[database]`` and ``[retention]`` sections: the SQLite file, how the journal writer commits, and how
long lines and call details are kept. `smdrd.config` composes them into `~smdrd.config.Settings`."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import Field, field_validator

from smdrd.section import Section

__all__ = ["MIN_CALLS_DAYS", "DatabaseConfig", "RetentionConfig"]


class DatabaseConfig(Section):
    """The SQLite file (or a PostgreSQL database's URL) and how the journal writer commits."""

    path: Path = Path("/var/lib/smdrd/smdrd.db")
    #: ``postgresql://user:password@host:port/database``: the PostgreSQL store instead of the SQLite file at
    #: ``path`` (docs/scaling.md). Empty: SQLite. Its password is never printed (check-config, logs, errors).
    url: str = ""
    # 25 ms: with the commit itself and the worker's hop, a live line is committed well within 100 ms of receipt,
    # even while people use the console (bench/console.py); a commit of a few dozen rows costs about a millisecond.
    commit_interval_ms: int = Field(default=25, ge=1, le=60_000)
    batch_rows: int = Field(default=5000, ge=1, le=1_000_000)
    # Received but uncommitted lines, where sources stop reading and TCP holds the PBX back. 5,000 is what the
    # writer commits in well under a second on a small box: what a kill -9 can lose stays small (docs/faults.md).
    max_pending_rows: int = Field(default=5_000, ge=100, le=1_000_000)
    # Parse, rate and run the alert rules in a worker process (`smdrd.pipeline`), off the event loop, which then
    # only frames bytes, commits and serves HTTP. The lines the worker holds count in max_pending_rows and
    # sources start once it is ready, so a SIGKILL loses no more than without it (tests/faults/
    # test_daemon_restarts.py runs both). false runs them all on the event loop (README, bench/live.py).
    parse_in_worker: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError("expected a postgresql://user@host:port/database URL, or nothing for SQLite")
        try:
            parts.port  # noqa: B018 - parsing it is the check
        except ValueError:
            raise ValueError("the port of the URL is not a number") from None
        if not parts.path.strip("/") and "dbname=" not in parts.query:
            raise ValueError("the URL names no database (postgresql://user@host/DATABASE)")
        return v

    @property
    def target(self) -> Path | str:
        """What `smdrd.store.open_store` opens: the URL when one is set, else the SQLite file."""
        return self.url or self.path

    @property
    def present(self) -> bool:
        """There is a database to read: a PostgreSQL one (its server says so when it is opened), or the SQLite
        file exists (a command that only reads must not create one)."""
        return bool(self.url) or self.path.exists()

    @property
    def shown(self) -> str:
        """The database for a person to read: the file, or the URL without its password."""
        return redact_url(self.url) if self.url else str(self.path)


#: the query parameters of a PostgreSQL URL that hold a secret (libpq's keywords).
_SECRET_PARAMS = re.compile(r"(?<![^&])(password|sslpassword)=[^&]*")


def redact_url(url: str) -> str:
    """``url`` for messages and logs: its password shown as ``***``, in either of the forms libpq takes
    (``postgresql://user:SECRET@host/db`` and ``?password=SECRET``, or ``sslpassword``)."""
    parts = urlsplit(url)
    netloc, query = parts.netloc, parts.query
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    if query:
        query = _SECRET_PARAMS.sub(r"\1=***", query)
    return parts._replace(netloc=netloc, query=query).geturl()


def url_secrets(url: str) -> list[str]:
    """The secrets ``url`` holds, as written and percent-decoded, longest first: what must not appear in a
    message either (libpq repeats a malformed value in its error)."""
    parts = urlsplit(url)
    found = [parts.password or ""]
    found += [value for key, value in parse_qsl(parts.query, keep_blank_values=True)
              if key in ("password", "sslpassword")]
    found += [m.group(0).split("=", 1)[1] for m in _SECRET_PARAMS.finditer(parts.query)]
    return sorted({v for f in found for v in (f, unquote(f)) if v}, key=len, reverse=True)


#: the shortest non-zero ``[retention] calls_days``: a month of details, and a margin for re-sent buffers.
MIN_CALLS_DAYS = 31


class RetentionConfig(Section):
    """How long raw journal lines and call details are kept (docs/retention.md); 0 keeps them for ever.

    Pruning deletes only details: the report rollups keep every past day's figures exact. Delivered alerts
    have their own period, ``[alerts] retention_days``.
    """

    #: call details (the ``calls`` listing, exports, ``stored_spend``) are kept this many site-local days.
    calls_days: int = Field(default=3660, ge=0)
    #: raw journal lines are kept this many days (never longer than ``calls_days``); a line whose call is still
    #: kept keeps its row and status, only its bytes are emptied.
    lines_days: int = Field(default=400, ge=0)
    #: minutes between pruning runs (the first runs at start).
    interval_minutes: float = Field(default=60.0, gt=0, le=7 * 24 * 60)
    #: rows deleted per transaction: small, so the journal writer waits milliseconds at most.
    batch_rows: int = Field(default=1000, ge=1, le=100_000)
    #: pause between two batches, in milliseconds: the journal writer takes the write lock in it.
    pause_ms: int = Field(default=50, ge=0, le=60_000)

    @field_validator("calls_days")
    @classmethod
    def _calls_days(cls, v: int) -> int:
        # Budgets are re-read from this month's calls after a restart, and a re-sent line is recognised by its
        # stored call: details younger than a month must stay.
        if 0 < v < MIN_CALLS_DAYS:
            raise ValueError(f"expected 0 (keep for ever) or at least {MIN_CALLS_DAYS} days, got {v}")
        return v
