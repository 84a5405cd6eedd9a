"""The one dispatcher for /v2/<name>/...: parse, validate the name, route.

Repository names contain slashes, so the path is matched from its right end:
the last `/manifests/`, `/blobs/`, `/blobs/uploads/` or `/tags/` segment
splits the name from the target. Domain errors raised by any handler become
spec error responses here, and nothing else escapes as a bare 500.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from dockyard.api import blobs, manifests, referrers, tags, uploads
from dockyard.api.auth import auth_service, authorize, unauthorized_response
from dockyard.api.context import Handler, RepositoryRequest
from dockyard.api.errors import (
    error_response,
    registry_error_response,
    unexpected_error_response,
)
from dockyard.core.errors import RegistryError, Unauthorized
from dockyard.core.names import check_name
from dockyard.services.auth.scopes import DELETE, PULL, PUSH

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
        return _not_found(request)

    resource, target = match["resource"], match["target"]
    handlers = RESOURCES[resource]
    handler = handlers.get(request.method)
    if handler is None:
        allowed = ", ".join(handlers)
        return error_response(
            "UNSUPPORTED",
            405,
            f"{request.method} is not supported on {resource}; use {allowed}",
            headers={"Allow": allowed},
        )

    log_fields(request)["repository"] = match["name"]
    log_fields(request)["reference"] = target or None
    try:
        name = check_name(match["name"])
        context = RepositoryRequest(request, request.app.state.registry, name, target)
        auth = auth_service(request)
        if auth is not None:
            actions = needed_actions(resource, request.method)
            context.caller = await authorize(request, auth, name, actions)
            log_fields(request)["user"] = context.caller.actor
        return await handler(context)
    except Unauthorized as exc:
        return unauthorized_response(request, exc)
    except RegistryError as exc:
        return registry_error_response(exc)
    except ClientDisconnect:
        # Nobody is left to read an answer; the access line records the 400.
        return Response(status_code=400)
    except Exception as exc:
        return unexpected_error_response(exc, f"{request.method} {request.url.path}")


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


def _not_found(request: Request) -> Response:
    return error_response(
        "UNSUPPORTED",
        404,
        f"no such endpoint: {request.method} {request.url.path}",
    )
