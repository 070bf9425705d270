"""The configuration: one TOML file, validated by pydantic, every key overridable from the environment.

Environment variables take the ``SMDRD_`` prefix and ``__`` for nesting (``SMDRD_DATABASE__PATH``); a list such as
``sources`` takes JSON (``SMDRD_SOURCES='[{"name": "pbx", ...}]'``). Environment values are deep-merged over the
file. Unknown keys are errors, so a typo is reported instead of silently ignored.

`load_config` turns every problem (TOML syntax, a wrong type, an unknown key) into one `ConfigError` that
names the file, the key and what was expected.
"""

from __future__ import annotations

import ipaddress
import json
import tomllib
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings.exceptions import SettingsError

from smdrd.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/smdrd/smdrd.toml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _ascii_digits(text: str) -> bool:
    """True for ``0`` to ``9`` only: ``str.isdigit`` also takes full-width (``１２``), Arabic-Indic and other
    digits, which ``int()`` reads, so a value no editor shows as odd would pass as a number."""
    return text.isascii() and text.isdigit()


def parse_hostport(value: str, default_host: str = "0.0.0.0") -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``:port`` to ``(host, port)``."""
    host, sep, port = value.rpartition(":")
    if not sep or not _ascii_digits(port) or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT (port 0 to 65535), got {value!r}")
    host = host.strip("[]") or default_host
    return host, int(port)


class SiteConfig(_Section):
    """Where the PBX is: decides timezones, number normalisation and the call classes."""

    name: str = "smdrd"
    timezone: str = "UTC"
    country: str = Field(default="US", min_length=2, max_length=2)
    area_code: str = ""
    access_codes: list[str] = Field(default_factory=lambda: ["9"])
    internal_max_digits: int = Field(default=5, ge=1, le=10)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"expected an IANA timezone name such as Europe/Warsaw, got {v!r}") from None
        return v

    @field_validator("country")
    @classmethod
    def _upper_country(cls, v: str) -> str:
        if not v.isalpha():
            raise ValueError(f"expected a two-letter ISO country code such as GB, got {v!r}")
        return v.upper()

    @field_validator("area_code")
    @classmethod
    def _area_digits(cls, v: str) -> str:
        if any(ch.isdigit() and not ch.isascii() for ch in v):
            raise ValueError(f"expected ASCII digits such as 20, got {v!r}")
        return v

    @field_validator("access_codes")
    @classmethod
    def _access_digits(cls, v: list[str]) -> list[str]:
        for code in v:
            if any(ch.isdigit() and not ch.isascii() for ch in code):
                raise ValueError(f"expected access codes in ASCII digits such as \"9\", got {code!r}")
        return v

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class DatabaseConfig(_Section):
    """The SQLite file and how the journal writer commits."""

    path: Path = Path("/var/lib/smdrd/smdrd.db")
    # 50 ms: with the commit itself, a live line is committed within 100 ms of receipt.
    commit_interval_ms: int = Field(default=50, ge=1, le=60_000)
    batch_rows: int = Field(default=5000, ge=1, le=1_000_000)
    # Received but uncommitted lines, where sources stop reading and TCP holds the PBX back. 5,000 is what the
    # writer commits in well under a second on a small box: what a kill -9 can lose stays small (docs/faults.md).
    max_pending_rows: int = Field(default=5_000, ge=100, le=1_000_000)


class _SourceBase(_Section):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    format: str = Field(min_length=1)
    enabled: bool = True
    encoding: str | None = None
    max_line_length: int = Field(default=8192, ge=64, le=1_048_576)
    handshake: str | None = None
    year: int | None = Field(default=None, ge=1990, le=2200)
    format_options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str | None) -> str | None:
        if v is not None:
            import codecs

            try:
                codecs.lookup(v)
            except LookupError:
                raise ValueError(f"expected a Python codec name such as utf-8 or cp1251, got {v!r}") from None
        return v


class TcpClientSource(_SourceBase):
    """smdrd connects to the PBX (IP Office in listen mode, Mitel, NEC, Panasonic...)."""

    kind: Literal["tcp-client"]
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    keepalive: bool = True
    connect_timeout: float = Field(default=10.0, gt=0)
    reconnect_min: float = Field(default=1.0, gt=0)
    reconnect_max: float = Field(default=60.0, gt=0)
    password: SecretStr | None = None


class TcpServerSource(_SourceBase):
    """The PBX connects to smdrd (IP Office push, Avaya CM, Siemens, 3CX).

    ``listen`` stays ``0.0.0.0:1150`` by default because a PBX is never on the same host; what keeps strangers
    out is ``allowed_peers`` (``check-config`` and the daemon warn loudly when it is empty on a non-loopback
    address). Connections from outside a non-empty ``allowed_peers`` are refused at once; when
    ``max_connections`` is reached, the connection idle longest (no byte for ``idle_timeout``) is closed to
    admit the new one; with an empty ``allowed_peers`` a connection that sends nothing for ``idle_timeout``
    after connecting is closed (a stranger holding a slot).
    """

    kind: Literal["tcp-server"]
    listen: str = "0.0.0.0:1150"
    allowed_peers: list[str] = Field(default_factory=list)
    max_connections: int = Field(default=16, ge=1, le=1024)
    #: seconds without a byte after which a connection may be closed to admit a new one at ``max_connections``
    #: (and, with an empty ``allowed_peers``, after which a connection that never sent a byte is closed).
    idle_timeout: float = Field(default=60.0, gt=0, le=86_400)

    @field_validator("listen")
    @classmethod
    def _hostport(cls, v: str) -> str:
        parse_hostport(v)
        return v

    @field_validator("allowed_peers")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for item in v:
            _allowed_network(item)
        return [item.strip() for item in v]

    def peer_allowed(self, address: str) -> bool:
        """True when ``address`` is in the allow-list (an empty list allows everyone)."""
        if not self.allowed_peers:
            return True
        return self.peer_listed(address)

    def peer_listed(self, address: str) -> bool:
        """True when ``address`` is in a non-empty allow-list (an empty list lists no one)."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in ipaddress.ip_network(net) for net in self.allowed_peers)

    @property
    def open_to_everyone(self) -> bool:
        """True when any host that can reach ``listen`` may connect: no allow-list on a non-loopback address."""
        if self.allowed_peers:
            return False
        host, _ = parse_hostport(self.listen)
        try:
            return not ipaddress.ip_address(host).is_loopback
        except ValueError:
            return host != "localhost"  # a host name: whatever it resolves to, assume the network


def _allowed_network(item: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """One ``allowed_peers`` entry: an address or a network written exactly (no host bits), never ``/0``."""
    try:
        net = ipaddress.ip_network(item.strip())
    except ValueError as exc:
        if "has host bits set" in str(exc):
            address, _, prefix = item.strip().partition("/")
            shown = ipaddress.ip_network(item.strip(), strict=False)
            raise ValueError(f"{item!r} has host bits set: write {address!r} for that one host, or "
                             f"'{shown.network_address}/{prefix}' for the network") from None
        raise ValueError(f"expected an IP address or network such as 10.0.0.5 or 10.0.0.0/24, "
                         f"got {item!r}") from None
    if net.prefixlen == 0:
        raise ValueError(f"{item!r} allows every address; list the PBX's address (or its network), or leave "
                         f"allowed_peers empty, which check-config and the daemon report as open to everyone")
    return net


class SerialSource(_SourceBase):
    """A serial port (an RS-232 SMDR port, usually through a USB adapter)."""

    kind: Literal["serial"]
    device: str = Field(min_length=1)
    baudrate: int = Field(default=9600, ge=50, le=4_000_000)
    parity: Literal["N", "E", "O", "M", "S"] = "N"
    bytesize: Literal[5, 6, 7, 8] = 8
    stopbits: float = 1
    flow_control: Literal["none", "rtscts", "xonxoff", "dsrdtr"] = "none"
    reopen_interval: float = Field(default=2.0, gt=0)


    @field_validator("stopbits")
    @classmethod
    def _stopbits(cls, v: float) -> float:
        if v not in (1, 1.5, 2):
            raise ValueError(f"expected 1, 1.5 or 2, got {v!r}")
        return v


class FileSource(_SourceBase):
    """A file read once, or followed like ``tail -F``; ``-`` is standard input."""

    kind: Literal["file"]
    path: str = Field(min_length=1)
    follow: bool = False
    from_start: bool = True
    poll_interval: float = Field(default=0.5, gt=0)


SourceConfig = Annotated[
    TcpClientSource | TcpServerSource | SerialSource | FileSource, Field(discriminator="kind")
]


class HttpConfig(_Section):
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
        return self


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


def _credential_absent_here(path: Path) -> bool:
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


class MqttConfig(_Section):
    """The MQTT broker that alerts (and optionally every call) are published to (see docs/alerts.md).

    Alerts wait in the database's outbox until the broker acknowledges them (QoS 1), so the broker may be down
    for as long as it likes. The daemon's status is the retained topic ``<topic_prefix>/status`` (``online``;
    ``offline`` as the last will, and on a clean stop).
    """

    enabled: bool = False
    host: str = "localhost"
    port: int = Field(default=1883, ge=1, le=65535)
    topic_prefix: str = Field(default="smdrd", min_length=1)
    client_id: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    #: a file holding the password (a systemd credential); one trailing newline is ignored.
    password_file: Path | None = None
    tls: bool = False
    ca_file: Path | None = None
    #: a client certificate and its key, for brokers that authenticate clients by certificate.
    cert_file: Path | None = None
    key_file: Path | None = None
    #: skip the check of the broker certificate's host name (a broker reached by IP address): not for the internet.
    tls_insecure: bool = False
    publish_calls: bool = False
    keepalive: int = Field(default=60, ge=5)
    #: reconnect delays, in seconds: jittered, growing from the first to the second.
    reconnect_min: float = Field(default=1.0, gt=0)
    reconnect_max: float = Field(default=60.0, gt=0)
    #: how long one publish may wait for the broker's acknowledgement, in seconds.
    publish_timeout: float = Field(default=10.0, gt=0)
    #: alerts published at once while draining (acknowledged as a window, kept in order on the wire).
    window: int = Field(default=64, ge=1, le=1000)

    @field_validator("topic_prefix")
    @classmethod
    def _topic(cls, v: str) -> str:
        if any(c in v for c in "#+\0") or v.startswith("/") or v.endswith("/"):
            raise ValueError(f"expected a topic such as smdrd or site/hq/smdrd (no wildcards, no leading or "
                             f"trailing /), got {v!r}")
        return v

    @model_validator(mode="after")
    def _one_password(self) -> MqttConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("password and password_file: set one, not both")
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file: set both (a client certificate needs its key) or neither")
        return self


def _money(value: Any) -> Any:
    from smdrd.rating.money import parse_money

    return parse_money(value)


#: an amount of money: a quoted decimal (``"0.03"``) or an integer; TOML floats are refused as inexact.
Money = Annotated[Decimal, BeforeValidator(_money)]


class _WeeklyHours(_Section):
    """Days of the week and hours of the day, checked with the rating engine's own parsers."""

    days: list[str]
    hours: str

    @field_validator("days")
    @classmethod
    def _days(cls, v: list[str]) -> list[str]:
        from smdrd.rating.rules import parse_days

        parse_days(v)
        return v

    @field_validator("hours")
    @classmethod
    def _hours(cls, v: str) -> str:
        from smdrd.rating.rules import parse_hours

        parse_hours(v)
        return v


class TariffBandConfig(_WeeklyHours):
    """A named time band (``[tariff.bands.peak]``), in the site's local time."""

    days: list[str] = Field(default_factory=lambda: ["mon-sun"], min_length=1)
    hours: str = "00:00-24:00"
    holidays: Literal["any", "exclude", "only"] = "any"



class TariffRuleConfig(_Section):
    """One inline rating rule (``[[tariff.rules]]``); the same fields as a rate deck's columns."""

    name: str = ""
    prefixes: list[str] = Field(min_length=1)
    call_class: Literal[
        "internal", "local", "national", "mobile", "international", "toll-free", "premium", "emergency",
        "special", "unknown",
    ] | None = None
    rate: Money = Decimal(0)
    billing_unit: int = Field(default=60, ge=1)
    initial_time: int = Field(default=0, ge=0)
    initial_cost: Money = Decimal(0)
    connection_fee: Money = Decimal(0)
    minimum_charge: Money = Decimal(0)
    band: str | None = None
    valid_from: date | None = None
    valid_until: date | None = None
    trunks: list[str] = Field(default_factory=list)
    directions: list[Literal["outbound", "inbound"]] = Field(default=["outbound"], min_length=1)

    @field_validator("prefixes")
    @classmethod
    def _prefixes(cls, v: list[str]) -> list[str]:
        from smdrd.rating.deck import parse_prefix

        return [parse_prefix(p) for p in v]


class TariffConfig(_Section):
    """Call rating: rate decks and inline rules, combined into one compiled tariff (see docs/rating.md).

    With no decks and no rules every call costs 0, and calls still get their classes from phonenumbers.
    """

    currency: str = Field(default="USD", min_length=3, max_length=3)
    decimals: int = Field(default=2, ge=0, le=6)
    mode: Literal["longest-prefix", "first-match"] = "longest-prefix"
    split: bool = False
    decks: list[Path] = Field(default_factory=list)
    rules: list[TariffRuleConfig] = Field(default_factory=list)
    bands: dict[str, TariffBandConfig] = Field(default_factory=dict)
    holidays: list[date] = Field(default_factory=list)

    @field_validator("currency")
    @classmethod
    def _upper_currency(cls, v: str) -> str:
        if not v.isalpha():
            raise ValueError(f"expected a three-letter ISO 4217 currency code such as EUR, got {v!r}")
        return v.upper()

    @model_validator(mode="after")
    def _known_bands(self) -> TariffConfig:
        for i, rule in enumerate(self.rules):
            if rule.band is not None and rule.band not in self.bands:
                known = ", ".join(sorted(self.bands)) or "none defined in [tariff.bands]"
                raise ValueError(f"rules[{i}].band: unknown band {rule.band!r} (known: {known})")
        return self


#: the name reports give calls from extensions that belong to no department (so none is silently dropped).
UNASSIGNED = "Unassigned"


def _extension_spec(value: Any) -> Any:
    """An extension (``201``, ``"201"``, ``"SIP/alice"``) or an inclusive numeric range (``"200-299"``)."""
    if isinstance(value, bool):
        raise ValueError(f"expected an extension such as \"201\" or a range such as \"200-299\", got {value!r}")
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected an extension such as \"201\" or a range such as \"200-299\", got {value!r}")
    value = value.strip()
    lo, sep, hi = value.partition("-")
    if sep and _ascii_digits(lo.strip()) and _ascii_digits(hi.strip()):
        if int(lo) > int(hi):
            raise ValueError(f"range {value!r} runs backwards; expected LOW-HIGH such as 200-299")
        return f"{int(lo)}-{int(hi)}"
    return value


#: one extension or an inclusive range of numeric extensions, as written in ``[[departments]]``.
ExtensionSpec = Annotated[str, BeforeValidator(_extension_spec)]


class MembershipConfig(_Section):
    """Extensions that belong to a department for a while (``[[departments.members]]``): both dates inclusive,
    in the site's timezone; a missing date is open-ended. An extension that moves mid-month gets a membership
    with ``valid_from`` in its new department, so each day is billed to the department it was in that day."""

    extensions: list[ExtensionSpec] = Field(min_length=1)
    valid_from: date | None = None
    valid_until: date | None = None

    @model_validator(mode="after")
    def _dates_in_order(self) -> MembershipConfig:
        if self.valid_from and self.valid_until and self.valid_from > self.valid_until:
            raise ValueError(f"valid_until ({self.valid_until}) is before valid_from ({self.valid_from})")
        return self


class DepartmentConfig(_Section):
    """A department (``[[departments]]``): its extensions, an optional parent it rolls up into, an optional
    monthly budget. ``extensions`` always belong to it; ``members`` add extensions for a period.
    Which department wins when memberships overlap is in docs/reports.md (the narrowest, then the latest)."""

    name: str = Field(min_length=1, max_length=100)
    extensions: list[ExtensionSpec] = Field(default_factory=list)
    members: list[MembershipConfig] = Field(default_factory=list)
    parent: str | None = None
    budget: Money | None = None

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if v.strip().casefold() == UNASSIGNED.casefold():
            raise ValueError(f"{UNASSIGNED!r} is the name reports give extensions in no department; "
                             "choose another name")
        return v.strip()


AlertSeverity = Literal["warning", "critical"]
CallClassName = Literal[
    "internal", "local", "national", "mobile", "international", "toll-free", "premium", "emergency", "special",
    "unknown",
]

#: NANP codes that look like a domestic US/Canadian area code but ring abroad at international rates (the
#: Caribbean "809 scam" and its relatives), and the US 900/976 premium numbers.
NANP_LOOKALIKE_PREFIXES = (
    "+1242", "+1246", "+1264", "+1268", "+1284", "+1345", "+1441", "+1473", "+1649", "+1658", "+1664",
    "+1721", "+1758", "+1767", "+1784", "+1809", "+1829", "+1849", "+1868", "+1869", "+1876",
    "+1900", "+1976",
)
#: satellite and international networks (Inmarsat, Iridium, Thuraya...): favourite targets of toll fraud.
NETWORK_PREFIXES = ("+870", "+881", "+882", "+883")
#: countries that top the carriers' fraud lists (International Revenue Share Fraud), ISO 3166 codes.
HIGH_RISK_COUNTRIES = ("CU", "ER", "GN", "KP", "LR", "NR", "SL", "SO", "TV", "CK", "IO", "SH")
_AFTER_HOURS_CLASSES: tuple[CallClassName, ...] = ("international", "premium")
_HIGH_RISK_CLASSES: tuple[CallClassName, ...] = ("premium",)
_LONG_CALL_DIRECTIONS: tuple[Literal["outbound", "inbound"], ...] = ("outbound",)


def _check_prefixes(items: list[str]) -> list[str]:
    for item in items:
        digits = item[1:] if item.startswith("+") else item
        if not _ascii_digits(digits):
            raise ValueError(f"expected a number prefix such as +1809 (E.164) or 900 (as dialled), got {item!r}")
    return items


class _AlertBase(_Section):
    """What every alert rule has: a switch, exclusions and a snooze (one incident is one alert)."""

    enabled: bool = True
    #: extensions whose calls this rule ignores (a fax line, the reception desk that calls abroad all day).
    exclude_extensions: list[str] = Field(default_factory=list)
    #: destinations this rule ignores: ``+44`` (E.164 prefix) or ``0800`` (prefix of the digits as dialled).
    exclude_numbers: list[str] = Field(default_factory=list)
    #: after an alert, the same rule stays quiet this long for the same extension (or number, or source).
    snooze_minutes: float = Field(default=60.0, ge=0)

    @field_validator("exclude_numbers")
    @classmethod
    def _numbers(cls, v: list[str]) -> list[str]:
        return _check_prefixes(v)


class _AlertRule(_AlertBase):
    severity: AlertSeverity = "warning"


class BusinessHoursConfig(_WeeklyHours):
    """The site's opening hours, in the site's timezone; tariff holidays count as closed days too."""

    days: list[str] = Field(default_factory=lambda: ["mon-fri"], min_length=1)
    hours: str = "07:00-19:00"
    holidays: list[date] = Field(default_factory=list)



class AfterHoursAlertConfig(_AlertRule):
    """An outbound call of these classes outside business hours (attempts count: fraud dials at night)."""

    classes: list[CallClassName] = Field(default_factory=lambda: list(_AFTER_HOURS_CLASSES), min_length=1)
    #: ignore calls shorter than this many talk seconds (0: every attempt counts).
    min_seconds: int = Field(default=0, ge=0)


class HighRiskAlertConfig(_AlertRule):
    """An outbound call to a blocked or high-risk destination: prefixes, countries and call classes."""

    severity: AlertSeverity = "critical"
    #: the built-in lists (NANP look-alikes, 900/976, satellite networks); ``false`` to use only your own.
    builtin_prefixes: bool = True
    prefixes: list[str] = Field(default_factory=list)
    #: ISO 3166 country codes; ``default`` stands for the built-in list. The site's own country never matches.
    countries: list[str] = Field(default_factory=lambda: ["default"])
    classes: list[CallClassName] = Field(default_factory=lambda: list(_HIGH_RISK_CLASSES))

    @field_validator("prefixes")
    @classmethod
    def _prefixes(cls, v: list[str]) -> list[str]:
        return _check_prefixes(v)

    @field_validator("countries")
    @classmethod
    def _countries(cls, v: list[str]) -> list[str]:
        out = []
        for item in v:
            if item.lower() == "default":
                out.append("default")
            elif len(item) == 2 and item.isalpha():
                out.append(item.upper())
            else:
                raise ValueError(f"expected two-letter ISO country codes such as CU (or \"default\"), got {item!r}")
        return out


class LongCallAlertConfig(_AlertRule):
    """A call that lasts longer than ``minutes``."""

    minutes: float = Field(default=60.0, gt=0)
    directions: list[Literal["outbound", "inbound"]] = Field(default_factory=lambda: list(_LONG_CALL_DIRECTIONS),
                                                           min_length=1)


class ExpensiveCallAlertConfig(_AlertRule):
    """A call that costs more than ``cost`` (in the tariff's currency)."""

    cost: Money = Decimal(50)


class VelocityAlertConfig(_AlertRule):
    """Too many external calls, or international minutes, in a sliding window (per extension, and site-wide).

    A limit set to 0 is off.
    """

    severity: AlertSeverity = "critical"
    window_minutes: float = Field(default=60.0, gt=0)
    extension_calls: int = Field(default=40, ge=0)
    extension_international_minutes: float = Field(default=120.0, ge=0)
    site_calls: int = Field(default=0, ge=0)
    site_international_minutes: float = Field(default=600.0, ge=0)


class ShortCallsAlertConfig(_AlertRule):
    """``count`` calls in a row to the same number, each at most ``max_seconds`` long, within the window."""

    count: int = Field(default=5, ge=2)
    max_seconds: int = Field(default=10, ge=0)
    within_minutes: float = Field(default=30.0, gt=0)


class WangiriAlertConfig(_AlertRule):
    """A missed, short-ringing inbound call from abroad, then an outbound call back to that number."""

    severity: AlertSeverity = "critical"
    max_ring_seconds: int = Field(default=10, ge=0)
    callback_hours: float = Field(default=72.0, gt=0)


class DepartmentBudgetConfig(_Section):
    """A department's spending limits (in the tariff's currency)."""

    daily: Money | None = None
    monthly: Money | None = None


class BudgetAlertConfig(_AlertBase):
    """A department's spend passes its daily or monthly budget: a warning at ``warn_percent``, critical at 100 %,
    each once per period. Budgets come from here, or from ``budget_daily`` / ``budget_monthly`` in
    ``[[departments]]``."""

    warn_percent: float = Field(default=80.0, gt=0, lt=100)
    departments: dict[str, DepartmentBudgetConfig] = Field(default_factory=dict)


class SourceDownAlertConfig(_AlertRule):
    """A source disconnected (no PBX connected, serial port gone) for longer than ``minutes``."""

    severity: AlertSeverity = "critical"
    minutes: float = Field(default=10.0, gt=0)


class ParseErrorsAlertConfig(_AlertRule):
    """More than ``percent`` of a source's lines failed to parse within the window (and at least ``min_lines``
    lines arrived)."""

    percent: float = Field(default=5.0, gt=0, le=100)
    min_lines: int = Field(default=20, ge=1)
    window_minutes: float = Field(default=15.0, gt=0)


class AlertsConfig(_Section):
    """Alert rules (see docs/alerts.md). With no ``[alerts]`` section the defaults protect the site: after-hours
    international calls, high-risk destinations, long, expensive and fast-repeating calls, Wangiri call-backs
    and disconnected sources all raise alerts."""

    enabled: bool = True
    business_hours: BusinessHoursConfig = Field(default_factory=BusinessHoursConfig)
    #: extensions and destinations every rule ignores (prefixes as for a rule's ``exclude_numbers``).
    exclude_extensions: list[str] = Field(default_factory=list)
    exclude_numbers: list[str] = Field(default_factory=list)
    #: how often source health (disconnection, parse failures) is checked, in seconds.
    check_interval: float = Field(default=5.0, gt=0, le=3600)
    #: delivered alerts are kept in the outbox this many days (an alert history); 0 keeps them for ever.
    retention_days: int = Field(default=90, ge=0)
    after_hours: AfterHoursAlertConfig = Field(default_factory=AfterHoursAlertConfig)
    high_risk: HighRiskAlertConfig = Field(default_factory=HighRiskAlertConfig)
    long_call: LongCallAlertConfig = Field(default_factory=LongCallAlertConfig)
    expensive_call: ExpensiveCallAlertConfig = Field(default_factory=ExpensiveCallAlertConfig)
    velocity: VelocityAlertConfig = Field(default_factory=VelocityAlertConfig)
    short_calls: ShortCallsAlertConfig = Field(default_factory=ShortCallsAlertConfig)
    wangiri: WangiriAlertConfig = Field(default_factory=WangiriAlertConfig)
    budget: BudgetAlertConfig = Field(default_factory=BudgetAlertConfig)
    source_down: SourceDownAlertConfig = Field(default_factory=SourceDownAlertConfig)
    parse_errors: ParseErrorsAlertConfig = Field(default_factory=ParseErrorsAlertConfig)

    @field_validator("exclude_numbers")
    @classmethod
    def _numbers(cls, v: list[str]) -> list[str]:
        return _check_prefixes(v)


#: the shortest non-zero ``[retention] calls_days``: a month of details, and a margin for re-sent buffers.
MIN_CALLS_DAYS = 31


class RetentionConfig(_Section):
    """How long raw journal lines and call details are kept (docs/retention.md); 0 keeps them for ever.

    Pruning deletes only details: the report rollups keep every past day's figures exact. Delivered alerts
    have their own period, ``[alerts] retention_days``.
    """

    #: call details (the ``calls`` listing, exports, ``stored_spend``) are kept this many site-local days.
    calls_days: int = Field(default=3660, ge=0)
    #: raw journal lines are kept this many days (never longer than ``calls_days``); a line whose call is still
    #: kept keeps its row and status, only its bytes are emptied.
    lines_days: int = Field(default=400, ge=0)
    #: minutes between pruning runs (the first runs at start).
    interval_minutes: float = Field(default=60.0, gt=0, le=7 * 24 * 60)
    #: rows deleted per transaction: small, so the journal writer waits milliseconds at most.
    batch_rows: int = Field(default=1000, ge=1, le=100_000)
    #: pause between two batches, in milliseconds: the journal writer takes the write lock in it.
    pause_ms: int = Field(default=50, ge=0, le=60_000)

    @field_validator("calls_days")
    @classmethod
    def _calls_days(cls, v: int) -> int:
        # Budgets are re-read from this month's calls after a restart, and a re-sent line is recognised by its
        # stored call: details younger than a month must stay.
        if 0 < v < MIN_CALLS_DAYS:
            raise ValueError(f"expected 0 (keep for ever) or at least {MIN_CALLS_DAYS} days, got {v}")
        return v


class LoggingConfig(_Section):
    """Log output: JSON lines when stdout is not a terminal, readable colour output when it is."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class Settings(BaseSettings):
    """The whole configuration."""

    model_config = SettingsConfigDict(
        env_prefix="SMDRD_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )
    #: the TOML file being read (set by `load_config`; ``None`` for environment and defaults only).
    _toml_file: ClassVar[Path | None] = None

    site: SiteConfig = Field(default_factory=SiteConfig)
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    sources: list[SourceConfig] = Field(default_factory=list)
    http: HttpConfig = Field(default_factory=HttpConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    tariff: TariffConfig = Field(default_factory=TariffConfig)
    departments: list[DepartmentConfig] = Field(default_factory=list)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        seen: set[str] = set()
        for src in self.sources:
            if src.name in seen:
                raise ValueError(f"source names must be unique; {src.name!r} is used twice")
            seen.add(src.name)
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, _EnvSource(settings_cls)]
        if cls._toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls._toml_file))
        return tuple(sources)


class _EnvJsonError(ValueError):
    """An environment override of a list or table that is not valid JSON (never holds the value's text)."""

    def __init__(self, field_name: str, value: str, expected: str, reason: str) -> None:
        super().__init__(reason)
        self.field_name = field_name
        self.value = value
        self.expected = expected
        self.reason = reason


class _EnvSource(EnvSettingsSource):
    """``SMDRD_*`` overrides; a list or table that is not JSON is a `ConfigError` naming the variable."""

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        try:
            return super().decode_complex_value(field_name, field, value)
        except ValueError as exc:
            reason = f"{exc.msg} at character {exc.pos + 1}" if isinstance(exc, json.JSONDecodeError) else (
                type(exc).__name__)
            raise _EnvJsonError(field_name, str(value), _json_shape(field_name, field), reason) from None

    def __call__(self) -> dict[str, Any]:
        try:
            return super().__call__()
        except SettingsError as exc:
            cause = exc.__cause__
            if not isinstance(cause, _EnvJsonError):
                raise
            prefix = self.env_prefix.lower()
            names = [name for name, val in self.env_vars.items()
                     if val == cause.value and name.lower().startswith(prefix)
                     and name.lower().endswith(cause.field_name.lower())]
            variable = (names[0] if names else f"{self.env_prefix}{cause.field_name}").upper()
            raise ConfigError(None, [(variable, f"not valid JSON ({cause.reason}); expected {cause.expected} "
                                                "(in single quotes for the shell)")]) from None


def _json_shape(field_name: str, field: FieldInfo | None) -> str:
    """What JSON an environment variable for ``field`` should hold, in words."""
    from typing import get_origin

    if field_name == "sources":
        return 'a JSON list of tables such as [{"name": "pbx", "kind": "tcp-server", "format": "avaya-ipo"}]'
    if get_origin(field.annotation if field is not None else None) is list:
        return 'a JSON list such as ["9", "0"]'
    return 'a JSON object such as {"key": "value"}'


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("tcp-client", "tcp-server", "serial", "file"):
            continue  # the discriminator's branch name is noise in a key path
        elif part.startswith("function-") or part.endswith("]"):
            continue
        else:
            out += f".{part}" if out else part
    return out


#: keys whose values are secrets: an error about them never repeats the value given.
_SECRET_KEYS = ("password", "token", "secret", "key")


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for err in exc.errors(include_url=False):
        msg = err["msg"]
        last = str(err["loc"][-1]) if err["loc"] else ""
        secret = any(word in last.lower() for word in _SECRET_KEYS)
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling and section)"
        elif err["type"] == "union_tag_invalid":
            msg = "unknown kind; expected one of tcp-client, tcp-server, serial, file"
        elif err["type"] == "union_tag_not_found":
            msg = "missing key 'kind'; expected one of tcp-client, tcp-server, serial, file"
        elif err["type"] == "missing":
            msg = "missing key (required)"
        elif secret:
            msg = msg.split(", got ")[0] + " (the value given is not shown: it is a secret)"
        elif "input" in err and not isinstance(err["input"], dict | list) and "got " not in msg:
            msg = f"{msg} (got {err['input']!r})"
        msg = msg.removeprefix("Value error, ")
        problems.append((_loc(err["loc"]), msg))
    return problems


def load_config(path: Path | str | None, *, use_env: bool = True) -> Settings:
    """Read and validate the configuration.

    Args:
        path: the TOML file; ``None`` for defaults and the environment only.
        use_env: apply ``SMDRD_...`` environment overrides.

    Raises:
        ConfigError: naming the file, each bad key and what was expected.
    """
    toml_path = Path(path) if path is not None else None
    shown = str(toml_path) if toml_path is not None else None
    if toml_path is not None:
        try:
            with toml_path.open("rb") as fh:
                tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(shown, [("", "file not found (write one from config/smdrd.example.toml, "
                                            "or pass --config)")]) from None
        except PermissionError:
            raise ConfigError(shown, [("", "permission denied")]) from None
        except IsADirectoryError:
            raise ConfigError(shown, [("", "is a folder; expected the TOML file")]) from None
        except OSError as exc:
            raise ConfigError(shown, [("", f"cannot read: {(exc.strerror or type(exc).__name__).lower()}")]) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(shown, [("", f"not valid TOML: {exc}")]) from None
        except UnicodeDecodeError as exc:
            line = toml_path.read_bytes()[: exc.start].count(b"\n") + 1
            raise ConfigError(shown, [("", f"not UTF-8 text (line {line}); save the file as UTF-8")]) from None
        except RecursionError:
            raise ConfigError(shown, [("", "not valid TOML: arrays or tables nested too deeply")]) from None
    klass: type[Settings] = type("FileSettings", (Settings,), {"_toml_file": toml_path})
    if not use_env:
        klass.model_config = {**Settings.model_config, "env_prefix": "SMDRD_DISABLED_ENV_"}
    try:
        settings = klass()
    except ValidationError as exc:
        raise ConfigError(shown, _problems(exc)) from None
    from smdrd.reports import department_problems

    problems = _source_problems(settings) + department_problems(settings.departments) + _http_problems(settings)
    if problems:
        raise ConfigError(shown, problems)
    return settings


def _http_problems(settings: Settings) -> list[tuple[str, str]]:
    """A ``token_file`` that cannot be read or holds an empty or short token (never its content).

    A systemd credential (``/run/credentials/...``) exists only while the service runs: outside it (``smdrd
    check-config`` run by hand) it is not checked here but reported by `config_warnings`, and the daemon, which
    reads it at start with `http_token`, refuses to start without it.
    """
    http = settings.http
    if not http.enabled or http.token_file is None or _credential_absent_here(http.token_file):
        return []
    try:
        read_token_file(http.token_file)
    except ValueError as exc:
        return [("http.token_file", str(exc))]
    return []


def config_file_warnings(path: Path | None, settings: Settings) -> list[tuple[str, str]]:
    """Who else could change (or read the secrets in) the configuration file: ``(key, message)`` pairs.

    The daemon only warns (at start, and ``check-config`` does too) rather than refuse: refusing would turn a
    ``chmod`` slip into a site that stops collecting calls at its next restart, while a file that others can
    write is already theirs to change before any check runs. Fix it: ``chown root: FILE; chmod 0644 FILE``.
    """
    import os
    import stat

    if path is None:
        return []
    try:
        st = Path(path).stat()
    except OSError:
        return []
    out: list[tuple[str, str]] = []
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        who = " and ".join(w for w, bit in (("group", 0o020), ("others", 0o002)) if mode & bit)
        out.append(("", f"the file is writable by {who} (mode {mode:04o}): whoever can write it decides where "
                        f"smdrd listens, what it accepts and where calls go; chmod 0644 (or 0640) it"))
    if st.st_uid not in (0, os.geteuid()):
        out.append(("", f"the file is owned by user id {st.st_uid}, neither root nor this process: that user "
                        f"can change what smdrd does; chown root it"))
    if settings.http.token is not None and mode & 0o004:
        out.append(("http.token", "the token is in a file every local user can read (mode "
                                  f"{mode:04o}); use token_file (a systemd credential, docs/install.md)"))
    return out


def config_warnings(path: Path | None, settings: Settings) -> list[tuple[str, str]]:
    """What ``check-config`` reports as warnings: `config_file_warnings`, tcp-server sources open to every
    host, and a systemd credential that cannot be checked outside the service."""
    out = config_file_warnings(path, settings)
    for i, src in enumerate(settings.sources):
        if isinstance(src, TcpServerSource) and src.enabled and src.open_to_everyone:
            out.append((f"sources[{i}].allowed_peers", open_to_everyone_warning(src)))
    http = settings.http
    if http.enabled and http.token_file is not None and _credential_absent_here(http.token_file):
        out.append(("http.token_file", f"{str(http.token_file)!r} is a systemd credential, present only while "
                                       "the service runs, so it is not checked here; the daemon refuses to "
                                       f"start if it is missing, empty or shorter than {MIN_TOKEN_LENGTH} "
                                       "characters"))
    return out


def open_to_everyone_warning(src: TcpServerSource) -> str:
    """The warning for a tcp-server source with an empty ``allowed_peers`` on a non-loopback address."""
    return (f"empty on {src.listen}: any host that can reach the port may connect and send records as the PBX; "
            "list the PBX's address, such as allowed_peers = [\"10.0.0.5\"]")


def _source_problems(settings: Settings) -> list[tuple[str, str]]:
    """Checks that need the plugin registries: formats, handshakes and format options."""
    from smdrd.errors import SmdrdError
    from smdrd.parsing import ParserContext, format_names, get_parser_class
    from smdrd.sources.handshakes import get_handshake

    problems: list[tuple[str, str]] = []
    known = format_names()
    for i, src in enumerate(settings.sources):
        key = f"sources[{i}]"
        if src.format not in known:
            problems.append((f"{key}.format", f"unknown format {src.format!r}; expected one of {', '.join(known)}"))
            continue
        try:
            cls = get_parser_class(src.format)
            cls(ParserContext(timezone=settings.site.tz, year=src.year, options=src.format_options))
        except (ValueError, TypeError, KeyError, SmdrdError) as exc:
            problems.append((f"{key}.format_options", str(exc)))
        if src.handshake is not None:
            try:
                get_handshake(src.handshake)
            except SmdrdError as exc:
                problems.append((f"{key}.handshake", str(exc)))
    return problems


def redacted(settings: Settings) -> dict[str, Any]:
    """The configuration as plain data, secrets masked (``SecretStr`` dumps as ``**********``)."""
    data: dict[str, Any] = settings.model_dump(mode="json")
    return data
