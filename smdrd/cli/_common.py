"""Helpers shared by the command modules: finding the configuration, and the database it names.

Every command that reads the configuration finds it the same way: ``--config FILE``, else ``$SMDRD_CONFIG``, else
the default file (`DEFAULT_CONFIG_PATH`) if it exists. With none of them, a command refuses with one line saying
how to give one, unless the database is named (``--database`` or ``$SMDRD_DATABASE__PATH``): then it says on
stderr that it runs on the built-in defaults (UTC, no tariff, no departments) and goes on; rerate and reparse,
which would rewrite stored costs by those defaults, refuse. It never falls back silently to a system path.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path

from smdrd.config import DEFAULT_CONFIG_PATH, Settings, load_config
from smdrd.errors import ConfigError, SmdrdError


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", type=Path, default=None,
        help=f"the TOML configuration file (default: $SMDRD_CONFIG, else {DEFAULT_CONFIG_PATH} if it exists)",
    )


def database_actions(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], int]
                     ) -> Callable[[str, str], argparse.ArgumentParser]:
    """A command's sub-commands (``ACTION``), each taking ``--config``, ``--database`` and ``--database-url`` and
    run by ``run`` (which opens `store_of`): ``action(name, help)`` adds one and returns its parser (``smdrd
    tariff import``...)."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        a = actions.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        add_config_argument(a)
        where = a.add_mutually_exclusive_group()
        where.add_argument("--database", type=Path, metavar="PATH",
                           help="the SQLite file (overrides the configuration's)")
        where.add_argument("--database-url", metavar="URL",
                           help="a PostgreSQL database, postgresql://user@host/DATABASE (overrides the "
                                "configuration's)")
        a.set_defaults(func=run, parser=a)
        return a

    return action


def input_file(name: str | None) -> None:
    """Refuse at once, before the configuration is read, a FILE argument that cannot be opened (``-`` is
    standard input): the one line the user reads names the file, not the configuration."""
    if name is None or name == "-":
        return
    try:
        with open(name, "rb"):
            pass
    except OSError as exc:
        raise SmdrdError(f"{name}: cannot read it: {exc.strerror or exc}") from None


def positive(text: str) -> int:
    """An argparse type for a count that must be 1 or more (``--batch 0`` made an import spin for ever)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number such as 100, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


def day(text: str) -> date:
    """An argparse type for a ``--from``/``--to`` day: the error says what was expected. A day before 1980 or
    after 2099 is taken as the nearest of them (no call is stored outside those years, so ``--to 9999-12-31``
    still means "to the end", without a day past the calendar's end)."""
    from smdrd.record import EARLIEST_YEAR, LATEST_YEAR

    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a day such as 2026-03-01, got {text!r}") from None
    return min(max(day, date(EARLIEST_YEAR, 1, 1)), date(LATEST_YEAR, 12, 31))


def config_path(args: argparse.Namespace) -> Path:
    """The configuration file named on the command line, in ``$SMDRD_CONFIG``, or the default."""
    if getattr(args, "config", None) is not None:
        return Path(args.config)
    env = os.environ.get("SMDRD_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG_PATH


def config_named(args: argparse.Namespace) -> bool:
    """Whether a configuration file is named or present: ``--config``, ``$SMDRD_CONFIG`` or the default file."""
    return (getattr(args, "config", None) is not None or bool(os.environ.get("SMDRD_CONFIG"))
            or DEFAULT_CONFIG_PATH.exists())


def no_config_message(args: argparse.Namespace, example: str = "config/smdrd.example.toml") -> str:
    """The one line a command that needs a configuration says when there is none (``example``: the file to
    start from)."""
    return (f"no configuration: {DEFAULT_CONFIG_PATH} does not exist and neither --config nor $SMDRD_CONFIG "
            f"names a file; pass --config FILE (start from {example})"
            + (", or --database PATH to use the built-in defaults" if hasattr(args, "database") else ""))


def service_settings(args: argparse.Namespace, without: str, *,
                     example: str = "config/smdrd.example.toml") -> tuple[Settings, Path]:
    """A long-running service's configuration (``smdrd run``, ``smdrd central``) and its path, with logging set
    up from it and a warning for a file others may read or write (it holds secrets: `config_file_warnings`).
    ``without`` ends the error when no configuration is named; ``example`` is the file to start one from."""
    import structlog

    from smdrd.config import config_file_warnings
    from smdrd.logs import configure

    if not config_named(args):
        raise SmdrdError(f"{no_config_message(args, example)}; {without}")
    path = config_path(args)
    if not path.exists():
        raise ConfigError(str(path), [("", f"file not found (write one from {example})")])
    settings = load_config(path)
    configure(settings.logging.level, settings.logging.format)
    for key, msg in config_file_warnings(path, settings):  # loud, but no refusal: see config_file_warnings
        structlog.get_logger("smdrd.config").warning("config.insecure_file", config=str(path), key=key,
                                                     problem=msg)
    return settings, path


def _database_named(args: argparse.Namespace) -> bool:
    return (getattr(args, "database", None) is not None or getattr(args, "database_url", None) is not None
            or any(name.upper() == "SMDRD_DATABASE__PATH" for name in os.environ))


def settings_from(args: argparse.Namespace, *, existing_database: bool = False,
                  defaults: bool = True) -> tuple[Settings, Path | None]:
    """The configuration for a command, and its file (``None`` when running on the built-in defaults).

    Args:
        args: the command's arguments (``config``, and ``database`` where the command has it).
        existing_database: the database (`database_of`) must exist: a command that reads it must not create it.
        defaults: without a configuration file, the built-in defaults will do when the database is named; a
            command that would rewrite what is stored by them (rerate, reparse) says ``False``.

    Raises:
        ConfigError: the file named cannot be read or is invalid (naming the file, key and what was expected).
        SmdrdError: no configuration file at all and no database named (see the module's docstring), or no
            database where ``existing_database`` asks for one.
    """
    if config_named(args):
        path = config_path(args)
        settings = load_config(path)
        if existing_database or _sqlite_path(args, settings).is_dir():
            _check_database(args, settings, path)
        return settings, path
    if not _database_named(args):
        raise SmdrdError(no_config_message(args))
    settings = load_config(None)
    if existing_database or _sqlite_path(args, settings).is_dir():
        _check_database(args, settings, None)
    # `smdrd demo` writes its configuration beside its database (var/demo.toml): point at it, never read it
    # unasked.
    beside = _sqlite_path(args, settings).with_suffix(".toml")
    found = beside.is_file()
    if not defaults:
        raise SmdrdError("no configuration file: this command rewrites stored calls with the configuration's "
                         "site and tariff, never with built-in defaults; pass --config "
                         + (f"{beside} (the file beside the database)" if found else "FILE"))
    if not getattr(args, "quiet", False):  # said once the command's own inputs are known to be there
        hint = f"; {beside} is beside the database: pass --config {beside}" if found else ""
        print(f"smdrd {getattr(args, 'command', '')}: no configuration file: built-in defaults (site timezone UTC, "
              f"no tariff, no departments){hint}", file=sys.stderr)
    return settings, None


def database_of(args: argparse.Namespace, settings: Settings) -> Path:
    """``--database``, else the configuration's ``[database] path``: for the commands that work on a SQLite file
    only (`store_of` for those that work on either store).

    Raises:
        SmdrdError: the configuration names a PostgreSQL ``[database] url`` and no ``--database`` is given (the
            command would otherwise work on a SQLite file the daemon does not use).
    """
    given = getattr(args, "database", None)
    if given is None and settings.database.url:
        raise SmdrdError(f"smdrd {getattr(args, 'command', '')}: works on a SQLite database only, and [database] "
                         "url names a PostgreSQL one (docs/scaling.md lists what runs there); pass --database FILE "
                         "for a SQLite file")
    return _sqlite_path(args, settings)


def _sqlite_path(args: argparse.Namespace, settings: Settings) -> Path:
    given = getattr(args, "database", None)
    return Path(given) if given is not None else settings.database.path


def store_of(args: argparse.Namespace, settings: Settings) -> Path | str:
    """What `smdrd.store.open_store` opens: ``--database-url`` (a PostgreSQL database), ``--database`` (a SQLite
    file), else ``[database] url`` when set, else ``[database] path``.

    Raises:
        SmdrdError: ``--database-url`` is not a ``postgresql://`` URL.
    """
    url = getattr(args, "database_url", None)
    if url is not None:
        from smdrd.store import is_url
        from smdrd.store.config import redact_url

        if not is_url(url):
            raise SmdrdError(f"--database-url: expected postgresql://user@host/DATABASE, got {redact_url(url)!r}")
        return str(url)
    given = getattr(args, "database", None)
    return Path(given) if given is not None else settings.database.target


def _check_database(args: argparse.Namespace, settings: Settings, config: Path | None) -> None:
    if getattr(args, "database_url", None) is not None or (getattr(args, "database", None) is None
                                                            and settings.database.url):
        return  # a PostgreSQL database: the server says whether it is there when it is opened
    path = _sqlite_path(args, settings)
    if path.is_file():
        return
    if getattr(args, "database", None) is not None:
        origin = "--database"
    elif any(name.upper() == "SMDRD_DATABASE__PATH" for name in os.environ):
        origin = "$SMDRD_DATABASE__PATH"
    else:
        origin = f"[database] path in {config}" if config is not None else "the default [database] path"
    what = "is a folder, not a database file" if path.is_dir() else "no such database"
    raise SmdrdError(f"{path}: {what} (from {origin})")
