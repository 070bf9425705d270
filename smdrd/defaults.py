"""Defaults the command line needs before any configuration is read.

Kept free of pydantic and of every feature, so that ``smdrd --help`` does not pay for the configuration's models.
"""

from __future__ import annotations

from pathlib import Path

#: the configuration file when neither ``--config`` nor ``$SMDRD_CONFIG`` names one.
DEFAULT_CONFIG_PATH = Path("/etc/smdrd/smdrd.toml")
