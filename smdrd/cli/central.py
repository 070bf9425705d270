"""``smdrd central``: run the central collector (`smdrd.central`) until SIGTERM."""

from __future__ import annotations

import argparse

from smdrd.cli._common import add_config_argument, service_settings

HELP = "store what every site publishes ([mqtt] publish_journal) into one PostgreSQL store, until SIGTERM"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "central", help=HELP,
        description="Subscribe at [mqtt]'s broker to every site's journal entries (<journal_prefix>/+/journal/+, "
        "QoS 1, a persistent session named [central] client_id) and store them into [database] url "
        "(PostgreSQL), each entry once: a re-delivered entry adds nothing, and a call's site is part of its "
        "identity. An entry is acknowledged to the broker only after PostgreSQL committed it. The sites' alerts "
        "([central] alert_topics) are kept once each in the central alerts inbox; with an [http] section it "
        "serves /metrics and /healthz. Reports over the central store take --site. See docs/central.md.")
    add_config_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from smdrd.central import run_central

    settings, path = service_settings(args, "smdrd central needs [database] url and [mqtt] host",
                                      example="config/central.example.toml")
    return run_central(settings, path)
