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
        origins: where each problem's value came from when not from ``path`` (``environment:
            SMDRD_SITE__TIMEZONE``), else ``None``; as long as ``problems``.
    """

    def __init__(self, path: str | None, problems: list[tuple[str, str]],
                 origins: list[str | None] | None = None) -> None:
        self.path = path
        self.problems = problems
        self.origins = origins if origins is not None else [None] * len(problems)
        lines = []
        for (key, msg), origin in zip(problems, self.origins, strict=True):
            where = origin or path or "environment"
            lines.append(f"{where}: {key}: {msg}" if key else f"{where}: {msg}")
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


def public_reason(exc: BaseException | None) -> str:
    """``exc`` as a reason a person can act on, for public pages: never the exception's text, which may carry a
    peer's address, a path or a secret (a `UnicodeEncodeError` quotes the password it could not encode)."""
    import errno
    import os
    import socket
    import ssl

    if exc is None:
        return "closed by the other side"
    if isinstance(exc, socket.gaierror):
        return "host name not found"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return "connection lost"
    if isinstance(exc, ssl.SSLError):
        return "TLS error"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "not found"
    if isinstance(exc, UnicodeError):
        return "text not representable in the configured encoding (check passwords and encodings)"
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "host unreachable"
    if isinstance(exc, OSError) and exc.errno:
        return os.strerror(exc.errno).lower()
    if isinstance(exc, ConfigError):
        return "configuration error (see the log)"
    return f"{type(exc).__name__} (see the log)"
