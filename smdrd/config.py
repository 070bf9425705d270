"""The configuration: one TOML file, validated by pydantic, every key overridable from the environment.

Environment variables take the ``SMDRD_`` prefix and ``__`` for nesting (``SMDRD_DATABASE__PATH``); a list such as
``sources`` takes JSON (``SMDRD_SOURCES='[{"name": "pbx", ...}]'``). Environment values are deep-merged over the
file. Unknown keys are errors, so a typo is reported instead of silently ignored.

`load_config` turns every problem (TOML syntax, a wrong type, an unknown key) into one `ConfigError` that
names the file, the key and what was expected.
"""

from __future__ import annotations

import ipaddress
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
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from smdrd.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/smdrd/smdrd.toml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_hostport(value: str, default_host: str = "0.0.0.0") -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``:port`` to ``(host, port)``."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
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

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class DatabaseConfig(_Section):
    """The SQLite file and how the journal writer commits."""

    path: Path = Path("/var/lib/smdrd/smdrd.db")
    commit_interval_ms: int = Field(default=100, ge=1, le=60_000)
    batch_rows: int = Field(default=5000, ge=1, le=1_000_000)
    max_pending_rows: int = Field(default=100_000, ge=100)


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
    """The PBX connects to smdrd (IP Office push, Avaya CM, Siemens, 3CX)."""

    kind: Literal["tcp-server"]
    listen: str = "0.0.0.0:1150"
    allowed_peers: list[str] = Field(default_factory=list)
    max_connections: int = Field(default=16, ge=1, le=1024)

    @field_validator("listen")
    @classmethod
    def _hostport(cls, v: str) -> str:
        parse_hostport(v)
        return v

    @field_validator("allowed_peers")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for item in v:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"expected an IP address or network such as 10.0.0.5 or 10.0.0.0/24, "
                                 f"got {item!r}") from None
        return v

    def peer_allowed(self, address: str) -> bool:
        """True when ``address`` is in the allow-list (an empty list allows everyone)."""
        if not self.allowed_peers:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in ipaddress.ip_network(net, strict=False) for net in self.allowed_peers)


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
    """The daemon's HTTP server (metrics, health, reports)."""

    enabled: bool = True
    listen: str = "127.0.0.1:9464"
    token: SecretStr | None = None
    token_file: Path | None = None

    @field_validator("listen")
    @classmethod
    def _hostport(cls, v: str) -> str:
        parse_hostport(v, "127.0.0.1")
        return v


class MqttConfig(_Section):
    """The MQTT broker that alerts (and optionally every call) are published to."""

    enabled: bool = False
    host: str = "localhost"
    port: int = Field(default=1883, ge=1, le=65535)
    topic_prefix: str = "smdrd"
    client_id: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    tls: bool = False
    ca_file: Path | None = None
    publish_calls: bool = False
    keepalive: int = Field(default=60, ge=5)


def _money(value: Any) -> Any:
    from smdrd.rating.money import parse_money

    return parse_money(value)


#: an amount of money: a quoted decimal (``"0.03"``) or an integer; TOML floats are refused as inexact.
Money = Annotated[Decimal, BeforeValidator(_money)]


class TariffBandConfig(_Section):
    """A named time band (``[tariff.bands.peak]``), in the site's local time."""

    days: list[str] = Field(default_factory=lambda: ["mon-sun"], min_length=1)
    hours: str = "00:00-24:00"
    holidays: Literal["any", "exclude", "only"] = "any"

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


class DepartmentConfig(_Section):
    """A department: a name and the extensions that belong to it."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(min_length=1)
    extensions: list[str] = Field(default_factory=list)
    parent: str | None = None


class AlertsConfig(_Section):
    """Alert rules (filled by the alerts issue)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    enabled: bool = True


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
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls._toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls._toml_file))
        return tuple(sources)


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


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for err in exc.errors(include_url=False):
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling and section)"
        elif err["type"] == "union_tag_invalid":
            msg = "unknown kind; expected one of tcp-client, tcp-server, serial, file"
        elif err["type"] == "union_tag_not_found":
            msg = "missing key 'kind'; expected one of tcp-client, tcp-server, serial, file"
        elif err["type"] == "missing":
            msg = "missing key (required)"
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
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(shown, [("", f"not valid TOML: {exc}")]) from None
    klass: type[Settings] = type("FileSettings", (Settings,), {"_toml_file": toml_path})
    if not use_env:
        klass.model_config = {**Settings.model_config, "env_prefix": "SMDRD_DISABLED_ENV_"}
    try:
        settings = klass()
    except ValidationError as exc:
        raise ConfigError(shown, _problems(exc)) from None
    problems = _source_problems(settings)
    if problems:
        raise ConfigError(shown, problems)
    return settings


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
