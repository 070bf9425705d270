"""The pipeline worker process (`smdrd.pipeline`): the operations the daemon sends it, and its main loop.

A module of its own so that the process imports only what it runs (the parsers, the rater, the alert engine):
no asyncio, no configuration schema, no logging setup. Each daemon start waits for the worker to be ready.

The daemon sends lists of operations, in order, over one pipe; the worker answers each message with the
answers of the operations that have one (`Lines`, `Close`, `Check`), in the same order. `Open`, `Configure`
and `SetAlerts` change the worker's state and are not answered.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smdrd.core import JournalEntry, flush_entry, process_frame
from smdrd.heap import settle
from smdrd.journal import Alert

if TYPE_CHECKING:
    from smdrd.alerts.engine import AlertStats, Departments
    from smdrd.alerts.rules import RuleSet, SourceSnapshot
    from smdrd.framing import Frame

__all__ = ["AlertSetup", "Answer", "Checked", "Op", "Spend", "main", "worker_main"]

#: spend stored this month, that budgets start from: (extension, local day YYYY-MM-DD, cost).
Spend = list[tuple[str, str, Decimal]]


@dataclass(slots=True)
class AlertSetup:
    """What the worker's alert engine runs: the compiled ``[alerts]`` rules and department directory, the
    site's timezone (its key) and name, and the tariff's decimals (`smdrd.alerts.engine.AlertEngine`)."""

    rules: RuleSet
    timezone: str
    site: str
    directory: Departments
    decimals: int


@dataclass(slots=True)
class Checked:
    """The answer to `Pipeline.check`: the operational alerts raised or resolved, and the engine's counters."""

    alerts: list[Alert]
    stats: AlertStats


#: one operation's answer: (stream id, its entries), or (check id, `Checked`).
Answer = tuple[int, "list[JournalEntry] | Checked"]


@dataclass(slots=True)
class Open:
    """A stream's parser is made (its lines follow)."""

    sid: int
    format: str
    encoding: str
    year: int | None
    options: dict[str, object]


@dataclass(slots=True)
class Lines:
    """Frames of a stream, received at ``received_at`` µs: answered with one entry each."""

    sid: int
    source: str
    peer: str
    received_at: int
    frames: Sequence[Frame]


@dataclass(slots=True)
class Close:
    """The stream ended: answered with what its parser held (a cut-off multi-leg call), if anything."""

    sid: int
    source: str
    peer: str
    received_at: int


@dataclass(slots=True)
class Configure:
    """The site and tariff (validated ``model_dump``\\ s) and the folder relative paths are read from; the
    number of the saved version the tariff is (None: the files'), which every rating names."""

    site: dict[str, Any]
    tariff: dict[str, Any]
    base_dir: str | None
    version: int | None = None


@dataclass(slots=True)
class SetAlerts:
    """The alert rules to run on every call (a new engine, or a reload of the running one)."""

    setup: AlertSetup
    seed: Spend | None  # a new engine's budgets start from it; None at a reload (the state carries over)
    #: a new engine's calls seen already (the uids of the newest stored calls): a PBX re-sending them after the
    #: daemon restarted raises no alert again and counts no spend twice.
    seen: list[str] | None = None


@dataclass(slots=True)
class Check:
    """The sources' state at ``now``: answered with `Checked`."""

    cid: int
    snapshots: list[SourceSnapshot]
    now: float
    stats_only: bool


Op = Open | Lines | Close | Configure | SetAlerts | Check


def main(fd: int) -> None:
    """The worker process's entry point: serve the daemon on the socket ``fd`` (its end of a socket pair)."""
    worker_main(Connection(fd))


def worker_main(conn: Connection) -> None:
    """The worker process: answer each message's operations, in order, with the entries they make."""
    from zoneinfo import ZoneInfo

    from smdrd.alerts.engine import AlertEngine
    from smdrd.parsing import Parser, ParserContext, get_parser_class
    from smdrd.rating import Rater
    from smdrd.rating.config import SiteConfig, TariffConfig

    # The daemon stops the worker through the pipe once everything sent is answered; a SIGTERM or Ctrl-C sent to
    # the whole group (systemd, a terminal) must not kill it first and lose the lines it holds.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    settle(once=False)  # the modules: long-lived, never garbage; the collector need not walk them (`smdrd.heap`)
    parsers: dict[int, tuple[Parser, str]] = {}
    site: SiteConfig | None = None
    rate: Callable[..., Any] | None = None
    engine: AlertEngine | None = None
    observe: Callable[..., Any] | None = None
    announced = False
    while True:
        try:
            ops = conn.recv()
        except (EOFError, OSError):
            return
        if ops is None:
            with contextlib.suppress(OSError):
                conn.send(None)
            return
        answers: list[Answer] = []
        for op in ops:
            if isinstance(op, Lines):
                parser, encoding = parsers[op.sid]  # opened before its lines: the same pipe, in order
                answers.append((op.sid, [
                    process_frame(frame, parser, encoding, source=op.source, peer=op.peer,
                                  received_at=op.received_at, rate=rate, observe=observe)
                    for frame in op.frames]))
            elif isinstance(op, Close):
                parser, _ = parsers.pop(op.sid)
                flushed = flush_entry(parser, source=op.source, peer=op.peer, received_at=op.received_at,
                                      rate=rate, observe=observe)
                answers.append((op.sid, [flushed] if flushed is not None else []))
            elif isinstance(op, Open):
                assert site is not None
                context = ParserContext(timezone=site.tz, year=op.year, options=op.options,
                                        country=site.country)
                parsers[op.sid] = (get_parser_class(op.format)(context), op.encoding)
            elif isinstance(op, Check):
                if engine is None:
                    answers.append((op.cid, Checked([], _no_stats())))
                    continue
                alerts = [] if op.stats_only else (engine.check_sources(op.snapshots, op.now)
                                                   + engine.check_periods(op.now))
                answers.append((op.cid, Checked(alerts, engine.stats)))
            elif isinstance(op, SetAlerts):
                setup = op.setup
                if engine is None:
                    engine = AlertEngine(setup.rules, ZoneInfo(setup.timezone), site=setup.site,
                                         directory=setup.directory, decimals=setup.decimals)
                else:
                    engine.configure(setup.rules, ZoneInfo(setup.timezone), site=setup.site,
                                     directory=setup.directory, decimals=setup.decimals)
                if op.seed:
                    engine.seed_spend(op.seed)
                if op.seen:
                    engine.seed_seen(op.seen)
                observe = engine.observe if engine.rules.calls else None
            else:
                try:
                    new_site = SiteConfig.model_validate(op.site)
                    base = Path(op.base_dir) if op.base_dir else None
                    rate = Rater.from_config(new_site, TariffConfig.model_validate(op.tariff), base_dir=base,
                                             version=op.version).rate
                    site = new_site
                except Exception as exc:  # validated by the daemon before it was sent; keep the old rater
                    import structlog

                    structlog.get_logger(__name__).error("pipeline.configure_failed",
                                                         error=f"{type(exc).__name__}: {exc}"[:500])
                    if site is None:
                        raise
        if answers or (not announced and site is not None):
            conn.send(answers)  # the first message, empty or not, says the worker is ready to parse
            if not announced:
                settle(once=False)  # the rater and the alert rules just built: long-lived too
            announced = True


def _no_stats() -> AlertStats:
    from smdrd.alerts.engine import AlertStats

    return AlertStats()
