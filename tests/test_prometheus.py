"""The shipped Grafana dashboard and Prometheus rules, evaluated by a real Prometheus scraping a real daemon.

Debian's ``prometheus`` runs on a free port with the shipped ``prometheus.yml`` (its scrape interval cut to a
quarter of a second, the target pointed at the daemon) and the shipped rule file. A real ``smdrd run`` process
is fed a known set of calls over TCP. Then every query of ``config/grafana/smdrd.json`` is evaluated through
Prometheus's HTTP API the way Grafana would send it (its variables filled in, ``query_range`` with
``$__interval`` equal to the step, instant queries over ``$__range``), at steps of 1 h and more, and every rule
expression likewise. None may fail, none may be empty while the data exists, and the per-bucket and
per-department figures must equal the database's and the reports'.

Time cannot be fast-forwarded in a real Prometheus, so the calls all arrive within a few seconds; what varies
is where Grafana's step-aligned buckets fall around them. A bucket is evaluated at the worst alignment too: it
ends almost a whole step after the calls, so they lie in its first minute. A panel whose window is shorter than
its step (``increase(...[1h])`` at a 2 h step) misses them there, as it missed whole hours on a dashboard
zoomed out to months.

``increase()`` extrapolates. The counters start at 0 before the first call, so it extends only the end of the
samples it sees, by at most 1.1 average sample intervals: at most ``1.1 / (n - 1)`` of the figure with ``n``
samples in the window. The test waits until that is below half a call, so a count must round to the
database's exactly, and compares money within it.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from smdrd.config import Settings
from smdrd.reports.queries import context_from, parse_query, run_report
from smdrd.store.sqlite.reports import SqliteReports
from smdrd.testing import DaemonProcess, daemon_config, free_port, tcp_server_source
from tests.test_dashboards import DASHBOARD, PROMETHEUS, RULES, yaml_exprs
from tests.test_metrics import LINE, prometheus_tool

#: Prometheus scrapes (and evaluates the rules) this often, in seconds.
SCRAPE = 0.25
#: the steps Grafana sends: 1 h (the hourly panels' minimum), 2 h (about two months of range), 6 h, 1 day.
STEPS = (3600, 7200, 6 * 3600, 86400)
#: what the dashboard's variables become: every site, instance, source and department, and the outbound
#: direction, which is what reports show by default (so the figures compare with them).
VARIABLES = {"site": ".*", "instance": ".*", "source": ".*", "department": ".*", "direction": "outbound",
             "datasource": "prometheus"}

DEPARTMENTS = [
    {"name": "Sales", "extensions": ["200"]},
    {"name": "Sales EU", "parent": "Sales", "extensions": ["217"]},
    {"name": "Sales PL", "parent": "Sales EU", "extensions": ["555"]},
    {"name": "Support", "extensions": ["600-699"]},
]


def prometheus_binary() -> str:
    """The prometheus server: skipped on a workstation without it, a failure under CI."""
    return prometheus_tool("prometheus")


# --- the calls ------------------------------------------------------------------------------------------------

def call(n: int, ext: str, *, direction: str = "O", internal: bool = False, number: str = "600988600",
         continues: bool = False, call_id: int | None = None) -> bytes:
    """One Avaya IP Office line: outbound by default, ``I`` inbound, ``internal`` an internal call;
    ``continues`` marks a transfer whose next leg (same ``call_id``) follows."""
    line = LINE.format(id=call_id if call_id is not None else 1_000_000 + n, sec=n % 60, ext=ext)
    fields = line.split(",")
    fields[4] = direction
    fields[5] = number
    fields[8] = "1" if internal else "0"
    fields[10] = "1" if continues else "0"
    return ",".join(fields).encode()


def known_calls() -> list[bytes]:
    """Outbound calls from every department level and from no department, national and international; inbound
    and internal calls (which reports leave out by default); a transferred call in two legs; garbage."""
    lines = [call(i, "217") for i in range(6)]
    lines += [call(10 + i, "555") for i in range(4)]
    lines += [call(20 + i, "200") for i in range(2)]
    lines += [call(30 + i, "777") for i in range(3)]
    lines += [call(40, "217", number="00442079460000"), call(41, "555", number="0012125550100")]
    lines += [call(50 + i, "217", direction="I", number="600988601") for i in range(3)]
    lines += [call(60 + i, "555", internal=True, number="217") for i in range(2)]
    lines += [call(70, "217", continues=True, call_id=7_000_000), call(71, "217", call_id=7_000_000)]
    lines += [b"garbage that is no call", b"1,2,3"]
    return lines


# --- Prometheus -----------------------------------------------------------------------------------------------

class PrometheusError(AssertionError):
    """Prometheus answered a query with an error."""


@dataclass
class Prometheus:
    """A real Prometheus server with the shipped configuration and rules, scraping ``target``."""

    folder: Path
    target: str
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self, within: float = 30.0) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        config = PROMETHEUS.read_text()
        for old, new in (("scrape_interval: 30s", f"scrape_interval: {int(SCRAPE * 1000)}ms"),
                         ("evaluation_interval: 30s", f"evaluation_interval: {int(SCRAPE * 1000)}ms"),
                         ('"127.0.0.1:9464"', json.dumps(self.target))):
            assert old in config, f"the shipped prometheus.yml no longer has {old!r}"
            config = config.replace(old, new)
        (self.folder / "prometheus.yml").write_text(config)
        shutil.copy(RULES, self.folder / RULES.name)
        log = (self.folder / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [prometheus_binary(), f"--config.file={self.folder / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.folder / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + within
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            assert self.proc.poll() is None, f"prometheus exited:\n{self.log()[-3000:]}"
            assert time.monotonic() < deadline, f"prometheus not ready:\n{self.log()[-3000:]}"
            time.sleep(0.1)

    def log(self) -> str:
        return (self.folder / "prometheus.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)

    def api(self, path: str, **params: str | float) -> Any:
        """GET ``/api/v1/<path>``: its ``data``; an error answer raises `PrometheusError` with Prometheus's
        message."""
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?" + urllib.parse.urlencode(
            {k.replace("match", "match[]"): str(v) for k, v in params.items()})
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:
            body = json.load(e)
        if body.get("status") != "success":
            raise PrometheusError(f"{body.get('errorType')}: {body.get('error')} in {params}")
        return body["data"]

    def instant(self, expr: str, at: float) -> list[dict[str, Any]]:
        data = self.api("query", query=expr, time=at)
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result

    def range(self, expr: str, start: float, end: float, step: int) -> list[dict[str, Any]]:
        data = self.api("query_range", query=expr, start=start, end=end, step=step)
        result: list[dict[str, Any]] = data["result"]
        return result

    def value(self, expr: str, at: float | None = None) -> float | None:
        """The single value of ``expr`` at ``at`` (now by default), or None when it is empty."""
        result = self.instant(expr, time.time() if at is None else at)
        return float(result[0]["value"][1]) if result else None

    def wait(self, what: str, check: Callable[[], bool], within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while not check():
            assert time.monotonic() < deadline, f"Prometheus: {what} not seen in {within} s\n{self.log()[-3000:]}"
            time.sleep(SCRAPE)


# --- what the dashboard sends -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """One query of one panel, as Grafana would send it."""

    panel: str
    expr: str
    instant: bool

    @property
    def bucketed(self) -> bool:
        """A series of per-bucket totals (calls per hour): each point must count what its bucket holds."""
        return not self.instant and "increase(" in self.expr


def targets(board: Mapping[str, Any]) -> Iterator[Target]:
    for panel in board["panels"]:
        for t in panel.get("targets", ()):
            yield Target(panel["title"], t["expr"], bool(t.get("instant")) and not t.get("range"))


def expand(expr: str, *, interval: int, rate_interval: float, range_: int, variables: Mapping[str, str]) -> str:
    """``expr`` with Grafana's variables filled in (``$x`` and ``${x}``), built-in ones included."""
    builtins = {"__interval": f"{interval}s", "__rate_interval": f"{round(rate_interval * 1000)}ms",
                "__range": f"{range_}s", "__interval_ms": str(interval * 1000), "__range_s": str(range_)}
    values = {**variables, **builtins}

    def fill(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        assert name in values, f"unknown dashboard variable ${name} in {expr}"
        return values[name]

    out = re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", fill, expr)
    assert "$" not in out, out
    return out


def bool_comparisons(expr: str) -> str:
    """A rule's expression with its comparisons returning 0 or 1 (``> bool``): empty only without data."""
    out, depth, i = [], 0, 0
    while i < len(expr):
        ch = expr[i]
        if ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
        elif ch == '"':
            j = expr.index('"', i + 1)
            out.append(expr[i:j + 1])
            i = j + 1
            continue
        if depth == 0 and (m := re.match(r"(==|!=|>=|<=|>|<)(?!\s*bool\b)", expr[i:])):
            out.append(m.group(1) + " bool")
            i += len(m.group(1))
            continue
        out.append(ch)
        i += 1
    return "".join(out)


# --- what the database says ---------------------------------------------------------------------------------------

@dataclass
class Truth:
    """The database's figures for outbound calls (what reports show by default)."""

    calls: int
    cost: Decimal
    by_class: dict[str, tuple[int, Decimal]]
    departments: dict[str, tuple[int, Decimal]]
    lines: int
    errors: int
    alerts: dict[tuple[str, str], int]


def truth(db: Path, settings: Settings) -> Truth:
    conn = sqlite3.connect(db)
    by_class = {cls: (int(n), Decimal(micros) / 1_000_000) for cls, n, micros in conn.execute(
        "SELECT coalesce(call_class, 'unknown'), sum(leg = 0), sum(coalesce(cost_micros, 0)) FROM calls "
        "WHERE direction = 'outbound' GROUP BY 1")}
    lines, errors = conn.execute("SELECT count(*), sum(status = 'error') FROM lines").fetchone()
    alerts = {(rule, severity): n for rule, severity, n in conn.execute(
        "SELECT rule, severity, count(*) FROM alert_outbox WHERE alert_id NOT LIKE '%:resolved' GROUP BY 1, 2")}
    conn.close()
    ctx = context_from(settings)
    reader = SqliteReports(db)
    try:
        report = run_report(reader, parse_query({"kind": ["departments"], "from": ["2017-01-01"],
                                                 "to": [date.today().isoformat()]}, ctx), ctx)
    finally:
        reader.close()
    departments = {row["department"]: (row["calls"], Decimal(str(row["cost"]))) for row in report.rows}
    return Truth(sum(n for n, _ in by_class.values()), sum((c for _, c in by_class.values()), Decimal(0)),
                 by_class, departments, lines, errors, alerts)


def expected(target: Target, t: Truth) -> Callable[[Mapping[str, str]], float] | None:
    """For a panel whose figures the database also has: the figure a result series (by its labels) must show."""
    def calls_cost(pair: tuple[int, Decimal] | None, cost: bool) -> float:
        n, c = pair or (0, Decimal(0))
        return float(c) if cost else n

    title = target.panel.lower()
    cost = "cost" in title
    if "department" in title:
        return lambda m: calls_cost(t.departments.get(m["department"]), cost)
    if "by class" in title:
        return lambda m: calls_cost(t.by_class.get(m["call_class"]), cost)
    if title.startswith("calls in range"):
        return lambda m: t.calls
    if title.startswith("cost in range"):
        return lambda m: float(t.cost)
    if title.startswith("parse error ratio"):
        return lambda m: t.errors / t.lines
    if title.startswith("parse errors"):
        return lambda m: t.errors
    if title.startswith("alerts raised"):
        return lambda m: t.alerts.get((m["rule"], m["severity"]), 0)
    return None


def agrees(got: float, want: float, samples: int, *, count: bool) -> bool:
    """``got`` is ``want`` within ``increase()``'s extrapolation over ``samples`` samples: the counters start
    at 0 inside the window, so it extends only the end, by at most 1.1 average sample intervals of the
    ``samples - 1`` it saw (and never undercounts)."""
    slack = 1.1 * want / (samples - 1)
    if count:
        return round(got) == want and want <= got + 1e-9 <= want + slack + 1e-9
    return want - 0.005 <= got <= want + slack + 0.005  # the report rounds money to the tariff's decimals


@dataclass
class Evaluation:
    """Evaluates queries as Grafana and the rule manager would, collecting every failure (not just the first)."""

    prom: Prometheus
    truth: Truth
    samples: int  # in each counter's window, for increase()'s extrapolation
    now: float  # after the last sample that counts a call
    sent: float  # just before the first call was sent
    failures: list[str] = field(default_factory=list)
    shown: set[str] = field(default_factory=set)  # panels that showed data

    def panel_query(self, target: Target, step: int) -> None:
        """One query at one step: evaluated up to now, and for per-bucket totals at the worst alignment too."""
        expr = expand(target.expr, interval=step, rate_interval=max(step + SCRAPE, 4 * SCRAPE), range_=step * 24,
                      variables=VARIABLES)
        where = f"{target.panel!r} at a {step // 3600} h step: {expr}"
        want = expected(target, self.truth)
        count = "cost" not in target.panel.lower()
        try:
            if target.instant:
                result = self.prom.instant(expr, self.now)
                points = {json.dumps(r["metric"], sort_keys=True): [float(r["value"][1])] for r in result}
            else:
                result = self.prom.range(expr, self.now - 2 * step, self.now, step)
                points = {json.dumps(r["metric"], sort_keys=True): [float(v) for _, v in r["values"]]
                          for r in result}
            late = self.prom.range(expr, self.sent - 60 - step, self.sent - 60 + step, step) if target.bucketed \
                else []
        except PrometheusError as e:
            self.failures.append(f"{where}: {e}")
            return
        if not points or not any(points.values()):
            self.failures.append(f"empty: {where}")
            return
        self.shown.add(target.panel)
        if want is None:
            return
        if target.bucketed:
            # The worst alignment: the calls in the first minute of a bucket that ends a step later.
            if not late:
                self.failures.append(f"empty where the calls are (in a bucket's first minute): {where}")
            for r in late:
                buckets = {float(ts): float(v) for ts, v in r["values"]}
                if not agrees(sum(buckets.values()), want(r["metric"]), self.samples, count=count):
                    self.failures.append(f"{where}: {r['metric']} sums to {sum(buckets.values())} over the "
                                         f"buckets ending {sorted(buckets)}, the database says {want(r['metric'])}")
        elif not target.instant:
            return  # a rate or a gauge: no total to compare
        for key, values in points.items():
            metric = json.loads(key)
            got = values[-1] if target.instant else sum(v for v in values if not math.isnan(v))
            if target.panel.lower().startswith("parse error ratio"):
                ok = math.isclose(got, want(metric), rel_tol=1e-9)
            else:
                ok = agrees(got, want(metric), self.samples, count=count)
            if not ok:
                self.failures.append(f"{where}: {key} is {got}, the database says {want(metric)} "
                                     f"({self.samples} samples)")

    def follows_source(self, target: Target) -> None:
        """A panel filtered by ``$source`` shows nothing for a source that does not exist (the department
        panels too)."""
        expr = expand(target.expr, interval=3600, rate_interval=3600, range_=86400,
                      variables={**VARIABLES, "source": "no-such-source"})
        if self.prom.instant(expr, self.now):
            self.failures.append(f"{target.panel!r} shows data for a source that does not exist: {expr}")

    def rule(self, expr: str, step: int) -> None:
        """A rule's expression evaluates; with its comparisons made ``bool``, it has data."""
        for shown in (expr, bool_comparisons(expr)):
            try:
                result = self.prom.range(shown, self.now - 2 * step, self.now, step)
            except PrometheusError as e:
                self.failures.append(f"rule at a {step // 3600} h step: {e}")
                continue
            if shown != expr and not result:
                self.failures.append(f"rule empty at a {step // 3600} h step: {shown}")


# --- the test -------------------------------------------------------------------------------------------------

@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[DaemonProcess, Prometheus, Settings, int]]:
    """A real daemon (``smdrd run``) and a real Prometheus scraping it; both stopped after the test."""
    prometheus_binary()
    pbx_port, http_port = free_port(), free_port()
    config = daemon_config(
        tmp_path, [tcp_server_source("push", pbx_port)],
        site={"name": "head-office"},
        http={"listen": f"127.0.0.1:{http_port}"},
        tariff={"currency": "PLN", "rules": [{"name": "pl", "prefixes": ["48"], "rate": "0.60", "billing_unit": 60},
                                             {"name": "world", "prefixes": ["1", "44"], "rate": "2.00",
                                              "billing_unit": 60}]},
        departments=DEPARTMENTS,
        # The rules that raise alerts on a timer, not with a committed call, would make the count a race.
        alerts={"parse_errors": {"enabled": False}, "source_down": {"enabled": False}},
    )
    daemon = DaemonProcess(tmp_path, config)
    prom = Prometheus(tmp_path / "prometheus", f"127.0.0.1:{http_port}")
    try:
        daemon.start()
        daemon.wait_port(pbx_port)
        prom.start()
        yield daemon, prom, Settings.model_validate(config), pbx_port
    finally:
        prom.stop()
        daemon.kill()


def test_every_dashboard_and_rule_expression_shows_the_databases_figures(
        stack: tuple[DaemonProcess, Prometheus, Settings, int]) -> None:
    """Each panel query and rule expression, evaluated by a real Prometheus at 1 h, 2 h, 6 h and 1 day steps:
    none errors, none is empty, and the hourly and per-department totals equal the database's (the outbound
    calls reports show) however the buckets fall. Hourly panels that undercount once Grafana's step outgrows
    their window, department figures that leave out sub-departments, or a count of every direction beside an
    outbound report would fail here."""
    daemon, prom, settings, pbx_port = stack
    board = json.loads(DASHBOARD.read_text())
    rules = yaml_exprs(RULES.read_text())
    lines = known_calls()

    # Zeros first, so every counter has a sample from before the calls.
    prom.wait("the daemon's zeros", lambda: (prom.value('count_over_time(smdrd_build_info{job="smdrd"}[1m])')
                                             or 0) >= 4)
    sent = time.time()
    with socket.create_connection(("127.0.0.1", pbx_port)) as pbx:
        pbx.sendall(b"".join(line + b"\r\n" for line in lines))
    prom.wait("every line", lambda: prom.value("sum(smdrd_lines_received_total)") == len(lines))
    t = truth(daemon.db, settings)
    assert t.lines == len(lines) and t.errors == 2 and t.calls == 18, t
    assert t.departments["Sales"][0] == 15 and t.departments["Sales PL"][0] == 5, t.departments
    assert t.alerts, "the international calls on a Saturday raise after-hours alerts"
    # Enough samples since the zeros that increase()'s extrapolation stays below half a call.
    need = 3 * t.calls + 2
    prom.wait(f"{need} samples", lambda: (prom.value("count_over_time(smdrd_build_info[1h])") or 0) >= need)
    now = time.time()
    samples = int(prom.value("count_over_time(smdrd_build_info[1h])", now) or 0)

    check = Evaluation(prom, t, samples, now, sent)
    for step in STEPS:
        for target in targets(board):
            check.panel_query(target, step)
        for expr in rules:
            check.rule(expr, step)
    for target in targets(board):
        if "$source" in target.expr:
            check.follows_source(target)
    failures = check.failures
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures)
    panels = {p["title"] for p in board["panels"] if p["type"] != "row"}
    assert check.shown == panels, f"panels never checked: {sorted(panels - check.shown)}"

    # The template variables list what exists.
    for var in board["templating"]["list"]:
        if var["type"] != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query.strip())
        assert m, f"variable {var['name']}: {query}"
        selector = expand(m.group(1), interval=3600, rate_interval=3600, range_=3600, variables=VARIABLES)
        values = prom.api(f"label/{m.group(2)}/values", match=selector, start=sent - 600, end=time.time())
        assert values, f"variable {var['name']} lists nothing: {query}"
        if var["name"] == "site":  # the daemon's own [site] name: prometheus.yml gives the target none
            assert values == ["head-office"], values
    assert not prom.instant('{exported_site!=""}', time.time()), "a target label renamed smdrd's site"

    # Every rule loaded and evaluates without an error.
    prom.wait("every rule evaluated", lambda: all(
        r["lastEvaluation"] > "2000" for g in prom.api("rules")["groups"] for r in g["rules"]))
    for group in prom.api("rules")["groups"]:
        for rule in group["rules"]:
            assert rule["health"] == "ok", rule
    assert {r["name"] for g in prom.api("rules")["groups"] for r in g["rules"]} >= {
        "SmdrdDown", "SmdrdSourceDown", "SmdrdParseErrorsRising"}
    daemon.terminate()
    daemon.assert_clean_log()
