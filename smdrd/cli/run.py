"""``smdrd run``: run the daemon."""

from __future__ import annotations

import argparse

import structlog

from smdrd.cli._common import add_config_argument, config_named, config_path, no_config_message
from smdrd.config import load_config
from smdrd.errors import SmdrdError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run the daemon (collect, journal, parse, rate) until SIGTERM",
                       description="Run the daemon until SIGTERM or SIGINT. SIGHUP reloads the configuration.")
    add_config_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from smdrd.daemon import run_daemon
    from smdrd.logs import configure

    if not config_named(args):
        raise SmdrdError(f"{no_config_message(args)}; to try smdrd without one: smdrd demo")
    path = config_path(args)
    settings = load_config(path)
    configure(settings.logging.level, settings.logging.format)
    from smdrd.config import config_file_warnings

    for key, msg in config_file_warnings(path, settings):  # loud, but no refusal: see config_file_warnings
        structlog.get_logger("smdrd.config").warning("config.insecure_file", config=str(path), key=key,
                                                     problem=msg)
    return run_daemon(settings, path)
