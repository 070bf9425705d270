"""The configuration: TOML, environment overrides, and errors that name the file, the key and the expectation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from smdrd.cli import main
from smdrd.config import config_warnings, load_config
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
host = "10.0.0.5"
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
    assert info.value.problems[0][0] == "sources[0].kind" and "'carrier-pigeon'" in info.value.problems[0][1]


def test_a_misspelt_format_option_is_an_error_naming_the_ones_there_are(tmp_path: Path) -> None:
    """``date_ordr`` left ``date_order`` at its default without a word; the handshake's options still pass."""
    panasonic = GOOD.replace('"avaya-ipo"', '"panasonic"') + '[sources.format_options]\npassword = "1234"\n'
    load_config(write(tmp_path, panasonic), use_env=False)
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, panasonic + 'date_ordr = "dmy"\n'), use_env=False)
    assert info.value.problems == [("sources[0].format_options", "unknown format option 'date_ordr'; expected one "
                                    "of date_order, password, prompt_timeout, time_is_end")]


def test_a_login_handshake_on_a_tcp_server_is_refused(tmp_path: Path) -> None:
    """A tcp-server running Panasonic's login sent ``SMDR`` and the PBX's password to whoever connected."""
    server = GOOD.replace('"tcp-client"', '"tcp-server"').replace('host = "10.0.0.5"\nport = 8808\n',
                                                               'listen = "0.0.0.0:2300"\n')
    load_config(write(tmp_path, server.replace('"avaya-ipo"', '"panasonic"')), use_env=False)  # no login: fine
    # A password written for the login it used to run is still accepted (a config of yesterday), with a warning.
    kept = write(tmp_path, server.replace('"avaya-ipo"', '"panasonic"') + '[sources.format_options]\n'
                                                                            'password = "PCCSMDR"\n')
    assert config_warnings(kept, load_config(kept, use_env=False))[-1:] == [
        ("sources[0].format_options.password", "not used: a tcp-server source does not log in to the PBX (only a "
                                                "tcp-client runs the panasonic login); remove it")]
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, server + 'handshake = "panasonic"\n'), use_env=False)
    [(key, problem)] = info.value.problems
    assert key == "sources[0].handshake" and "'panasonic' logs in to the PBX" in problem and "tcp-client" in problem


@pytest.mark.parametrize("password", ["0123456789abcdef", "pässwort"])
def test_a_mitel_5000_password_its_login_cannot_carry_is_refused(tmp_path: Path, password: str) -> None:
    """A password of 16 characters, or not ASCII, passed check-config; then every connection failed on it."""
    text = GOOD.replace('"avaya-ipo"', '"mitel-5000"') + f'password = "{password}"\n'
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), use_env=False)
    assert info.value.problems == [("sources[0].password", "a Mitel 5000 SMDR password is at most 15 ASCII "
                                                           "characters")]
    load_config(write(tmp_path, text.replace(password, password[:15] if password.isascii() else "passwort")),
                use_env=False)


def test_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[site\n"), use_env=False)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")


def test_duplicate_source_names_are_refused(tmp_path: Path) -> None:
    text = GOOD + GOOD[GOOD.index("[[sources]]"):]
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), use_env=False)
    assert info.value.problems == [("sources", "source names must be unique; 'ipo' is sources[0].name and "
                                               "sources[1].name")]


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


# --- issue 11: configuration mistakes that opened doors -------------------------------------------------


@pytest.mark.parametrize("token", ["", "short-token", "   ", "has a space in it, long enough"])
def test_an_empty_short_or_spaced_token_is_an_error_naming_the_key(tmp_path: Path, token: str) -> None:
    """`token = ""` used to turn authentication off: every weak token is refused, and never echoed."""
    path = write(tmp_path, GOOD + f'\n[http]\ntoken = "{token}"\n')
    with pytest.raises(ConfigError) as exc:
        load_config(path, use_env=False)
    assert exc.value.problems[0][0] == "http.token"
    assert "16" in str(exc.value) or "printable ASCII" in str(exc.value)
    if token.strip():
        assert token not in str(exc.value)


def test_a_long_enough_token_loads(tmp_path: Path) -> None:
    token = "0123456789abcdef"
    s = load_config(write(tmp_path, GOOD + f'\n[http]\ntoken = "{token}"\n'), use_env=False)
    assert s.http.token is not None and s.http.token.get_secret_value() == token


@pytest.mark.parametrize(("content", "says"), [
    (b"\n", "empty token"),  # what `install -m 0600 /dev/stdin` gives after a stray Ctrl-D
    (b"", "empty token"),
    (b"abc123\n", "too short"),
    (b"\xff\xfe0123456789abcdef\n", "not text"),
])
def test_a_token_file_that_is_empty_or_short_is_an_error_naming_the_file_not_its_content(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, says: str) -> None:
    token_file = tmp_path / "http-token"
    token_file.write_bytes(content)
    path = write(tmp_path, GOOD + f'\n[http]\ntoken_file = "{token_file}"\n')
    assert main(["check-config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "http.token_file" in err and str(token_file) in err and says in err
    assert "abc123" not in err


def test_a_token_file_that_cannot_be_read_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD + f'\n[http]\ntoken_file = "{tmp_path / "missing"}"\n')
    assert main(["check-config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "http.token_file" in err and "file not found" in err and "Traceback" not in err
    (tmp_path / "a-folder").mkdir()
    path = write(tmp_path, GOOD + f'\n[http]\ntoken_file = "{tmp_path / "a-folder"}"\n')
    assert main(["check-config", str(path)]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_a_systemd_credential_absent_outside_the_service_is_a_warning(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """check-config run by hand cannot see /run/credentials/smdrd.service/ (it exists while the service runs):
    it says so instead of failing a correct file; inside the service the daemon checks it for real."""
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    credential = "/run/credentials/smdrd-test-absent.service/http-token"
    path = write(tmp_path, GOOD + f'\n[http]\ntoken_file = "{credential}"\n')
    assert main(["check-config", str(path)]) == 0
    err = capsys.readouterr().err
    assert "WARNING: http.token_file" in err and "only while the service runs" in err
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", "/run/credentials/smdrd-test-absent.service")
    assert main(["check-config", str(path)]) == 1
    assert "file not found" in capsys.readouterr().err


def test_token_and_token_file_together_are_an_error(tmp_path: Path) -> None:
    token_file = tmp_path / "http-token"
    token_file.write_text("0123456789abcdef\n")
    path = write(tmp_path, GOOD + f'\n[http]\ntoken = "0123456789abcdef"\ntoken_file = "{token_file}"\n')
    with pytest.raises(ConfigError, match="set one, not both"):
        load_config(path, use_env=False)


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("SMDRD_SOURCES", '[{"name": "pbx", ', "a JSON list of tables"),
    ("SMDRD_SOURCES", "pbx", "a JSON list of tables"),
    ("SMDRD_SITE__ACCESS_CODES", '["9"', "a JSON list"),
    ("SMDRD_TARIFF", "{currency: EUR}", "a JSON object"),
    ("SMDRD_MQTT", '{"password": "hunter2-not-shown"', "a JSON object"),
])
def test_malformed_json_in_an_environment_override_names_the_variable(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *,
        variable: str, value: str, expected: str) -> None:
    """Was a pydantic-settings traceback ("error parsing value for field"): now the variable and the shape."""
    monkeypatch.setenv(variable, value)
    path = write(tmp_path, GOOD)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.value.problems[0][0] == variable
    assert "not valid JSON" in str(exc.value) and expected in str(exc.value)
    assert "hunter2" not in str(exc.value)
    assert main(["check-config", str(path)]) == 1
    err = capsys.readouterr().err
    assert variable in err and "Traceback" not in err


@pytest.mark.parametrize(("peers", "says"), [
    (["10.0.0.5/0"], "host bits set"),
    (["10.0.0.5/24"], "'10.0.0.0/24'"),
    (["0.0.0.0/0"], "allows every address"),
    (["::/0"], "allows every address"),
    (["10.0.0.1", "１０.0.0.2"], "expected an IP address"),
])
def test_allowed_peers_that_would_allow_everyone_or_are_not_exact_are_errors(
        tmp_path: Path, peers: list[str], says: str) -> None:
    """`10.0.0.5/0` was read non-strictly as 0.0.0.0/0: everyone. Host bits and /0 are now errors."""
    quoted = ", ".join(f'"{p}"' for p in peers)
    path = write(tmp_path, GOOD + f'\n[[sources]]\nname = "in"\nkind = "tcp-server"\nformat = "avaya-ipo"\n'
                                  f'allowed_peers = [{quoted}]\n')
    with pytest.raises(ConfigError) as exc:
        load_config(path, use_env=False)
    assert exc.value.problems[0][0] == "sources[1].allowed_peers"
    assert says in str(exc.value)


def test_allowed_peers_networks_and_addresses_load(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD + '\n[[sources]]\nname = "in"\nkind = "tcp-server"\nformat = "avaya-ipo"\n'
                                  'allowed_peers = [" 10.0.0.5", "10.1.0.0/16", "fd00::/8"]\n')
    src = load_config(path, use_env=False).sources[1]
    assert src.kind == "tcp-server"
    assert src.peer_allowed("10.0.0.5") and src.peer_allowed("10.1.2.3") and src.peer_allowed("fd00::1")
    assert not src.peer_allowed("10.0.0.6") and not src.peer_allowed("192.0.2.1")


FULL_WIDTH = "１２"  # FULLWIDTH DIGIT ONE, FULLWIDTH DIGIT TWO: str.isdigit() and Decimal() both take them


@pytest.mark.parametrize(("extra", "key"), [
    (f'\n[tariff]\n[[tariff.rules]]\nprefixes = ["44"]\nrate = "{FULL_WIDTH}"\n', "tariff.rules[0].rate"),
    ('\n[tariff]\n[[tariff.rules]]\nprefixes = ["44"]\nrate = "٠.٥"\n', "tariff.rules[0].rate"),
    (f'\n[tariff]\n[[tariff.rules]]\nprefixes = ["44"]\nconnection_fee = "0.{FULL_WIDTH}"\n',
     "tariff.rules[0].connection_fee"),
    (f'\n[tariff]\n[[tariff.rules]]\nprefixes = ["{FULL_WIDTH}"]\n', "tariff.rules[0].prefixes"),
    (f'\n[alerts.expensive_call]\ncost = "{FULL_WIDTH}"\n', "alerts.expensive_call.cost"),
    ('\n[alerts.business_hours]\nhours = "０８:00-18:00"\n', "alerts.business_hours.hours"),
    (f'\n[alerts.high_risk]\nprefixes = ["+{FULL_WIDTH}"]\n', "alerts.high_risk.prefixes"),
    (f'\n[[sources]]\nname = "in"\nkind = "tcp-server"\nformat = "avaya-ipo"\nlisten = "127.0.0.1:{FULL_WIDTH}"\n',
     "sources[1].listen"),
    (f'\n[site]\narea_code = "{FULL_WIDTH}"\n', "site.area_code"),
    ('\n[site]\narea_code = "O2O"\n', "site.area_code"),  # letter O for zero: every local number was wrong
    ('\n[site]\naccess_codes = ["x9"]\n', "site.access_codes"),
])
def test_only_ascii_digits_are_numbers(tmp_path: Path, extra: str, key: str) -> None:
    """A rate of `１２` was accepted as 12: a number no editor shows as odd. Only ASCII digits are numbers."""
    text = GOOD.replace("[site]\n", "[site]\n" + extra.split("[site]\n", 1)[1]) if "[site]" in extra else GOOD + extra
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, text), use_env=False)
    assert exc.value.problems[0][0] == key, exc.value


def test_full_width_digits_in_environment_numbers_are_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMDRD_DATABASE__BATCH_ROWS", FULL_WIDTH)
    with pytest.raises(ConfigError, match=r"database\.batch_rows"):
        load_config(write(tmp_path, GOOD))


def test_full_width_digits_in_a_rate_deck_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for row, column in ((f"UK,44,{FULL_WIDTH}", "rate"), (f"UK,44,0.02,{FULL_WIDTH}", "billing_unit")):
        (tmp_path / "rates.csv").write_text(f"name,prefix,rate,billing_unit\nOK,48,0.01,60\n{row}\n",
                                            encoding="utf-8")
        path = write(tmp_path, GOOD + '\n[tariff]\ndecks = ["rates.csv"]\n')
        assert main(["check-config", str(path)]) == 1
        err = capsys.readouterr().err
        assert "rates.csv:3" in err and column in err


def test_a_rate_deck_cell_over_the_csv_limit_is_a_clear_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A cell over 128 KiB (csv's field_size_limit) was a _csv.Error traceback: now the file and the line."""
    (tmp_path / "rates.csv").write_text("name,prefix,rate\nUK,44,0.02\n\"" + "x" * 200_000 + "\",45,0.01\n")
    path = write(tmp_path, GOOD + '\n[tariff]\ndecks = ["rates.csv"]\n')
    assert main(["check-config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "rates.csv:3" in err and "a cell longer than" in err and "Traceback" not in err


@pytest.mark.parametrize(("content", "says"), [
    (b"a = " + b"[" * 50_000 + b"]" * 50_000 + b"\n", "nested too deeply"),
    (b'[site]\nname = "\xff"\n', "not UTF-8 text (line 2)"),
])
def test_a_config_file_python_cannot_parse_is_a_clear_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, says: str) -> None:
    path = tmp_path / "smdrd.toml"
    path.write_bytes(content)
    assert main(["check-config", str(path)]) == 1
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err
    assert main(["check-config", str(tmp_path)]) == 1
    assert "is a folder" in capsys.readouterr().err


OPEN_SERVER = '\n[[sources]]\nname = "in"\nkind = "tcp-server"\nformat = "avaya-ipo"\nlisten = "{listen}"\n{peers}'


@pytest.mark.parametrize(("listen", "peers", "warned"), [
    ("0.0.0.0:1150", "", True),
    ("[::]:1150", "", True),
    ("192.0.2.1:1150", "", True),
    ("0.0.0.0:1150", 'allowed_peers = ["10.0.0.5"]\n', False),
    ("127.0.0.1:1150", "", False),
    ("[::1]:1150", "", False),
])
def test_check_config_warns_of_a_tcp_server_open_to_every_host(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], listen: str, peers: str, warned: bool) -> None:
    path = write(tmp_path, GOOD + OPEN_SERVER.format(listen=listen, peers=peers))
    path.chmod(0o644)
    assert main(["check-config", str(path)]) == 0
    err = capsys.readouterr().err
    assert ("WARNING: sources[1].allowed_peers: empty on" in err) is warned
    assert main(["check-config", "--strict", str(path)]) == (1 if warned else 0)


def test_check_config_warns_of_a_file_others_can_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A config file writable by group or others decides where calls go: loud in check-config (exit 0:
    refusing would stop a site collecting calls at its next restart; --strict refuses)."""
    path = write(tmp_path, GOOD)
    path.chmod(0o644)
    assert main(["check-config", "--strict", str(path)]) == 0
    assert "WARNING" not in capsys.readouterr().err
    for mode, who in ((0o664, "group"), (0o646, "others"), (0o666, "group and others")):
        path.chmod(mode)
        assert main(["check-config", str(path)]) == 0
        err = capsys.readouterr().err
        assert f"WARNING: the file is writable by {who} (mode {mode:04o})" in err
        assert main(["check-config", "--strict", str(path)]) == 1
        capsys.readouterr()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_check_config_warns_of_a_file_owned_by_another_user(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD)
    path.chmod(0o644)
    os.chown(path, 54321, -1)
    assert main(["check-config", str(path)]) == 0
    assert "WARNING: the file is owned by user id 54321" in capsys.readouterr().err


def test_check_config_warns_of_an_inline_token_every_user_can_read(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD + '\n[http]\ntoken = "0123456789abcdef"\n')
    path.chmod(0o644)
    assert main(["check-config", str(path)]) == 0
    err = capsys.readouterr().err
    assert "WARNING: http.token: the token is in a file every local user can read" in err
    assert "0123456789abcdef" not in err
    path.chmod(0o640)
    assert main(["check-config", str(path)]) == 0
    assert "WARNING" not in capsys.readouterr().err
