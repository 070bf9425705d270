"""What every configuration section shares: a frozen model that refuses unknown keys, and small validators.

Each feature keeps its own section's schema beside it (``smdrd/sources/config.py``, ``smdrd/rating/config.py``...);
`smdrd.config` composes them into `~smdrd.config.Settings`. This module imports no feature, so any of them may
build on it without an import cycle.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Section", "ascii_digits", "parse_hostport"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def ascii_digits(text: str) -> bool:
    """True for ``0`` to ``9`` only: ``str.isdigit`` also takes full-width (``１２``), Arabic-Indic and other
    digits, which ``int()`` reads, so a value no editor shows as odd would pass as a number."""
    return text.isascii() and text.isdigit()


def parse_hostport(value: str, default_host: str = "0.0.0.0") -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``:port`` to ``(host, port)``."""
    host, sep, port = value.rpartition(":")
    if not sep or not ascii_digits(port) or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT (port 0 to 65535), got {value!r}")
    host = host.strip("[]") or default_host
    return host, int(port)
