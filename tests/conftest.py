"""Shared test configuration."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from smdrd.testing import DaemonProcess

# Machines here are shared and noisy: no per-example deadlines, no "too slow" health check. CI runs more
# examples than a developer's quick loop.
settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("default"), max_examples=200)
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    """Daemon processes (`smdrd.testing.DaemonProcess`) a test starts; any still running at the end is killed."""
    started: list[DaemonProcess] = []
    yield started
    for d in started:
        d.kill()
