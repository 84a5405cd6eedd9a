"""Dockyard's own management API under /api/v1/, beside the OCI API.

It takes the same credentials and permissions as /v2/: Basic, or a Bearer
token from /token.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dockyard.api.auth import auth_service, authorize, unauthorized_response
from dockyard.api.errors import registry_error_response, unexpected_error_response
from dockyard.api.jsonbody import json_body
from dockyard.core.digest import Digest
from dockyard.core.errors import RegistryError, Unauthorized
from dockyard.core.names import check_name, parse_reference
from dockyard.services.auth.scopes import PULL
from dockyard.services.referrers import referrer_tree


async def referrers(request: Request) -> Response:
    """The referrer tree of a manifest named by tag or digest."""
    try:
        return await _referrers(request)
    except Unauthorized as exc:
        return unauthorized_response(request, exc)
    except RegistryError as exc:
        return registry_error_response(exc)
    except Exception as exc:
        return unexpected_error_response(exc, request.url.path)


async def _referrers(request: Request) -> Response:
    registry = request.app.state.registry
    name = check_name(request.path_params["name"])
    reference = parse_reference(request.path_params["reference"])
    auth = auth_service(request)
    if auth is not None:
        await authorize(request, auth, name, {PULL})

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


ROUTES = [
    Route(
        "/api/v1/repositories/{name:path}/referrers/{reference}",
        referrers,
        methods=["GET"],
    ),
]
