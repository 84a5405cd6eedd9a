"""`dockyard serve`: migrate the database, then run the server workers."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import click

from dockyard.cli.options import config_options, load
from dockyard.config import Config
from dockyard.logs import configure_logging

logger = logging.getLogger("dockyard.serve")


@click.command()
@config_options
@click.option("--listen", help="Address to serve on, HOST:PORT [127.0.0.1:5000].")
@click.option("--workers", type=int, help="Server processes [one per CPU core].")
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), help="Log line format."
)
def serve(
    config_file: Path | None,
    data_dir: Path | None,
    listen: str | None,
    workers: int | None,
    log_format: str | None,
) -> None:
    """Run the registry: the OCI distribution API under /v2/."""
    config = load(
        config_file,
        listen=listen,
        data_dir=data_dir,
        workers=workers,
        log_format=log_format,
    )
    configure_logging(config.log_format, config.log_level)
    _prepare_storage(config)

    logger.info(
        "metadata in %s, blobs in %s",
        _redacted(config.resolved_database_url),
        config.storage_path,
    )
    logger.info(
        "listening on http://%s with %d workers", config.listen, config.worker_count
    )
    _run_server(config)


def _prepare_storage(config: Config) -> None:
    from dockyard.metadata.migrate import upgrade
    from dockyard.metadata.store import create_db_engine

    try:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        config.storage_path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        click.echo(f"dockyard: cannot create data directory: {exc}", err=True)
        sys.exit(2)

    engine = create_db_engine(config.resolved_database_url)
    upgrade(engine)
    engine.dispose()


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _run_server(config: Config) -> None:
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings
    from granian.server import Server

    from dockyard.api.app import WORKER_CONFIG_ENV

    os.environ[WORKER_CONFIG_ENV] = json.dumps(config.model_dump(mode="json"))
    server = Server(
        "dockyard.api.app:worker_app",
        address=config.host,
        port=config.port,
        interface=Interfaces.ASGI,
        workers=config.worker_count,
        factory=True,
        log_level="warning",  # type: ignore[arg-type]
        log_access=False,
        respawn_failed_workers=True,
        # Hand request bodies to Python in pieces of up to 4 MiB: fewer
        # wake-ups of the event loop per pushed byte.
        http1_settings=HTTP1Settings(max_buffer_size=4 * 1024 * 1024),
    )
    server.serve()
