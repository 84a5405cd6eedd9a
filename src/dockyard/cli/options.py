"""Options and config loading shared by every `dockyard` command."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from dockyard.config import Config, ConfigError, load_config


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
        click.echo(f"dockyard: {exc}", err=True)
        sys.exit(2)
