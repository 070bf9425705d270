"""The configuration: TOML, environment overrides, and errors that name the file, the key and the expectation."""

from __future__ import annotations

from pathlib import Path

import pytest

from smdrd.cli import main
from smdrd.config import load_config
from smdrd.errors import ConfigError

EXAMPLE = Path(__file__).parent.parent / "config" / "smdrd.example.toml"

GOOD = """
[site]
timezone = "Europe/Warsaw"
country = "pl"

[database]
path = "/tmp/x.db"

[[sources]]
name = "ipo"
kind = "tcp-client"
format = "avaya-ipo"
host = "192.0.2.10"
port = 8808
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "smdrd.toml"
    path.write_text(text)
    return path


def test_good_file_loads(tmp_path: Path) -> None:
    s = load_config(write(tmp_path, GOOD), use_env=False)
    assert s.site.country == "PL"
    assert s.sources[0].kind == "tcp-client"
    assert getattr(s.sources[0], "port") == 8808  # noqa: B009 - a union of source kinds


def test_environment_overrides_nested_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SMDRD_DATABASE__PATH wins over the file, and the rest of the file still applies."""
    monkeypatch.setenv("SMDRD_DATABASE__PATH", "/srv/calls.db")
    monkeypatch.setenv("SMDRD_SITE__AREA_CODE", "52")
    s = load_config(write(tmp_path, GOOD))
    assert str(s.database.path) == "/srv/calls.db"
    assert s.site.area_code == "52"
    assert s.site.timezone == "Europe/Warsaw"


def test_errors_name_file_key_and_expectation(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("8808", '"eighty"').replace('"pl"', '"P1"') + "\n[database2]\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, use_env=False)
    keys = dict(info.value.problems)
    assert "sources[0].port" in keys and "integer" in keys["sources[0].port"]
    assert "site.country" in keys and "two-letter" in keys["site.country"]
    assert "database2" in keys and "unknown key" in keys["database2"]
    assert str(path) in str(info.value)


def test_unknown_format_and_kind_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, GOOD.replace('"avaya-ipo"', '"avaya-xyz"')), use_env=False)
    assert info.value.problems[0][0] == "sources[0].format"
    assert "avaya-ipo" in info.value.problems[0][1]  # says what is expected
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, GOOD.replace('"tcp-client"', '"carrier-pigeon"')), use_env=False)
    assert "tcp-client, tcp-server, serial, file" in str(info.value)


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[site\n"), use_env=False)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")


def test_duplicate_source_names_are_refused(tmp_path: Path) -> None:
    text = GOOD + GOOD[GOOD.index("[[sources]]"):]
    with pytest.raises(ConfigError, match="used twice"):
        load_config(write(tmp_path, text), use_env=False)


def test_check_config_command_exits_non_zero_with_each_error(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD.replace("8808", "70000"))
    assert main(["check-config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "sources[0].port" in err and "65535" in err
    assert main(["check-config", str(write(tmp_path, GOOD))]) == 0


def test_secrets_are_masked_in_check_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD + '\n[mqtt]\npassword = "hunter2"\n')
    assert main(["check-config", "--show", str(path)]) == 0
    assert "hunter2" not in capsys.readouterr().out


def test_the_example_config_is_valid() -> None:
    """config/smdrd.example.toml documents every key; it must load as it is."""
    s = load_config(EXAMPLE, use_env=False)
    assert s.sources


def test_check_config_names_a_bad_rate_deck_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A broken deck is a config mistake too: check-config names the deck file and its line."""
    (tmp_path / "rates.csv").write_text("name,prefix,rate\nUK,44,0.02\nBad,44x,0.01\n")
    path = write(tmp_path, GOOD + '\n[tariff]\ndecks = ["rates.csv"]\n')
    assert main(["check-config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "rates.csv:3" in err and "44x" in err


def _keys(model: type, seen: set[type] | None = None) -> set[str]:
    """Every key name a configuration model (and the models inside it) accepts."""
    import types
    import typing

    from pydantic import BaseModel

    seen = seen if seen is not None else set()
    if model in seen:
        return set()
    seen.add(model)
    out: set[str] = set()
    for name, f in model.model_fields.items():  # type: ignore[attr-defined]
        out.add(name)
        stack = [f.annotation]
        while stack:
            t = stack.pop()
            if isinstance(t, type) and issubclass(t, BaseModel):
                out |= _keys(t, seen)
            for arg in typing.get_args(t) or ():
                stack.append(arg)
            if isinstance(t, types.UnionType):
                stack.extend(typing.get_args(t))
    return out


def test_the_example_config_documents_every_key() -> None:
    """Every key smdrd accepts appears in config/smdrd.example.toml (set, or commented out), so the example
    cannot fall behind the code."""
    import re

    from smdrd.config import Settings

    text = EXAMPLE.read_text()
    written = set(re.findall(r"^\s*#?\s*([a-z_]+)\s*=", text, re.MULTILINE))
    written |= set(re.findall(r"^\s*#?\s*\[{1,2}([a-z_.]+)\]", text, re.MULTILINE))
    written = {part for key in written for part in key.split(".")}
    missing = sorted(_keys(Settings) - written)
    assert missing == []
