"""The one dispatcher for /v2/<name>/...: parse, validate the name, route.

Repository names contain slashes, so the path is matched from its right end:
the last `/manifests/`, `/blobs/`, `/blobs/uploads/` or `/tags/` segment
splits the name from the target. Domain errors raised by any handler become
spec error responses here, and nothing else escapes as a bare 500.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from dockyard.api import blobs, manifests, referrers, tags, uploads
from dockyard.api.auth import (
    Caller,
    auth_service,
    authorize,
    authorize_cached_pull,
    challenge_scope,
    unauthorized_response,
)
from dockyard.api.context import Handler, RepositoryRequest
from dockyard.api.errors import (
    error_response,
    registry_error_response,
    unexpected_error_response,
)
from dockyard.api.ratelimit import (
    count_request,
    counted_by_address,
    identified,
    rate_caller,
)
from dockyard.core.errors import RegistryError, Unauthorized
from dockyard.core.names import check_name
from dockyard.services.auth.scopes import DELETE, PULL, PUSH
from dockyard.services.ratelimit import RateLimiter

if TYPE_CHECKING:
    # The cache and its HTTP client are loaded only when upstreams are set.
    from dockyard.services.mirror.cache import PullThroughCache, Route

_RESOURCES = "manifests|blobs/uploads|blobs|tags|referrers"
_PATH = re.compile(rf"^/v2/(?P<name>.+)/(?P<resource>{_RESOURCES})/(?P<target>[^/]*)$")

RESOURCES: Mapping[str, Mapping[str, Handler]] = {
    "manifests": manifests.HANDLERS,
    "blobs": blobs.HANDLERS,
    "blobs/uploads": uploads.HANDLERS,
    "tags": tags.HANDLERS,
    "referrers": referrers.HANDLERS,
}

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


async def dispatch(request: Request) -> Response:
    match = _PATH.fullmatch(request.url.path)
    if match is None:
        return await counted_by_address(request, _not_found(request))

    resource, target = match["resource"], match["target"]
    handler = RESOURCES[resource].get(request.method)
    if handler is None:
        return await counted_by_address(request, _unsupported(request, resource))

    log_fields(request)["repository"] = match["name"]
    log_fields(request)["reference"] = target or None
    try:
        context = await _repository_request(request, match["name"], resource, target)
        limiter: RateLimiter | None = request.app.state.rate_limiter
        if limiter is None:
            return await handler(context)
        return await _limited(limiter, context, handler, resource)
    except Unauthorized as exc:
        return unauthorized_response(request, exc)
    except RegistryError as exc:
        return registry_error_response(exc)
    except ClientDisconnect:
        # Nobody is left to read an answer; the access line records the 400.
        return Response(status_code=400)
    except Exception as exc:
        return unexpected_error_response(exc, f"{request.method} {request.url.path}")


async def _repository_request(
    request: Request, requested: str, resource: str, target: str
) -> RepositoryRequest:
    """Validate the name, identify the caller, count the request against the
    `requests` limit, find the repository (a pull-through cache's, perhaps)
    and check the caller's rights on it."""
    try:
        check_name(requested)
    except RegistryError:
        await count_request(request, None)
        raise
    auth = auth_service(request)
    actions = needed_actions(resource, request.method)
    caller = None
    if auth is not None:
        caller = await identified(request, auth, challenge_scope(requested, actions))
    # Counted before any refusal, so that refusals count as well.
    await count_request(request, caller)

    route = await _cache_route(request, requested, caller)
    name = route.repository if route else requested
    log_fields(request)["repository"] = name
    context = RepositoryRequest(request, request.app.state.registry, name, target)
    context.route = route
    if auth is not None and caller is not None:
        if name != requested:
            await authorize_cached_pull(request, auth, caller, requested, name)
        else:
            await authorize(request, auth, name, actions, caller)
        context.caller = caller
        log_fields(request)["user"] = caller.actor

    # After the rights check: the refusal names the upstream, which only
    # those who may push there need to learn.
    if route is not None and request.method in ("POST", "PUT", "PATCH"):
        raise route.cache.refuse_push(route)
    return context


async def _cache_route(
    request: Request, name: str, caller: Caller | None
) -> Route | None:
    """The pull-through cache answering for `name`, if one does.

    Only reads go to a cache by `?ns=` or as the default mirror: a push of an
    unprefixed name is a push to a local repository. A local repository of
    the same name wins, if the caller may pull it: to anyone else it does
    not exist, and the mirror answers.
    """
    cache: PullThroughCache | None = request.app.state.mirror
    if cache is None:
        return None
    if request.method not in ("GET", "HEAD"):
        return await cache.route(name, None, _always_local)

    async def is_local(candidate: str) -> bool:
        registry = request.app.state.registry
        if not await registry.metadata.repository_exists(candidate):
            return False
        auth = auth_service(request)
        if auth is None or caller is None:
            return True
        return await caller.may(auth, candidate, {PULL})

    return await cache.route(name, request.query_params.get("ns"), is_local)


async def _always_local(name: str) -> bool:
    return True


async def _limited(
    limiter: RateLimiter,
    context: RepositoryRequest,
    handler: Handler,
    resource: str,
) -> Response:
    """Count a push or a pull against the caller's windows, then answer; pulls
    and version checks carry the caller's remaining pulls."""
    method = context.request.method
    caller = rate_caller(context.request, context.caller)
    if method in ("PUT", "POST", "PATCH"):
        await limiter.push(caller)

    quota = None
    if resource == "manifests" and method in ("GET", "HEAD"):
        quota = await limiter.pull(caller, counted=method == "GET")
    if quota is None:
        return await handler(context)

    # A GET of a missing manifest spends a pull too, and a HEAD that finds no
    # tag is still a version check: both say what is left.
    try:
        response = await handler(context)
    except Unauthorized:
        raise
    except RegistryError as exc:
        response = registry_error_response(exc)
    response.headers.update(quota.headers())
    return response


def needed_actions(resource: str, method: str) -> set[str]:
    """The action a request on `resource` takes, in token-scope terms."""
    if method == "DELETE" and resource in ("manifests", "blobs"):
        return {DELETE}
    if resource == "blobs/uploads" or method in ("PUT", "POST", "PATCH"):
        return {PUSH}
    return {PULL}


def log_fields(request: Request) -> dict[str, object]:
    """Fields the access log adds to this request's line."""
    fields: dict[str, object] = request.scope.setdefault("dockyard.log", {})
    return fields


def _unsupported(request: Request, resource: str) -> Response:
    allowed = ", ".join(RESOURCES[resource])
    return error_response(
        "UNSUPPORTED",
        405,
        f"{request.method} is not supported on {resource}; use {allowed}",
        headers={"Allow": allowed},
    )


def _not_found(request: Request) -> Response:
    return error_response(
        "UNSUPPORTED",
        404,
        f"no such endpoint: {request.method} {request.url.path}",
    )
