"""The ``[database]`` and ``[retention]`` sections: the SQLite file, how the journal writer commits, and how
long lines and call details are kept. `smdrd.config` composes them into `~smdrd.config.Settings`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from smdrd.section import Section

__all__ = ["MIN_CALLS_DAYS", "DatabaseConfig", "RetentionConfig"]


class DatabaseConfig(Section):
    """The SQLite file and how the journal writer commits."""

    path: Path = Path("/var/lib/smdrd/smdrd.db")
    # 50 ms: with the commit itself, a live line is committed within 100 ms of receipt.
    commit_interval_ms: int = Field(default=50, ge=1, le=60_000)
    batch_rows: int = Field(default=5000, ge=1, le=1_000_000)
    # Received but uncommitted lines, where sources stop reading and TCP holds the PBX back. 5,000 is what the
    # writer commits in well under a second on a small box: what a kill -9 can lose stays small (docs/faults.md).
    max_pending_rows: int = Field(default=5_000, ge=100, le=1_000_000)
    # Parse and rate in a worker process (`smdrd.pipeline`) instead of on the event loop. The lines the worker
    # holds count in max_pending_rows and sources start once it is ready, so a SIGKILL loses no more than
    # without it (tests/faults/test_daemon_restarts.py runs both). Off by default: the alert rules still run on
    # the event loop: the worker sustains 1.7x the loop in a flood, but its extra hop costs latency at 1,000 lines/s
    # (p99 105 against 92 ms; README, bench/live.py).
    parse_in_worker: bool = False


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
