"""``smdrd run``: run the daemon."""

from __future__ import annotations

import argparse

from smdrd.cli._common import add_config_argument, service_settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run the daemon (collect, journal, parse, rate) until SIGTERM",
                       description="Run the daemon until SIGTERM or SIGINT. SIGHUP reloads the configuration.")
    add_config_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from smdrd.daemon import run_daemon

    settings, path = service_settings(args, "to try smdrd without one: smdrd demo")
    return run_daemon(settings, path)
