"""The package's import graph: every module imports on its own, and no module-level import cycle exists.

The graph is built with `ast` over ``smdrd/`` (the vendor parsers included, as ``smdrd.parsers``): an edge for
every import that runs when a module is first imported (at module level and in class bodies, including under
``if``/``try``), but not for imports inside functions (deliberate local imports) nor under ``if TYPE_CHECKING:``.
Importing ``a.b.c`` also runs the packages ``a.b`` and ``a`` first, so the graph has edges to those too, except
to the importing module's own packages (which are already being imported when it runs).

A cycle means some module works only when another one was imported first, as ``smdrd.config`` and
``smdrd.reports`` did before each section's schema moved beside its feature.
"""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "smdrd"


def _modules() -> dict[str, Path]:
    """Every module of the package by its dotted name (``smdrd.parsers`` is a symlink, followed)."""
    out: dict[str, Path] = {}
    for folder, dirs, files in os.walk(PACKAGE, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__pycache__")))
        rel = Path(folder).relative_to(ROOT)
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            parts = [*rel.parts] if name == "__init__.py" else [*rel.parts, name[:-3]]
            out[".".join(parts)] = Path(folder) / name
    return out


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_time_nodes(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements that run when the module is imported (not in functions, not for type checkers)."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _import_time_nodes(node.body)
            yield from _import_time_nodes(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                yield from _import_time_nodes(block)
        elif isinstance(node, ast.With | ast.ClassDef):
            yield from _import_time_nodes(node.body)


def _ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _imported(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The package's modules that ``node`` (in ``module``) imports directly."""
    is_package = MODULES[module].name == "__init__.py"
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - node.level + 1]
        target = ".".join([*base, node.module] if node.module else base)
    else:
        target = node.module or ""
    return [target, *(f"{target}.{alias.name}" for alias in node.names)]


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules that importing it runs first (see the module docstring)."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        own = {module, *_ancestors(module)}
        edges: set[str] = set()
        for node in _import_time_nodes(ast.parse(path.read_text(encoding="utf-8")).body):
            for target in _imported(module, node):
                for name in (*_ancestors(target), target):
                    if name in MODULES and name not in own:
                        edges.add(name)
        graph[module] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that starts and ends at the same module, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_the_graph_sees_the_modules_and_their_imports() -> None:
    graph = import_graph()
    assert "smdrd.parsers.avaya_ipo" in graph and "smdrd.config" in graph
    # a module-level import, one through a package, one from a relative import, and never a TYPE_CHECKING one
    assert {"smdrd.alerts.config", "smdrd.alerts", "smdrd.sources.config"} <= graph["smdrd.config"]
    assert "smdrd.parsers.toolkit" in graph["smdrd.parsers.avaya_ipo"]  # `from .toolkit import ...`
    assert "smdrd.config" not in graph["smdrd.rating.tariff"]


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_module_level_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "module-level import cycle: " + " -> ".join(cycle or [])


def test_feature_config_modules_never_import_smdrd_config() -> None:
    """A section's schema is its feature's; importing `smdrd.config` (which imports them all) is a cycle."""
    graph = import_graph()
    homes = ["smdrd.section", "smdrd.rating.config", "smdrd.store.config", "smdrd.sources.config",
             "smdrd.http_config", "smdrd.mqtt_config", "smdrd.reports.config", "smdrd.alerts.config",
             "smdrd.logs_config"]
    for home in homes:
        assert "smdrd.config" not in graph[home], home


def _fresh_import(*modules: str) -> subprocess.CompletedProcess[str]:
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-c", code, *modules], capture_output=True, text=True, cwd=ROOT,
                          env=env, check=False, timeout=120)


def test_every_module_imports_in_a_fresh_interpreter() -> None:
    proc = _fresh_import(*sorted(m for m in MODULES if not m.endswith(".__main__")))  # that one runs the CLI
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("first", ["smdrd.config", "smdrd.alerts", "smdrd.reports", "smdrd.alerts.config",
                                   "smdrd.reports.config", "smdrd.daemon"])
def test_modules_once_in_a_cycle_import_first(first: str) -> None:
    """Whichever of them a program imports first (a cycle hid behind the order the daemon happened to use)."""
    proc = _fresh_import(first, "smdrd.config")
    assert proc.returncode == 0, proc.stderr


def test_the_command_summaries_are_what_the_modules_register() -> None:
    """`smdrd --help` lists the commands from `SUMMARIES` without importing their modules: the same text."""
    from smdrd import cli

    full = cli.build_parser()
    (action,) = [a for a in full._actions if isinstance(a, argparse._SubParsersAction)]
    registered = {choice.dest: choice.help for choice in action._choices_actions}
    assert registered == {name: summary for name, (_, summary) in cli.SUMMARIES.items()}
    assert list(registered) == list(cli.SUMMARIES)
    assert set(cli.COMMANDS) == {module for module, _ in cli.SUMMARIES.values()}
    assert cli.build_parser("").format_help() == full.format_help()
    for name in cli.SUMMARIES:
        assert cli.build_parser(name).format_help() == full.format_help(), name


def test_help_imports_no_command_module_and_no_heavy_library() -> None:
    """What keeps `python -m smdrd --help` fast (the figure is bench/startup.py's, never a test's)."""
    code = ("import runpy, sys\nsys.argv = ['smdrd', '--help']\ntry:\n    runpy.run_module('smdrd', "
            "run_name='__main__')\nexcept SystemExit:\n    pass\nprint(' '.join(sorted(sys.modules)), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False,
                          timeout=120)
    assert "run the daemon" in proc.stdout
    loaded = set(proc.stderr.split())
    heavy = {"pydantic", "pydantic_settings", "aiohttp", "aiosqlite", "aiomqtt", "phonenumbers", "structlog",
             "sqlite3", "asyncio", "importlib.metadata", "smdrd.config", "smdrd.daemon"}
    assert not heavy & loaded
    assert not {m for m in loaded if m.startswith("smdrd.cli.")}
