"""Every command of the README's command table, run as a user runs it, with the ordinary mistakes of a first hour:
a file that is not there, a flag that does not exist, no configuration at all. Each must end with one clear line
on stderr and a non-zero exit, never a traceback (issue 18, item 4 and its acceptance test).

The commands are read from the README's table, so a command added there without a case here fails the test.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
MISSING = "/nonexistent/smdrd-test/missing"
ROOT = Path(__file__).resolve().parent.parent

#: command -> the arguments that name a file that does not exist. ``None``: the command takes no file.
MISSING_FILE: dict[str, list[str] | None] = {
    "run": ["--config", f"{MISSING}.toml"],
    "central": ["--config", f"{MISSING}.toml"],
    "demo": None,  # its database and folder are created
    "check-config": [f"{MISSING}.toml"],
    "import": ["--format", "avaya-ipo", "--database", "{tmp}/i.db", f"{MISSING}.smdr"],
    "parse": ["--format", "avaya-ipo", f"{MISSING}.smdr"],
    "formats": None,
    "detect": [f"{MISSING}.smdr"],
    "simulate": None,
    "rate": ["00441234567890", "--duration", "60", "--country", "GB", "--rules", f"{MISSING}.csv"],
    "rerate": ["--database", f"{MISSING}.db"],
    "reparse": ["--database", f"{MISSING}.db"],
    "report": ["extensions", "--database", f"{MISSING}.db"],
    "export": ["--from", "2026-01-01", "--to", "2026-01-31", "--format", "csv", "--database", f"{MISSING}.db"],
    "backup": ["{tmp}/copy.db", "--database", f"{MISSING}.db"],
    "restore": [f"{MISSING}.db", "--database", "{tmp}/r.db"],
    "prune": ["--database", f"{MISSING}.db"],
    "errors": ["--database", f"{MISSING}.db"],
    "user": ["list", "--database", f"{MISSING}.db"],
    "tariff": ["import", f"{MISSING}.csv", "--database", "{tmp}/t.db"],
    "directory": ["import", f"{MISSING}.csv", "--database", "{tmp}/d.db"],
}

#: commands that read the configuration: without one (no --config, no $SMDRD_CONFIG, no default file) they refuse.
NEEDS_CONFIG: dict[str, list[str]] = {
    "run": [],
    "central": [],
    "import": ["--format", "avaya-ipo", "{tmp}/calls.smdr"],
    "rate": ["00441234567890", "--duration", "60"],
    "rerate": [],
    "reparse": [],
    "report": ["extensions"],
    "export": ["--from", "2026-01-01", "--to", "2026-01-31", "--format", "csv"],
    "backup": ["{tmp}/copy.db"],
    "restore": ["{tmp}/copy.db"],
    "prune": [],
    "errors": [],
    "user": ["list"],
    "tariff": ["export"],
    "directory": ["export"],
}

#: the least each command needs to get past its required arguments, so the bad flag is what gets reported.
REQUIRED: dict[str, list[str]] = {
    **{command: [] for command in MISSING_FILE}, **NEEDS_CONFIG,
    "check-config": ["smdrd.toml"], "parse": ["--format", "avaya-ipo"], "detect": ["calls.smdr"],
    "simulate": ["--format", "avaya-ipo"],
}

#: (command, case) pairs that still print a traceback, with the reason; marked xfail (non-strict).
OWNED_ELSEWHERE: dict[tuple[str, str], str] = {}


def documented_commands() -> list[str]:
    """The commands of the README's "Command line" table, in order (``smdrd formats`` / ``smdrd detect FILE``
    are two)."""
    section = README.read_text(encoding="utf-8").split("## Command line", 1)[1].split("\n## ", 1)[0]
    names: list[str] = []
    for row in section.splitlines():
        if row.startswith("| `smdrd"):
            cell = row.split(" | ")[0]
            names += [m for m in dict.fromkeys(re.findall(r"`smdrd ([a-z-]+)", cell)) if m not in names]
    return names


def smdrd(args: list[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMDRD_")}
    env["HOME"] = str(tmp)
    return subprocess.run([sys.executable, "-m", "smdrd", *(a.replace("{tmp}", str(tmp)) for a in args)],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=60, check=False,
                          stdin=subprocess.DEVNULL)


def assert_one_clear_line(result: subprocess.CompletedProcess[str], *, mentions: str = "") -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode != 0, (result.returncode, result.stdout, result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("smdrd"), lines[0]  # says who is speaking
    assert mentions in lines[0], (mentions, lines[0])


#: the commands the README documents; each needs its cases above (a case may come before its command's row).
DOCUMENTED = documented_commands()


def _mark(command: str, case: str) -> list[pytest.MarkDecorator]:
    reason = OWNED_ELSEWHERE.get((command, case))
    return [pytest.mark.xfail(reason=reason, strict=False)] if reason else []


def test_the_table_has_a_case_for_every_command() -> None:
    """A command documented in the README's table but missing here would escape the test below."""
    assert [command for command in DOCUMENTED if command not in MISSING_FILE] == []


@pytest.mark.parametrize("command", [pytest.param(c, marks=_mark(c, "missing")) for c, a in MISSING_FILE.items()
                                     if a is not None and c in DOCUMENTED])
def test_a_missing_file_is_one_line_naming_it(command: str, tmp_path: Path) -> None:
    """`smdrd detect /nonexistent` printed a FileNotFoundError traceback; `smdrd import` printed
    `smdrd: FileNotFoundError: [Errno 2]`; a report on a missing database created it."""
    args = MISSING_FILE[command]
    assert args is not None
    (tmp_path / "copy.db").write_bytes(b"")
    result = smdrd([command, *args], tmp_path)
    assert_one_clear_line(result, mentions=MISSING)
    assert not Path(MISSING).parent.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.db"], "a mistake must leave nothing behind"


@pytest.mark.parametrize("command", [pytest.param(c, marks=_mark(c, "flag")) for c in MISSING_FILE
                                     if c in DOCUMENTED])
def test_a_bad_flag_is_one_line_naming_it(command: str, tmp_path: Path) -> None:
    result = smdrd([command, *REQUIRED[command], "--no-such-flag"], tmp_path)
    assert_one_clear_line(result, mentions="--no-such-flag")
    assert result.returncode == 2
    assert f"smdrd {command} --help" in result.stderr  # where to look next


def test_an_unknown_command_is_one_line(tmp_path: Path) -> None:
    result = smdrd(["imprt"], tmp_path)
    assert_one_clear_line(result, mentions="imprt")


@pytest.mark.skipif(Path("/etc/smdrd/smdrd.toml").exists(), reason="this machine has a default configuration")
@pytest.mark.parametrize("command", [pytest.param(c, marks=_mark(c, "no-config")) for c in NEEDS_CONFIG
                                     if c in DOCUMENTED])
def test_no_configuration_is_one_line_saying_what_to_do(command: str, tmp_path: Path) -> None:
    """`smdrd import` with no configuration wrote to /var/lib/smdrd/smdrd.db (as root, UTC, no tariff) without a
    word, while `smdrd report` refused: every command refuses the same way, saying how to give one."""
    (tmp_path / "calls.smdr").write_bytes(b"")
    (tmp_path / "copy.db").write_bytes(b"")
    result = smdrd([command, *NEEDS_CONFIG[command]], tmp_path)
    assert_one_clear_line(result, mentions="/etc/smdrd/smdrd.toml")
    assert "--config" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calls.smdr", "copy.db"], "nothing may be written"


@pytest.mark.parametrize(("args", "mentions"), [
    (["simulate", "--format", "avaya-ipo", "--count", "1", "--listen", "127.0.0.1:99999"], "--listen"),
    (["simulate", "--format", "avaya-ipo", "--count", "1", "--timezone", "Mars/Base"], "--timezone"),
    (["simulate", "--format", "avaya-ipo", "--count", "1", "--start", "soon"], "--start"),
    (["import", "--format", "avaya-ipo", "--database", "{tmp}", "{tmp}/copy.db"], "is a folder"),
    (["import", "--format", "avaya-ipo", "--encoding", "klingon", "{tmp}/copy.db"], "--encoding"),
    (["demo", "--format", "no-such-pbx", "--count", "1", "--database", "{tmp}/demo.db"], "no-such-pbx"),
    # --batch 0 made the import spin for ever
    (["import", "--format", "avaya-ipo", "--batch", "0", "--database", "{tmp}/x.db", "{tmp}/copy.db"], "--batch"),
    (["simulate", "--format", "avaya-ipo", "--count", "-3"], "--count"),
    # these printed pydantic's link to its documentation, not what was wrong
    (["rate", "123", "--duration", "5", "--country", "GB", "--currency", "EURO"], "--currency"),
    (["rate", "123", "--duration", "5", "--country", "GB", "--decimals", "99"], "--decimals"),
])
def test_a_bad_value_is_one_line_naming_it(args: list[str], mentions: str, tmp_path: Path) -> None:
    """`simulate --listen 127.0.0.1:99999` printed a ValueError traceback; `demo --format` of an unknown format
    started a daemon that never stopped."""
    (tmp_path / "copy.db").write_bytes(b"this is no database")
    assert_one_clear_line(smdrd(args, tmp_path), mentions=mentions)


@pytest.mark.parametrize(("command", "example"), [("run", "config/smdrd.example.toml"),
                                                  ("central", "config/central.example.toml")])
def test_a_service_without_its_file_points_at_its_own_example(command: str, example: str, tmp_path: Path) -> None:
    """`smdrd central` is configured from config/central.example.toml, not the site's example."""
    result = smdrd([command, "--config", f"{MISSING}.toml"], tmp_path)
    assert_one_clear_line(result, mentions=example)
    assert (ROOT / example).is_file()


def test_an_http_address_in_use_names_the_file_and_the_key(tmp_path: Path) -> None:
    """`smdrd run` whose `[http] listen` port is taken (another smdrd, another program) says so in one line
    naming the configuration file and the key, not aiohttp's bare socket error."""
    import socket

    from smdrd.testing import config_toml, daemon_config

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "smdrd.toml"
        config.write_text(config_toml(daemon_config(tmp_path, http={"listen": f"127.0.0.1:{port}"})))
        done = subprocess.run([sys.executable, "-m", "smdrd", "run", "--config", str(config)], capture_output=True,
                              text=True, timeout=60, check=False)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"smdrd run: {config}: [http] listen = \"127.0.0.1:{port}\": cannot listen there")
    assert "in use" in last and "Traceback" not in done.stderr
