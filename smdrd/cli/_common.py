"""Helpers shared by the command modules."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from smdrd.config import DEFAULT_CONFIG_PATH, Settings, load_config


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", type=Path, default=None,
        help=f"the TOML configuration file (default: $SMDRD_CONFIG or {DEFAULT_CONFIG_PATH})",
    )


def config_path(args: argparse.Namespace) -> Path:
    """The configuration file named on the command line, in ``$SMDRD_CONFIG``, or the default."""
    if args.config is not None:
        return Path(args.config)
    env = os.environ.get("SMDRD_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG_PATH


def settings_from(args: argparse.Namespace, *, required: bool = True) -> tuple[Settings, Path | None]:
    """Load the configuration for a command; without ``required``, a missing default file means defaults."""
    path = config_path(args)
    if not required and args.config is None and not path.exists():
        return load_config(None), None
    return load_config(path), path
