"""Every default the documents quote is the code's default (issue 18, item 10).

A user reads `README.md`, `docs/*.md` and `config/smdrd.example.toml` to learn what happens when a key is left
out; a default changed in the code and not in the prose (``max_pending_rows`` said 100,000 in one place,
5,000 in another) is a promise smdrd does not keep. The configuration's defaults are read from the pydantic
models themselves (every section, every source kind, every alert rule), so the test follows the code.

What counts as quoting a default:

- in Markdown prose (code blocks aside): ``(default X)``, ``default X``, ``X by default`` after a backticked
  key (`` `[database] max_pending_rows` ``), and `` `key = X` (default)``;
- the ``defaults`` column of the alert rules' table in docs/alerts.md (`` `key = X` `` in the rule's section);
- in the example configuration: every key's value, except the values an administrator must set for the site
  (`SITE_VALUES`, each with its reason), and the ``(default X)`` of its comments.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter, ValidationError

from smdrd.config import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLE = ROOT / "config" / "smdrd.example.toml"

#: keys of the example configuration whose value is the site's, not a default (section path, key): why.
SITE_VALUES: dict[tuple[str, str], str] = {
    ("site", "name"): "the site's name",
    ("site", "timezone"): "the PBX's timezone",
    ("site", "country"): "the site's country",
    ("site", "area_code"): "the site's area code",
    ("database", "path"): "the package's database path, not the development default",
    ("tariff", "currency"): "the site's currency",
    ("tariff", "decks"): "the site's rate decks",
    ("tariff", "holidays"): "the site's holidays",
    ("alerts.business_hours", "holidays"): "the site's holidays",
    ("mqtt", "enabled"): "the example shows a broker in use",
    ("mqtt", "host"): "the site's broker",
    ("mqtt", "username"): "the site's broker account",
    ("mqtt", "password_file"): "the site's broker account",
    ("http", "token_file"): "the site's token",
}
#: per source entry, the keys that say which PBX and where (every other key must show its default).
SOURCE_SITE_KEYS = {"name", "kind", "format", "enabled", "host", "port", "listen", "allowed_peers", "device", "path",
                    "baudrate", "parity", "bytesize", "stopbits", "flow_control", "follow", "format_options",
                    "handshake", "year", "encoding", "pattern"}
#: sections of the example that are examples, not defaults: lists of the site's own entries.
EXAMPLE_ENTRIES = {"tariff.rules", "tariff.bands", "departments", "alerts.budget.departments"}


@dataclass(frozen=True)
class Key:
    """A configuration key the code defines: its section path, its name and default, and its type."""

    section: str
    name: str
    default: Any
    adapter: TypeAdapter[Any]


def _models(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for arg in typing.get_args(annotation):
        yield from _models(arg)


def _keys(model: type[BaseModel], section: str) -> Iterator[Key]:
    for name, info in model.model_fields.items():
        if info.is_required():
            default: Any = _REQUIRED
        else:
            default = info.get_default(call_default_factory=True)
        annotation: Any = info.annotation
        if info.metadata:
            annotation = typing.Annotated[annotation, *info.metadata]
        yield Key(section, name, default, TypeAdapter(annotation))
        path = f"{section}.{name}" if section else name
        origin = typing.get_origin(info.annotation)
        if origin is dict:  # [tariff.bands.<name>]: the entries' keys are under the dict's own path
            for sub in _models(typing.get_args(info.annotation)[1]):
                yield from _keys(sub, path)
        else:
            for sub in _models(info.annotation):
                yield from _keys(sub, path)


def _other_keys() -> Iterator[Key]:
    """Defaults the documents quote that are not configuration keys: the report API's page size and a
    format option."""
    from smdrd.reports.queries import Query
    from smdrd.sources.hs_panasonic import PROMPT_TIMEOUT

    query = {f.name: f.default for f in dataclasses.fields(Query)}
    yield Key("reports", "page_size", query["page_size"], TypeAdapter(int))
    yield Key("sources.format_options", "prompt_timeout", PROMPT_TIMEOUT, TypeAdapter(float))
    yield from _cli_options()


def _cli_options() -> Iterator[Key]:
    """Every command's options with a default (``--top`` of ``smdrd report``...), from the CLI's own parser."""
    import argparse

    from smdrd.cli import build_parser

    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, sub in action.choices.items():
                for option in sub._actions:
                    if option.default not in (None, argparse.SUPPRESS, False) and option.option_strings:
                        for name in option.option_strings:
                            if name.startswith("--"):
                                yield Key(f"smdrd {command}", name, option.default, TypeAdapter(type(option.default)))


_REQUIRED = object()
KEYS = [*_keys(Settings, ""), *_other_keys()]
BY_NAME: dict[str, list[Key]] = {}
for _key in KEYS:
    BY_NAME.setdefault(_key.name, []).append(_key)


def _value(text: str) -> Any:
    """A quoted value as a document writes it: TOML if it reads as TOML, a number with its thousands
    separators and unit dropped, else the text."""
    text = text.strip().strip("`")
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        pass
    number = re.fullmatch(r"([0-9][0-9,]*(?:\.[0-9]+)?)(?: ?(?:s|ms|seconds|days|KiB|bytes))?", text)
    if number:
        digits = number[1].replace(",", "")
        return float(digits) if "." in digits else int(digits)
    return text


def _equal(key: Key, quoted: Any) -> bool:
    if key.default is _REQUIRED:
        return False
    try:
        value = key.adapter.validate_python(quoted)
    except ValidationError:
        value = quoted
    if value == key.default:
        return True
    if isinstance(value, int | float) and isinstance(key.default, int | float) and not isinstance(value, bool):
        return float(value) == float(key.default)
    return str(value) == str(key.default)


def _candidates(name: str, section: str | None) -> list[Key]:
    keys = BY_NAME.get(name if name.startswith("--") else name.rsplit(".", 1)[-1], [])
    if section is not None:
        keys = [k for k in keys if k.section == section or k.section.endswith(f".{section}")]
    return keys


@dataclass(frozen=True)
class Quote:
    """A default a document states: where, for which key, and what it says."""

    where: str
    section: str | None
    key: str
    text: str

    def problem(self) -> str | None:
        keys = _candidates(self.key, self.section)
        if not keys:
            return None  # not a configuration key (a CLI option, a deck column's prose...)
        quoted = _value(self.text)
        if any(_equal(k, quoted) for k in keys):
            return None
        code = ", ".join(f"[{k.section}] {k.name} = {k.default!r}" for k in keys)
        return f"{self.where}: `{self.key}` documented default {self.text!r}, the code's: {code}"


# -- Markdown ---------------------------------------------------------------------------------------------------

_VAL = r"(`[^`\n]+`|[0-9]+(?:,[0-9]{3})*(?:\.[0-9]+)?(?: ?(?:s|ms|days))?|true|false)"
_MENTIONS = [re.compile(rf"\(default:?\s+{_VAL}"), re.compile(rf"(?<![(`])\bdefault\s+{_VAL}"),
             re.compile(rf"\(?{_VAL}\s+by\s+default")]
_KEY = re.compile(r"`(?:\[(?P<section>[a-z_.]+)\] )?(?P<key>[a-z_][a-z0-9_.]*|--[a-z-]+)(?: [A-Z_.|]+)?`")
#: `` `key` (16)``, `` `idle_timeout` (60 s)``: a number in brackets right after a key is its default.
_NUMBER = r"([0-9]+(?:,[0-9]{3})*(?:\.[0-9]+)?(?: ?(?:s|ms|days))?)"
_KEY_VALUE = re.compile(rf"`(?:\[(?P<section>[a-z_.]+)\] )?(?P<key>[a-z_][a-z0-9_.]*)` \({_NUMBER}[),;]")
_KEY_IS = re.compile(r"`(?P<key>[a-z_][a-z0-9_]*) = (?P<val>[^`]+)` \(default\)")


def _prose(path: Path) -> Iterator[tuple[int, str]]:
    """Each paragraph outside code blocks, with its first line number (table rows are paragraphs)."""
    inside = False
    block: list[str] = []
    start = 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fence = line.startswith("```")
        if fence:
            inside = not inside
        if fence or inside or not line.strip() or line.startswith("|"):
            if block:
                yield start, "\n".join(block)
                block = []
            if line.startswith("|") and not inside:
                yield number, line
            continue
        if not block:
            start = number
        block.append(line)
    if block:
        yield start, "\n".join(block)


def markdown_quotes(path: Path) -> Iterator[Quote]:
    name = path.relative_to(ROOT)
    for first, text in _prose(path):
        for pattern in _MENTIONS:
            for m in pattern.finditer(text):
                before = text[max(0, m.start() - 160):m.start()]
                before = re.split(r"[.;]\s|\|", before)[-1]  # the same sentence, the same table cell
                keys = list(_KEY.finditer(before))
                if not keys:
                    continue
                line = first + text[:m.start()].count("\n")
                yield Quote(f"{name}:{line}", keys[-1]["section"], keys[-1]["key"], m[1])
        for m in _KEY_VALUE.finditer(text):
            yield Quote(f"{name}:{first + text[:m.start()].count(chr(10))}", m["section"], m["key"], m[3])
        for m in _KEY_IS.finditer(text):
            yield Quote(f"{name}:{first + text[:m.start()].count(chr(10))}", None, m["key"], m["val"])


def alert_table_quotes(path: Path) -> Iterator[Quote]:
    """The ``defaults`` column of docs/alerts.md's table: `` `key = value` `` in ``[alerts.<rule>]``."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rule = re.fullmatch(r"`([a-z_]+)`", cells[0]) if len(cells) == 3 else None
        if rule is None:
            continue
        for m in re.finditer(r"`([a-z_]+) = ([^`]+)`", cells[2]):
            yield Quote(f"{path.relative_to(ROOT)}:{number}", f"alerts.{rule[1]}", m[1], m[2])


# -- the example configuration --------------------------------------------------------------------------------


def _walk(table: dict[str, Any], section: str) -> Iterator[tuple[str, str, Any]]:
    for key, value in table.items():
        path = f"{section}.{key}" if section else key
        if path in EXAMPLE_ENTRIES:
            continue
        if isinstance(value, dict) and _candidates(key, section or None) and any(
                isinstance(k.default, BaseModel) for k in _candidates(key, section or None)):
            yield from _walk(value, path)
        elif key == "sources":
            for entry in value:
                for k, v in entry.items():
                    if k not in SOURCE_SITE_KEYS:
                        yield "sources", k, v
        elif (section, key) not in SITE_VALUES:
            yield section, key, value


def example_quotes() -> Iterator[Quote]:
    text = EXAMPLE.read_text()
    lines = text.splitlines()
    for section, key, value in _walk(tomllib.loads(text), ""):
        pattern = re.compile(rf"^#?\s*{re.escape(key)}\s*=")
        number = next((i for i, line in enumerate(lines, 1) if pattern.match(line)), 0)
        keys = [k for k in _candidates(key, section) if k.section == section]
        if section == "sources":  # kinds share key names (poll_interval: a file's 0.5, a spool's 2.0)
            keys = sorted(keys, key=lambda k: not _equal(k, value))
        if keys:
            default = keys[0].default
            if not _equal(keys[0], value):
                yield Quote(f"{EXAMPLE.relative_to(ROOT)}:{number}", section, key,
                            f"{value!r} (code: {default!r})")
    for number, line in enumerate(lines, 1):  # "#   max_line_length  ... (default 8192)"
        m = re.match(rf"#\s+([a-z_]+)\s.*\(default:?\s+{_VAL}[);,]", line)
        if m:
            yield Quote(f"{EXAMPLE.relative_to(ROOT)}:{number}", None, m[1], m[2])


def all_quotes() -> list[Quote]:
    quotes = [q for path in DOCUMENTS for q in markdown_quotes(path)]
    quotes += alert_table_quotes(ROOT / "docs" / "alerts.md")
    return quotes


def test_the_checker_reads_the_documents() -> None:
    """Guard against a checker that silently finds nothing: it reads dozens of quoted defaults, among them
    those the issue found wrong."""
    quotes = all_quotes()
    assert len(quotes) >= 20
    found = {(q.key.rsplit(".", 1)[-1], q.where.split(":")[0]) for q in quotes}
    assert ("max_pending_rows", "README.md") in found
    assert ("commit_interval_ms", "README.md") in found
    assert ("commit_interval_ms", "docs/alerts.md") in found
    assert ("max_pending_rows", "docs/install.md") in found
    assert ("min_seconds", "docs/alerts.md") in found
    assert ("--top", "docs/reports.md") in found


def test_every_default_quoted_in_the_documents_is_the_codes() -> None:
    problems = [p for q in all_quotes() if (p := q.problem())]
    assert problems == [], "\n".join(problems)


def test_every_default_in_the_example_configuration_is_the_codes() -> None:
    """Keys the example sets (other than the site's own values, `SITE_VALUES`) show the default, so a user who
    copies it gets what the documents say; its comments' ``(default X)`` too."""
    problems = []
    for quote in example_quotes():
        if " (code: " in quote.text:
            problems.append(f"{quote.where}: {quote.section}.{quote.key} = {quote.text}")
        elif problem := quote.problem():
            problems.append(problem)
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize(("text", "value"), [("5,000", 5000), ("`0.0.0.0:1150`", "0.0.0.0:1150"), ("50 ms", 50),
                                             ("3 s", 3), ('`["outbound"]`', ["outbound"]), ("true", True)])
def test_quoted_values_are_read_as_written(text: str, value: object) -> None:
    assert _value(text) == value




# -- the central collector's example configuration ------------------------------------------------------------

CENTRAL_EXAMPLE = ROOT / "config" / "central.example.toml"
#: keys of config/central.example.toml whose value is the company's, not a default (section, key): why.
CENTRAL_SITE_VALUES: dict[tuple[str, str], str] = {
    ("database", "url"): "the company's central PostgreSQL",
    ("mqtt", "host"): "the central broker",
    ("http", "listen"): "a port apart from a site daemon's 127.0.0.1:9464 on the same box",
}


def central_example(*, commented: bool) -> dict[str, Any]:
    """config/central.example.toml as TOML; with ``commented``, its commented-out sections and keys
    (``# [http]``, ``# listen = ...``) read as if they were set."""
    text = CENTRAL_EXAMPLE.read_text()
    if commented:
        text = re.sub(r"(?m)^# ?(\[[a-z_.]+\]\s*$|[a-z_]+ = \S)", r"\1", text)
    return tomllib.loads(text)


def test_the_central_example_configuration_loads_with_its_commented_keys_set() -> None:
    """Every section and key the collector's example shows, set or commented out, is one the configuration
    takes (it forbids unknown keys), and the file loads as it ships."""
    Settings.model_validate(central_example(commented=False))
    shown = central_example(commented=True)
    assert "http" in shown and "listen" in shown["http"]  # the commented keys really were read
    Settings.model_validate(shown)


def test_every_default_in_the_central_example_configuration_is_the_codes() -> None:
    """Keys the collector's example shows (other than the company's own values, `CENTRAL_SITE_VALUES`) show the
    code's default, so `[central] batch` cannot drift from `CentralConfig` again."""
    problems = []
    shown = central_example(commented=True)
    for section, table in shown.items():
        for key, value in table.items():
            if (section, key) in CENTRAL_SITE_VALUES:
                continue
            keys = [k for k in _candidates(key, section) if k.section == section]
            assert keys, f"[{section}] {key} is no configuration key"
            if not _equal(keys[0], value):
                problems.append(f"{CENTRAL_EXAMPLE.relative_to(ROOT)}: [{section}] {key} = {value!r}, "
                                f"the code's default: {keys[0].default!r}")
    assert problems == [], "\n".join(problems)
    assert shown["central"]["batch"] == Settings().central.batch


def test_every_key_the_documents_name_is_a_configuration_key() -> None:
    """`` `[section] key` `` in README.md and docs/ names a key the configuration takes (in that section, or a
    section ending so, as ``[budget]`` for ``[alerts.budget]``): a key renamed or removed in the code leaves
    no document telling users to set it."""
    sections: dict[str, set[str]] = {}
    for key in KEYS:
        sections.setdefault(key.section, set()).add(key.name)
    problems, seen = [], 0
    for path in DOCUMENTS:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for m in re.finditer(r"`\[([a-z_]+(?:\.[a-z_]+)*)\] ([a-z_]+)", line):
                seen += 1
                names = [s for s in sections if s == m[1] or s.endswith(f".{m[1]}")]
                if not any(m[2] in sections[s] for s in names):
                    problems.append(f"{path.relative_to(ROOT)}:{number}: [{m[1]}] {m[2]} is no configuration key")
    assert seen >= 50
    assert problems == [], "\n".join(problems)


def unreleased_quotes() -> Iterator[Quote]:
    """``[section] key` defaults to X`` in CHANGELOG.md's Unreleased section: what this version's notes promise."""
    text = (ROOT / "CHANGELOG.md").read_text()
    start = text.index("## [Unreleased]")
    end = text.find("\n## [", start + 1)
    section = text[start:end if end != -1 else len(text)]
    first = text[:start].count("\n") + 1
    for m in re.finditer(rf"{_KEY.pattern} defaults to {_VAL}", section):
        yield Quote(f"CHANGELOG.md:{first + section[:m.start()].count(chr(10))}", m["section"], m["key"], m[3])


def test_every_default_the_unreleased_changelog_gives_is_the_codes() -> None:
    """The notes of a changed default (`[central] batch` 500 -> 2000) say the default the code has."""
    quotes = list(unreleased_quotes())
    assert {q.key for q in quotes} >= {"batch", "commit_interval_ms", "max_pending_rows"}
    problems = [p for q in quotes if (p := q.problem())]
    assert problems == [], "\n".join(problems)


def test_the_central_brokers_settings_follow_the_batch_default() -> None:
    """config/mosquitto/central.conf quotes `[central] batch`'s default and lets twice it be in flight, so the
    next batch arrives while one is stored (docs/central.md says so): a changed default must move both."""
    conf = (ROOT / "config" / "mosquitto" / "central.conf").read_text()
    batch = Settings().central.batch
    quoted = re.search(r"\[central\] batch \(([0-9,]+)\)", conf)
    assert quoted is not None and _value(quoted[1]) == batch
    inflight = re.search(r"(?m)^max_inflight_messages ([0-9]+)$", conf)
    assert inflight is not None and int(inflight[1]) == 2 * batch


def test_every_toml_block_of_the_documents_is_a_configuration_smdrd_takes() -> None:
    """A ```toml block in README.md or docs/ is copied into smdrd.toml as it is: it must parse and load (the
    configuration refuses unknown keys and bad values), so a key renamed in the code cannot stay in an example."""
    problems, seen = [], 0
    for path in DOCUMENTS:
        for m in re.finditer(r"(?ms)^```toml\n(.*?)^```", path.read_text()):
            seen += 1
            where = f"{path.relative_to(ROOT)}:{path.read_text()[:m.start()].count(chr(10)) + 1}"
            try:
                Settings.model_validate(tomllib.loads(m[1]))
            except (tomllib.TOMLDecodeError, ValidationError) as exc:
                problems.append(f"{where}: {str(exc).splitlines()[0]}")
    assert seen >= 20
    assert problems == [], "\n".join(problems)
