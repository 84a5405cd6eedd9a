"""Dockyard's own management API under /api/v1/, beside the OCI API.

It takes the same credentials and permissions as /v2/: Basic, or a Bearer
token from /token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dockyard.api.auth import (
    auth_service,
    authorize,
    client_address,
    unauthorized_response,
)
from dockyard.api.errors import registry_error_response, unexpected_error_response
from dockyard.api.jsonbody import json_body
from dockyard.core.digest import Digest
from dockyard.core.errors import NameInvalid, RegistryError, Unauthorized
from dockyard.core.names import check_name, parse_reference
from dockyard.services.auth.scopes import DELETE, PULL
from dockyard.services.referrers import referrer_tree

Endpoint = Callable[[Request], Awaitable[Response]]


def endpoint(handler: Endpoint) -> Endpoint:
    """Map domain errors to spec errors, as the /v2/ dispatcher does."""

    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except Unauthorized as exc:
            return unauthorized_response(request, exc)
        except RegistryError as exc:
            return registry_error_response(exc)
        except Exception as exc:
            return unexpected_error_response(exc, request.url.path)

    return run


async def _allow(request: Request, name: str, actions: set[str]) -> str:
    """The actor, once the caller may take `actions` on `name`."""
    auth = auth_service(request)
    if auth is None:
        return "anonymous"
    caller = await authorize(request, auth, name, actions)
    return caller.actor


@endpoint
async def referrers(request: Request) -> Response:
    """The referrer tree of a manifest named by tag or digest."""
    registry = request.app.state.registry
    name = check_name(request.path_params["name"])
    reference = parse_reference(request.path_params["reference"])
    await _allow(request, name, {PULL})

    subject = await _resolve(request, name, reference)
    tree = await referrer_tree(registry, name, subject)
    return json_body(
        {
            "repository": name,
            "subject": str(subject),
            "referrers": [node.to_json() for node in tree],
        }
    )


async def _resolve(request: Request, name: str, reference: str | Digest) -> Digest:
    if isinstance(reference, Digest):
        return reference
    manifest = await request.app.state.registry.get_manifest(name, reference)
    return manifest.digest


@endpoint
async def delete_repository(request: Request) -> Response:
    """The whole repository; garbage collection reclaims its blobs."""
    name = check_name(request.path_params["name"])
    actor = await _allow(request, name, {DELETE})

    await request.app.state.registry.delete_repository(name)
    await request.app.state.auditor.record_async(
        "repository.delete", actor, target=name, address=client_address(request)
    )
    return Response(status_code=202, headers={"Content-Length": "0"})


@endpoint
async def namespace_usage(request: Request) -> Response:
    """Bytes a namespace stores and its quota, for those who may pull it."""
    namespace = check_name(request.path_params["namespace"])
    if "/" in namespace:
        raise NameInvalid(f"{namespace!r} is not a namespace")
    await _allow(request, namespace, {PULL})

    metadata = request.app.state.registry.metadata
    usage = await metadata.usage(namespace)
    return json_body(
        {
            "namespace": namespace,
            "bytes": usage.bytes,
            "repositories": usage.repositories,
            "quota": await metadata.namespace_quota(namespace),
        }
    )


ROUTES = [
    Route(
        "/api/v1/repositories/{name:path}/referrers/{reference}",
        referrers,
        methods=["GET"],
    ),
    Route("/api/v1/repositories/{name:path}", delete_repository, methods=["DELETE"]),
    Route("/api/v1/namespaces/{namespace}/usage", namespace_usage, methods=["GET"]),
]
