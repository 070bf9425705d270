"""Reconnect pacing and log throttling for the long-running edges (sources, and later the MQTT publisher).

`Backoff` spaces reconnect attempts: capped exponential growth with full jitter (so a site's smdrd instances
do not all hammer a rebooted PBX in the same second), never faster than a floor, and back to the start after
a connection that lasted. `LogThrottle` keeps a failure that repeats all night (a PBX switched off at 18:00)
to a handful of log lines with a count of what was left out, instead of one line per retry.

Pure code: no I/O, no asyncio, no sleeping here. The clock and the random generator are injected, so the
tests pin them; the caller does the sleeping and the logging.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Literal

Clock = Callable[[], float]


class Backoff:
    """Capped exponential backoff with full jitter and a floor.

    The n-th delay after a failure (n counted from 0) is drawn from ``uniform(0, min(cap, base * 2**n))`` and
    raised to ``floor`` when below it. `connected` and `disconnected` bracket a connection; one that stayed up
    for ``stable_after`` seconds resets the sequence, so a PBX that reboots once a week is retried quickly,
    while one that accepts and drops at once keeps backing off.

    Args:
        base: the first delay's upper bound, in seconds.
        cap: the largest delay, in seconds.
        floor: the smallest delay (defaults to ``base``): full jitter alone would sometimes retry at once.
        stable_after: how long a connection must last to reset the sequence, in seconds.
        rng: the random generator (tests seed one).
        clock: a monotonic clock in seconds (tests inject one).
    """

    __slots__ = ("_clock", "_connected_at", "_rng", "attempt", "base", "cap", "floor", "stable_after")

    def __init__(
        self,
        base: float,
        cap: float,
        *,
        floor: float | None = None,
        stable_after: float = 30.0,
        rng: random.Random | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        if base <= 0 or cap <= 0:
            raise ValueError("base and cap must be positive")
        self.base = base
        self.cap = max(cap, base)
        self.floor = min(base if floor is None else floor, self.cap)
        self.stable_after = stable_after
        self.attempt = 0
        self._rng = rng or random.Random()
        self._clock = clock
        self._connected_at: float | None = None

    def next_delay(self) -> float:
        """The delay before the next attempt; each call moves one step up the sequence."""
        # The exponent is capped so 2**attempt never overflows a float on a source retried for months.
        ceiling = min(self.cap, self.base * 2.0 ** min(self.attempt, 64))
        self.attempt += 1
        return max(self.floor, self._rng.uniform(0.0, ceiling))

    def reset(self) -> None:
        """Start the sequence again from its first step."""
        self.attempt = 0

    def connected(self) -> None:
        """A connection was made: remember when, to judge its length at `disconnected`."""
        self._connected_at = self._clock()

    def disconnected(self) -> bool:
        """The connection ended; reset the sequence if it lasted.

        Returns:
            True when the connection lasted at least ``stable_after`` seconds (and the sequence was reset).
        """
        started, self._connected_at = self._connected_at, None
        if started is not None and self._clock() - started >= self.stable_after:
            self.reset()
            return True
        return False


@dataclass(frozen=True, slots=True)
class Verdict:
    """Log this occurrence, and how.

    Attributes:
        level: ``"warning"`` for the first occurrence, ``"info"`` for the periodic reminders after it (the
            first says something broke; the reminders only say it is still broken).
        occurrences: how many times it happened since the last reset, this one included.
        suppressed: how many occurrences were left out of the log since the previous logged one.
    """

    level: Literal["warning", "info"]
    occurrences: int
    suppressed: int


@dataclass(slots=True)
class _State:
    occurrences: int
    suppressed: int
    next_at: float
    interval: float


#: the key that every key beyond a throttle's `LogThrottle.max_keys` shares.
_OTHERS = object()


class LogThrottle:
    """Decide which occurrences of a repeating problem get logged.

    The first occurrence of a key is logged; after it, one is logged once ``first_interval`` seconds have
    passed, then after twice that, four times that... up to ``max_interval``; the ones between are counted.
    `reset` (the problem went away) starts the key afresh.

    At most ``max_keys`` keys are followed: beyond them every new key shares one, so a flood of new keys
    (refused connections from thousands of addresses) is one throttled line, and the memory stays bounded.

    Args:
        first_interval: the gap before the first reminder, in seconds.
        max_interval: the largest gap between reminders, in seconds.
        clock: a monotonic clock in seconds (tests inject one).
        max_keys: the keys followed one by one.
    """

    __slots__ = ("_clock", "_keys", "first_interval", "max_interval", "max_keys")

    def __init__(
        self, first_interval: float = 60.0, max_interval: float = 3600.0, *, clock: Clock = time.monotonic,
        max_keys: int = 256,
    ) -> None:
        self.first_interval = first_interval
        self.max_interval = max(max_interval, first_interval)
        self.max_keys = max_keys
        self._clock = clock
        self._keys: dict[Hashable, _State] = {}

    def hit(self, key: Hashable = None) -> Verdict | None:
        """Record one occurrence of ``key``.

        Returns:
            A `Verdict` when this occurrence should be logged, ``None`` when it should be left out.
        """
        now = self._clock()
        state = self._keys.get(key)
        if state is None and len(self._keys) >= self.max_keys:
            key = _OTHERS
            state = self._keys.get(key)
        if state is None:
            self._keys[key] = _State(1, 0, now + self.first_interval, self.first_interval)
            return Verdict("warning", 1, 0)
        state.occurrences += 1
        if now < state.next_at:
            state.suppressed += 1
            return None
        suppressed, state.suppressed = state.suppressed, 0
        state.interval = min(state.interval * 2, self.max_interval)
        state.next_at = now + state.interval
        return Verdict("info", state.occurrences, suppressed)

    def active(self, key: Hashable = None) -> bool:
        """True while ``key`` has occurrences that no `reset` has cleared."""
        return key in self._keys

    def count(self, key: Hashable = None) -> int:
        """How many times ``key`` happened since its last `reset`."""
        state = self._keys.get(key)
        return 0 if state is None else state.occurrences

    def reset(self, key: Hashable = None) -> int:
        """The problem went away: forget ``key``.

        Returns:
            How many times it had happened (0 if it had not), for a "recovered after N failures" line.
        """
        state = self._keys.pop(key, None)
        return 0 if state is None else state.occurrences

    def __len__(self) -> int:
        return len(self._keys)


def log_throttled(
    log: Any, throttle: LogThrottle, event: str, *, key: Hashable = None, **fields: Any
) -> Verdict | None:
    """Log ``event`` through ``throttle``: at its verdict's level with the counts, or not at all.

    Args:
        log: a structlog logger (anything with ``warning`` and ``info`` methods taking key-value fields).
        throttle: the throttle that decides.
        event: the event name, such as ``"source.connect_failed"``.
        key: what repeats (default: the throttle's single key).
        **fields: the event's other fields.

    Returns:
        The verdict (``None`` when the occurrence was left out).
    """
    verdict = throttle.hit(key)
    if verdict is not None:
        getattr(log, verdict.level)(
            event, occurrences=verdict.occurrences, suppressed=verdict.suppressed, **fields
        )
    return verdict
