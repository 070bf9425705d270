"""The ``[logging]`` section of `smdrd.logs`. `smdrd.config` composes it into `~smdrd.config.Settings`."""

from __future__ import annotations

from typing import Literal

from smdrd.section import Section

__all__ = ["LoggingConfig"]


class LoggingConfig(Section):
    """Log output: JSON lines when stdout is not a terminal, readable colour output when it is."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"
