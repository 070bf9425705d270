"""Reconnect pacing and log throttling (`smdrd.backoff`), with an injected clock and seeded randomness."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from smdrd.backoff import Backoff, LogThrottle, log_throttled


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@given(
    base=st.floats(0.01, 10),
    cap=st.floats(0.01, 600),
    seed=st.integers(0, 2**32),
    steps=st.integers(1, 200),
)
def test_delays_stay_between_floor_and_cap(base: float, cap: float, seed: int, steps: int) -> None:
    """A user would see smdrd retry a PBX faster than reconnect_min, or wait longer than reconnect_max."""
    backoff = Backoff(base, cap, rng=random.Random(seed))
    for _ in range(steps):
        delay = backoff.next_delay()
        assert min(base, max(cap, base)) <= delay <= max(cap, base)


def test_delays_grow_exponentially_up_to_the_cap() -> None:
    """A user would see a down PBX retried every second all night instead of backing off to the cap."""
    backoff = Backoff(1.0, 60.0, rng=random.Random(7))
    samples = [backoff.next_delay() for _ in range(12)]
    # the bound of the n-th draw is min(60, 2**n): the early draws are short, the later ones can reach 60
    for n, delay in enumerate(samples):
        assert delay <= min(60.0, 2.0**n) + 1e-9
    many = Backoff(1.0, 60.0, rng=random.Random(3))
    for _ in range(10):
        many.next_delay()
    late = [many.next_delay() for _ in range(200)]
    assert max(late) > 45.0  # the jitter spreads over the whole capped range
    assert sum(late) / len(late) > 20.0


def test_jitter_differs_between_generators() -> None:
    """A user would see every smdrd instance of a site hit a rebooted PBX in the same second."""
    a = Backoff(1.0, 60.0, rng=random.Random(1))
    b = Backoff(1.0, 60.0, rng=random.Random(2))
    assert [a.next_delay() for _ in range(8)] != [b.next_delay() for _ in range(8)]


def test_a_connection_that_lasted_resets_the_sequence() -> None:
    """A user would see a PBX that rebooted once a week reconnected only after a minute's wait."""
    clock = FakeClock()
    backoff = Backoff(1.0, 60.0, stable_after=30.0, rng=random.Random(0), clock=clock)
    for _ in range(10):
        backoff.next_delay()
    backoff.connected()
    clock.advance(5)
    assert backoff.disconnected() is False  # dropped at once: keep backing off
    assert backoff.attempt == 10
    backoff.connected()
    clock.advance(31)
    assert backoff.disconnected() is True
    assert backoff.attempt == 0
    assert backoff.next_delay() <= 1.0 + 1e-9


def test_disconnected_without_connected_does_not_reset() -> None:
    """A user would see a failed connect treated like a connection that had lasted."""
    backoff = Backoff(1.0, 60.0, clock=FakeClock())
    backoff.next_delay()
    assert backoff.disconnected() is False
    assert backoff.attempt == 1


def test_a_retried_source_never_overflows() -> None:
    """A user would see a source crash with OverflowError after months of retrying a dead PBX."""
    backoff = Backoff(1.0, 60.0, rng=random.Random(0))
    backoff.attempt = 10_000
    assert 1.0 <= backoff.next_delay() <= 60.0


def test_backoff_rejects_non_positive_settings() -> None:
    """A user would see a zero delay spin a CPU at 100 % instead of an error."""
    with pytest.raises(ValueError):
        Backoff(0, 10)


def test_throttle_logs_first_then_at_doubling_intervals() -> None:
    """A user would see 30,000 identical warnings for a PBX that was switched off all night."""
    clock = FakeClock()
    throttle = LogThrottle(60.0, 3600.0, clock=clock)
    logged_at: list[float] = []
    verdicts = []
    start = clock.now
    # one failure per second for ten hours
    for _ in range(36_000):
        verdict = throttle.hit()
        if verdict is not None:
            logged_at.append(clock.now - start)
            verdicts.append(verdict)
        clock.advance(1.0)
    assert logged_at[:6] == [0, 60, 180, 420, 900, 1860]  # gaps of 1, 2, 4, 8, 16 minutes
    gaps = [b - a for a, b in itertools.pairwise(logged_at)]
    assert max(gaps) == 3600  # capped at an hour
    assert len(logged_at) < 20
    assert verdicts[0].level == "warning"
    assert verdicts[0].suppressed == 0
    assert all(v.level == "info" for v in verdicts[1:])
    assert verdicts[1].suppressed == 59
    assert verdicts[1].occurrences == 61
    # every occurrence is accounted for: each logged line counts the ones left out since the one before
    for before, after in itertools.pairwise(verdicts):
        assert after.occurrences == before.occurrences + after.suppressed + 1
    assert throttle.count() == 36_000


def test_throttle_reset_makes_the_next_failure_news_again() -> None:
    """A user would not be warned when a PBX that had recovered fails again later."""
    clock = FakeClock()
    throttle = LogThrottle(60.0, clock=clock)
    assert throttle.hit() is not None
    assert throttle.hit() is None
    assert throttle.active()
    assert throttle.reset() == 2
    assert not throttle.active()
    verdict = throttle.hit()
    assert verdict is not None
    assert verdict.level == "warning"


def test_throttle_keeps_keys_apart() -> None:
    """A user would not see a second PBX's refusal because the first one's was being throttled."""
    throttle = LogThrottle(60.0, clock=FakeClock())
    assert throttle.hit("10.0.0.1") is not None
    assert throttle.hit("10.0.0.1") is None
    assert throttle.hit("10.0.0.2") is not None
    assert len(throttle) == 2


def test_a_flood_of_new_keys_is_one_throttled_key_beyond_the_bound() -> None:
    """Refusals from 3,000 addresses (or one IPv6 /64) made 3,000 keys and 3,000 warning lines: memory
    without bound and a log flood. Beyond ``max_keys`` the new keys share one."""
    throttle = LogThrottle(60.0, clock=FakeClock(), max_keys=256)
    logged = [throttle.hit(("refused", f"10.0.{i // 256}.{i % 256}")) for i in range(3000)]
    assert sum(v is not None for v in logged) == 257, "the first 256 addresses, then one line for the others"
    assert len(throttle) == 257
    assert throttle.hit(("refused", "10.0.0.7")) is None, "a key followed on its own is still throttled"


def test_log_throttled_writes_level_and_counts() -> None:
    """A user would see throttled log lines without the count of repeats they stand for."""
    import structlog

    clock = FakeClock()
    throttle = LogThrottle(60.0, clock=clock)
    logger = structlog.get_logger("test")
    with capture_logs() as logs:
        for _ in range(61):
            log_throttled(logger, throttle, "source.connection_failed", source="pbx")
            clock.advance(1.0)
        log_throttled(logger, throttle, "source.connection_failed", source="pbx")
    assert [entry["log_level"] for entry in logs] == ["warning", "info"]
    assert logs[0] == {"event": "source.connection_failed", "log_level": "warning", "occurrences": 1,
                       "suppressed": 0, "source": "pbx"}
    assert logs[1]["suppressed"] == 59
    assert logs[1]["occurrences"] == 61
