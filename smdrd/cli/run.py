"""``smdrd run``: run the daemon."""

from __future__ import annotations

import argparse
import sys

import structlog

from smdrd import __version__
from smdrd.cli._common import add_config_argument, config_path
from smdrd.config import load_config
from smdrd.errors import ConfigError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run the daemon (collect, journal, parse, rate) until SIGTERM",
                       description="Run the daemon until SIGTERM or SIGINT. SIGHUP reloads the configuration.")
    add_config_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from smdrd.daemon import run_daemon
    from smdrd.logs import configure

    path = config_path(args)
    if not path.exists():
        print(f"smdrd {__version__}: no configuration file at {path}.\n"
              f"Write one from config/smdrd.example.toml (scripts/install.sh puts a copy in /etc/smdrd), "
              f"or pass --config FILE (or set SMDRD_CONFIG). To try smdrd without one: `smdrd demo`.",
              file=sys.stderr)
        return 2
    try:
        settings = load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure(settings.logging.level, settings.logging.format)
    from smdrd.config import config_file_warnings

    for key, msg in config_file_warnings(path, settings):  # loud, but no refusal: see config_file_warnings
        structlog.get_logger("smdrd.config").warning("config.insecure_file", config=str(path), key=key,
                                                     problem=msg)
    return run_daemon(settings, path)
