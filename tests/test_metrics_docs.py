"""docs/metrics.md's tables are what the daemon and the central collector export: every `smdrd_*` metric each
serves is in its part of the document (the daemon's tables, or "The central collector"), with its type and,
for the counters and histograms the code declares with labels, those labels (``site``, which every series
carries, aside); and no metric the document lists is gone. Both registries are built as `smdrd run` and
`smdrd central` build them."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from smdrd.central import Collector
from smdrd.config import Settings
from smdrd.daemon import Daemon
from smdrd.testing import daemon_config

METRICS_DOC = Path(__file__).resolve().parent.parent / "docs" / "metrics.md"
CENTRAL_HEADING = "### The central collector"
def documented(part: str) -> dict[str, tuple[str, set[str] | None]]:
    """Metric name -> (type, labels) of the document's ``part``: "daemon" (before the central collector's
    section) or "central" (that section). A row is `` `name` | type | labels | meaning`` (or without the labels
    in a table that has none); a row naming several (`smdrd_build_info`, ... "as the daemon's") gives no type."""
    text = METRICS_DOC.read_text()
    start = text.index(CENTRAL_HEADING)
    text = text[:start] if part == "daemon" else text[start:text.index("\n## ", start)]
    out: dict[str, tuple[str, set[str] | None]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| `smdrd_") or len(cells) < 3:
            continue
        kind = cells[1].replace("(1)", "").strip()
        labels = {x.strip() for x in cells[2].split(",") if x.strip()} if len(cells) == 4 else set()
        for name in re.findall(r"`(smdrd_[a-z_]+)`", cells[0]):
            out[name] = (kind, labels if kind else None)
    return out


def exported(registry: CollectorRegistry) -> dict[str, tuple[str, set[str] | None]]:
    """Metric name -> (type, labels declared in the code, or None when only samples would tell)."""
    text = generate_latest(registry).decode()
    out: dict[str, tuple[str, set[str] | None]] = {
        m[1]: (m[2], None) for m in re.finditer(r"^# TYPE (smdrd_\w+) (\w+)$", text, re.M)}
    for collector in list(registry._collector_to_names):  # the Counters and Histograms the code declares
        names = getattr(collector, "_labelnames", None)
        name = getattr(collector, "_name", "")
        for full in (name, f"{name}_total"):
            if names is not None and full in out:
                out[full] = (out[full][0], set(names))
    return out


def compare(doc: dict[str, tuple[str, set[str] | None]], code: dict[str, tuple[str, set[str] | None]]) -> list[str]:
    problems = [f"{n}: exported, not documented" for n in sorted(code.keys() - doc.keys())]
    problems += [f"{n}: documented, not exported" for n in sorted(doc.keys() - code.keys())]
    for name in sorted(code.keys() & doc.keys()):
        (doc_kind, doc_labels), (kind, labels) = doc[name], code[name]
        if doc_kind and doc_kind != kind:
            problems.append(f"{name}: documented as {doc_kind}, exported as {kind}")
        if labels is not None and doc_labels is not None and labels != doc_labels:
            problems.append(f"{name}: documented labels {sorted(doc_labels)}, the code's {sorted(labels)}")
    return problems


def test_the_daemons_metrics_are_documented(tmp_path: Path) -> None:
    daemon = Daemon(Settings.model_validate(daemon_config(tmp_path, [])))
    daemon.build()
    assert daemon.features.metrics is not None
    code = exported(daemon.features.metrics.registry)
    assert "smdrd_calls_total" in code and code["smdrd_calls_total"][1] == {"source", "direction", "call_class"}
    assert compare(documented("daemon"), code) == []


def test_the_central_collectors_metrics_are_documented(tmp_path: Path) -> None:
    collector = Collector(Settings.model_validate({"database": {"url": "postgresql://smdrd@localhost/smdrd"}}),
                          base_dir=tmp_path)
    code = exported(collector.metrics.registry)
    assert "smdrd_central_calls_total" in code and code["smdrd_central_calls_total"][1] is not None
    assert compare(documented("central"), code) == []
