"""The configuration: one TOML file, validated by pydantic, every key overridable from the environment.

Each section's schema lives beside its feature (``[site]`` and ``[tariff]`` in `smdrd.rating.config`,
``[database]`` and ``[retention]`` in `smdrd.store.config`, ``[[sources]]`` in `smdrd.sources.config`,
``[http]`` in `smdrd.http_config`, ``[mqtt]`` in `smdrd.mqtt_config`, ``[[departments]]`` in
`smdrd.reports.config`, ``[alerts]`` and its fraud data in `smdrd.alerts.config`, ``[logging]`` in
`smdrd.logs_config`). This module composes them into `Settings`, loads it, reports what is wrong, and re-exports
every section so that ``from smdrd.config import SiteConfig`` keeps working. Feature modules import their own
section from its home, never from here: this module imports them all, so the other way round is a cycle.

Environment variables take the ``SMDRD_`` prefix and ``__`` for nesting (``SMDRD_DATABASE__PATH``); a list such as
``sources`` takes JSON (``SMDRD_SOURCES='[{"name": "pbx", ...}]'``). Environment values are deep-merged over the
file. Unknown keys are errors, so a typo is reported instead of silently ignored.

`load_config` turns every problem (TOML syntax, a wrong type, an unknown key) into one `ConfigError` that
names the file, the key and what was expected.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings.exceptions import SettingsError

from smdrd.alerts.config import (
    HIGH_RISK_COUNTRIES,
    NANP_LOOKALIKE_PREFIXES,
    NETWORK_PREFIXES,
    AfterHoursAlertConfig,
    AlertsConfig,
    AlertSeverity,
    BudgetAlertConfig,
    BusinessHoursConfig,
    CallClassName,
    DepartmentBudgetConfig,
    ExpensiveCallAlertConfig,
    HighRiskAlertConfig,
    LongCallAlertConfig,
    ParseErrorsAlertConfig,
    ShortCallsAlertConfig,
    SourceDownAlertConfig,
    VelocityAlertConfig,
    WangiriAlertConfig,
)
from smdrd.central_config import CentralConfig
from smdrd.defaults import DEFAULT_CONFIG_PATH
from smdrd.errors import ConfigError
from smdrd.http_config import (
    CREDENTIALS_ROOT,
    MAX_TOKEN_LENGTH,
    MIN_TOKEN_LENGTH,
    HttpConfig,
    credential_absent_here,
    http_token,
    read_token_file,
    tls_problem,
    token_problem,
)
from smdrd.logs_config import LoggingConfig
from smdrd.mail_config import SmtpConfig
from smdrd.mqtt_config import MqttConfig
from smdrd.mqtt_payloads import topic_level
from smdrd.privacy import PrivacyConfig
from smdrd.rating.config import (
    Money,
    SiteConfig,
    TariffBandConfig,
    TariffConfig,
    TariffRuleConfig,
)
from smdrd.reports.config import UNASSIGNED, DepartmentConfig, DirectoryConfig, ExtensionSpec, MembershipConfig
from smdrd.reports.departments import department_problems
from smdrd.reports.schedules import ReportsConfig, ScheduleConfig
from smdrd.section import parse_hostport
from smdrd.sources.config import (
    FileSource,
    SerialSource,
    SourceConfig,
    SpoolSource,
    TcpClientSource,
    TcpServerSource,
    open_to_everyone_warning,
    placeholder_warnings,
)
from smdrd.store.config import MIN_CALLS_DAYS, DatabaseConfig, RetentionConfig

__all__ = [
    "CREDENTIALS_ROOT",
    "DEFAULT_CONFIG_PATH",
    "HIGH_RISK_COUNTRIES",
    "MAX_TOKEN_LENGTH",
    "MIN_CALLS_DAYS",
    "MIN_TOKEN_LENGTH",
    "NANP_LOOKALIKE_PREFIXES",
    "NETWORK_PREFIXES",
    "UNASSIGNED",
    "AfterHoursAlertConfig",
    "AlertSeverity",
    "AlertsConfig",
    "BudgetAlertConfig",
    "BusinessHoursConfig",
    "CallClassName",
    "ConfigError",
    "DatabaseConfig",
    "DepartmentBudgetConfig",
    "DepartmentConfig",
    "DirectoryConfig",
    "ExpensiveCallAlertConfig",
    "ExtensionSpec",
    "FileSource",
    "HighRiskAlertConfig",
    "HttpConfig",
    "LoggingConfig",
    "LongCallAlertConfig",
    "MembershipConfig",
    "Money",
    "MqttConfig",
    "ParseErrorsAlertConfig",
    "PrivacyConfig",
    "ReportsConfig",
    "RetentionConfig",
    "ScheduleConfig",
    "SerialSource",
    "Settings",
    "ShortCallsAlertConfig",
    "SiteConfig",
    "SmtpConfig",
    "SourceConfig",
    "SourceDownAlertConfig",
    "SpoolSource",
    "TariffBandConfig",
    "TariffConfig",
    "TariffRuleConfig",
    "TcpClientSource",
    "TcpServerSource",
    "VelocityAlertConfig",
    "WangiriAlertConfig",
    "config_file_warnings",
    "config_warnings",
    "declared_currencies",
    "http_token",
    "load_config",
    "open_to_everyone_warning",
    "parse_hostport",
    "read_token_file",
    "redacted",
    "token_problem",
    "validation_problems",
]


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
    directory: DirectoryConfig = Field(default_factory=DirectoryConfig)
    alerts: AlertsConfig = Field(default_factory=AlertsConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    smtp: SmtpConfig = Field(default_factory=SmtpConfig)
    reports: ReportsConfig = Field(default_factory=ReportsConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    central: CentralConfig = Field(default_factory=CentralConfig)

    @field_validator("site")
    @classmethod
    def _known_country(cls, site: SiteConfig) -> SiteConfig:
        """The country must be one phonenumbers knows; checked here (not when the rater is built) so that it is
        reported with every other problem of the file."""
        from smdrd.rating.normalise import Dialplan

        try:
            Dialplan.from_site(site)
        except ValueError as exc:
            raise PydanticCustomError("unknown_country", "{reason}", {"reason": str(exc)}) from None
        return site

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, sources: list[SourceConfig]) -> list[SourceConfig]:
        seen: dict[str, int] = {}
        for i, src in enumerate(sources):
            if src.name in seen:
                raise ValueError(f"source names must be unique; {src.name!r} is sources[{seen[src.name]}].name "
                                 f"and sources[{i}].name")
            seen[src.name] = i
        return sources

    @model_validator(mode="after")
    def _journal_topic_site(self) -> Settings:
        if self.mqtt.publish_journal and not topic_level(self.site.name):
            raise ValueError(f"[mqtt] publish_journal names the site in its topics: [site] name must be one topic "
                             f"level (no / + # and not empty), got {self.site.name!r}")
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
        except (ValueError, RecursionError) as exc:
            reason = (f"{exc.msg} at character {exc.pos + 1}" if isinstance(exc, json.JSONDecodeError)
                      else "nested too deeply" if isinstance(exc, RecursionError) else type(exc).__name__)
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
        elif part in ("tcp-client", "tcp-server", "serial", "file", "spool"):
            continue  # the discriminator's branch name is noise in a key path
        elif part.startswith("function-") or part.endswith("]"):
            continue
        else:
            out += f".{part}" if out else part
    return out


#: keys whose values are secrets: an error about them never repeats the value given (a URL may hold a password).
_SECRET_KEYS = ("password", "token", "secret", "key", "url")


def validation_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """Each problem of ``exc`` as (the key, in the file's terms, what is wrong and what was expected); a secret
    key's value is never repeated."""
    problems = []
    for err in exc.errors(include_url=False):
        msg, loc = err["msg"], err["loc"]
        last = str(loc[-1]) if loc else ""
        secret = any(word in last.lower() for word in _SECRET_KEYS)
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling and section)"
        elif err["type"] == "union_tag_invalid":
            loc = (*loc, "kind")
            tag = err.get("ctx", {}).get("tag")
            msg = f"unknown kind {tag!r}; expected one of tcp-client, tcp-server, serial, file"
        elif err["type"] == "union_tag_not_found":
            msg = "missing key 'kind'; expected one of tcp-client, tcp-server, serial, file"
        elif err["type"] == "missing":
            msg = "missing key (required)"
        elif err["type"] == "unknown_country":
            loc = (*loc, "country")
        elif secret:
            msg = msg.split(", got ")[0] + " (the value given is not shown: it is a secret)"
        elif ("input" in err and not isinstance(err["input"], dict | list) and "got " not in msg
              and repr(err["input"]) not in msg):
            msg = f"{msg} (got {err['input']!r})"
        msg = msg.removeprefix("Value error, ")
        problems.append((_loc(loc), msg))
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
            raise ConfigError(shown, [("", "file not found (write one from config/smdrd.example.toml)")]) from None
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
    overrides = _env_overrides() if use_env else {}
    unknown = _unknown_variables(overrides)
    try:
        settings = klass()
    except ValidationError as exc:
        raise _config_error(shown, unknown + validation_problems(exc), overrides) from None
    problems = (unknown + _source_problems(settings) + department_problems(settings.departments)
                + _http_problems(settings) + _mail_problems(settings, toml_path))
    if problems:
        raise _config_error(shown, problems, overrides)
    return settings


#: environment variables of the ``SMDRD_`` family that are not settings.
_NOT_SETTINGS = frozenset({"SMDRD_CONFIG"})


def _env_overrides() -> dict[tuple[str, ...], str]:
    """The ``SMDRD_`` variables set in the environment, by the key path they name (``("site", "timezone")``)."""
    import os

    prefix = Settings.model_config.get("env_prefix", "SMDRD_")
    delimiter = Settings.model_config.get("env_nested_delimiter") or "__"
    return {tuple(name[len(prefix):].lower().split(delimiter)): name for name in os.environ
            if name.upper().startswith(prefix) and name.upper() not in _NOT_SETTINGS}


def _unknown_variables(overrides: dict[tuple[str, ...], str]) -> list[tuple[str, str]]:
    """``SMDRD_`` variables whose section is no section: a typo (``SMDRD_DATABSE__PATH``) must not pass for
    nothing. (A wrong key inside a real section, ``SMDRD_SITE__TIMEZOEN``, is pydantic's unknown key.)

    Only variables meant as settings are judged: the nested form (with ``__``) or a near miss of a section's
    name; others of the family (a test suite's switches) are left alone.
    """
    import difflib

    sections = list(Settings.model_fields)
    out = []
    for path, name in sorted(overrides.items(), key=lambda item: item[1]):
        if path[0] in sections or (len(path) == 1 and not difflib.get_close_matches(path[0], sections, cutoff=0.75)):
            continue
        guess = _closest_variable(path)
        hint = f"; did you mean {guess}?" if guess else ""
        out.append((name, f"matches no setting, so it would be ignored{hint} (see config/smdrd.example.toml)"))
    return out


def _closest_variable(path: tuple[str, ...]) -> str | None:
    """The variable of the known key path closest to ``path`` (one level at a time), or ``None``."""
    import difflib

    from pydantic import BaseModel

    model: Any = Settings
    out: list[str] = []
    for part in path:
        fields = getattr(model, "model_fields", None)
        if not fields:
            return None
        near = difflib.get_close_matches(part, list(fields), n=1, cutoff=0.6)
        if not near:
            return None
        out.append(near[0])
        annotation = fields[near[0]].annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return "SMDRD_" + "__".join(out).upper()


def _config_error(shown: str | None, problems: list[tuple[str, str]],
                  overrides: dict[tuple[str, ...], str]) -> ConfigError:
    """``problems`` as a `ConfigError` that blames each on where its value came from: the variable that set
    the key (or a section above it), else the file."""
    origins: list[str | None] = []
    for key, _ in problems:
        parts = tuple(part for part in re.split(r"[.\[]", key) if part and not part.rstrip("]").isdigit())
        setters = [overrides[parts[:n]] for n in range(len(parts), 0, -1) if parts[:n] in overrides]
        if not setters and parts:  # a problem of a whole section (two keys that go together) that a variable
            # set a key of, or a key a malformed variable named (``SMDRD_SITE____NAME``: ``site.``)
            setters = sorted(name for path, name in overrides.items() if path[:len(parts)] == parts)
        if key.startswith("SMDRD_"):  # the problem is the variable itself
            origins.append("environment")
        else:
            origins.append(f"environment: {setters[0]}" if setters else None)
    return ConfigError(shown, problems, origins)


def _http_problems(settings: Settings) -> list[tuple[str, str]]:
    """A ``token_file`` that cannot be read or holds an empty or short token (never its content).

    A systemd credential (``/run/credentials/...``) exists only while the service runs: outside it (``smdrd
    check-config`` run by hand) it is not checked here but reported by `config_warnings`, and the daemon, which
    reads it at start with `http_token`, refuses to start without it.
    """
    http = settings.http
    tls = tls_problem(http) if http.enabled else None
    problems = [("http.tls_cert", tls)] if tls is not None else []
    if not http.enabled or http.token_file is None or credential_absent_here(http.token_file):
        return problems
    try:
        read_token_file(http.token_file)
    except ValueError as exc:
        return [*problems, ("http.token_file", str(exc))]
    return problems


def _mail_problems(settings: Settings, path: Path | None) -> list[tuple[str, str]]:
    """``[smtp]``'s password file (never its content) and each schedule's filters (a department that does not
    exist, a bad class), checked as the report URL checks them."""
    from smdrd.mail_config import smtp_password, smtp_password_path

    out: list[tuple[str, str]] = []
    smtp = settings.smtp
    where = smtp_password_path(smtp)
    if smtp.enabled and where is not None and not credential_absent_here(where):
        try:
            smtp_password(smtp, path.parent if path is not None else None)
        except ValueError as exc:
            out.append(("smtp.password_credential" if smtp.password_credential else "smtp.password_file",
                        str(exc)))
    if settings.reports.schedules:
        from smdrd.reports.mail import schedule_problem
        from smdrd.reports.queries import context_from

        try:
            ctx = context_from(settings)
        except ConfigError:
            return out  # the departments' own problems are reported beside
        for i, schedule in enumerate(settings.reports.schedules):
            problem = schedule_problem(schedule, ctx)
            if problem is not None:
                out.append((f"reports.schedules[{i}].filters", problem))
    return out


def _mail_warnings(settings: Settings) -> list[tuple[str, str]]:
    """Mail that would wait for ever (``[smtp]`` off), and a password ``check-config`` cannot check here."""
    import os

    from smdrd.mail_config import smtp_password_path

    out: list[tuple[str, str]] = []
    smtp = settings.smtp
    wanted = [what for what, on in (("[[reports.schedules]]", bool(settings.reports.schedules)),
                                    ("[alerts.email]", settings.alerts.email.enabled)) if on]
    if wanted and not smtp.enabled:
        out.append(("smtp.enabled", f"{' and '.join(wanted)} wait in the mail outbox: [smtp] is not enabled"))
    email = settings.alerts.email
    if email.enabled and not email.recipients and not any(email.rules.values()):
        out.append(("alerts.email.recipients", "nobody receives alerts by e-mail"
                    + (" except the managers of a department over budget" if email.managers else "")))
    where = smtp_password_path(smtp)
    if smtp.enabled and smtp.password_credential and "CREDENTIALS_DIRECTORY" not in os.environ:
        out.append(("smtp.password_credential", f"systemd credential {smtp.password_credential!r} exists only "
                                                "while the service runs, so it is not checked here"))
    elif smtp.enabled and where is not None and credential_absent_here(where):
        out.append(("smtp.password_file", f"{str(where)!r} is a systemd credential, present only while the "
                                          "service runs, so it is not checked here"))
    return out


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


def _login_option_warnings(settings: Settings) -> list[tuple[str, str]]:
    """A login option (``password``) on a source that does not log in: kept, not used."""
    from smdrd.parsing import get_parser_class

    out = []
    for i, src in enumerate(settings.sources):
        try:
            cls = get_parser_class(src.format)
        except Exception:  # an unknown format is a problem of its own
            continue
        for option in sorted(_unused_login_options(src, cls) & set(src.format_options)):
            out.append((f"sources[{i}].format_options.{option}",
                        f"not used: a {src.kind} source does not log in to the PBX (only a tcp-client runs the "
                        f"{cls.handshake} login); remove it"))
    return out


def config_warnings(path: Path | None, settings: Settings) -> list[tuple[str, str]]:
    """What ``check-config`` reports as warnings: `config_file_warnings`, tcp-server sources open to every
    host, and a systemd credential that cannot be checked outside the service."""
    out = config_file_warnings(path, settings)
    for i, src in enumerate(settings.sources):
        if isinstance(src, TcpServerSource) and src.enabled and src.open_to_everyone:
            out.append((f"sources[{i}].allowed_peers", open_to_everyone_warning(src)))
    out += placeholder_warnings(settings.sources)
    out += _login_option_warnings(settings)
    tariff = settings.tariff
    for deck, code in declared_currencies(tariff.decks, path.parent if path else None).items():
        if code != tariff.currency:
            out.append(("tariff.currency", f"{deck} says its prices are in {code} (its '# currency:' line) but the "
                                           f"tariff's currency is {tariff.currency}; set currency = \"{code}\" "
                                           "or correct the deck"))
    out += _mail_warnings(settings)
    http = settings.http
    if http.enabled and http.token_file is not None and credential_absent_here(http.token_file):
        out.append(("http.token_file", f"{str(http.token_file)!r} is a systemd credential, present only while "
                                       "the service runs, so it is not checked here; the daemon refuses to "
                                       f"start if it is missing, empty or shorter than {MIN_TOKEN_LENGTH} "
                                       "characters"))
    return out



def declared_currencies(decks: Sequence[Path], base_dir: Path | None = None) -> dict[Path, str]:
    """The currency each rate deck declares on a comment line before its header (``# currency: GBP``, which the
    deck reader skips as a comment), by deck; decks that declare none, or cannot be read, are left out (reading
    them is the tariff's job, which says what is wrong)."""
    out: dict[Path, str] = {}
    for deck in decks:
        where = deck if deck.is_absolute() or base_dir is None else base_dir / deck
        try:
            with where.open(encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    text = line.strip()
                    if text and not text.startswith("#"):
                        break  # the header: declarations come before it
                    key, _, value = text.lstrip("#").partition(":")
                    if key.strip().lower() == "currency" and value.strip():
                        out[deck] = value.strip().upper()
                        break
        except OSError:
            continue
    return out


def _source_problems(settings: Settings) -> list[tuple[str, str]]:
    """Checks that need the plugin registries: formats, handshakes and format options."""
    from smdrd.errors import SmdrdError
    from smdrd.parsing import ParserContext, format_names, get_parser_class, unknown_option
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
            cls(ParserContext(timezone=settings.site.tz, year=src.year, options=src.format_options,
                              country=settings.site.country))
        except (ValueError, TypeError, KeyError, SmdrdError) as exc:
            problems.append((f"{key}.format_options", str(exc)))
            continue
        try:
            # A format's own login is used where smdrd connects (tcp-client), as `resolve_handshake` does.
            handshake = get_handshake(src.handshake or (cls.handshake if src.kind == "tcp-client" else "none"))
        except SmdrdError as exc:
            problems.append((f"{key}.handshake", str(exc)))
            continue
        # The format's own login's options stay known where it does not run (a tcp-server's `password`, valid
        # before logins ran only on a tcp-client): `config_warnings` says they are not used.
        idle = _unused_login_options(src, cls)
        readable = None if handshake.option_names is None else handshake.option_names | idle
        if (unknown := unknown_option(cls, src.format_options, readable)) is not None:
            problems.append((f"{key}.format_options", unknown))
        if src.kind == "tcp-server" and handshake.logs_in and src.handshake is not None:
            problems.append((f"{key}.handshake", f"{src.handshake!r} logs in to the PBX, which a tcp-server cannot "
                                                 "do: the PBX connects to it, and so could anyone; use kind "
                                                 "tcp-client (smdrd connects to the PBX)"))
        elif (found := handshake.problem(src)) is not None:
            problems.append((f"{key}.{found[0]}", found[1]))
    return problems


def _unused_login_options(src: Any, cls: Any) -> frozenset[str]:
    """The options of ``src``'s format's own login that it does not run (not a tcp-client, no handshake set):
    known, not read."""
    from smdrd.sources.handshakes import get_handshake

    if src.kind == "tcp-client" or src.handshake is not None:
        return frozenset()
    try:
        own = get_handshake(cls.handshake).option_names or frozenset()
    except Exception:  # a format whose handshake cannot be loaded: its problem is named elsewhere
        return frozenset()
    return own - (cls.option_names or frozenset())


def redacted(settings: Settings) -> dict[str, Any]:
    """The configuration as plain data, secrets masked (``SecretStr`` dumps as ``**********``; a database URL
    without its password)."""
    data: dict[str, Any] = settings.model_dump(mode="json")
    data["database"]["url"] = settings.database.shown if settings.database.url else ""
    return data
