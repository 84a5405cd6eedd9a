"""Options and config loading shared by every `dockyard` command."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from dockyard.config import Config, ConfigError, load_config

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from dockyard.core.registry import Registry
    from dockyard.services.auth.accounts import Accounts


def fail(message: str, status: int = 1) -> NoReturn:
    """Say what went wrong on one line of standard error, and exit."""
    click.echo(f"dockyard: {message}", err=True)
    sys.exit(status)


def config_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--config and --data-dir, which every command reads the registry with."""
    command = click.option(
        "--data-dir",
        type=click.Path(path_type=Path),
        help="Where metadata and blobs live [./dockyard-data].",
    )(command)
    return click.option(
        "--config",
        "config_file",
        type=click.Path(path_type=Path),
        help="YAML config file; DOCKYARD_* environment variables override it.",
    )(command)


def load(config_file: Path | None, **overrides: object) -> Config:
    """The config, or exit 2 with a message naming the bad key and value."""
    try:
        return load_config(config_file, **overrides)
    except ConfigError as exc:
        fail(str(exc), status=2)


def open_registry(config: Config) -> Registry:
    """The registry a server with this config uses, or exit with a reason."""
    from dockyard.bootstrap import build_registry

    return build_registry(config, open_database(config))


def open_accounts(config: Config) -> Accounts:
    """Account management on the server's database, acting as the OS user."""
    from dockyard.metadata.accounts import SqlAccountStore
    from dockyard.services.audit import Auditor
    from dockyard.services.auth.accounts import Accounts

    store = SqlAccountStore(open_database(config))
    return Accounts(store, Auditor(store), f"cli:{getpass.getuser()}")


def open_database(config: Config) -> Engine:
    """The server's database, or exit with a reason.

    Commands other than `serve` never create or migrate a database: a wrong
    --data-dir should say so, not leave an empty database behind.
    """
    from sqlalchemy.engine import make_url

    from dockyard.metadata.migrate import is_current
    from dockyard.metadata.store import create_db_engine

    url = make_url(config.resolved_database_url)
    missing = (
        url.get_backend_name() == "sqlite" and not Path(url.database or "").exists()
    )
    engine = create_db_engine(config.resolved_database_url)
    if missing or not is_current(engine):
        engine.dispose()
        shown = url.render_as_string(hide_password=True)
        click.echo(
            f"dockyard: no up-to-date Dockyard database at {shown}; check --data-dir "
            "or --config, or start `dockyard serve` once to create or migrate it",
            err=True,
        )
        sys.exit(2)
    return engine
