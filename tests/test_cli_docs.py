"""The documents and the CLI agree: every ``smdrd <command> --option`` that README.md, docs/, CHANGELOG.md and
config/ write is an option of that command's parser (its sub-commands' too), every command is documented, and
the help of `smdrd directory` names every column the CSV takes."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from smdrd.cli import build_parser
from smdrd.directory import CSV_COLUMNS

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md")),
             *sorted(p for p in (ROOT / "config").rglob("*") if p.suffix in (".toml", ".conf", ".yml"))]


def _options(parser: argparse.ArgumentParser, name: str, out: dict[str, set[str]]) -> set[str]:
    """``out[command]``: the options of ``command`` ("report", "tariff import") and of its sub-commands."""
    options: set[str] = set()
    for action in parser._actions:
        options.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for command, sub in action.choices.items():
                options |= _options(sub, f"{name} {command}".strip(), out)
    out[name] = options
    return options


def commands() -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    _options(build_parser(), "", out)
    return out


def test_every_option_the_documents_give_a_command_is_its() -> None:
    options = commands()
    problems, seen = [], 0
    for path in DOCUMENTS:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            # `smdrd report extensions --site hq`: up to the end of the code span, table cell or sentence.
            for m in re.finditer(r"smdrd ([a-z-]+)((?: [a-z-]+)?)([^`|;]*)", line):
                if m[1] not in options:
                    continue
                command = f"{m[1]}{m[2]}" if f"{m[1]}{m[2]}" in options else m[1]
                for option in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", m[3]):
                    seen += 1
                    if option not in options[command]:
                        problems.append(f"{path.relative_to(ROOT)}:{number}: smdrd {command} has no {option}")
    assert seen >= 30  # the checker read the documents' command lines
    assert problems == [], "\n".join(problems)


def test_every_command_is_documented() -> None:
    text = "\n".join(p.read_text() for p in DOCUMENTS if p.suffix == ".md")
    top = [c for c in commands() if c and " " not in c]
    assert len(top) >= 20
    assert [c for c in top if f"smdrd {c}" not in text] == []


def test_the_directory_help_names_every_csv_column() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    help_text = " ".join((sub.choices["directory"].description or "").split())
    assert [c for c in CSV_COLUMNS if c not in help_text] == []
