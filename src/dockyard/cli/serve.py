"""`dockyard serve`: migrate the database, then run the server workers."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import socket
import ssl
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from dockyard.cli.options import config_options, fail, load
from dockyard.config import Config
from dockyard.logs import configure_logging

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

logger = logging.getLogger("dockyard.serve")

# How long a stopping worker may take to finish its requests before it is
# killed; uploads cut short resume from their last byte.
WORKER_STOP_SECONDS = 30

# Set when the main process gets SIGINT or SIGTERM once the server runs.
STOP_REQUESTED = threading.Event()


@click.command()
@config_options
@click.option("--listen", help="Address to serve on, HOST:PORT [127.0.0.1:5000].")
@click.option("--workers", type=int, help="Server processes [one per CPU core].")
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), help="Log line format."
)
@click.option(
    "--tls-cert",
    type=click.Path(path_type=Path),
    help="PEM certificate chain; serves HTTPS with --tls-key.",
)
@click.option("--tls-key", type=click.Path(path_type=Path), help="PEM private key.")
def serve(
    config_file: Path | None,
    data_dir: Path | None,
    listen: str | None,
    workers: int | None,
    log_format: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
) -> None:
    """Run the registry: the OCI distribution API under /v2/."""
    # Only the flags given: the rest of the tls section comes from the file or
    # the environment, which the config merges key by key.
    tls_flags = {"cert": tls_cert, "key": tls_key}
    tls = {k: v for k, v in tls_flags.items() if v is not None}
    config = load(
        config_file,
        listen=listen,
        data_dir=data_dir,
        workers=workers,
        log_format=log_format,
        tls=tls or None,
    )
    configure_logging(config.log_format, config.log_level)
    _stop_on_signals()
    _check_address_free(config)
    _check_tls(config)
    try:
        _prepare_storage(config)
        _explain_rate_limits(config)
        _explain_upstreams(config)
        logger.info(
            "metadata in %s, blobs in %s",
            _redacted(config.resolved_database_url),
            config.storage_path,
        )
        _run_server(config)
    except SystemExit as exc:
        # Also when the server exits after a signal to all its processes at
        # once, as service managers send. A start that failed has said why.
        if not exc.code:
            logger.info("stopped")
        raise
    logger.info("stopped")


def _stop_on_signals() -> None:
    """Until Granian takes the signals over: stop quietly, with status 0."""

    def stop(signum: int, frame: object) -> None:
        sys.exit(0)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)


def _check_tls(config: Config) -> None:
    """Exit 2 with a reason unless the certificate and key can be served."""
    cert, key = config.tls.cert, config.tls.key
    if cert is None or key is None:
        return

    for name, path in (("tls.cert", cert), ("tls.key", key)):
        try:
            path.read_bytes()
        except OSError as exc:
            fail(f"cannot read {name} {path}: {exc.strerror}", status=2)

    try:
        # An empty password, so that an encrypted key fails here instead of
        # prompting on the terminal.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key, password=b"")
    except ssl.SSLError as exc:
        fail(
            f"tls.cert and tls.key are not a PEM certificate and its key: {exc}",
            status=2,
        )


def _prepare_storage(config: Config) -> None:
    """Create the folders, migrate the database and set up logins, or exit.

    In a child process: the workers fork from this one, and Alembic with the
    migration scripts would otherwise take memory in each of them (about
    8 MiB) for a job done once at start.
    """
    child = multiprocessing.get_context("fork").Process(
        target=_prepare_storage_here, args=(config,), name="dockyard-migrate"
    )
    child.start()
    child.join()
    if child.exitcode:
        # The child said why (a message or a traceback) on stderr already.
        sys.exit(child.exitcode if child.exitcode > 0 else 1)


def _prepare_storage_here(config: Config) -> None:
    from dockyard.metadata.migrate import upgrade
    from dockyard.metadata.store import create_db_engine

    # A signal ends the migration at once: its transaction rolls back, and a
    # nonzero status keeps the parent from serving a half-migrated database.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)

    try:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        config.storage_path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        # mkdir's "File exists" for a file in the way reads as if all were well.
        why = "not a directory" if isinstance(exc, FileExistsError) else exc.strerror
        fail(f"cannot create data directory {exc.filename}: {why}", status=2)

    engine = create_db_engine(config.resolved_database_url)
    upgrade(engine)
    _restrict_database(engine)
    _prepare_auth(config, engine)
    engine.dispose()


def _check_address_free(config: Config) -> None:
    """Exit 2 if something listens on the address already.

    Granian binds with SO_REUSEPORT, so a second registry on the same port
    would start and silently take half the connections, from its own data.
    """
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((config.host, config.port))
        except OSError as exc:
            fail(f"cannot listen on {config.listen}: {exc.strerror}", status=2)


def _explain_rate_limits(config: Config) -> None:
    if config.rate_limits.enabled and not config.redis_url and config.worker_count > 1:
        logger.warning(
            "rate limits are counted in each of the %d workers; set redis_url to "
            "count them once for all",
            config.worker_count,
        )


def _explain_upstreams(config: Config) -> None:
    for upstream in config.upstreams:
        mirror = ", and for unprefixed names" if upstream.mirror else ""
        logger.info(
            "pull-through cache of %s under %s/%s",
            upstream.url,
            upstream.name,
            mirror,
        )


def _restrict_database(engine: Engine) -> None:
    """The database holds password hashes and token hashes: owner only.

    SQLite creates its -wal and -shm files with the database's mode.
    """
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return
    for suffix in ("", "-wal", "-shm"):
        path = Path(database + suffix)
        if path.exists():
            path.chmod(0o600)


def _prepare_auth(config: Config, engine: Engine) -> None:
    """Say whether logins are required, and create the signing key once.

    The key is made here, before the workers start, so they all load one.
    """
    from dockyard.bootstrap import auth_enabled
    from dockyard.metadata.accounts import SqlAccountStore
    from dockyard.services.auth.tokens import load_or_create_key

    store = SqlAccountStore(engine)
    if not auth_enabled(config, store):
        logger.warning(
            "authentication is off: anyone who can reach this registry may push "
            "and pull; add a user with `dockyard user add` to turn it on"
        )
        return
    try:
        load_or_create_key(config.signing_key_path, config.auth.algorithm)
    except (OSError, ValueError) as exc:
        fail(f"cannot use the token signing key: {exc}", status=2)
    logger.info(
        "authentication is on; tokens are signed with %s", config.auth.algorithm
    )
    if store.count_admins() == 0:
        logger.warning(
            "authentication is on and no admin exists: create one with "
            "`dockyard user add NAME --admin --data-dir %s`",
            config.data_dir,
        )


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
        ssl_cert=config.tls.cert,
        ssl_key=config.tls.key,
        # Requests still running this long after a stop signal are ended,
        # as service managers would end them. So is a worker that got two
        # stop signals while its ASGI lifespan started: Granian 2.8 then
        # blocks in the worker's signal handler for good.
        workers_kill_timeout=WORKER_STOP_SECONDS,
    )
    # Run once the socket is bound and Granian handles the signals, just
    # before it forks the workers.
    server.on_startup(lambda: _log_listening(config))
    server.on_startup(_stop_starting_workers)
    try:
        server.serve()
    except SystemExit as exc:
        # Granian exits 1 when a worker ended before it told it to; after a
        # stop signal to every process at once that is how a stop goes.
        if not (STOP_REQUESTED.is_set() and exc.code == 1):
            raise


def _log_listening(config: Config) -> None:
    logger.info(
        "listening on %s://%s with %d workers",
        "https" if config.tls.enabled else "http",
        config.listen,
        config.worker_count,
    )


def _stop_starting_workers() -> None:
    """Let a worker that gets a stop signal before it handles signals exit.

    A new worker inherits the main process's handlers until Granian installs
    its own; through them a signal would only set a flag in the worker's copy
    of the main process, and the main process would wait for that worker
    until WORKER_STOP_SECONDS. A signal the worker lost altogether is made up
    for by STOPPING, which its lifespan reads.
    """
    from dockyard.api.app import STOPPING

    main_pid = os.getpid()

    for signum in (signal.SIGINT, signal.SIGTERM):
        granian_handler = signal.getsignal(signum)
        if not callable(granian_handler):
            continue

        def handler(signum: int, frame: object, inner: Any = granian_handler) -> None:
            if os.getpid() != main_pid:
                # A worker still starting has no requests; os._exit, as a
                # SystemExit raised inside a finalizer would be ignored.
                os._exit(0)
            STOP_REQUESTED.set()
            STOPPING[0] = 1
            inner(signum, frame)

        signal.signal(signum, handler)
