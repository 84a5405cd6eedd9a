"""The application factory: config in, ASGI application out."""

from __future__ import annotations

import gc
import json
import mmap
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

# Imported here, before Granian forks the workers, instead of by the first
# task group in each worker's lifespan: shared memory, and a start-up 20 ms
# shorter in which a worker cannot yet be stopped cleanly (see cli/serve.py).
import anyio._backends._asyncio  # noqa: F401
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from dockyard.api import management
from dockyard.api.access_log import AccessLog
from dockyard.api.auth import auth_service, unauthorized_response
from dockyard.api.catalog import catalog
from dockyard.api.dispatch import ALL_METHODS, dispatch
from dockyard.api.errors import (
    error_response,
    registry_error_response,
    unexpected_error_response,
)
from dockyard.api.jsonbody import json_body
from dockyard.api.proxy import behind_proxies
from dockyard.api.ratelimit import count_request, counted_by_address, identified
from dockyard.api.token import token
from dockyard.bootstrap import (
    build_auth,
    build_collector,
    build_lifecycle,
    build_mirror,
    build_rate_limiter,
    build_registry,
)
from dockyard.config import Config
from dockyard.core.errors import RegistryError, Unauthorized
from dockyard.core.registry import Registry
from dockyard.logs import configure_logging
from dockyard.metadata.accounts import SqlAccountStore
from dockyard.metadata.store import create_db_engine
from dockyard.services.audit import Auditor
from dockyard.services.scheduler import Job, run_schedule

# `dockyard serve` hands the validated config to its worker processes here.
WORKER_CONFIG_ENV = "_DOCKYARD_WORKER_CONFIG"

# One byte of memory that `dockyard serve` shares with the workers it forks:
# it sets it to 1 when it gets a stop signal. A worker forked just before then
# can lose the signal its parent sends it (Python clears signals that arrive
# before a new child first runs), so it also looks here once it handles them.
STOPPING = mmap.mmap(-1, 1)


def create_app(config: Config, registry: Registry | None = None) -> ASGIApp:
    routes = [
        Route("/v2/", api_version, methods=["GET", "HEAD"]),
        Route("/v2", api_version, methods=["GET", "HEAD"]),
        Route("/v2/_catalog", catalog, methods=["GET"]),
        Route("/token", token, methods=["GET", "POST"]),
        # At least one slash after /v2/, so that other methods on the routes
        # above answer 405 instead of reaching the dispatcher.
        Route("/v2/{name:path}/{target:path}", dispatch, methods=ALL_METHODS),
        *management.ROUTES,
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: routing_error},
        lifespan=_lifespan,
    )
    # An unknown path gets a JSON 404, not a redirect to the same with a slash.
    app.router.redirect_slashes = False
    engine = create_db_engine(config.resolved_database_url)
    accounts = SqlAccountStore(engine)
    app.state.config = config
    app.state.registry = registry or build_registry(config, engine)
    app.state.auditor = Auditor(accounts)
    app.state.auth = build_auth(config, accounts, app.state.auditor)
    app.state.lifecycle = build_lifecycle(config, app.state.registry)
    app.state.rate_limiter = build_rate_limiter(config)
    app.state.mirror = build_mirror(config, app.state.registry)
    collector = build_collector(config, app.state.registry)
    app.state.jobs = [
        Job("garbage collection", config.gc.interval, collector.run),
        Job("lifecycle policies", config.lifecycle.interval, app.state.lifecycle.run),
    ]
    # Outermost, so that the access log names the client the proxy reports.
    return behind_proxies(AccessLog(app), config.trusted_proxies)


@asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    """Each worker runs the schedule; lock files let one at a time run a job."""
    if STOPPING[0]:
        os._exit(0)  # no request has reached this worker yet

    lock_dir = app.state.config.storage_path
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(run_schedule, app.state.jobs, lock_dir)
        yield
        tasks.cancel_scope.cancel()
    if app.state.mirror is not None:
        # Hits counted since the last flush would be lost otherwise.
        await app.state.mirror.close()


async def api_version(request: Request) -> Response:
    """200 once the caller is authenticated, so clients can test a login."""
    auth = auth_service(request)
    try:
        caller = None if auth is None else await identified(request, auth)
        await count_request(request, caller)
    except Unauthorized as exc:
        return unauthorized_response(request, exc)
    except RegistryError as exc:
        return registry_error_response(exc)
    except Exception as exc:
        return unexpected_error_response(exc, f"{request.method} /v2/")
    if caller is not None and caller.claims is None and caller.principal.anonymous:
        return unauthorized_response(
            request, Unauthorized("authentication required; log in first")
        )
    return json_body({})


async def routing_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 (no route) and 405 (wrong method) as spec errors."""
    assert isinstance(exc, HTTPException)
    where = f"{request.method} {request.url.path}"
    messages = {404: f"no such endpoint: {where}", 405: f"method not allowed: {where}"}
    message = messages.get(exc.status_code, exc.detail)
    response = error_response(
        "UNSUPPORTED", exc.status_code, message, headers=exc.headers
    )
    if request.url.path.startswith("/v2/"):
        # Under /v2/ even a wrong path counts against the `requests` limit.
        return await counted_by_address(request, response)
    return response


def worker_app() -> ASGIApp:
    """Entry point for server workers, which read the config `serve` resolved."""
    config = Config.model_validate(json.loads(os.environ[WORKER_CONFIG_ENV]))
    configure_logging(config.log_format, config.log_level)
    app = create_app(config)

    # What start-up made (modules, the app, its stores) lives as long as the
    # worker. Left to the collector, every full collection would walk all of
    # it, about 75,000 objects and 40-50 ms on the benchmark's machine with
    # every request on hold, to free none of it.
    gc.freeze()
    return app
