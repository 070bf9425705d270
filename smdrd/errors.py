"""The exception hierarchy: every error smdrd raises on purpose derives from `SmdrdError`.

Errors a user can cause (a config mistake, a bad input line) carry the file, key or line and what was
expected, as attributes, so the CLI and the logs can say it without parsing the message.
"""

from __future__ import annotations


class SmdrdError(Exception):
    """Root of smdrd's own errors."""


class ConfigError(SmdrdError):
    """The configuration is invalid.

    Attributes:
        path: the config file (or ``None`` when the problem is in the environment only).
        problems: one ``(key, message)`` pair per problem, ``key`` dotted (``sources[0].port``).
    """

    def __init__(self, path: str | None, problems: list[tuple[str, str]]) -> None:
        self.path = path
        self.problems = problems
        where = path or "<environment>"
        lines = [f"{where}: {key}: {msg}" if key else f"{where}: {msg}" for key, msg in problems]
        super().__init__("\n".join(lines))


class ParseError(SmdrdError):
    """A line could not be turned into a call record.

    Attributes:
        format: the parser's format name.
        field: the field that was wrong (``None`` when the line as a whole is).
        reason: what was expected.
    """

    def __init__(self, format: str, reason: str, field: str | None = None) -> None:
        self.format = format
        self.field = field
        self.reason = reason
        where = f"{format}: field {field!r}" if field else format
        super().__init__(f"{where}: {reason}")


class TariffError(SmdrdError):
    """A tariff (rate deck or inline rules) is invalid; says which file and line."""
