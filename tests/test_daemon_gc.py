"""The daemon's garbage collector settings, once it runs (`smdrd.heap.settle`, called by `Daemon.run`)."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

from smdrd.config import Settings
from smdrd.heap import GC_YOUNG_THRESHOLD
from smdrd.testing import daemon_config, free_port, running_daemon, tcp_server_source


class _Node:
    def __init__(self) -> None:
        self.other: object = self


async def test_a_running_daemon_freezes_its_heap_and_still_collects_garbage_cycles(tmp_path: Path) -> None:
    """Once the daemon is up, what it built is frozen (the collector no longer walks it), the young generation
    is collected every `GC_YOUNG_THRESHOLD` allocations, and a garbage cycle made afterwards is still freed
    without anyone calling `gc.collect`, once enough objects were allocated."""
    young = gc.get_threshold()[0]
    settings = Settings.model_validate(daemon_config(tmp_path, [tcp_server_source("push", free_port())]))
    try:
        async with running_daemon(settings):
            assert gc.get_freeze_count() > 0
            assert gc.get_threshold()[0] >= GC_YOUNG_THRESHOLD
            cycle = _Node()
            gone = weakref.ref(cycle)
            del cycle
            assert gone() is not None  # a cycle: reference counting alone never frees it
            # containers, each an allocation: enough for a young collection, and for a middle one (10 young ones)
            # should the cycle have been promoted by a young collection before it became garbage
            kept = [[i] for i in range(12 * GC_YOUNG_THRESHOLD)]
            assert gone() is None
            del kept
    finally:
        gc.set_threshold(young, *gc.get_threshold()[1:])
