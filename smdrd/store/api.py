"""What the rest of smdrd asks of a store: small protocols, and the plain values they exchange.

A store (`smdrd.store.sqlite` on the box; a PostgreSQL sibling for a central or large site) implements these.
Nothing here does I/O, and nothing here is SQL: reports, alert delivery, retention, export and the rebuild
commands are written against these protocols, so a second store is a sibling package, not a rewrite.

The protocols are split by who uses them (the report builders never see the writer; the publisher never sees a
report), and every method takes and returns plain values or `smdrd.journal` types.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from smdrd.errors import SmdrdError
from smdrd.journal import Alert, JournalEntry

__all__ = [
    "ALERT_STATES",
    "CALL_DETAIL",
    "CALL_SORTS",
    "LOCAL_SITE",
    "MAIL_STATES",
    "REVISION_FEED",
    "ROLES",
    "ROLLUP_TABLES",
    "SITE",
    "Accounts",
    "Actor",
    "AlertFilter",
    "AlertInbox",
    "ApiToken",
    "AuditEntry",
    "AuditLog",
    "CallExport",
    "CallFeed",
    "CallQuery",
    "CallReader",
    "Cutoffs",
    "DirectoryConflict",
    "DirectoryDepartment",
    "DirectoryExtension",
    "DirectoryMembership",
    "DirectorySnapshot",
    "DirectoryStore",
    "ExtensionNames",
    "ExtensionSpec",
    "FeedCall",
    "Filters",
    "InboxAlert",
    "Interval",
    "JournalLine",
    "LastAdmin",
    "LineCursor",
    "MailItem",
    "MailStore",
    "NewMail",
    "OutboxStore",
    "PendingAlert",
    "PruneCounts",
    "RatingUpdate",
    "Rebuild",
    "ReplaceResult",
    "ReportReader",
    "Retention",
    "SessionInfo",
    "SessionStore",
    "SiteSeen",
    "Store",
    "StoreUnavailable",
    "StoredCall",
    "StoredLine",
    "StoredRating",
    "StoredSchedule",
    "TariffConflict",
    "TariffStore",
    "TariffVersion",
    "TariffVersionInfo",
    "TokenStore",
    "User",
    "UserExists",
    "UserStore",
    "cutoffs",
    "name_at",
    "removed_owner",
    "utc_bounds",
]


class StoreUnavailable(SmdrdError):
    """The store cannot be read or written right now (locked, full, read-only, gone): the same work may succeed
    later, so the caller keeps it and retries. Any other error is about the data itself."""


#: the rollups a report builder may read, and the grouping columns each has (besides day and extension).
ROLLUP_TABLES: dict[str, tuple[str, ...]] = {
    "rollup_daily": ("direction", "call_class", "trunk"),
    "rollup_destinations": ("country", "region", "call_class", "direction", "trunk"),
}

#: the call-detail fields, in the order `ReportReader.iter_call_rows` returns them (then the call's site name).
CALL_DETAIL = ("start", "extension", "number", "direction", "call_class", "trunk", "duration", "cost_micros",
               "leg", "call_key", "rule")

#: the grouping column `ReportReader.daily_rows` takes on any rollup: the name of the site of the row's calls.
SITE = "site"

#: the id of a store's own site in its ``sites`` table (named from ``[site] name``): every call its own journal
#: writer stores, in SQLite and in PostgreSQL alike; a central store's other sites get theirs as they publish.
LOCAL_SITE = 1

#: a department selection's span: ``(extension, first day, last day)``, or the same at one site (its name last).
Interval = tuple[str, str, str] | tuple[str, str, str, str]


@dataclass(frozen=True, slots=True)
class Filters:
    """What a report covers: site-local days (both included) and the store-side filters (empty = any)."""

    first: date
    last: date
    extensions: tuple[str, ...] = ()
    trunks: tuple[str, ...] = ()
    directions: tuple[str, ...] = ("outbound",)
    classes: tuple[str, ...] = ()
    #: site names (``[site] name`` of the sites a central store collects; a site's own journal is one site).
    sites: tuple[str, ...] = ()


class ExtensionSpec(Protocol):
    """An extension, or a numeric range of them (a department membership's ``spec``)."""

    @property
    def spec(self) -> str: ...

    @property
    def lo(self) -> int | None: ...

    @property
    def hi(self) -> int | None: ...


def utc_bounds(first: date, last: date, tz: ZoneInfo) -> tuple[int, int]:
    """Epoch seconds of the start of ``first`` and of the day after ``last``, both site-local midnights."""
    lo = datetime.combine(first, time(), tz).timestamp()
    hi = datetime.combine(last + timedelta(days=1), time(), tz).timestamp()
    return int(lo), int(hi)


@dataclass(frozen=True, slots=True)
class SiteSeen:
    """A site whose calls a store holds, by name, and when its newest journal line was received (UTC
    microseconds at the site; ``None``: none kept): a site that stopped publishing shows by it."""

    name: str
    last_line: int | None


class ReportReader(Protocol):
    """Report reads: rollup sums and call-detail ranges, never a scan of every call. One reader serves one
    report at a time (its department selection is per reader); ``close`` it when done."""

    def daily_rows(self, f: Filters, *, group: Sequence[str] = (), volatile: Sequence[ExtensionSpec] = (),
                   by_day: bool = False, table: str = "rollup_daily",
                   per_extension: bool = True) -> Iterator[tuple[object, ...]]:
        """``(day, extension, *group, calls, duration, cost_micros)`` summed over the range; ``day`` is ``''``
        unless ``by_day`` or the extension is one of ``volatile`` (its department changes inside the range).
        ``per_extension=False``: the caller needs no extension (no department filter), which may then be ``''``
        (a store can answer from coarser sums). A ``group`` of `SITE` is the name of the row's site."""
        ...

    def hourly_rows(self, f: Filters) -> Iterator[tuple[object, ...]]:
        """``(trunk, hour, calls)`` over the range."""
        ...

    def range_extensions(self, f: Filters) -> list[str]:
        """The extensions with traffic in the range."""
        ...

    def range_currencies(self, f: Filters) -> list[str]:
        """The currencies the range's costs were priced in (unrated calls left out)."""
        ...

    def range_site_extensions(self, f: Filters) -> list[tuple[str, str]]:
        """``(site name, extension)`` of every extension with traffic in the range, at each site."""
        ...

    def select_intervals(self, intervals: Sequence[Interval]) -> None:
        """Restrict the next call-detail reads with ``selected=True`` to these ``(extension, first, last)``, or
        ``(extension, first, last, site name)`` for the calls of one site only."""
        ...

    def iter_call_rows(self, f: Filters, tz: ZoneInfo, *, selected: bool, limit: int = 0,
                       offset: int = 0) -> Iterator[tuple[object, ...]]:
        """Call details (every leg) in `CALL_DETAIL` order, oldest first, read as consumed (``limit`` 0: all)."""
        ...

    def call_totals(self, f: Filters, tz: ZoneInfo, *, selected: bool) -> tuple[int, int, int, int]:
        """``(legs, calls, duration, cost_micros)`` over every matching call detail."""
        ...

    def extension_totals(self, f: Filters, tz: ZoneInfo, *, volatile: Sequence[ExtensionSpec] = (),
                         by_site: bool = False) -> list[tuple[str, str, str, int, int, int, int]]:
        """`call_totals` of every extension at once, one grouped read: ``(site, extension, day, legs, calls,
        duration, cost_micros)``; ``day`` is ``''`` unless the extension is one of ``volatile``: then a row per
        site-local day (each day's figures are those `call_totals` gives with `select_intervals` of that day);
        ``site`` is the name of the calls' site with ``by_site`` (a row per site and extension), else ``''``."""
        ...

    def sites(self) -> list[SiteSeen]:
        """The named sites whose calls this store holds, by name (a box's own journal: its one site, once
        ``[site] name`` names it; a central store: every site that published), each with its last line."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class PendingAlert:
    """An alert waiting for delivery: its outbox position (the order), id, rule and JSON payload."""

    row: int
    alert_id: str
    rule: str
    payload: str


class OutboxStore(Protocol):
    """The alert outbox. Per-call alerts are written by the journal writer in their call's transaction; this is
    everything else: what is pending, delivery marks (only after the broker acknowledged), operational alerts,
    pruning delivered history."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def pending(self, limit: int = 100, after: int = 0) -> list[PendingAlert]: ...

    async def count_pending(self) -> int: ...

    async def mark_delivered(self, rows: Sequence[int], at: float | None = None) -> None: ...

    async def insert(self, alerts: Iterable[Alert]) -> int: ...

    async def prune(self, older_than_days: int) -> int: ...


class CallExport(Protocol):
    """Every stored call of a time range, as named fields, oldest first, read as consumed."""

    def columns(self) -> list[str]: ...

    def rows(self, start: int | None, end: int | None) -> Iterator[dict[str, Any]]: ...

    def close(self) -> None: ...


class Store(Protocol):
    """One database: hands out what each feature needs. Cheap to make; each method opens what it returns."""

    def reports(self) -> ReportReader:
        """A reader for one report (or one streamed export of call details)."""
        ...

    def outbox(self) -> OutboxStore:
        """The alert outbox (``await open()`` it)."""
        ...

    def export(self) -> CallExport:
        """Every stored call of a range, one consistent snapshot."""
        ...

    def retention(self) -> Retention:
        """A pruner's own connection (used from one thread at a time)."""
        ...

    def rebuild(self) -> Rebuild:
        """A connection for one ``smdrd rerate`` or ``smdrd reparse`` run."""
        ...

    def call_feed(self) -> CallFeed:
        """The call feed's own connection (``await open()`` it)."""
        ...

    def journal_errors(self) -> JournalErrors:
        """A read-only view of the lines that could not be parsed (``smdrd errors``)."""
        ...

    def start_call_feed(self, name: str) -> int:
        """Call feed ``name``'s saved position; a new feed's cursor is placed at the journal's end now (of
        `REVISION_FEED`: at the revisions' end, and revisions are recorded from now on). Blocking: for the
        daemon's start, before any source runs, so no call committed after it is skipped."""
        ...

    def stop_call_feed(self, name: str) -> None:
        """Feed ``name``'s cursor gone (of `REVISION_FEED`: its revisions too, and none is recorded any more):
        nobody publishes it now. Blocking, for the daemon's start."""
        ...

    def alert_inbox(self) -> AlertInbox:
        """The console's alerts inbox on a connection of its own (created and migrated if need be); ``close``
        it when done."""
        ...

    def calls(self) -> CallReader:
        """The console's call reads (search, one call, its legs and lines) on a read-only connection of their
        own; ``close`` it when done."""
        ...

    def accounts(self) -> Accounts:
        """Users, sessions, API tokens and the audit log, on a connection of their own (created and migrated
        if need be); ``close`` it when done."""
        ...

    def mail(self) -> MailStore:
        """The mail outbox, report schedules and e-mail cursors, on a connection of their own (created and
        migrated if need be; used from one thread at a time); ``close`` it when done."""
        ...

    def spend_since(self, since_utc: int) -> list[tuple[str, str, Decimal]]:
        """Spend per extension and site-local day of calls started since ``since_utc`` (epoch seconds): the
        budget rule's memory after a restart."""
        ...

    def recent_call_uids(self, limit: int) -> list[str]:
        """The uids of this site's ``limit`` newest stored calls, oldest first: the alert rules' memory of the
        calls they saw, after a restart."""
        ...

    def directory(self) -> DirectoryStore:
        """Extension names, departments and dated memberships, on a connection of their own (created and
        migrated if need be); ``close`` it when done."""
        ...

    def tariffs(self) -> TariffStore:
        """The tariff's saved versions, on a connection of their own (created and migrated if need be);
        ``close`` it when done."""
        ...


# ---- retention ----

#: a position in the journal's ``(received_at, id)`` order: the last line a retention batch looked at.
LineCursor = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """What is old enough to prune. ``None`` keeps that kind of row for ever."""

    #: calls starting before this (UTC seconds, ``calls.start_utc``) are deleted.
    calls_before: int | None
    #: lines received before this (UTC microseconds, ``lines.received_at``) are deleted or emptied.
    lines_before: int | None


@dataclass(slots=True)
class PruneCounts:
    """What a run deleted (or, for a dry run, would delete)."""

    calls: int = 0
    lines_deleted: int = 0
    lines_emptied: int = 0
    #: write transactions committed (0 for a dry run).
    batches: int = 0

    @property
    def total(self) -> int:
        return self.calls + self.lines_deleted + self.lines_emptied


def cutoffs(now: datetime, tz: ZoneInfo, *, calls_days: int, lines_days: int) -> Cutoffs:
    """The cutoffs for ``now`` (aware); a period of 0 days keeps for ever.

    Both are cut at a site-local midnight, so a day's call listing is either whole or gone, never half.
    Raw lines are never kept longer than the call details: the raw line holds the same number and extension,
    so whoever shortens ``calls_days`` (for privacy) expects the raw copy to go too.
    """
    def midnight(days: int) -> int:
        day = now.astimezone(tz).date() - timedelta(days=days)
        return int(datetime.combine(day, time(0), tzinfo=tz).timestamp())

    periods = [d for d in (lines_days, calls_days) if d > 0]
    return Cutoffs(midnight(calls_days) if calls_days > 0 else None,
                   midnight(min(periods)) * 1_000_000 if periods else None)


class Retention(Protocol):
    """Deletes old call details and raw lines in small batches (docs/retention.md); never touches a rollup.
    Errors that a later run may not meet (locked, full) are `StoreUnavailable`."""

    def prune_calls_batch(self, before: int, limit: int) -> int:
        """Delete up to ``limit`` calls started before ``before`` (UTC seconds), oldest first; how many."""
        ...

    def prune_lines_batch(self, before: int, cursor: LineCursor | None,
                          limit: int) -> tuple[int, int, LineCursor | None]:
        """Delete (or empty, when a kept call refers to them) lines received before ``before`` (UTC µs) after
        ``cursor``: ``(deleted, emptied, next cursor or None at the end)``."""
        ...

    def plan(self, cut: Cutoffs) -> PruneCounts:
        """What `prune` would do now, changing nothing."""
        ...

    def prune(self, cut: Cutoffs, *, batch_rows: int, pause: Callable[[], None] = lambda: None) -> PruneCounts:
        """Everything ``cut`` says is old, batch by batch, calling ``pause()`` between write batches."""
        ...

    def close(self) -> None: ...


# ---- rerate and reparse ----

#: what rating decides for a call: ``(e164, call_class, rule, prefix, cost_micros, currency, region,
#: tariff_version)``; the last is the tariff that priced it (`smdrd.rating.Rating.tariff_version`), ``None``
#: when not known (a call stored before calls kept it, or unrated).
Rating = tuple[str | None, str | None, str | None, str | None, int | None, str | None, str, str | None]


@dataclass(frozen=True, slots=True)
class StoredRating:
    """A stored call as ``smdrd rerate`` needs it: what to rate it from, and how it is rated now."""

    call_id: int
    number: str
    start: str
    duration: int
    direction: str
    trunk: str
    answered: bool
    rating: Rating


@dataclass(frozen=True, slots=True)
class RatingUpdate:
    """A call's new rating; ``figures`` false: only the version of the tariff that priced it moves (its figures
    stay, so the rollups need not)."""

    call_id: int
    rating: Rating
    figures: bool = True


@dataclass(frozen=True, slots=True)
class JournalLine:
    """A journalled line as ``smdrd reparse`` reads it back."""

    line_id: int
    source: str
    peer: str
    format: str
    raw: bytes
    status: str


@dataclass(frozen=True, slots=True)
class ReplaceResult:
    """What `Rebuild.replace` did: calls removed, and each line's new status."""

    removed: int
    statuses: dict[int, str]


class Rebuild(Protocol):
    """Rebuilds stored calls in short write transactions while the daemon keeps running; the rollups stay
    exact (a re-rated call moves its figures; a reparsed line's calls leave the rollups and come back)."""

    def ratings(self, lo: int, hi: int) -> Iterator[StoredRating]:
        """Calls started in ``[lo, hi)`` (UTC seconds), in id order."""
        ...

    def update_ratings(self, updates: Sequence[RatingUpdate]) -> None: ...

    def lines(self, lo: int, hi: int, source: str | None) -> Iterator[list[JournalLine]]:
        """Batches of lines received in ``[lo, hi)`` (UTC seconds) that can be parsed again, in id order."""
        ...

    def replace(self, entries: Sequence[tuple[int, JournalEntry | None]], *,
                keep_lines: bool = False) -> ReplaceResult:
        """Replace the calls of each line with the entry's (``None``: a ``flushed`` marker, rebuilt apart), in
        one transaction; a line whose calls were already stored from another line becomes ``duplicate``. With
        ``keep_lines`` the calls are added to the lines and their statuses are left alone."""
        ...

    def calls_received(self, lo: int, hi: int) -> int:
        """Stored calls whose line was received in ``[lo, hi)`` (UTC seconds)."""
        ...

    def close(self) -> None: ...


# ---- lines that failed ----

@dataclass(frozen=True, slots=True)
class ErrorLine:
    """A journalled line whose status is ``error``: what arrived and why it could not be parsed."""

    line_id: int
    source: str
    peer: str
    received_at: int  # UTC microseconds
    format: str
    raw: bytes
    error: str


class JournalErrors(Protocol):
    """The journal's ``error`` lines, newest last, for a person to read; never writes."""

    def error_lines(self, lo: int, hi: int, source: str | None, limit: int) -> tuple[list[ErrorLine], int]:
        """The first ``limit`` (0: all) error lines received in ``[lo, hi)`` (UTC seconds), in journal order, and
        how many there are in all."""
        ...

    def close(self) -> None: ...


# ---- the call feed ----

#: The cursor of the feed that publishes revised journal entries (a site's journal to a central store,
#: `CallFeed.revisions`). ``smdrd rerate`` and ``smdrd reparse`` record a revision of each line whose calls they
#: change only while this cursor exists (someone publishes them), and saving it prunes the revisions up to it.
REVISION_FEED = "mqtt-journal-revisions"

@dataclass(frozen=True, slots=True)
class FeedCall:
    """A stored call for the feed: its position in the journal's order, and its fields as
    `smdrd.journal.RatedCall.to_json` gives them (never the authorisation code). `CallFeed.entries` gives
    journal entries in the same shape: the line's position and fields (see there)."""

    position: int
    fields: dict[str, Any]


class CallFeed(Protocol):
    """Stored calls in commit order after a named, saved cursor: a consumer that saves the cursor only after
    its destination acknowledged sees every call at least once, across disconnects and restarts."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def start(self, name: str) -> int:
        """The saved position of feed ``name``; a new feed starts (and is saved) at the journal's end."""
        ...

    async def after(self, position: int, limit: int) -> list[FeedCall]:
        """Up to ``limit`` calls after ``position``, in order."""
        ...

    async def save(self, name: str, position: int) -> None:
        """Everything up to ``position`` was delivered (of `REVISION_FEED`: its revisions up to there go)."""
        ...

    async def start_entries(self, name: str) -> int:
        """The saved position of entry feed ``name``; a new one starts at the journal's beginning (0)."""
        ...

    async def entries(self, position: int, limit: int) -> list[FeedCall]:
        """Up to ``limit`` journal entries after ``position`` (a line's position), in order: fields ``id``,
        ``source``, ``peer``, ``received_at`` (UTC microseconds), ``format``, ``raw`` (bytes), ``status``,
        ``error`` and ``calls`` (each as `after` gives it; never an authorisation code)."""
        ...

    async def start_revisions(self, name: str) -> int:
        """The saved position of revision feed ``name``; a new one starts (and is saved) at the revisions' end:
        the entry feed, new too, sends every line as it is now."""
        ...

    async def revisions(self, position: int, limit: int) -> list[FeedCall]:
        """Up to ``limit`` revisions after ``position``, in order: each the journal entry of a line whose calls
        ``smdrd rerate`` or ``smdrd reparse`` changed, as it is now (`entries`' fields and ``revision``, its
        position: a receiver keeps the highest). A revision whose line retention deleted has no fields (nothing
        to send; its position is passed)."""
        ...

    async def last(self, direction: str) -> FeedCall | None:
        """The last stored call of ``direction`` (``outbound``...), or None (the retained "last call" topic)."""
        ...


# ---- people and rights: users, sessions, API tokens, the audit log ----

#: the console's roles: ``admin`` (everything), ``manager`` (the departments assigned to them), ``viewer``
#: (read-only reports).
ROLES = ("admin", "manager", "viewer")


class UserExists(SmdrdError):
    """A user of that name exists already (names are compared without regard to case)."""


class LastAdmin(SmdrdError):
    """The change would leave no admin (removing or demoting the last one); nothing was changed."""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change, for the audit log: a user's name (or ``cli:<login>`` from the shell) and the client
    address it came from (``''`` for the shell)."""

    name: str
    address: str = ""


@dataclass(frozen=True, slots=True)
class User:
    """A console user, without any secret: the password hash never leaves the store except through
    `UserStore.password_hash`."""

    id: int
    name: str
    role: str
    departments: tuple[str, ...]
    created_at: int  # UTC seconds
    failed_logins: int = 0
    locked_until: int = 0  # UTC seconds; 0 when not locked

    def audit_view(self) -> dict[str, Any]:
        """What the audit log keeps of the user (before and after a change): never a secret."""
        return {"name": self.name, "role": self.role, "departments": list(self.departments)}


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A live console session: its user and the CSRF token its forms carry."""

    user: User
    csrf: str
    expires_at: int  # UTC seconds


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A personal API token's description (the token itself is shown once, at creation, and stored hashed)."""

    id: int
    user_id: int
    name: str
    created_at: int
    last_used_at: int | None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One change or sign-in: when (UTC seconds), who, what, on what, and the before/after (JSON objects)."""

    id: int
    at: int
    actor: str
    address: str
    action: str
    target: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class UserStore(Protocol):
    """Console users. Every change is written with its audit entry in one transaction."""

    def add_user(self, name: str, role: str, password_hash: str, departments: Sequence[str], *, at: int,
                 actor: Actor) -> User:
        """Raises `UserExists`."""
        ...

    def user(self, name: str) -> User | None: ...

    def users(self) -> list[User]: ...

    def any_users(self) -> bool: ...

    def password_hash(self, user_id: int) -> str | None: ...

    def set_password(self, user_id: int, password_hash: str, *, at: int, actor: Actor | None,
                     revoke_tokens: bool = False, keep_session: str = "") -> int:
        """Replace the hash. With an ``actor`` (a new password) every session of the user ends but the one whose
        id digest is ``keep_session`` (a person changing their own password stays signed in there) and, with
        ``revoke_tokens`` (an admin's reset: a password that leaked may have minted tokens), every personal API
        token of theirs is deleted, in the same transaction, with one ``user.password`` audit entry that counts
        both (never the password). ``actor`` None is a silent rehash at sign-in: nothing else changes, no entry.
        Returns the number of tokens revoked."""
        ...

    def remove_user(self, name: str, *, at: int, actor: Actor, keep_an_admin: bool = False) -> User | None:
        """Remove the user, their sessions and tokens; the user removed, or None when there was none. Their report
        schedules stay (their recipients expect them; an admin sees, changes and deletes them) but are disowned,
        in the same transaction: their owner becomes `removed_owner` (so are their pending mails'), each with a
        ``schedule.disown`` audit entry, so that a new user given the same name is not handed them.
        Raises `LastAdmin` (``keep_an_admin``) when they are the last admin."""
        ...

    def change_user(self, name: str, *, role: str, departments: Sequence[str], at: int,
                    actor: Actor) -> tuple[User, User] | None:
        """Give the user ``role`` and ``departments``: ``(before, after)``, or None when there is no such user.
        Raises `LastAdmin` when that would demote the last admin (checked in the change's transaction)."""
        ...

    def unlock_user(self, name: str, *, at: int, actor: Actor) -> User | None:
        """Clear the failed sign-ins and the lock: the user, or None when there is none."""
        ...

    def login_failed(self, user_id: int, *, at: int, lock_after: int, lock_seconds: int) -> User:
        """Count a failed sign-in; the ``lock_after``-th in a row locks the account for ``lock_seconds``."""
        ...

    def login_succeeded(self, user_id: int) -> None:
        """Reset the failed sign-in count."""
        ...


class SessionStore(Protocol):
    """Server-side sessions, known by a digest of their id (the id itself lives only in the cookie)."""

    def create_session(self, user_id: int, id_digest: str, csrf: str, *, at: int, expires_at: int) -> None: ...

    def session(self, id_digest: str, *, at: int) -> SessionInfo | None:
        """The live session of that digest (None when unknown or expired)."""
        ...

    def end_session(self, id_digest: str) -> None: ...

    def prune_sessions(self, at: int) -> int:
        """Delete expired sessions; how many."""
        ...


class TokenStore(Protocol):
    """Personal API tokens, known by a digest (the token is shown once and never stored)."""

    def create_token(self, user_id: int, name: str, digest: str, *, at: int, actor: Actor) -> ApiToken: ...

    def tokens(self, user_id: int) -> list[ApiToken]: ...

    def token_user(self, digest: str, *, at: int) -> User | None:
        """The user of the token with that digest (its last use noted), or None."""
        ...

    def revoke_token(self, user_id: int, token_id: int, *, at: int, actor: Actor) -> bool: ...


class AuditLog(Protocol):
    """The audit log: who changed what, when, with the before and after."""

    def record(self, action: str, target: str, *, at: int, actor: Actor,
               before: dict[str, Any] | None = None, after: dict[str, Any] | None = None) -> None: ...

    def entries(self, limit: int = 100, before_id: int | None = None) -> list[AuditEntry]:
        """The newest ``limit`` entries (older than ``before_id``), newest first."""
        ...


class Accounts(UserStore, SessionStore, TokenStore, AuditLog, Protocol):
    """Everything the console and ``smdrd user`` need, on one connection (used from one thread at a time)."""

    def close(self) -> None: ...


# ---- the directory: extension names, departments, dated memberships ----

#: where an extension's name came from: learnt from the PBX's own name field (replaced when the PBX sends
#: another), or ``edited`` by a person or an import (never overwritten by the PBX).
NAME_SOURCES = ("pbx", "edited")


class ExtensionNames(dict[str, str]):
    """Extension -> display name, as `DirectoryStore.names` reads them from ``(number, name, site)`` rows: a name
    is per site (``[site] name``; extension 201 of one site and of another are two people), ``''`` being this
    box's own name and the name of the number at any site that has none (`at`). As a mapping it holds the names
    to show where no site is known: the site-less name, else the one name every site that names the number
    agrees on (a number the sites name differently has none)."""

    def __init__(self, rows: Iterable[tuple[str, str, str]] = ()) -> None:
        super().__init__()
        #: (site, number) -> the name the site gave the number ('' not among the sites).
        self.sites: dict[tuple[str, str], str] = {}
        #: number -> its site-less name.
        self.plain: dict[str, str] = {}
        agreed: dict[str, str | None] = {}
        for number, name, site in rows:
            if site:
                self.sites[(site, number)] = name
                agreed[number] = name if agreed.get(number, name) == name else None
            else:
                self.plain[number] = name
        self.update({n: name for n, name in agreed.items() if name is not None})
        self.update(self.plain)

    def __bool__(self) -> bool:  # names to show, if only sites' that differ
        return bool(self.plain or self.sites)

    def at(self, site: str, number: str) -> str:
        """The name of ``number`` at ``site`` (its own, else the site-less one; ``''``: none)."""
        return (self.sites.get((site, number)) if site else None) or self.plain.get(number, "")

    def of_site(self, site: str) -> dict[str, str]:
        """Number -> name as `at` gives them at ``site``."""
        return {**self.plain, **{n: name for (s, n), name in self.sites.items() if s == site}}


def name_at(names: Mapping[str, str], site: str | None, number: str) -> str:
    """The name of ``number`` at ``site`` in ``names`` (`ExtensionNames.at`; a plain mapping's, or ``site``
    None: the name shown where no site is known)."""
    if site and isinstance(names, ExtensionNames):
        return names.at(site, number)
    return names.get(number, "")


class DirectoryConflict(SmdrdError):
    """The directory changed since it was read (another admin, an import): nothing was written; read again."""


@dataclass(frozen=True, slots=True)
class DirectoryExtension:
    """An extension the directory knows (named, in a membership, or seen in calls)."""

    number: str
    name: str = ""  # '' when it has none
    name_source: str = ""  # one of `NAME_SOURCES`, '' when it has no name
    updated_at: int = 0  # UTC seconds of the name's last change
    site: str = ""  # the site whose name it is ('' this box's, and every site's without one of its own)


@dataclass(frozen=True, slots=True)
class DirectoryDepartment:
    """A department as stored: its parent (``None``: top level) and monthly budget (``None``: none)."""

    name: str
    parent: str | None = None
    budget: Decimal | None = None


@dataclass(frozen=True, slots=True)
class DirectoryMembership:
    """Extension ``spec`` (an extension or a numeric range ``LOW-HIGH``) belongs to ``department`` from
    ``valid_from`` to ``valid_until`` (site-local days, both included; ``None`` is open-ended), at the site named
    ``site`` (``[site] name``; ``''``: at every site, as on a box of its own)."""

    department: str
    spec: str
    valid_from: date | None = None
    valid_until: date | None = None
    site: str = ""


@dataclass(frozen=True, slots=True)
class DirectorySnapshot:
    """Every department and membership at one `version` (departments in their listed order)."""

    departments: tuple[DirectoryDepartment, ...]
    memberships: tuple[DirectoryMembership, ...]
    version: int


class DirectoryStore(Protocol):
    """The directory in the database. The store checks no rule across departments (the caller validates the
    whole new directory first, `smdrd.directory`); it writes each change with its audit entry in one
    transaction, and only over the version it was read at."""

    def names(self, numbers: Iterable[str] | None = None) -> ExtensionNames:
        """Extension -> display name, for every named extension (or only ``numbers``), each site's own too."""
        ...

    def learn_names(self, names: Iterable[tuple[str, str]], *, at: int, site: str = "") -> int:
        """Names the PBX of ``site`` gave extensions (``(number, name)``; ``''``: this box's, the site-less
        names): stored, or replacing an earlier PBX name, never an edited one; how many changed. Not audited
        (the PBX is not a person)."""
        ...

    def extensions(self, search: str = "", *, limit: int = 100,
                   offset: int = 0) -> tuple[list[DirectoryExtension], int]:
        """Extensions that are named, in a membership or seen in calls, whose number or name contains
        ``search`` (any case), in numeric order: a page and how many match in all; a row per name a site gave
        the number (its site-less one first), one unnamed row for a number without a name."""
        ...

    def set_name(self, number: str, name: str, *, at: int, actor: Actor, site: str = "") -> tuple[str, str]:
        """Edit an extension's name at ``site`` (``''``: the site-less one; name ``""``: forget it, so the PBX's
        may be learnt again): ``(before, after)``."""
        ...

    def version(self) -> int:
        """Counts changes to departments and memberships (not names)."""
        ...

    def snapshot(self) -> DirectorySnapshot: ...

    def replace(self, departments: Sequence[DirectoryDepartment], memberships: Sequence[DirectoryMembership], *,
                expected_version: int, at: int, actor: Actor, action: str, target: str,
                before: dict[str, Any] | None, after: dict[str, Any] | None,
                renamed: dict[str, str] | None = None, names: Iterable[tuple[str, ...]] = ()) -> int:
        """Make the departments and memberships these, with their audit entry; ``renamed`` (old -> new) also
        renames the departments managers are assigned; ``names`` are edited names set alongside (``(number,
        name)``, or ``(number, name, site)`` for a site's own). The new
        version. Raises `DirectoryConflict` when the version is no longer ``expected_version``."""
        ...

    def close(self) -> None: ...


# ---- the console's call search and call pages ----

#: what a call search may be sorted by (`CallQuery.sort`).
CALL_SORTS = ("start", "duration", "cost")


@dataclass(frozen=True, slots=True)
class CallQuery:
    """A call search: a bounded start range and filters (empty = any), one page after a keyset cursor.

    ``number`` matches a dialled or calling number that contains it (as the PBX wrote it, or in E.164);
    ``extension``, ``account`` and ``call_id`` match exactly. ``scope`` limits the search to
    ``(extension, first_day, last_day)`` spans, or the same at one site (`Interval`: a manager's departments;
    ``None``: every call). ``after`` is the
    ``(sort value, id)`` of the last call of the previous page."""

    lo: int  # UTC seconds, included
    hi: int  # UTC seconds, excluded
    number: str = ""
    extension: str = ""
    account: str = ""
    call_id: str = ""
    direction: str = ""
    classes: tuple[str, ...] = ()
    cost_min: int | None = None  # micro-units, included
    cost_max: int | None = None
    scope: tuple[Interval, ...] | None = None
    sort: str = "start"
    descending: bool = True
    after: tuple[int, int] | None = None
    limit: int = 50
    #: a site's name (a central store's calls; empty: every site).
    site: str = ""


@dataclass(frozen=True, slots=True)
class StoredCall:
    """A stored call (or leg) as a person reads it; never its authorisation code."""

    id: int
    line_id: int
    source: str
    format: str
    call_key: str
    leg: int
    start: str  # ISO 8601, the PBX's local time with its offset
    start_utc: int
    duration: int
    ring: int | None
    direction: str
    extension: str
    number: str
    trunk: str
    account: str
    call_id: str
    answered: bool
    transfer: str
    extra: dict[str, Any]
    e164: str | None
    region: str
    call_class: str | None
    rule: str | None
    prefix: str | None
    cost_micros: int | None
    currency: str | None
    #: the tariff that priced it (`smdrd.rating.Rating.tariff_version`); None: not known.
    tariff_version: str | None = None
    #: the name of the site that stored it (a central store's; ``''``: a box's own journal with no ``[site] name``).
    site: str = ""

    def sort_value(self, sort: str) -> int:
        """This call's value for a `CallQuery.sort` (the keyset cursor's first half)."""
        if sort == "duration":
            return self.duration
        if sort == "cost":
            return self.cost_micros or 0
        return self.start_utc


@dataclass(frozen=True, slots=True)
class StoredLine:
    """A journalled line as received (raw bytes), with what became of it."""

    id: int
    source: str
    peer: str
    received_at: int  # UTC microseconds
    format: str
    raw: bytes
    status: str
    error: str | None


class CallReader(Protocol):
    """Indexed call reads for the console (search, one call, its legs, its journal lines); never writes. Used
    from one thread at a time."""

    def search(self, q: CallQuery) -> list[StoredCall]:
        """One page (``q.limit`` calls at most) in ``q.sort`` order, ties by id."""
        ...

    def call(self, call_id: int) -> StoredCall | None: ...

    def legs(self, call: StoredCall, limit: int = 100) -> list[StoredCall]:
        """The calls sharing ``call``'s call key (the PBX's call id) or its journal line, ``call`` included, in
        start order."""
        ...

    def lines(self, ids: Sequence[int]) -> list[StoredLine]:
        """The journal lines of these ids, in id order, each with its calls' authorisation codes hidden
        (`smdrd.privacy.hide_codes`): the one thing of a line nobody is shown."""
        ...

    def peer_statuses(self, peer: str, since: int) -> dict[str, int]:
        """How many lines from ``peer`` (an imported file) were journalled since ``since`` (UTC microseconds),
        by status."""
        ...

    def peer_errors(self, peer: str, since: int, limit: int) -> list[tuple[int, StoredLine]]:
        """The first ``limit`` lines from ``peer`` since ``since`` that could not be parsed, each with its
        number among the file's lines (1 for the first)."""
        ...

    def close(self) -> None: ...


# ---- the tariff in the database (``[tariff] source = "database"``) ----


@dataclass(frozen=True, slots=True)
class TariffVersionInfo:
    """One saved version of the tariff, without its rules: who saved it, when (UTC seconds), and why."""

    version: int
    created_at: int
    actor: str
    note: str
    rules: int


@dataclass(frozen=True, slots=True)
class TariffVersion:
    """One saved version with its document: ``{"mode": ..., "bands": {...}, "rules": [...]}``, the rules in
    order, each as ``[[tariff.rules]]`` writes it (`smdrd.rating.config.TariffRuleConfig`)."""

    info: TariffVersionInfo
    document: dict[str, Any]


class TariffStore(Protocol):
    """The tariff's versions. Versions are immutable: a change is a new version, saved with its audit entry in
    one transaction."""

    def current(self) -> TariffVersion | None:
        """The latest version, or None before the first save."""
        ...

    def version(self, number: int) -> TariffVersion | None: ...

    def versions(self, limit: int = 50) -> list[TariffVersionInfo]:
        """The latest versions, newest first."""
        ...

    def save(self, document: dict[str, Any], *, expected: int | None, at: int, actor: Actor, note: str,
             action: str, target: str, before: dict[str, Any] | None,
             after: dict[str, Any] | None) -> TariffVersionInfo:
        """Save ``document`` as a new version, with an audit entry (``action`` on ``target``, before/after).
        ``expected``: the version the change was made on (None: whatever is current); raises
        `TariffConflict` when another save came first."""
        ...

    def close(self) -> None: ...


class TariffConflict(SmdrdError):
    """The tariff was saved by someone else since the version a change was made on."""


# ---- mail: the outbox of scheduled reports and alert digests, and the console's schedules ----

#: a mail's states: waiting (or retrying), accepted by the server, given up (the error says why).
MAIL_STATES = ("pending", "sent", "failed")


@dataclass(frozen=True, slots=True)
class NewMail:
    """A mail to add to the outbox, once: a second row with the same ``key`` is never made (a restart, a retry).

    Attributes:
        key: what makes it unique: ``report:<schedule>:<first>:<last>``, ``alerts:<first id>-<last id>:<to>``.
        kind: ``report`` or ``alerts``.
        owner: the schedule (``config:<name>``, ``db:<id>``) or ``alerts``: whose deliveries the console lists.
        message_id: the ``Message-ID`` every attempt carries, so a receiver can drop a copy sent twice.
        spec: JSON: what to render when it is sent (the schedule and its period, or the alerts).
    """

    key: str
    kind: str
    owner: str
    message_id: str
    recipients: tuple[str, ...]
    subject: str
    spec: str
    due_at: int


@dataclass(frozen=True, slots=True)
class MailItem:
    """A row of the mail outbox (times in UTC seconds)."""

    id: int
    key: str
    kind: str
    owner: str
    message_id: str
    recipients: tuple[str, ...]
    subject: str
    spec: str
    state: str
    attempts: int
    last_error: str
    created_at: int
    due_at: int
    next_attempt_at: int
    sent_at: int | None


@dataclass(frozen=True, slots=True)
class StoredSchedule:
    """A report schedule made in the console: its spec is a `smdrd.reports.schedules.ScheduleConfig` as JSON;
    ``owner`` is the user who made it (a manager's covers only their departments)."""

    id: int
    name: str
    owner: str
    spec: str
    created_at: int
    updated_at: int


def removed_owner(name: str) -> str:
    """The owner a schedule of the removed user ``name`` is left with: no user name can be it (it has spaces), so
    a new user given the same name later is not handed the schedule, and its mail is sent as a removed owner's
    (masked; not in anyone's scope)."""
    return f"removed user {name}"


class MailStore(Protocol):
    """The mail outbox and what feeds it. Every mail is added once by key, with the cursors that say how far
    planning got, in one transaction: a restart or a retry never makes a second one."""

    def cursor(self, name: str) -> int | None:
        """The saved position of planner ``name`` (a schedule's last planned instant, the last alert mailed)."""
        ...

    def plan(self, mails: Sequence[NewMail], cursors: dict[str, int]) -> int:
        """Add ``mails`` (those whose key is new) and save ``cursors``, in one transaction; how many were new."""
        ...

    def due(self, now: int, limit: int = 20) -> list[MailItem]:
        """Pending mails whose next attempt is due at ``now``, oldest first."""
        ...

    def next_due(self) -> int | None:
        """When the earliest pending mail is due (None: nothing pending)."""
        ...

    def mark_sent(self, mail_id: int, at: int, note: str = "") -> None:
        """The server took the mail (``note``: the recipients it refused for good, if any)."""
        ...

    def mark_retry(self, mail_id: int, error: str, next_attempt_at: int) -> None:
        """Count a failed attempt; the mail stays pending until ``next_attempt_at``."""
        ...

    def mark_failed(self, mail_id: int, error: str) -> None:
        """Give the mail up (the server refused it for good, or it cannot be rendered)."""
        ...

    def mark_partial(self, mail_id: int, recipients: Sequence[str], error: str, next_attempt_at: int) -> None:
        """Count an attempt that reached some recipients: the mail stays pending for ``recipients`` only (those
        the server put off), until ``next_attempt_at``, so nobody gets it twice."""
        ...

    def deliveries(self, owners: Sequence[str] | None = None, limit: int = 100) -> list[MailItem]:
        """The newest mails (of ``owners``; None: all), newest first."""
        ...

    def alerts_after(self, position: int, limit: int) -> list[PendingAlert]:
        """Alerts of the alert outbox after row ``position`` (delivered over MQTT or not), oldest first."""
        ...

    def last_alert(self) -> int:
        """The alert outbox's last row (0 when empty)."""
        ...

    def manager_emails(self, department: str) -> list[str]:
        """The e-mail addresses of the managers of ``department``."""
        ...

    def set_user_email(self, name: str, email: str, *, at: int, actor: Actor) -> bool:
        """Set (``''``: remove) a user's e-mail address, with its audit entry; False when there is no such user."""
        ...

    def user_emails(self) -> dict[str, str]:
        """Every user's e-mail address, by name (users without one are left out)."""
        ...

    def user_scope(self, name: str) -> tuple[str, tuple[str, ...]] | None:
        """A user's role and departments (None: no such user)."""
        ...

    def prune(self, before: int) -> int:
        """Delete sent and failed mails made before ``before`` (UTC seconds); pending ones stay. How many."""
        ...

    def schedules(self) -> list[StoredSchedule]: ...

    def schedule(self, schedule_id: int) -> StoredSchedule | None: ...

    def save_schedule(self, schedule_id: int | None, name: str, owner: str, spec: str, *, at: int,
                      actor: Actor) -> StoredSchedule:
        """Add (``schedule_id`` None) or replace a schedule, with its audit entry.

        Raises:
            ValueError: another schedule has that name.
        """
        ...

    def delete_schedule(self, schedule_id: int, *, at: int, actor: Actor) -> bool: ...

    def close(self) -> None: ...


# ---- the console's alerts inbox ----

#: an alert's state in the inbox: ``open`` until someone acknowledges or snoozes it or its resolved event comes;
#: ``snoozed`` until the time set (then ``open`` again); ``acknowledged`` by someone; ``resolved`` by the rule.
#: Of acknowledging and snoozing, the later wins (each clears the other).
ALERT_STATES = ("open", "acknowledged", "snoozed", "resolved")


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """Which alerts the inbox lists (empty = any): newest first, one page before the row id ``before``."""

    now: int  # UTC seconds: a snooze that ended before it is over
    rules: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    lo: int | None = None  # raised at or after (UTC microseconds)
    hi: int | None = None  # raised before
    #: only alerts of these departments (a manager's); ``None``: every alert, operational ones included.
    departments: tuple[str, ...] | None = None
    #: only alerts raised at these sites (the ``site`` of their payload, `smdrd.alerts.engine`); empty: any.
    sites: tuple[str, ...] = ()
    before: int | None = None
    limit: int = 50


@dataclass(frozen=True, slots=True)
class InboxAlert:
    """An alert as the inbox shows it: what was raised (its outbox row and payload) and what people and the
    rule did since."""

    row: int
    alert_id: str
    rule: str
    severity: str
    created_at: int  # UTC microseconds
    payload: dict[str, Any]
    state: str
    acked_by: str | None = None
    acked_at: int | None = None  # UTC seconds
    snoozed_until: int | None = None
    snoozed_by: str | None = None
    resolved_at: int | None = None  # UTC microseconds

    @property
    def department(self) -> str | None:
        value = self.payload.get("department")
        return value if isinstance(value, str) else None


class AlertInbox(Protocol):
    """The alerts inbox: raised alerts with their state; acknowledging and snoozing, each written with its audit
    entry in one transaction. Used from one thread at a time."""

    def alerts(self, f: AlertFilter) -> list[InboxAlert]: ...

    def alert(self, alert_id: str, now: int) -> InboxAlert | None: ...

    def rules(self) -> list[str]:
        """The rules that raised an alert still in the outbox."""
        ...

    def sites(self) -> list[str]:
        """The sites named by the alerts in the outbox (their payload's ``site``), sorted."""
        ...

    def acknowledge(self, alert_id: str, *, at: int, actor: Actor) -> InboxAlert | None:
        """Mark the alert acknowledged by ``actor`` (None: no such alert)."""
        ...

    def snooze(self, alert_id: str, until: int, *, at: int, actor: Actor) -> InboxAlert | None:
        """Hide the alert until ``until`` (UTC seconds; 0 wakes it now)."""
        ...

    def close(self) -> None: ...
