"""The ``[http]`` section of `smdrd.http`'s server, and its token (inline, or a file such as a systemd
credential). `smdrd.config` composes it into `~smdrd.config.Settings`."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator

from smdrd.errors import ConfigError
from smdrd.section import Section, parse_hostport

__all__ = [
    "CREDENTIALS_ROOT",
    "MAX_TOKEN_LENGTH",
    "MIN_TOKEN_LENGTH",
    "HttpConfig",
    "credential_absent_here",
    "http_token",
    "read_token_file",
    "tls_context",
    "tls_problem",
    "token_problem",
]


class HttpConfig(Section):
    """The daemon's HTTP server (metrics, health, reports); its bounds are apart from the PBX sources' (see
    docs/api.md): no client can hold descriptors, memory or threads the PBX path needs."""

    enabled: bool = True
    listen: str = "127.0.0.1:9464"
    token: SecretStr | None = None
    token_file: Path | None = None
    #: open HTTP connections at most; one more is answered 503 and closed at once, never queued.
    max_connections: int = Field(default=64, ge=1, le=4096)
    #: seconds a new connection has to send a complete request head (slowloris).
    head_timeout: float = Field(default=10.0, gt=0, le=300)
    #: seconds an idle keep-alive connection stays open after its last response.
    keepalive_timeout: float = Field(default=15.0, gt=0, le=3600)
    #: seconds a client may stop reading a response before it is disconnected and the response freed.
    write_timeout: float = Field(default=30.0, gt=0, le=3600)
    #: threads that run report queries (their own pool: never the one the journal and file sources use).
    report_workers: int = Field(default=2, ge=1, le=32)
    #: report requests running or waiting at once; one more is answered 503 with Retry-After.
    max_reports: int = Field(default=8, ge=1, le=1024)
    #: the largest file an admin may upload in the console, in MiB: a PBX log (``/upload``), a CSV deck
    #: (``/rates``) or directory (``/directory``); a larger one is refused while it arrives, and nothing of it is
    #: kept.
    max_upload_mb: int = Field(default=100, ge=1, le=10_240)
    #: mark the console's cookies ``Secure`` (sent over HTTPS only) even on a plain connection: set it when a
    #: reverse proxy terminates TLS in front of smdrd. A connection that is TLS itself always gets them.
    secure_cookies: bool = False
    #: serve HTTPS: a PEM certificate (followed by its chain) and its private key (not encrypted), both or
    #: neither. The console's cookies are then ``Secure``.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: reverse proxies (addresses or CIDR networks) whose ``X-Forwarded-For`` and ``X-Forwarded-Proto`` are
    #: believed: the client's address (sign-in throttling, the audit log) and whether it used HTTPS. Empty:
    #: those headers are ignored, from anyone.
    trusted_proxies: list[str] = Field(default_factory=list, max_length=256)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for entry in v:
            try:
                ipaddress.ip_network(entry.strip(), strict=False)
            except ValueError:
                raise ValueError(f"expected IP addresses or networks such as 10.0.0.5 or 10.0.0.0/24, got "
                                 f"{entry[:60]!r}") from None
        return v

    @field_validator("listen")
    @classmethod
    def _hostport(cls, v: str) -> str:
        parse_hostport(v, "127.0.0.1")
        return v

    @field_validator("token")
    @classmethod
    def _strong_token(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            problem = token_problem(v.get_secret_value())
            if problem is not None:
                raise ValueError(problem)
        return v

    @model_validator(mode="after")
    def _one_token(self) -> HttpConfig:
        if self.token is not None and self.token_file is not None:
            raise ValueError("token and token_file: set one, not both")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key: set both (HTTPS) or neither (plain HTTP)")
        return self


def _tls(http: HttpConfig) -> ssl.SSLContext | None:
    """Raises ValueError naming the file and what is wrong (never the key's content)."""
    if http.tls_cert is None or http.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    for path in (http.tls_cert, http.tls_key):
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            raise ValueError(f"cannot read {str(path)!r}: {(exc.strerror or type(exc).__name__).lower()}") from None
        except ValueError:
            raise ValueError(f"cannot read {str(path)!r}: not a valid path") from None
    try:  # an encrypted key gets an empty passphrase (and fails) instead of a prompt on the terminal
        context.load_cert_chain(http.tls_cert, http.tls_key, password=lambda: b"")
    except (ssl.SSLError, ValueError):
        raise ValueError(f"{str(http.tls_cert)!r} and {str(http.tls_key)!r} are not a PEM certificate and its "
                         f"private key (unencrypted), or they do not match") from None
    return context


def tls_problem(http: HttpConfig) -> str | None:
    """Why ``tls_cert`` and ``tls_key`` cannot serve HTTPS (None when they can, or when TLS is off)."""
    try:
        _tls(http)
    except ValueError as exc:
        return str(exc)
    return None


def tls_context(http: HttpConfig) -> ssl.SSLContext | None:
    """The server's TLS context (TLS 1.2 or later), or None for plain HTTP.

    Raises:
        ConfigError: the certificate or key cannot be read, or they are not a matching PEM pair.
    """
    try:
        return _tls(http)
    except ValueError as exc:
        raise ConfigError(None, [("http.tls_cert", str(exc))]) from None


#: the shortest HTTP token accepted: an empty or short token would let anyone read the calls.
MIN_TOKEN_LENGTH = 16
#: the longest (and the most of a token file read).
MAX_TOKEN_LENGTH = 4096


def token_problem(token: str) -> str | None:
    """Why ``token`` cannot protect the HTTP server (``None`` when it can); never repeats the token."""
    if not token:
        return (f"empty token (it would turn authentication off); expected at least {MIN_TOKEN_LENGTH} "
                f"characters (such as the output of `openssl rand -hex 32`), or no token key at all")
    if len(token) < MIN_TOKEN_LENGTH:
        return (f"token too short ({len(token)} characters); expected at least {MIN_TOKEN_LENGTH} "
                f"(such as the output of `openssl rand -hex 32`)")
    if len(token) > MAX_TOKEN_LENGTH:
        return f"token too long; expected at most {MAX_TOKEN_LENGTH} characters"
    if not all("!" <= c <= "~" for c in token):
        return ("token with spaces, control or non-ASCII characters; expected printable ASCII only (such as the "
                "output of `openssl rand -hex 32`)")
    return None


#: where systemd puts a service's credentials; such a file exists only while the service runs.
CREDENTIALS_ROOT = Path("/run/credentials")


def credential_absent_here(path: Path) -> bool:
    """True for a systemd credential path that cannot exist in this process (not the service, not running)."""
    import os

    try:
        return (path.is_relative_to(CREDENTIALS_ROOT) and "CREDENTIALS_DIRECTORY" not in os.environ
                and not path.exists())
    except (OSError, ValueError):  # a path with a NUL byte: read_token_file says it cannot be read
        return False


def read_token_file(path: Path) -> str:
    """The token in ``path`` (surrounding whitespace, such as a trailing newline, removed).

    Raises:
        ValueError: the file cannot be read, is not text, or holds an empty or too-short token; the message
            names the file and never its content.
    """
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_TOKEN_LENGTH + 2)
    except FileNotFoundError:
        raise ValueError(f"cannot read {str(path)!r}: file not found") from None
    except OSError as exc:
        raise ValueError(f"cannot read {str(path)!r}: {(exc.strerror or type(exc).__name__).lower()}") from None
    except ValueError:  # a NUL byte in the path
        raise ValueError(f"cannot read {str(path)!r}: not a valid path") from None
    try:
        token = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError(f"{str(path)!r} is not text; expected one token of printable ASCII") from None
    if len(data) > MAX_TOKEN_LENGTH + 1:
        raise ValueError(f"{str(path)!r} is too long; expected at most {MAX_TOKEN_LENGTH} characters")
    problem = token_problem(token)
    if problem is not None:
        raise ValueError(f"{str(path)!r}: {problem}")
    return token


def http_token(http: HttpConfig) -> str | None:
    """The HTTP server's token: ``token``, or the content of ``token_file``, or ``None`` (no token).

    Raises:
        ConfigError: ``token_file`` cannot be read or holds an empty or too-short token (the content is never
            shown).
    """
    if http.token is not None:
        return http.token.get_secret_value()
    if http.token_file is None:
        return None
    try:
        return read_token_file(http.token_file)
    except ValueError as exc:
        raise ConfigError(None, [("http.token_file", str(exc))]) from None
