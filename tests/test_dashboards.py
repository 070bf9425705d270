"""The shipped Grafana dashboards and Prometheus files agree with what the daemon really exports.

``config/grafana/smdrd.json`` and ``config/prometheus/*.yml`` are checked with promtool, and every metric
name their PromQL queries is compared with the names in a real scrape of a running daemon. The central
collector's dashboard, ``config/grafana/smdrd-central.json``, is checked here for what its file can show (JSON,
provisioning, units), and against a real scrape of ``smdrd central`` and a real Prometheus in
tests/test_central_metrics.py. PyYAML is not a dependency, so the rules' expressions are read with a small
line-based reader (`yaml_exprs`) that knows the two shapes our rule file uses: ``expr: <one line>`` and
``expr: |`` followed by an indented block.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.test_metrics import daemon_metrics, good_lines, promtool, running_daemon, scrape, send

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "config" / "grafana" / "smdrd.json"
CENTRAL_DASHBOARD = ROOT / "config" / "grafana" / "smdrd-central.json"
#: every dashboard shipped, and the variables each must offer.
DASHBOARDS = {DASHBOARD: {"site", "instance", "source", "direction", "department"},
              CENTRAL_DASHBOARD: {"site", "instance", "direction"}}
PROMETHEUS = ROOT / "config" / "prometheus" / "prometheus.yml"
RULES = ROOT / "config" / "prometheus" / "smdrd-rules.yml"
PROVISIONING = ROOT / "config" / "grafana" / "provisioning"
METRICS_DOC = ROOT / "docs" / "metrics.md"

#: series Prometheus makes itself for every target; the daemon cannot export them.
PROMETHEUS_SYNTHETIC = frozenset({"up"})

_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and",
                       "or", "unless", "inf", "nan", "atan2"})


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL (or Grafana-templated PromQL) expression selects."""
    # Grafana's label_values(selector, label): only the selector is PromQL.
    s = re.sub(r"label_values\(\s*([^,{]*(?:\{[^}]*\})?)\s*,\s*\w+\s*\)", r"\1", expr)
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', s)  # strings hold no names
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # range and subquery durations, Grafana's [$__range]
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)  # label lists
    s = re.sub(r"\$\{?\w+\}?", " ", s)  # Grafana variables outside brackets
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        if m.start() > 0 and (s[m.start() - 1].isdigit() or s[m.start() - 1] == "."):
            continue  # the exponent or unit of a number or duration (1e3, 5m)
        if s[m.end():].lstrip().startswith("(") or m.group() in _KEYWORDS:
            continue  # a function or an operator keyword
        names.add(m.group())
    return names


def yaml_exprs(text: str) -> list[str]:
    """Every ``expr:`` value of a rules file, one-line or block scalar, read line by line."""
    exprs: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)(?:-\s+)?expr:\s*(.*)$", lines[i])
        i += 1
        if m is None:
            continue
        indent, rest = len(m.group(1)), m.group(2).strip()
        if rest and rest[0] not in "|>":
            exprs.append(rest.strip("'\""))
            continue
        block: list[str] = []
        while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
            block.append(lines[i].strip())
            i += 1
        exprs.append(" ".join(line for line in block if line))
    return exprs


def without_annotations(text: str) -> str:
    """The rules file without its ``annotations:`` blocks (promtool's unit tests compare annotations in full;
    ours test the expressions, not the wording)."""
    out: list[str] = []
    skip_deeper_than: int | None = None
    for line in text.splitlines():
        depth = len(line) - len(line.lstrip())
        if skip_deeper_than is not None:
            if not line.strip() or depth > skip_deeper_than:
                continue
            skip_deeper_than = None
        if line.strip() == "annotations:":
            skip_deeper_than = depth
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def dashboard_exprs(node: Any) -> Iterator[str]:
    """Every PromQL query in a Grafana dashboard: panel targets (rows included) and template variables."""
    if isinstance(node, dict):
        for key, val in node.items():
            # A query variable's PromQL is its definition (and again in query.query); a datasource variable's
            # query is a plugin id and a custom one's its values: neither is PromQL.
            if isinstance(val, str) and (key == "expr" or (key == "definition" and node.get("type") == "query")):
                yield val
            else:
                yield from dashboard_exprs(val)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_exprs(item)


def test_the_name_reader_finds_metrics_and_nothing_else() -> None:
    """The reader behind the dashboard test: if it missed names, the dashboard test would pass vacuously."""
    expr = ('histogram_quantile(0.99, sum by (le, source) (rate(smdrd_x_bucket{source=~"$source",a="b c"}'
            '[$__rate_interval]))) / on (job) group_left (kind) smdrd_y_total offset 1d > 1e3 and '
            'time() - smdrd_z unless label_values(smdrd_w{site=~"$site",instance=~"$instance"}, instance)')
    assert metric_names(expr) == {"smdrd_x_bucket", "smdrd_y_total", "smdrd_z", "smdrd_w"}
    assert yaml_exprs("  - alert: A\n    expr: up == 0\n    for: 1m\n  - alert: B\n    expr: |\n"
                      "      sum(a)\n      > 2\n    for: 5m\n") == ["up == 0", "sum(a) > 2"]


def test_every_dashboard_file_is_shipped_and_has_its_own_uid() -> None:
    """Both dashboards are provisioned from one folder: Grafana keeps only one of two that share a uid."""
    assert sorted(p.name for p in DASHBOARD.parent.glob("*.json")) == sorted(p.name for p in DASHBOARDS)
    boards = [json.loads(path.read_text()) for path in DASHBOARDS]
    assert len({b["uid"] for b in boards}) == len({b["title"] for b in boards}) == len(boards)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_the_dashboard_is_importable_json_with_unique_panel_ids(path: Path) -> None:
    """Grafana refuses a dashboard with broken JSON and mixes up panels that share an id."""
    board = json.loads(path.read_text())
    panels = board["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    assert board["uid"] and board["title"]
    for p in panels:
        if p["type"] != "row":
            assert p["targets"], f"panel {p['title']!r} queries nothing"
            assert all(t["expr"].strip() for t in p["targets"]), p["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_the_dashboard_can_be_provisioned_from_a_file(path: Path) -> None:
    """File provisioning has no import dialog to fill ``${DS_PROMETHEUS}`` from ``__inputs`` (Grafana says
    "Datasource ${DS_PROMETHEUS} was not found"): every panel and query names the ``datasource`` variable."""
    text = path.read_text()
    board = json.loads(text)
    assert "__inputs" not in board and "DS_PROMETHEUS" not in text
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert DASHBOARDS[path] <= set(variables)
    assert variables["direction"]["current"]["value"] == ["outbound"], "reports count outbound calls by default"
    for p in board["panels"]:
        if p["type"] == "row":
            continue
        for node in [p, *p["targets"]]:
            assert node["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
    for v in variables.values():
        if v["type"] == "query":
            assert v["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, v["name"]


def yaml_values(text: str, key: str) -> list[str]:
    """The values of every ``key: value`` line of a simple YAML file (comments and quotes stripped)."""
    found = []
    for line in text.splitlines():
        m = re.match(rf"^\s*(?:-\s+)?{re.escape(key)}:\s*(.*?)\s*(?:#.*)?$", line)
        if m:
            found.append(m.group(1).strip("'\""))
    return found


def test_the_provisioning_files_load_the_dashboard_from_where_the_docs_put_it() -> None:
    """The copy-paste setup in docs/metrics.md installs both dashboards into the folder the dashboard provider
    reads and names every provisioning file shipped: a mismatch leaves Grafana without a dashboard, silently."""
    dashboards = (PROVISIONING / "dashboards" / "smdrd.yml").read_text()
    datasources = (PROVISIONING / "datasources" / "smdrd.yml").read_text()
    assert yaml_values(dashboards, "apiVersion") == ["1"] == yaml_values(datasources, "apiVersion")
    assert yaml_values(dashboards, "type") == ["file"]
    [folder] = yaml_values(dashboards, "path")
    assert yaml_values(datasources, "type") == ["prometheus"]
    docs = METRICS_DOC.read_text()
    for board in DASHBOARDS:
        assert f"config/grafana/{board.name} {folder}/{board.name}" in docs, board.name
        assert f"config/grafana/{board.name}:{folder}/{board.name}:ro" in docs, board.name  # and in Docker
    for path in sorted(PROVISIONING.rglob("*.yml")):
        relative = path.relative_to(ROOT).as_posix()
        assert f"{relative} /etc/grafana/provisioning/{path.parent.name}/{path.name}" in docs, relative


def panel_units(path: Path) -> dict[str, str]:
    """Each panel's unit, by title."""
    return {p["title"]: p["fieldConfig"]["defaults"].get("unit", "") for p in json.loads(path.read_text())["panels"]
            if p["type"] != "row"}


def test_the_dashboards_give_durations_in_seconds_and_ratios_in_percent() -> None:
    site, central = panel_units(DASHBOARD), panel_units(CENTRAL_DASHBOARD)
    assert site["Parse error ratio"] == "percentunit"
    assert site["Lines received per second"] == "suffix: lines/s"
    assert site["Talk time"] == site["Time since last line"] == site["Write latency (receipt to commit)"] == "s"
    assert central["Time since the site's last line"] == central["Site lag (receipt to central commit)"] == "s"
    assert central["Commit duration"] == central["Talk time stored per interval by site ($direction)"] == "s"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_the_dashboard_says_what_it_counts_in_its_units(path: Path) -> None:
    """Money in a currency unit; a panel of calls, cost or talk time counts the directions picked (outbound, as
    reports) and says so; a per-interval total's window is the interval."""
    board = json.loads(path.read_text())
    panels = {p["title"]: p for p in board["panels"] if p["type"] != "row"}
    for title, p in panels.items():
        exprs = " ".join(t["expr"] for t in p["targets"])
        if "cost" in title.lower():
            units = {o["properties"][0]["value"] for o in p["fieldConfig"]["overrides"]}
            assert {"currencyEUR", "currencyGBP", "currencyUSD", "currencyPLN"} <= units, title
        if re.search(r"smdrd_(department_|central_)?(calls|call_cost|department_cost|call_talk_seconds)_total",
                     exprs):
            assert 'direction=~"$direction"' in exprs and "$direction" in title, title
        if "smdrd_department_" in exprs:
            assert 'source=~"$source"' in exprs and 'department=~"$department"' in exprs, title
        if "increase(" in exprs and not all(t.get("instant") for t in p["targets"]):
            # a per-bucket total: the window is the step, so buckets neither overlap nor leave gaps
            assert re.findall(r"\[([^\]]*)\]", exprs) == ["$__interval"] * exprs.count("increase("), title


async def test_every_metric_the_dashboard_and_rules_query_is_exported(tmp_path: Path) -> None:
    """Each metric name in the dashboard's and the rules' PromQL is in a real scrape of a running daemon
    (histogram ``_bucket``/``_sum``/``_count`` included). A renamed metric would otherwise leave an empty
    Grafana panel, or an alert that can never fire, with nothing to say so."""
    board = json.loads(DASHBOARD.read_text())
    dash_names = {n for e in dashboard_exprs(board) for n in metric_names(e)}
    rule_names = {n for e in yaml_exprs(RULES.read_text()) for n in metric_names(e)}
    # The list of panels and rules: make sure the reader found what they need.
    assert {"smdrd_calls_total", "smdrd_call_cost_total", "smdrd_department_calls_total",
            "smdrd_department_cost_total", "smdrd_parse_errors_total", "smdrd_source_connected",
            "smdrd_alerts_raised_total", "smdrd_journal_write_latency_seconds_bucket"} <= dash_names
    assert {"smdrd_source_up", "smdrd_parse_errors_total", "smdrd_calls_total"} <= rule_names
    assert {"smdrd_build_info", "smdrd_source_info", "smdrd_department_info"} <= dash_names  # the variables
    async with running_daemon(tmp_path) as run:
        writer = await send(run.pbx_port, [*good_lines(5), b"not a call"])
        # The alerts module declares its rules at start; here the test stands in for it.
        daemon_metrics(run.daemon).declare_alert_rule("premium-number", "critical")
        samples = await scrape(run.http_port)
        writer.close()
    exported = {name for name, _ in samples}
    missing_dash = sorted(dash_names - exported - PROMETHEUS_SYNTHETIC)
    missing_rules = sorted(rule_names - exported - PROMETHEUS_SYNTHETIC)
    assert not missing_dash, f"the dashboard queries metrics the daemon does not export: {missing_dash}"
    assert not missing_rules, f"the rules query metrics the daemon does not export: {missing_rules}"


def run_promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=60, check=False, cwd=cwd)


def test_promtool_accepts_the_scrape_config_and_its_rule_file() -> None:
    """``promtool check config`` accepts the example prometheus.yml, including the rule file it names."""
    result = run_promtool("check", "config", str(PROMETHEUS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout + result.stderr


def test_promtool_accepts_the_alerting_rules() -> None:
    """``promtool check rules`` accepts every rule (PromQL syntax, durations, templates)."""
    result = run_promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


RULE_TESTS = """
rule_files:
  - {rules}
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      # No call all day (1970-01-01 was a Thursday).
      - series: 'smdrd_calls_total{{job="smdrd",instance="a",source="push",direction="outbound",call_class="local"}}'
        values: '0+0x1440'
      # Up for 10 minutes, then down.
      - series: 'smdrd_source_up{{job="smdrd",instance="a",source="push"}}'
        values: '1x10 0x60'
      # 100 lines a minute; from minute 30, 20 of them fail to parse.
      - series: 'smdrd_lines_received_total{{job="smdrd",instance="a",source="push",format="avaya-ipo"}}'
        values: '0+100x90'
      - series: 'smdrd_parse_errors_total{{job="smdrd",instance="a",source="push",format="avaya-ipo"}}'
        values: '0x30 0+20x60'
    alert_rule_test:
      - eval_time: 11h
        alertname: SmdrdNoCallsDuringBusinessHours
        exp_alerts:
          - exp_labels: {{severity: warning, job: smdrd, instance: a}}
      - eval_time: 20h
        alertname: SmdrdNoCallsDuringBusinessHours
        exp_alerts: []
      - eval_time: 15m
        alertname: SmdrdSourceDown
        exp_alerts: []
      - eval_time: 25m
        alertname: SmdrdSourceDown
        exp_alerts:
          - exp_labels: {{severity: critical, job: smdrd, instance: a, source: push}}
      - eval_time: 25m
        alertname: SmdrdParseErrorsRising
        exp_alerts: []
      - eval_time: 60m
        alertname: SmdrdParseErrorsRising
        exp_alerts:
          - exp_labels: {{severity: warning, job: smdrd, instance: a, source: push, format: avaya-ipo}}
"""


def test_the_rules_fire_when_they_should_and_not_otherwise(tmp_path: Path) -> None:
    """promtool's rule unit tests: a source down for 10 minutes, 20% of lines failing and a silent weekday
    hour each raise their alert; a quiet evening and a short blip do not. A rule that can never fire (or
    always fires) would fail here."""
    rules = tmp_path / "rules.yml"
    rules.write_text(without_annotations(RULES.read_text()))
    tests = tmp_path / "rules.test.yml"
    tests.write_text(RULE_TESTS.format(rules=rules))
    result = run_promtool("test", "rules", str(tests))
    assert result.returncode == 0, result.stdout + result.stderr

