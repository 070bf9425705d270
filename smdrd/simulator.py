"""A PBX simulator: realistic generated call traffic, written by each format's own renderer.

The traffic model is plain data: an office of extensions in departments placing local, national, mobile,
international, toll-free and premium calls (about a fifth unanswered), taking inbound calls, calling each
other, now and then transferring a call. As in real offices, most external calls go to and come from a
set of regular contacts (customers, suppliers: `CONTACT_SHARE` of them, the most popular called most often);
the rest are numbers seen once. Durations are log-normal, as real call durations are. The same seed
gives the same calls. The generator is pure; `serve` and `push` are the network edges (``--listen``,
``--connect``).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from smdrd.parsing import Parser
from smdrd.record import CallRecord, Direction

#: (department, first extension, last extension)
DEPARTMENTS = (("Sales", 200, 219), ("Support", 300, 314), ("Finance", 400, 405), ("Management", 500, 503))


#: a number as a PBX writes it: its fixed front (prefix, area or operator code) and how many digits follow, the
#: first of them 2 to 9 (as in every plan here: no area, exchange or subscriber number starts with 0 or 1 there).
Prefix = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Dialplan:
    """How numbers look in one country, as a PBX there writes them after the outside-line access code.

    Every kind is a few `Prefix`es whose numbers are valid ones of that kind by the numbering plan (phonenumbers
    reads each as a number of that type: a fixed line of the area, a mobile, a toll-free or premium-rate
    number; an international one as a valid number of another country, after the country's own IDD), so that
    the demo rates each call as what it was meant to be and never as "unknown".
    """

    country: str
    local: tuple[Prefix, ...]
    national: tuple[Prefix, ...]
    mobile: tuple[Prefix, ...]
    international: tuple[Prefix, ...]
    toll_free: tuple[Prefix, ...]
    premium: tuple[Prefix, ...]
    cli_drop: str = ""  # what carriers leave off the front of a caller's number (NANP: the leading 1)


DIALPLANS = {
    # NANP: 10 digits, national calls after the 1; international after 011 (London 20 7, Berlin 30, Paris 1,
    # Mexico City 55, Manila 2 8).
    "US": Dialplan("US", local=(("212", 7),),
                   national=(("1415", 7), ("1312", 7), ("1617", 7), ("1305", 7), ("1206", 7)),
                   mobile=(("1917", 7), ("1646", 7)),
                   international=(("01144207", 7), ("0114930", 8), ("011331", 8), ("0115255", 8),
                                  ("0116328", 7)),
                   toll_free=(("1800", 7), ("1888", 7), ("1877", 7)), premium=(("1900", 7),), cli_drop="1"),
    # UK: 0 + 10 digits (London 020 7/8/3, Birmingham 0121, Manchester 0161, Edinburgh 0131, Leeds 0113; mobiles
    # 07; freephone 0800 with 9 digits after the 0, 0808 with 10; premium 09); international after 00.
    "GB": Dialplan("GB", local=(("0207", 7), ("0208", 7), ("0203", 7)),
                   national=(("01214", 6), ("0161", 7), ("01314", 6), ("01132", 6)),
                   mobile=(("07912", 6), ("07812", 6), ("07400", 6), ("07957", 6)),
                   international=(("001212", 7), ("001415", 7), ("004930", 8), ("00331", 8), ("004822", 7)),
                   toll_free=(("0800", 6), ("0808", 7)), premium=(("0909", 7), ("0906", 7))),
    # Poland: 9 digits and no trunk prefix since 2009 (Bydgoszcz 52, Warsaw 22, Kraków 12, Poznań 61; mobiles
    # 5, 6, 7..; 800 freephone, 70x premium); international after 00.
    "PL": Dialplan("PL", local=(("52", 7),), national=(("22", 7), ("12", 7), ("61", 7)),
                   mobile=(("600", 6), ("501", 6), ("790", 6)),
                   international=(("004930", 8), ("0044207", 7), ("004202", 8)),
                   toll_free=(("800", 6),), premium=(("700", 6),)),
}

#: the share of external calls that go to (or come from) the site's regular contacts.
CONTACT_SHARE = 0.8
#: regular contacts per kind of number.
CONTACTS = {"local": 600, "national": 500, "mobile": 500, "international": 150, "toll_free": 60, "premium": 10}

#: (kind, weight) for the calls of a working day
MIX = (("internal", 15), ("inbound", 30), ("local", 18), ("national", 12), ("mobile", 12),
       ("international", 5), ("toll_free", 5), ("premium", 1))


class Traffic:
    """An endless, reproducible stream of canonical call records."""

    def __init__(self, *, seed: int | None = None, country: str = "US", tz: tzinfo | None = None,
                 start: datetime | None = None, format: str = "sim", realtime: bool = False) -> None:
        self.rng = random.Random(seed)
        self.plan = DIALPLANS.get(country.upper(), DIALPLANS["US"])
        self.tz = tz or ZoneInfo("UTC")
        self.realtime = realtime
        self.clock = (start or datetime(2026, 1, 5, 8, 0)).replace(tzinfo=self.tz)
        self.format = format
        self.call_id = 1_000_000
        self.extensions = [str(n) for _, lo, hi in DEPARTMENTS for n in range(lo, hi + 1)]
        self._kinds = [k for k, _ in MIX]
        self._weights = [w for _, w in MIX]
        self.contacts = {kind: [self._fresh_number(kind) for _ in range(n)] for kind, n in CONTACTS.items()}

    def number(self, kind: str) -> str:
        """A number of ``kind`` (a `Dialplan` field: ``local``, ``mobile``...) as the PBX writes it: most often a
        regular contact's, else one never dialled before."""
        pool = self.contacts[kind]
        if self.rng.random() < CONTACT_SHARE:
            # Squaring a uniform draw favours the first contacts: a few are called far more than the rest.
            return pool[int(len(pool) * self.rng.random() ** 2)]
        return self._fresh_number(kind)

    def _fresh_number(self, kind: str) -> str:
        prefixes: tuple[Prefix, ...] = getattr(self.plan, kind)
        prefix, digits = self.rng.choice(prefixes)
        first = str(self.rng.randint(2, 9))
        return prefix + first + "".join(str(self.rng.randint(0, 9)) for _ in range(digits - 1))

    def _duration(self, kind: str) -> int:
        median = {"international": 300, "internal": 60, "premium": 120}.get(kind, 150)
        return max(1, min(4 * 3600, int(self.rng.lognormvariate(math.log(median), 0.9))))

    def _advance(self) -> datetime:
        if self.realtime:
            return datetime.now(self.tz).replace(microsecond=0)
        self.clock += timedelta(seconds=self.rng.randint(5, 240))
        if self.clock.hour >= 19:  # the office closes; the next call is the next working morning
            self.clock = (self.clock + timedelta(days=1)).replace(hour=8, minute=self.rng.randint(0, 30))
            while self.clock.weekday() >= 5:
                self.clock += timedelta(days=1)
        return self.clock

    def calls(self) -> Iterator[list[CallRecord]]:
        """Each item is one call: its legs, in the order the PBX reports them."""
        while True:
            yield self.next_call()

    def next_call(self) -> list[CallRecord]:
        rng = self.rng
        kind = rng.choices(self._kinds, self._weights)[0]
        ext = rng.choice(self.extensions)
        self.call_id += 1
        answered = rng.random() > (0.35 if kind == "inbound" else 0.18)
        duration = self._duration(kind) if answered else 0
        ring = rng.randint(0, 25)
        end = self._advance()
        start = end - timedelta(seconds=duration + ring) if self.realtime else end
        if kind == "internal":
            # a colleague: an extension never calls itself
            number = rng.choice(self.extensions[:-1])
            direction, number, trunk = Direction.INTERNAL, self.extensions[-1] if number == ext else number, ""
        elif kind == "inbound":
            direction, number = Direction.INBOUND, self.number(rng.choice(("local", "national", "mobile")))
            if self.plan.cli_drop:
                number = number.removeprefix(self.plan.cli_drop)
            trunk = f"T90{rng.randint(1, 8):02d}"
        else:
            direction, number, trunk = Direction.OUTBOUND, self.number(kind), f"T90{rng.randint(1, 8):02d}"
        record = CallRecord(format=self.format, start=start, duration=duration, ring=ring, direction=direction,
                            extension=ext, number=number, trunk=trunk, call_id=str(self.call_id),
                            answered=answered)
        if direction is Direction.INBOUND and answered and rng.random() < 0.04:
            # A transfer: the receptionist's leg, then the colleague's leg under the same call id.
            other = rng.choice(self.extensions[:-1])
            other = self.extensions[-1] if other == ext else other
            first = replace(record, duration=max(1, duration // 5), continued=True, transfer="U XfP")
            second = replace(record, extension=other, leg=1, ring=0, transfer="U Xfd")
            return [first, second]
        return [record]


def render_calls(parser: type[Parser], traffic: Traffic, count: int | None) -> Iterator[str]:
    """The lines a PBX of ``parser``'s format writes for ``count`` calls (endless when ``None``)."""
    calls = traffic.calls()
    first = next(calls)
    yield from parser.header_lines(first[0].start)
    for n, legs in enumerate(itertools.chain([first], calls)):
        if count is not None and n >= count:
            return
        for leg in legs:
            yield from parser.render(replace(leg, format=parser.name))


class Pacer:
    """Spreads ``rate`` items per second evenly, in small bursts (no busy loop, no drift)."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.started = time.monotonic()
        self.sent = 0

    async def wait(self) -> None:
        if not self.rate:
            return
        self.sent += 1
        due = self.started + self.sent / self.rate
        delay = due - time.monotonic()
        if delay > 0.005:
            await asyncio.sleep(delay)


async def push(host: str, port: int, lines: Iterator[str], rate: float | None, *,
               line_end: bytes = b"\r\n") -> int:
    """Connect to a collector and write ``lines`` to it (a PBX in push mode); reconnect when it drops."""
    sent = 0
    pacer = Pacer(rate)
    pending: str | None = None
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.2)
            continue
        try:
            while True:
                line = pending if pending is not None else next(lines, None)
                if line is None:
                    await writer.drain()
                    writer.close()
                    return sent
                pending = line
                writer.write(line.encode() + line_end)
                await writer.drain()
                pending = None
                sent += 1
                await pacer.wait()
        except (ConnectionError, OSError):
            await asyncio.sleep(1.0)


async def serve(host: str, port: int, lines: Iterator[str], rate: float | None, *,
                line_end: bytes = b"\r\n", ready: asyncio.Event | None = None) -> int:
    """Listen as a PBX does (IP Office in listen mode): write ``lines`` to whoever is connected.

    Lines are held while no collector is connected, as a PBX's SMDR buffer does.
    """
    clients: set[asyncio.StreamWriter] = set()
    handlers: set[asyncio.Task[Any]] = set()
    connected = asyncio.Event()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            handlers.add(task)
        clients.add(writer)
        connected.set()
        try:
            await reader.read()  # until the collector goes away, or the last line was sent
        except ConnectionError:
            pass
        finally:
            clients.discard(writer)
            if not clients:
                connected.clear()
            if task is not None:
                handlers.discard(task)

    server = await asyncio.start_server(accept, host, port)
    if ready is not None:
        ready.set()
    sent = 0
    pacer = Pacer(rate)
    async with server:
        for line in lines:
            while True:
                await connected.wait()
                writer = next(iter(clients), None)
                if writer is None:
                    continue
                try:
                    writer.write(line.encode() + line_end)
                    await writer.drain()
                    break
                except (ConnectionError, OSError):
                    clients.discard(writer)
                    if not clients:
                        connected.clear()
            sent += 1
            await pacer.wait()
        for writer in list(clients):
            writer.close()
        # Let each connection's handler see its socket closed and end by itself: a handler still reading when
        # asyncio.run cancels it at exit makes asyncio's stream callback print a CancelledError traceback.
        if handlers:
            await asyncio.wait(set(handlers), timeout=5)
    return sent
