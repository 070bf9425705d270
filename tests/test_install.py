"""Installation as docs/install.md describes it: build a wheel, install it with scripts/install.sh into a fresh
virtualenv, and use the installed ``smdrd`` from outside the checkout.

How it stays offline and leaves the shared checkout alone:
- The wheel is built from a copy of the tree (``pip wheel`` writes ``build/`` and ``*.egg-info`` into the folder
  it builds), keeping the ``smdrd/parsers -> ../parsers`` symlink as a symlink, as a git checkout has it.
  ``pip wheel`` uses build isolation with the build requirements from pip's configured index.
- scripts/install.sh makes the virtualenv from the base interpreter of the project's .venv and installs the
  wheel with ``PIP_OPTS=--no-deps``; the dependencies come from the project's .venv through a ``.pth`` file
  that lists a folder of links to its packages, leaving out every smdrd distribution there (the editable
  install), so the only smdrd the new venv can import, and the only one whose entry points it sees, is the
  wheel's.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import sysconfig
import time
import tomllib
import zipfile
from pathlib import Path

import pytest

from smdrd import __version__
from smdrd.testing import free_port

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def run(*argv: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout, check=False)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without anything that points Python or smdrd at the checkout."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SMDRD_", "PYTHON", "VIRTUAL_ENV")) and k != "NOTIFY_SOCKET"}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheel")
    src = folder / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "var"))
    assert (src / "smdrd" / "parsers").is_symlink()
    out = folder / "dist"
    proc = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", out, src)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (whl,) = out.glob("smdrd-*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """scripts/install.sh run with a prefix and a config folder in a temporary folder."""
    folder = tmp_path_factory.mktemp("install")
    prefix, etc = folder / "opt" / "smdrd", folder / "etc" / "smdrd"
    base_python = getattr(sys, "_base_executable", sys.executable)
    # The venv is made first, only so the dependency .pth can go in before install.sh runs pip in it.
    proc = run(base_python, "-m", "venv", prefix)
    assert proc.returncode == 0, proc.stderr
    deps = folder / "deps"
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.lower().startswith(("smdrd", "__editable__", "_distutils_hack", "distutils-")):
            (deps / entry.name).symlink_to(entry)
    site = Path(run(prefix / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
                .stdout.strip())
    (site / "zz-project-deps.pth").write_text(f"{deps}\n")
    env = clean_env(PIP_OPTS="--no-deps --no-index", PYTHON=base_python)
    proc = run("sh", ROOT / "scripts" / "install.sh", "--prefix", prefix, "--etc", etc, "--no-systemd",
               "--bin-dir", folder / "bin", wheel, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (folder / "install.out").write_text(proc.stdout)
    return {"prefix": prefix, "etc": etc, "smdrd": prefix / "bin" / "smdrd", "folder": folder,
            "output": folder / "install.out", "bin": folder / "bin"}


def test_the_wheel_ships_the_parsers_as_smdrd_parsers(wheel: Path) -> None:
    """`parsers/` reaches users as `smdrd.parsers` (through the symlink), never as a top-level `parsers`, with
    every entry point and the py.typed marker."""
    names = zipfile.ZipFile(wheel).namelist()
    assert "smdrd/parsers/avaya_ipo.py" in names
    assert "smdrd/py.typed" in names
    assert "smdrd/console/templates/reports.html" in names  # the reports page, served by an installed daemon
    assert "smdrd/data/demo-rates.csv" in names  # the demo's tariff
    assert not [n for n in names if n.startswith("parsers/")]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = pyproject["project"]["entry-points"]["smdrd.parsers"]
    for target in declared.values():
        assert target.split(":")[0].replace(".", "/") + ".py" in names, target
    (meta,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(meta).decode()
    assert "[smdrd.parsers]" in text and "smdrd = smdrd.cli:main" in text


def test_installed_smdrd_is_the_wheels_and_prints_its_version(installed: dict[str, Path]) -> None:
    proc = run(installed["smdrd"], "--version", env=clean_env())
    assert proc.returncode == 0 and proc.stdout.strip() == f"smdrd {__version__}"
    where = run(installed["prefix"] / "bin" / "python", "-c", "import smdrd; print(smdrd.__file__)",
                env=clean_env(), cwd=installed["folder"])
    assert where.stdout.strip().startswith(str(installed["prefix"])), where.stdout


def test_install_sh_wrote_a_valid_config_that_check_config_passes(installed: dict[str, Path]) -> None:
    """install.sh copies the example to the config folder; it validates, as does the repository's example."""
    config = installed["etc"] / "smdrd.toml"
    assert config.read_text() == (ROOT / "config" / "smdrd.example.toml").read_text()
    assert (installed["etc"] / "credentials").stat().st_mode & 0o077 == 0, "credentials must be private"
    for path in (config, ROOT / "config" / "smdrd.example.toml"):
        proc = run(installed["smdrd"], "check-config", path, env=clean_env(), cwd=installed["folder"])
        assert proc.returncode == 0, proc.stderr
        assert ": OK with" in proc.stdout  # warnings: the placeholder, and group-writable in a checkout (umask 002)
        # the file is valid, but its PBX address is the example's placeholder: said, not silently accepted
        assert "sources[0].host: 192.0.2.10 is a documentation address" in proc.stderr


def test_install_sh_links_smdrd_and_prints_next_steps_without_systemd(installed: dict[str, Path]) -> None:
    """The README's `smdrd check-config ...` runs as typed after install.sh (a link on root's PATH), and
    --no-systemd still says what to do next (issue 18, item 10)."""
    link = installed["bin"] / "smdrd"
    assert link.is_symlink() and link.resolve() == installed["smdrd"].resolve()
    out = installed["output"].read_text()
    assert "Next:" in out
    assert f"check-config {installed['etc'] / 'smdrd.toml'}" in out
    assert f"run --config {installed['etc'] / 'smdrd.toml'}" in out


def test_the_wheel_declares_its_license_as_an_spdx_expression(wheel: Path) -> None:
    """`license = \"MIT\"`, not the table setuptools warns about three times at every build."""
    names = zipfile.ZipFile(wheel).namelist()
    (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    assert "License-Expression: MIT" in zipfile.ZipFile(wheel).read(meta).decode()


def test_run_without_a_config_names_the_missing_file(installed: dict[str, Path]) -> None:
    """A first `smdrd run` on a box without /etc/smdrd/smdrd.toml says where it looked and what to do."""
    missing = installed["folder"] / "nowhere" / "smdrd.toml"
    proc = run(installed["smdrd"], "run", "--config", missing, env=clean_env(), timeout=30)
    assert proc.returncode != 0
    assert str(missing) in proc.stderr and "smdrd.example.toml" in proc.stderr
    if not Path("/etc/smdrd/smdrd.toml").exists():
        proc = run(installed["smdrd"], "run", env=clean_env(), timeout=30)
        assert proc.returncode != 0 and "/etc/smdrd/smdrd.toml" in proc.stderr
    proc = run(installed["smdrd"], "run", env=clean_env(SMDRD_CONFIG=str(missing)), timeout=30)
    assert proc.returncode != 0 and str(missing) in proc.stderr


def test_formats_lists_every_format_of_the_installed_wheel(installed: dict[str, Path]) -> None:
    proc = run(installed["smdrd"], "formats", env=clean_env(), cwd=installed["folder"])
    assert proc.returncode == 0, proc.stderr
    listed = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["smdrd.parsers"]
    assert sorted(listed) == sorted(declared), "a format is missing or listed twice"
    assert "cannot be loaded" not in proc.stdout


def test_the_installed_daemon_journals_a_call(installed: dict[str, Path]) -> None:
    """The installed entry point runs the daemon: a pushed line is stored, SIGTERM exits 0."""
    port = free_port()
    db = installed["folder"] / "state" / "smdrd.db"
    config = installed["folder"] / "run.toml"
    config.write_text(f'[site]\ntimezone = "Europe/Warsaw"\ncountry = "PL"\n[http]\nlisten = "127.0.0.1:0"\n'
                      f'[[sources]]\nname = "pbx"\nkind = "tcp-server"\nformat = "avaya-ipo"\n'
                      f'listen = "127.0.0.1:{port}"\n')
    line = (b"2017/07/01 08:30:22,00:01:01,0,217,O,600988600,0600988600,,0,1000001,0,E217,GRZYBEK,T9005,"
            b"Line 5.0,0,0,,,,,,,,,,,U,GRZYBEK,,192.168.0.201,20806,192.168.0.201,20809")
    proc = subprocess.Popen([installed["smdrd"], "run", "--config", config], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=clean_env(SMDRD_DATABASE__PATH=str(db)))
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=0.2)
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "the daemon did not start"
                time.sleep(0.05)
        with sock:
            sock.sendall(line + b"\r\n")
        stored = 0
        while stored == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
            if db.exists():
                conn = sqlite3.connect(db)
                with contextlib.suppress(sqlite3.OperationalError):  # the schema may not be there yet
                    stored = conn.execute("SELECT count(*) FROM calls").fetchone()[0]
                conn.close()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out.decode()
    assert stored == 1


def test_install_sh_again_upgrades_in_place_and_installs_both_units(installed: dict[str, Path],
                                                                     wheel: Path) -> None:
    """Re-running install.sh (an upgrade) keeps the operator's smdrd.toml, and with systemd it writes the site's
    unit and the central collector's, both pointing at this prefix and config folder; the central collector's
    example config is installed beside (never as) central.toml and passes check-config (issue 17)."""
    config = installed["etc"] / "smdrd.toml"
    config.write_text(config.read_text() + "\n# edited by the operator\n")
    units = installed["folder"] / "units"
    proc = run("sh", ROOT / "scripts" / "install.sh", "--prefix", installed["prefix"], "--etc", installed["etc"],
               "--unit-dir", units, "--bin-dir", installed["bin"], wheel, env=clean_env(
                   PIP_OPTS="--no-deps --no-index", PYTHON=getattr(sys, "_base_executable", sys.executable)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert config.read_text().endswith("# edited by the operator\n")
    for name in ("smdrd.service", "smdrd-central.service"):
        text = (units / name).read_text()
        assert f"ExecStart={installed['prefix']}/bin/smdrd " in text and f"{installed['etc']}/" in text, name
        assert " /opt/smdrd/" not in text and " /etc/smdrd/" not in text, name  # no path left unmoved
    example = installed["etc"] / "central.toml.example"
    assert example.read_text() == (ROOT / "config" / "central.example.toml").read_text()
    assert not (installed["etc"] / "central.toml").exists()
    assert f"central --config {installed['etc'] / 'central.toml'}" in proc.stdout
    check = run(installed["smdrd"], "check-config", example, env=clean_env(), cwd=installed["folder"])
    assert check.returncode == 0 and "database postgresql://" in check.stdout, check.stdout + check.stderr
