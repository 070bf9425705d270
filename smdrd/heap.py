"""The garbage collector's settings in the two processes every line passes through: the daemon (`smdrd.daemon`)
and its pipeline worker (`smdrd.pipeline_worker`).

Each makes a few container objects a line and holds them a while (the worker until it sends its answer, the
daemon until their commit). At Python's default, a collection of the youngest generation every 700 allocations,
the collector walked them over and over, and every older collection walked the long-lived heap too (modules,
settings, the rater, phonenumbers' metadata). So once built, each process freezes what it holds (`gc.freeze`:
the collector stops walking it) and collects the young generation every `GC_YOUNG_THRESHOLD` allocations.
Garbage cycles are rare on these paths; they are still collected, a little later.
"""

from __future__ import annotations

import gc

__all__ = ["GC_YOUNG_THRESHOLD", "settle"]

#: allocations (less deallocations) between two collections of the youngest generation; Python's default is 700.
#: In the daemon, the default cost about a third of what unpickling the worker's answers costs; in the worker,
#: about a fifth of a line's parse, rate and alert rules (`bench/worker.py`).
GC_YOUNG_THRESHOLD = 20_000


def settle(*, once: bool) -> None:
    """What this process holds now is long-lived: freeze it (``once``: only if nothing was frozen before in this
    process), and collect the young generation every `GC_YOUNG_THRESHOLD` allocations from now on."""
    if not (once and gc.get_freeze_count()):
        gc.collect()
        gc.freeze()
    young, older, oldest = gc.get_threshold()
    gc.set_threshold(max(GC_YOUNG_THRESHOLD, young), older, oldest)
