"""Profile of the pipeline worker's per-line cost: the live path's parse, rate and alert rules, without the pipe.

    python bench/worker.py [--lines 20000] [--distinct N] [--profile 25]

Drives `smdrd.pipeline_worker.worker_main` in this process through an in-memory connection with the operations
the daemon sends it (its configuration, the default ``[alerts]`` rules, a stream, then batches of 512 lines),
with ``bench/live.py``'s configuration and lines (Avaya IP Office, Poland, no tariff). ``--distinct`` is how
many different dialled numbers the lines cycle through: as many as the lines (the default) makes every number
new, ``bench/live.py``'s worst case; a few thousand is an office's month. The lines are stamped on a Sunday
evening, outside the default business hours, as ``bench/live.py``'s (stamped when sent) are most of the week.

Reported: CPU microseconds per line (this process's CPU time: steadier than wall time on a shared machine), for
a first pass (numbers new to the caches) and a second pass (the same numbers again), and with ``--profile N``
each pass's N costliest functions (cProfile, cumulative and own time; the timings then include its cost). The
pickling of the messages both ways is included: the worker reads and writes every line through it.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pickle
import pstats
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._util import report  # noqa: E402
from bench.live import TEMPLATE  # noqa: E402
from smdrd import pipeline_worker as w  # noqa: E402
from smdrd.alerts.feature import compile_settings  # noqa: E402
from smdrd.config import Settings  # noqa: E402
from smdrd.pipeline import MAX_OPS  # noqa: E402

SETTINGS = {"site": {"timezone": "UTC", "country": "PL"}, "database": {"path": ":memory:"}}


def lines(count: int, distinct: int, offset: int = 0) -> list[bytes]:
    """``bench/live.py``'s lines: 50 extensions, ``distinct`` dialled numbers."""
    stamp = "2026/11/29 20:15:00"  # a Sunday evening: after hours, as bench/live.py's lines are most of the week
    return [TEMPLATE.format(date=stamp, ext=200 + n % 50, num=1_700_000_000 + n % distinct, sent=0,
                            cid=1_000_000 + n).encode() for n in range(offset, offset + count)]


def messages(settings: Settings, count: int, distinct: int) -> tuple[list[bytes], list[bytes]]:
    """The setup message, then the two passes' line messages (the second pass: the same numbers again)."""
    rules, directory = compile_settings(settings)
    setup = [w.Configure(settings.site.model_dump(mode="json"), settings.tariff.model_dump(mode="json"), None),
             w.SetAlerts(w.AlertSetup(rules, settings.site.timezone, settings.site.name, directory,
                                      settings.tariff.decimals), None),
             w.Open(1, "avaya-ipo", "utf-8", None, {})]

    def batches(raw: list[bytes]) -> list[bytes]:
        return [pickle.dumps([w.Lines(1, "pbx", "127.0.0.1:1", 0, raw[i:i + MAX_OPS])],
                             protocol=pickle.HIGHEST_PROTOCOL) for i in range(0, len(raw), MAX_OPS)]

    first = [pickle.dumps(setup, protocol=pickle.HIGHEST_PROTOCOL), *batches(lines(count, distinct))]
    return first, batches(lines(count, distinct, offset=count))


def _run_passes(first: list[bytes], second: list[bytes], top: int) -> dict[str, Any]:
    """Run one worker over ``first`` then ``second``; time and profile each pass separately."""
    marks: list[float] = []
    profiles: list[cProfile.Profile | None] = []
    setup, rest = first[0], [*first[1:], b"", *second]  # b"": the boundary between the passes
    queue = iter([setup, *rest])
    current: list[cProfile.Profile | None] = [None]

    def begin() -> None:
        marks.append(time.process_time())
        if top:
            current[0] = profile = cProfile.Profile()
            profile.enable()

    def end() -> None:
        if current[0] is not None:
            current[0].disable()
        profiles.append(current[0])
        marks.append(time.process_time())

    class Conn:
        started = False

        def recv(self) -> Any:
            message = next(queue, None)
            if message is None:
                end()
                return None
            if message == b"":
                end()
                begin()
                return []
            if not self.started and message is not setup:
                self.started = True
                begin()
            return pickle.loads(message)

        def send(self, answers: object) -> None:
            pickle.dumps(answers, protocol=pickle.HIGHEST_PROTOCOL)

    gc.collect()
    w.worker_main(Conn())  # type: ignore[arg-type]
    out: dict[str, Any] = {}
    for i, name in enumerate(("first_pass", "second_pass")):
        seconds = marks[2 * i + 1] - marks[2 * i]
        out[f"{name}_us_per_line"] = round(seconds / _count(first if i == 0 else second) * 1e6, 1)
        prof = profiles[i]
        if prof is not None:
            for sort in ("cumulative", "tottime"):
                text = io.StringIO()
                pstats.Stats(prof, stream=text).sort_stats(sort).print_stats(top)
                out[f"{name}_profile_{sort}"] = text.getvalue()
    return out


def _count(batches: list[bytes]) -> int:
    return sum(len(op.frames) for message in batches for op in pickle.loads(message) if isinstance(op, w.Lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=20_000, help="lines per pass")
    ap.add_argument("--distinct", type=int, default=0,
                    help="distinct dialled numbers the lines cycle through (default: as many as the lines)")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="print each pass's N costliest functions (cProfile; the timings then include its cost)")
    args = ap.parse_args()
    settings = Settings.model_validate(SETTINGS)
    distinct = args.distinct or args.lines
    result = _run_passes(*messages(settings, args.lines, distinct), args.profile)
    for key in [k for k in result if "profile" in k]:
        print(f"--- {key}\n{result.pop(key)}", file=sys.stderr)
    report("worker", {"lines": args.lines, "distinct_numbers": distinct, **result},
           [(f"{name} pass (numbers {known})", f"{us} µs a line: one worker's ceiling {1e6 / us:,.0f} lines/s")
            for name, known, us in (("first", "new", result["first_pass_us_per_line"]),
                                    ("second", "known", result["second_pass_us_per_line"]))])


if __name__ == "__main__":
    main()
