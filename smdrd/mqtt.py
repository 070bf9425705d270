"""The MQTT edge: publishes the alert outbox (QoS 1), the daemon's status and, optionally, every call.

The only module that imports aiomqtt (a move to aiomqtt 3 touches this file alone). It owns one broker
connection and its reconnect loop; the rest of smdrd talks to it through `Publisher.wake` (new alerts or calls
were committed), the alert outbox it reads (`smdrd.store.api.OutboxStore`) and the call feed it reads
(`smdrd.store.api.CallFeed`).

Calls (``[mqtt] publish_calls``) are read from the journal after a saved cursor, a window at a time; the cursor
moves past a call only once the broker acknowledged it and every call before it. A broker away for a night, or a
daemon restart, delays calls but never drops one; a connection lost mid-window sends the unacknowledged ones
again (at least once; ``uid`` is stable).

Journal entries (``[mqtt] publish_journal``, for a central collector: `smdrd.central`) go out by the same cursor
machinery, each line with its status and rated calls to ``<journal_prefix>/<site>/journal/<source>``; a new
entry feed starts at the journal's beginning, so a site that joins sends its history first. Each carries
``prev``, the position read just before it (the cursor, for a window's first). A broker's acknowledgement is not
the end of it: a broker killed before it saved or forwarded an entry forgets it. So the publisher also follows
its site's confirmed point, which each collector publishes retained, and again every heartbeat, on
``<journal_prefix>/<site>/confirmed/<collector>`` (`smdrd.store.confirm`: every entry up to it is stored
centrally; the lowest of the points still fresh counts); when the point stays behind the cursor for
``confirm_timeout`` after the broker acknowledged entries beyond it, the cursor goes back to the point and those
entries are sent again (`Confirmation`; the store keeps each once), backing off while the point does not pass.

Delivery: an alert is marked delivered only after the broker acknowledged its QoS-1 PUBLISH (aiomqtt's
``publish`` returns on PUBACK). aiomqtt has no offline queue, so while the broker is away alerts simply stay in
the outbox and are drained, oldest first, after each (re)connection. A connection lost between the broker's
receipt and its acknowledgement means that alert is published again: at least once, with a stable ``id`` for
the subscriber to de-duplicate on. Each connection is a fresh client with a clean session, so paho never
re-sends on its own behind the outbox's back.

Status: ``<topic_prefix>/status`` is retained ``online`` after connecting; the last will (the broker publishes it
when the connection drops without a goodbye: a crash, SIGKILL, a pulled cable) and a clean stop set it to
``offline``.

Retained state (`Publisher.retain`: the site's figures, each source's health, Home Assistant's discovery
configs): the latest payload of each topic is kept here and published, retained, once per connection and again
whenever it changes; an empty payload removes the topic's retained message. A broker that lost its retained
messages gets them all again at the next connection.

Payloads follow the contract of `smdrd.mqtt_payloads` (a call's fields are shaped by its `CallShape`).

This module never raises into the daemon for a broker problem, never blocks the journal, and never decides that
an alert was delivered without the broker's word.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiomqtt
import structlog
from paho.mqtt.client import MQTTMessage
from paho.mqtt.enums import MQTTErrorCode

from smdrd.backoff import Backoff, LogThrottle, log_throttled
from smdrd.config import MqttConfig
from smdrd.mqtt_payloads import (
    CallShape,
    Topics,
    confirmed_filter,
    encode,
    journal_message,
    journal_topic,
    read_confirmed_message,
)
from smdrd.store.api import REVISION_FEED, CallFeed, FeedCall, StoreUnavailable

log = structlog.get_logger("smdrd.mqtt")

T = TypeVar("T")
#: publishes a retained QoS-1 message (topic, payload), returning once the broker acknowledged it
Retain = Callable[[str, bytes], Awaitable[None]]
#: the most packets one turn of the event loop reads (then the others' turn)
_READ_AT_ONCE = 1000

ONLINE = b"online"
OFFLINE = b"offline"
#: the call feed's cursor name in the store.
CALL_FEED = "mqtt-calls"
#: the journal entry feed's cursor name in the store (``publish_journal``); its revisions' is `REVISION_FEED`.
JOURNAL_FEED = "mqtt-journal"
#: seconds between two reads of the revisions when none is signalled (a rerate runs in another process).
REVISION_POLL = 5.0


class PendingLike(Protocol):
    """An alert waiting in the outbox."""

    @property
    def row(self) -> int: ...
    @property
    def rule(self) -> str: ...
    @property
    def payload(self) -> str: ...


class OutboxLike(Protocol):
    """What the publisher needs from the outbox (`smdrd.store.api.OutboxStore`)."""

    async def pending(self, limit: int = 100, after: int = 0) -> Sequence[PendingLike]: ...

    async def mark_delivered(self, rows: Sequence[int], at: float | None = None) -> None: ...


@dataclass(slots=True)
class PublisherStats:
    """Counters for metrics and logs."""

    connects: int = 0
    connect_failures: int = 0
    #: alert PUBLISH packets sent (a re-send after a lost acknowledgement counts again)
    alerts_sent: int = 0
    #: alerts acknowledged by the broker and marked delivered
    alerts_published: int = 0
    calls_published: int = 0
    #: journal entries acknowledged by the broker (``publish_journal``)
    entries_published: int = 0
    #: revised journal entries (a rerate or reparse changed their calls) acknowledged by the broker
    revisions_published: int = 0
    #: retained messages (state, discovery) acknowledged by the broker
    retained_published: int = 0
    #: times the journal cursor went back to the central store's confirmed point
    journal_rewinds: int = 0
    #: journal entries acknowledged again after such a rewind
    entries_resent: int = 0
    last_error: str | None = None


class _Disconnected(Exception):
    pass


def connect_options(c: MqttConfig, base_dir: Path | None) -> dict[str, Any]:
    """The broker, credentials and TLS of ``[mqtt]`` as `aiomqtt.Client` arguments (relative files under
    ``base_dir``; a ``password_file`` read now, so a rotated credential needs no restart)."""

    def path(p: Path) -> str:
        return str(p if p.is_absolute() or base_dir is None else base_dir / p)

    password = None
    if c.password is not None:
        password = c.password.get_secret_value()
    elif c.password_file is not None:
        password = Path(path(c.password_file)).read_text().removesuffix("\n")
    tls: aiomqtt.TLSParameters | None = None
    if c.tls:
        tls = aiomqtt.TLSParameters(
            ca_certs=path(c.ca_file) if c.ca_file else None,
            certfile=path(c.cert_file) if c.cert_file else None,
            keyfile=path(c.key_file) if c.key_file else None,
        )
    return {"hostname": c.host, "port": c.port, "username": c.username, "password": password,
            "keepalive": c.keepalive, "tls_params": tls, "tls_insecure": True if c.tls and c.tls_insecure else None}


#: seconds a collector's confirmed point counts after the collector said it (its ``at``, against this clock,
#: either way: clocks may differ by less than this) and after it arrived here: a collector republishes it every
#: `smdrd.central.CONFIRM_HEARTBEAT`, so the retained point of one that stopped, was replaced or moved away goes
#: stale, and stops sending the site back.
CONFIRM_FRESH = 600.0


@dataclass(frozen=True, slots=True)
class _Heard:
    """A collector's latest confirmed point: said at ``at`` (its clock), arrived at ``received`` (monotonic)."""

    point: int
    at: float
    received: float


class Confirmation:
    """When the journal cursor goes back to the central store's confirmed point (sans I/O: times are given,
    ``now`` monotonic and ``wall`` UTC seconds).

    Each collector (each central store) says its own point, again every heartbeat; a point counts while fresh:
    said within ``fresh`` seconds of this clock and arrived here within ``fresh`` seconds. The point followed is
    the lowest fresh one (each store gets what it lacks; what another has already it stores once), unknown while
    none is fresh: an older collector, or one stopped for good, never sends the site back. The cursor goes back
    once the point has stayed behind it, unmoved, for ``timeout`` seconds while entries beyond it were
    acknowledged by the broker longer ago than that. After a rewind the next one waits twice as long each time,
    up to ``longest``, until the point passes the point rewound to: a central store away for hours does not make
    the site send its backlog again and again.
    """

    def __init__(self, timeout: float, longest: float = 3600.0, fresh: float = CONFIRM_FRESH) -> None:
        self.timeout = timeout
        self.longest = max(longest, timeout)
        self.fresh = fresh
        #: collector -> its latest point
        self.heard: dict[str, _Heard] = {}
        #: the lowest fresh point, None while none is fresh
        self.point: int | None = None
        #: since when entries beyond the point were acknowledged and the point stood still (None: none beyond it)
        self.since: float | None = None
        #: the wait after a rewind before the next one
        self.delay = timeout
        #: the point of the last rewind, until the point passes it, and when it was
        self.rewound_to: int | None = None
        self.rewound_at = 0.0

    def confirmed(self, collector: str, point: int, at: float, cursor: int | None, *, now: float,
                  wall: float) -> None:
        """``collector`` says ``point`` at ``at`` (again, perhaps: a heartbeat, a retained copy)."""
        self.heard[collector] = _Heard(point, at, now)
        self.settle(cursor, now, wall)

    def gone(self, collector: str, cursor: int | None, now: float, wall: float) -> None:
        """``collector``'s point was cleared (an empty retained payload): it says nothing any more."""
        self.heard.pop(collector, None)
        self.settle(cursor, now, wall)

    def current(self, now: float, wall: float) -> int | None:
        """The lowest fresh point, or None."""
        fresh = [h.point for h in self.heard.values()
                 if now - h.received <= self.fresh and abs(wall - h.at) <= self.fresh]
        return min(fresh) if fresh else None

    def settle(self, cursor: int | None, now: float, wall: float) -> None:
        """Follow the lowest fresh point (a collector said another, or went stale)."""
        point = self.current(now, wall)
        if point != self.point:
            self.point = point
            self.since = None
            if self.rewound_to is not None and point is not None and point > self.rewound_to:
                self.rewound_to, self.delay = None, self.timeout
        self.acked(cursor, now)

    def acked(self, cursor: int | None, now: float) -> None:
        """The broker acknowledged entries up to ``cursor``."""
        if self.point is not None and cursor is not None and cursor > self.point and self.since is None:
            self.since = now

    def due(self, cursor: int | None, now: float, wall: float) -> int | None:
        """The point to rewind ``cursor`` to now, or None."""
        self.settle(cursor, now, wall)
        if self.point is None or self.since is None or cursor is None or cursor <= self.point:
            return None
        if now - self.since < self.timeout:
            return None
        if self.rewound_to is not None and now - self.rewound_at < self.delay:
            return None
        return self.point

    def rewound(self, point: int, now: float) -> None:
        """The cursor went back to ``point``."""
        if self.rewound_to is not None:
            self.delay = min(self.delay * 2, self.longest)
        self.rewound_to, self.rewound_at = point, now
        self.since = None


@dataclass(frozen=True, slots=True)
class _Feed:
    """One cursor feed the publisher sends: its cursor's name, the event that says new items were committed,
    how its position starts and its items are read, each item's topic and payload, and its stats counter."""

    name: str
    ready: asyncio.Event
    start: Callable[[str], Awaitable[int]]
    read: Callable[[int, int], Awaitable[list[FeedCall]]]
    #: an item's topic and payload, given the position read before it
    message: Callable[[FeedCall, int], tuple[str, bytes]]
    counter: str
    #: how often the store is read again when no one says new items were committed (seconds)
    poll: float = 30.0
    #: given the position, where to go back to before the next read (None: stay)
    rewind: Callable[[int], int | None] | None = None
    #: the position saved after acknowledged items, and the items acknowledged again after a rewind
    saved: Callable[[int, list[FeedCall]], None] | None = None


class Publisher:
    """Publishes the outbox and the status; run `run` as a task, cancel it to stop (``offline`` is published).

    Args:
        config: the ``[mqtt]`` section.
        outbox: where pending alerts are read and marked delivered.
        base_dir: the folder relative ``password_file``, ``ca_file``... are read from.
        on_connected: called with True after each connection and False after each disconnection (metrics).
        on_delivered: called with the number of alerts just marked delivered (metrics).
        on_resent: called with the rewinds and the journal entries re-sent since the last call (metrics).
        feed: the stored calls, for ``publish_calls`` (opened; without it no call is published).
        site: the ``site`` every call message carries (``[site] name``), unless ``shape`` says more.
        shape: turns a stored call into its payload (site, department, the tariff's decimals).
    """

    def __init__(
        self,
        config: MqttConfig,
        outbox: OutboxLike,
        *,
        base_dir: Path | None = None,
        on_connected: Callable[[bool], None] | None = None,
        on_delivered: Callable[[int], None] | None = None,
        on_resent: Callable[[int, int], None] | None = None,
        feed: CallFeed | None = None,
        site: str = "",
        shape: CallShape | None = None,
    ) -> None:
        self.config = config
        self.feed = feed
        self.site = site
        self.shape = shape or CallShape(site)
        self.outbox = outbox
        self.base_dir = base_dir
        self.stats = PublisherStats()
        self.connected = False
        self._on_connected = on_connected
        self._on_delivered = on_delivered
        self.topics = Topics(config.topic_prefix)
        self.status_topic = self.topics.status
        self.call_topic = self.topics.call
        self.alert_topic_prefix = self.topics.alert("")
        self._wake = asyncio.Event()
        self._wake.set()  # drain whatever is pending at start
        self._marking: set[asyncio.Future[None]] = set()
        self._calls_ready = asyncio.Event()
        self._calls_ready.set()  # publish whatever was stored while nobody was publishing
        self._journal_ready = asyncio.Event()
        self._journal_ready.set()
        self._revisions_ready = asyncio.Event()
        self._revisions_ready.set()
        #: topic -> the retained payload wanted at the broker (b"": remove it)
        self._retained: dict[str, bytes] = {}
        #: topic -> what the broker acknowledged on the current connection
        self._retained_sent: dict[str, bytes] = {}
        self._retained_ready = asyncio.Event()
        self._on_resent = on_resent
        #: the central store's confirmed point of this site's journal feed (``publish_journal``)
        self.confirmation = Confirmation(config.confirm_timeout, fresh=CONFIRM_FRESH)
        #: every collector's confirmed point of this site (``<journal_prefix>/<site>/confirmed/<collector>``)
        self.confirmed_filter = confirmed_filter(config.journal_prefix, site)
        #: the journal feed's cursor as last read or saved (None: not read yet)
        self.journal_cursor: int | None = None
        #: entries up to here are being sent again after a rewind
        self._resend_through = 0

    # -- called by the daemon ---------------------------------------------------------------------------------

    def wake(self, *, alerts: bool = True, calls: bool = False, entries: bool = False) -> None:
        """New alerts (or calls, or journal entries) were committed: publish them now rather than at the next
        periodic check."""
        if alerts:
            self._wake.set()
        if calls:
            self._calls_ready.set()
        if entries:
            self._journal_ready.set()

    def retain(self, topic: str, payload: bytes) -> None:
        """Keep ``payload`` as ``topic``'s retained message at the broker (``b""`` removes it): published now if
        connected, else at the next connection, and again after every reconnection."""
        if self._retained.get(topic) != payload:
            self._retained[topic] = payload
            self._retained_ready.set()

    @property
    def retained_pending(self) -> int:
        """Retained messages not yet acknowledged on this connection."""
        return sum(1 for t, p in self._retained.items() if self._retained_sent.get(t) != p)

    # -- the connection ---------------------------------------------------------------------------------------

    def client(self) -> aiomqtt.Client:
        """A fresh client for one connection (clean session, last will ``offline``)."""
        c = self.config
        client = aiomqtt.Client(
            **connect_options(c, self.base_dir), identifier=c.client_id,
            will=aiomqtt.Will(self.status_topic, OFFLINE, qos=1, retain=True),
            clean_session=True, timeout=c.publish_timeout, max_inflight_messages=c.window,
        )
        # aiomqtt warns past 10 publishes awaiting their acknowledgement; each feed keeps a window of them in flight
        # on purpose (bounded by ``window``), which would log dozens of warnings a window while a backlog drains.
        client.pending_calls_threshold = 4 * c.window
        return client

    async def run(self) -> None:
        """Connect, publish, reconnect after failures, until cancelled."""
        c = self.config
        backoff = Backoff(c.reconnect_min, c.reconnect_max, stable_after=30.0)
        throttle = LogThrottle(first_interval=60.0, max_interval=3600.0)
        while True:
            try:
                await self._connection(backoff, throttle)
            except (aiomqtt.MqttError, _Disconnected, OSError, ssl.SSLError, ValueError) as exc:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    # Cancelled while connecting: aiomqtt may turn the cancellation into an MqttError. Stop
                    # anyway, or a stop (or a reload of [mqtt]) would wait on a publisher that retries for ever.
                    raise asyncio.CancelledError from exc
                self.stats.last_error = str(exc) or type(exc).__name__
                if not self.connected:
                    self.stats.connect_failures += 1
                log_throttled(log, throttle, "mqtt.unavailable", host=c.host, port=c.port,
                              error=self.stats.last_error)
            finally:
                self._set_connected(False)
            backoff.disconnected()
            await asyncio.sleep(backoff.next_delay())

    async def _connection(self, backoff: Backoff, throttle: LogThrottle) -> None:
        client = self.client()
        async with client:
            backoff.connected()
            try:
                await client.publish(self.status_topic, ONLINE, qos=1, retain=True)
                self.stats.connects += 1
                self._set_connected(True)
                failures = throttle.reset()
                log.info("mqtt.connected", host=self.config.host, port=self.config.port,
                         status=self.status_topic, **({"after_failures": failures} if failures else {}))
                await self._session(client)
            except asyncio.CancelledError:
                # A clean stop: say so (the will is only for an unclean end), then disconnect.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.publish(self.status_topic, OFFLINE, qos=1, retain=True), 2.0)
                raise

    def _set_connected(self, value: bool) -> None:
        if value != self.connected:
            self.connected = value
            if not value:
                log.info("mqtt.disconnected", host=self.config.host, port=self.config.port)
            if self._on_connected is not None:
                self._on_connected(value)

    async def _session(self, client: aiomqtt.Client) -> None:
        self._retained_sent = {}  # a new connection: the broker may have lost them (no persistence)
        jobs: list[Awaitable[None]] = [self._watch(client), self._drain(client), self._publish_retained(client)]
        if self.config.publish_calls and self.feed is not None:
            jobs.append(self._publish_calls(client, self.feed))
        if self.config.publish_journal and self.feed is not None:
            # the collector's word on what it stored: retained, so it comes at once (and the check with it)
            await client.subscribe(self.confirmed_filter, qos=1)
            jobs.append(self._publish_journal(client, self.feed))
            jobs.append(self._publish_revisions(client, self.feed))
            jobs.append(self._check_confirmed())
        tasks = [asyncio.ensure_future(job) for job in jobs]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._marking:  # delivery marks in flight: finish them before the outbox may close
                await asyncio.gather(*self._marking, return_exceptions=True)
        for task in done:
            exc = task.exception()
            if exc is not None:
                raise exc
        raise _Disconnected("the connection ended")

    async def _watch(self, client: aiomqtt.Client) -> None:
        # Only the confirmed points are subscribed (``publish_journal``): the iterator also ends, with MqttError,
        # when the connection drops. That ends the session at once, instead of at the next publish's timeout.
        async for message in client.messages:
            if not message.topic.matches(self.confirmed_filter) or not isinstance(message.payload,
                                                                                  bytes | bytearray):
                continue
            collector = message.topic.value.rsplit("/", 1)[-1]
            if not message.payload:  # its retained point cleared: that collector is gone
                self.confirmation.gone(collector, self.journal_cursor, time.monotonic(), time.time())
                log.info("mqtt.confirmed_cleared", site=self.site, collector=collector)
                continue
            try:
                point, at = read_confirmed_message(bytes(message.payload))
            except ValueError as exc:
                log.warning("mqtt.bad_confirmed", topic=message.topic.value, error=str(exc))
                continue
            self.confirmation.confirmed(collector, point, at, self.journal_cursor, now=time.monotonic(),
                                        wall=time.time())
            if self.confirmation.due(self.journal_cursor, time.monotonic(), time.time()) is not None:
                self._journal_ready.set()

    async def _check_confirmed(self) -> None:
        """Wake the journal feed when the confirmed point says to go back (it rewinds between windows)."""
        while True:
            if self.confirmation.due(self.journal_cursor, time.monotonic(), time.time()) is not None:
                self._journal_ready.set()
            await asyncio.sleep(min(1.0, self.config.confirm_timeout / 4))

    def _rewind_journal(self, position: int) -> int | None:
        self.journal_cursor = position
        now = time.monotonic()
        self.confirmation.acked(position, now)  # (a saved cursor read at start: acknowledged before now)
        point = self.confirmation.due(position, now, time.time())
        if point is None:
            return None
        self.confirmation.rewound(point, now)
        self._resend_through = max(self._resend_through, position)
        self.stats.journal_rewinds += 1
        log.warning("mqtt.journal_rewound", site=self.site, cursor=position, confirmed=point, behind=position - point,
                    next_after=round(self.confirmation.delay, 1))
        if self._on_resent is not None:
            self._on_resent(1, 0)
        return point

    def _journal_saved(self, position: int, acked: list[FeedCall]) -> None:
        self.journal_cursor = position
        self.confirmation.acked(position, time.monotonic())
        again = sum(1 for e in acked if e.position <= self._resend_through)
        if again:
            self.stats.entries_resent += again
            if self._on_resent is not None:
                self._on_resent(0, again)

    async def _drain(self, client: aiomqtt.Client) -> None:
        """Publish pending alerts oldest first, a window at a time; mark each delivered once acknowledged."""
        window = self.config.window
        while True:
            self._wake.clear()
            batch = await self.outbox.pending(window)
            if not batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 30.0)  # and re-check now and then regardless
                continue
            sends = [asyncio.ensure_future(
                client.publish(self.alert_topic_prefix + a.rule, a.payload.encode(), qos=1)) for a in batch]
            self.stats.alerts_sent += len(sends)
            try:
                await asyncio.wait(sends)
            finally:
                # Also when the session ends (the connection dropped, or a stop) with some still unanswered:
                # whatever the broker did acknowledge is marked, or it would go out a second time.
                if not all(t.done() for t in sends):
                    for _ in range(3):
                        await asyncio.sleep(0)  # let acknowledgements that already arrived complete their calls
                for t in sends:
                    t.cancel()
                acked = [a.row for a, t in zip(batch, sends, strict=True)
                         if t.done() and not t.cancelled() and t.exception() is None]
                if acked:
                    mark = asyncio.ensure_future(self._mark(acked))
                    self._marking.add(mark)
                    mark.add_done_callback(self._marking.discard)
                    await asyncio.shield(mark)
            for t in sends:
                if not t.cancelled() and (exc := t.exception()) is not None:
                    raise exc

    async def _mark(self, rows: list[int]) -> None:
        # The broker has them: retry the mark until it sticks (a locked database), or they would go out twice.
        backoff = Backoff(0.05, 5.0)
        now = time.time()
        while True:
            try:
                await self.outbox.mark_delivered(rows, now)
                break
            except StoreUnavailable as exc:
                delay = backoff.next_delay()
                log.warning("mqtt.mark_delivered_failed", error=str(exc), alerts=len(rows), retry_in=round(delay, 2))
                await asyncio.sleep(delay)
        self.stats.alerts_published += len(rows)
        if self._on_delivered is not None:
            self._on_delivered(len(rows))

    async def _publish_calls(self, client: aiomqtt.Client, feed: CallFeed) -> None:
        """Publish stored calls after the saved cursor (a new feed starts at the journal's end)."""
        topic = self.call_topic
        await self._publish_feed(client, feed, _Feed(
            CALL_FEED, self._calls_ready, feed.start, feed.after,
            lambda c, _prev: (topic, self._call_message(c.fields)), "calls_published"))

    async def _publish_journal(self, client: aiomqtt.Client, feed: CallFeed) -> None:
        """Publish journal entries after the saved cursor (a new feed starts at the journal's beginning), each to
        its site's and source's topic with the position read before it (``prev``); back to the central store's
        confirmed point when it stalls (`Confirmation`)."""
        prefix, site = self.config.journal_prefix, self.site
        await self._publish_feed(client, feed, _Feed(
            JOURNAL_FEED, self._journal_ready, feed.start_entries, feed.entries,
            lambda e, prev: (journal_topic(prefix, site, e.fields["source"]),
                             encode({**journal_message(site, e.fields), "prev": prev})),
            "entries_published", rewind=self._rewind_journal, saved=self._journal_saved))

    async def _publish_revisions(self, client: aiomqtt.Client, feed: CallFeed) -> None:
        """Publish the revisions of journal entries (lines whose calls a rerate or reparse changed, as they are
        now) after the saved cursor, each to its entry's topic. A rerate runs in another process: the store is
        read again every few seconds."""
        prefix, site = self.config.journal_prefix, self.site
        await self._publish_feed(client, feed, _Feed(
            REVISION_FEED, self._revisions_ready, feed.start_revisions, feed.revisions,
            lambda e, _prev: (journal_topic(prefix, site, e.fields["source"]),
                              encode(journal_message(site, e.fields))),
            "revisions_published", poll=REVISION_POLL))

    async def _publish_feed(self, client: aiomqtt.Client, feed: CallFeed, spec: _Feed) -> None:
        """Publish ``spec``'s items after its saved cursor, a window at a time; save the cursor past each item the
        broker acknowledged with every item before it (so a gap is never skipped). One window in flight at a
        time: a backlog shares the connection with the alerts and the other feed, window by window."""
        window = self.config.window
        position = await spec.start(spec.name)
        while True:
            spec.ready.clear()
            if spec.rewind is not None and (back := spec.rewind(position)) is not None:
                position = back
                await asyncio.shield(self._save_cursor(feed, spec.name, position))
            batch = await spec.read(position, window)
            if not batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(spec.ready.wait(), spec.poll)  # and re-check now and then
                continue
            # An item without fields has nothing to send (a revision of a line retention deleted): passed.
            prevs = [position, *(c.position for c in batch[:-1])]
            sends = [asyncio.ensure_future(client.publish(*spec.message(c, prev), qos=1)) if c.fields else None
                     for c, prev in zip(batch, prevs, strict=True)]
            tasks = [t for t in sends if t is not None]
            try:
                if tasks:
                    await asyncio.wait(tasks)
            finally:
                if not all(t.done() for t in tasks):
                    for _ in range(3):
                        await asyncio.sleep(0)  # let acknowledgements that already arrived complete their calls
                for t in tasks:
                    t.cancel()
                acked = 0
                for send in sends:
                    if send is not None and (not send.done() or send.cancelled() or send.exception() is not None):
                        break
                    acked += 1
                setattr(self.stats, spec.counter, getattr(self.stats, spec.counter)
                        + sum(1 for t in sends[:acked] if t is not None))
                if acked:
                    position = batch[acked - 1].position
                    await asyncio.shield(self._save_cursor(feed, spec.name, position))
                    if spec.saved is not None:
                        spec.saved(position, batch[:acked])
            failed = next((t for t in tasks if t.done() and not t.cancelled() and t.exception() is not None), None)
            if failed is not None:
                raise failed.exception()  # type: ignore[misc]  # the session ends; reconnect and go on
            if acked < len(sends):
                raise _Disconnected(f"{spec.name}: the session ended before every item was acknowledged")

    async def _publish_retained(self, client: aiomqtt.Client) -> None:
        """Publish each retained message the broker does not have yet from this connection, as it changes."""
        while True:
            self._retained_ready.clear()
            todo = [(t, p) for t, p in self._retained.items() if self._retained_sent.get(t) != p]
            if not todo:
                await self._retained_ready.wait()
                continue
            sends = [asyncio.ensure_future(client.publish(t, p, qos=1, retain=True)) for t, p in todo]
            try:
                await asyncio.wait(sends)
            finally:
                for t in sends:
                    t.cancel()
            for (topic, payload), t in zip(todo, sends, strict=True):
                if t.cancelled() or t.exception() is not None:
                    continue
                self._retained_sent[topic] = payload
                self.stats.retained_published += 1
                if not payload and self._retained.get(topic) == b"":
                    del self._retained[topic]  # removed at the broker: nothing to send after a reconnection
            failed = next((t for t in sends if not t.cancelled() and t.exception() is not None), None)
            if failed is not None:
                raise failed.exception()  # type: ignore[misc]  # the session ends; reconnect and go on

    async def _save_cursor(self, feed: CallFeed, name: str, position: int) -> None:
        backoff = Backoff(0.05, 5.0)
        while True:
            try:
                await feed.save(name, position)
                return
            except StoreUnavailable as exc:
                delay = backoff.next_delay()
                log.warning("mqtt.feed_cursor_save_failed", feed=name, error=str(exc), retry_in=round(delay, 2))
                await asyncio.sleep(delay)

    def _call_message(self, fields: dict[str, Any]) -> bytes:
        return encode(self.shape.message(fields))


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message a `Subscription` received, not acknowledged to the broker yet."""

    topic: str
    payload: bytes
    mid: int
    qos: int


@dataclass(slots=True)
class SubscriptionStats:
    """Counters for logs and benchmarks."""

    connects: int = 0
    batches: int = 0
    #: messages acknowledged to the broker after the handler took them
    acknowledged: int = 0
    last_error: str | None = None


class Subscription:
    """A persistent QoS-1 subscription whose messages are acknowledged only after the caller has kept them.

    The session is the broker's (a fixed client id, ``clean_session`` false): while this client is away the broker
    queues what arrives for it, and whatever was delivered but not acknowledged is delivered again at the next
    connection. Each message is decoded as it arrives (``decode``); each batch of them (at most ``batch``) goes to
    the handler, and its PUBACKs are sent when the handler returns (paho's manual acknowledgement: it never
    acknowledges on its own). A handler that cannot keep a batch yet must retry on its own; the connection stays
    up meanwhile (the broker sends at most its ``max_inflight_messages`` unacknowledged messages).

    Two batches at most are in hand: while the handler keeps one, the next one is received and decoded (the
    handler's wait on its store is the decoding's time). The next batch goes to the handler only after the
    previous one was kept and acknowledged: batches are handled and acknowledged one at a time, in the order
    they came.

    Args:
        config: the ``[mqtt]`` section (broker, credentials, TLS, reconnect delays).
        topics: the topic filters, subscribed at QoS 1.
        client_id: the session's fixed identity at the broker.
        batch: the most messages handed over at once.
    """

    def __init__(self, config: MqttConfig, topics: Sequence[str], client_id: str, *, base_dir: Path | None = None,
                 batch: int = 500) -> None:
        self.config = config
        self.topics = list(topics)
        self.client_id = client_id
        self.base_dir = base_dir
        self.batch = batch
        self.stats = SubscriptionStats()
        self.connected = False

    async def run(self, handle: Callable[[list[T]], Awaitable[None]], decode: Callable[[Delivery], T], *,
                  session: Callable[[Retain], Awaitable[None]] | None = None) -> None:
        """Connect, decode what arrives, hand over batches and acknowledge them, reconnect after failures, until
        cancelled. ``session``, if given, runs beside each connection (cancelled when it ends) with a function
        that publishes a retained QoS-1 message on it and returns once the broker acknowledged it."""
        c = self.config
        backoff = Backoff(c.reconnect_min, c.reconnect_max, stable_after=30.0)
        throttle = LogThrottle(first_interval=60.0, max_interval=3600.0)
        while True:
            try:
                client = aiomqtt.Client(**connect_options(c, self.base_dir), identifier=self.client_id,
                                        clean_session=False, timeout=c.publish_timeout)
                # aiomqtt has no option for it: paho's own switch, so a message is acknowledged only by `ack`.
                client._client.manual_ack_set(True)
                inbox = _Inbox(client)
                async with client:
                    backoff.connected()
                    _read_all_arrived(client)
                    for topic in self.topics:
                        await client.subscribe(topic, qos=1)
                    self.stats.connects += 1
                    self.connected = True
                    failures = throttle.reset()
                    log.info("mqtt.subscribed", host=c.host, port=c.port, topics=self.topics,
                             **({"after_failures": failures} if failures else {}))
                    beside: asyncio.Future[None] | None = None if session is None else asyncio.ensure_future(
                        session(functools.partial(_publish_retained, client)))
                    try:
                        await self._consume(client, inbox, handle, decode)
                    finally:
                        if beside is not None:
                            beside.cancel()
                            await asyncio.gather(beside, return_exceptions=True)
            except (aiomqtt.MqttError, OSError, ssl.SSLError, ValueError) as exc:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise asyncio.CancelledError from exc
                self.stats.last_error = str(exc) or type(exc).__name__
                log_throttled(log, throttle, "mqtt.unavailable", host=c.host, port=c.port,
                              error=self.stats.last_error)
            finally:
                self.connected = False
            backoff.disconnected()
            await asyncio.sleep(backoff.next_delay())

    async def _consume(self, client: aiomqtt.Client, inbox: _Inbox, handle: Callable[[list[T]], Awaitable[None]],
                       decode: Callable[[Delivery], T]) -> None:
        arrived = inbox.deliveries
        disconnected = client._disconnected
        #: the batch in the handler's hands (then acknowledged)
        keeping: asyncio.Task[None] | None = None
        try:
            while True:
                deliveries: list[Delivery] = []
                items: list[T] = []
                while len(deliveries) < self.batch:
                    if arrived:
                        d = arrived.popleft()
                        deliveries.append(d)
                        items.append(decode(d))
                        continue
                    if disconnected.done():
                        raise aiomqtt.MqttError("Disconnected during message iteration")
                    waits: set[asyncio.Future[Any]] = {inbox.arrival(), disconnected}
                    if deliveries and (keeping is None or keeping.done()):
                        # The previous batch is kept: this one goes now, with what the socket holds already
                        # (the reader's turn, then no waiting).
                        await asyncio.wait(waits, timeout=0)
                        if not arrived:
                            break
                        continue
                    if keeping is not None and not keeping.done():
                        waits.add(keeping)
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if keeping is not None:
                    await keeping  # kept and acknowledged (or its error, raised here)
                keeping = asyncio.create_task(self._keep(client, handle, deliveries, items))
        finally:
            if keeping is not None and not keeping.done():
                # A lost connection lets the batch in hand be kept (its PUBACKs are refused: it comes again, and
                # is stored once); a cancellation cancels it. Either way it has ended when this returns.
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    keeping.cancel()
                await asyncio.wait((keeping,))
                if not keeping.cancelled() and keeping.exception() is not None:
                    raise keeping.exception()  # type: ignore[misc]

    async def _keep(self, client: aiomqtt.Client, handle: Callable[[list[T]], Awaitable[None]],
                    deliveries: list[Delivery], items: list[T]) -> None:
        await handle(items)
        for d in deliveries:
            # After a lost connection this is refused, harmlessly: the broker delivers those again.
            client._client.ack(d.mid, d.qos)
        self.stats.batches += 1
        self.stats.acknowledged += len(deliveries)


async def _publish_retained(client: aiomqtt.Client, topic: str, payload: bytes) -> None:
    await client.publish(topic, payload, qos=1, retain=True)


def _read_all_arrived(client: aiomqtt.Client) -> None:
    """Let ``client`` read every packet its socket holds at each turn, where aiomqtt's reader reads one (paho's
    ``loop_read`` reads one packet when nothing of its own is in flight): a delivery no longer costs an
    event-loop turn and its poll (at thousands a second, a third of the subscriber's time)."""
    paho = client._client
    sock = paho.socket()
    if sock is None or not all(hasattr(paho, name) for name in ("_packet_read", "_loop_rc_handle")):
        return  # another paho than the one this was written for (pyproject bounds it): aiomqtt's own reader
    disconnected = client._disconnected

    def read() -> None:
        try:
            for _ in range(_READ_AT_ONCE):
                rc = paho._packet_read()
                if rc > 0:
                    paho._loop_rc_handle(rc)
                    return
                if rc == MQTTErrorCode.MQTT_ERR_AGAIN and not (
                        isinstance(sock, ssl.SSLSocket) and sock.pending() > 0):
                    return
        except Exception as exc:  # as aiomqtt's reader: a broken connection
            if not disconnected.done():
                disconnected.set_exception(exc)

    asyncio.get_running_loop().add_reader(sock.fileno(), read)  # in place of aiomqtt's, for this socket


class _Inbox:
    """What a client received, as `Delivery` objects in the order they came. Paho's handling of each message is
    replaced by an append: no aiomqtt ``Message`` with its topic checked, no match against per-topic callbacks
    (none here), no asyncio queue (together a fifth of the subscriber's time at thousands a second)."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.deliveries: deque[Delivery] = deque()
        self._wake: asyncio.Future[None] | None = None
        paho = client._client
        if callable(getattr(type(paho), "_handle_on_message", None)):
            # paho calls it for each message received (QoS 1 with manual acknowledgements: nothing else to do)
            paho._handle_on_message = self._received  # type: ignore[method-assign]
        else:  # another paho (pyproject bounds it): its public callback, through its topic matcher
            paho.on_message = lambda _client, _userdata, message: self._received(message)

    def arrival(self) -> asyncio.Future[None]:
        """Done when the next message arrives."""
        self._wake = asyncio.get_running_loop().create_future()
        return self._wake

    def _received(self, message: MQTTMessage) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:  # a broker refuses such a topic: matches no filter
            topic = ""
        payload = message.payload  # bytes (paho's struct.unpack)
        self.deliveries.append(Delivery(topic, payload if isinstance(payload, bytes) else bytes(payload), message.mid,
                                        message.qos))
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
