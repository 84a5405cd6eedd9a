"""Dockyard's own management API under /api/v1/, beside the OCI API.

It takes the same credentials and permissions as /v2/: Basic, or a Bearer
token from /token.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from dockyard.api.auth import (
    auth_service,
    authorize,
    client_address,
    identify,
    refusal,
    unauthorized_response,
)
from dockyard.api.errors import registry_error_response, unexpected_error_response
from dockyard.api.jsonbody import json_body
from dockyard.core.digest import Digest
from dockyard.core.errors import (
    Denied,
    LifecyclePolicyInvalid,
    LifecyclePolicyUnknown,
    NameInvalid,
    RegistryError,
    Unauthorized,
)
from dockyard.core.names import check_name, namespace_of, parse_reference
from dockyard.metadata.collection import LifecycleStore
from dockyard.services.auth.permissions import Principal, expand_actions
from dockyard.services.auth.scopes import ADMIN, DELETE, PULL
from dockyard.services.lifecycle import Policy, PolicyInvalid, parse_policy
from dockyard.services.lifecycle.runner import check_target
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
        except ClientDisconnect:
            # Nobody is left to read an answer; the access line records the 400.
            return Response(status_code=400)
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


async def _allow_admin(request: Request, namespace: str | None) -> str:
    """The actor, once the caller administers `namespace` (None: everything)."""
    auth = auth_service(request)
    if auth is None:
        return "anonymous"
    caller = await identify(request, auth, "registry:catalog:*")
    if caller.claims is not None:
        # A registry token carries pull and push scopes, never these rights.
        raise Unauthorized("policies are managed with Basic credentials")
    principal = caller.principal
    if principal.anonymous:
        raise refusal(principal, "")
    if namespace is None and _administers_everything(principal):
        return caller.actor
    if namespace is not None and ADMIN in await auth.allowed(principal, namespace):
        return caller.actor
    raise Denied("requested access to the resource is denied")


def _administers_everything(principal: Principal) -> bool:
    """A registry admin, through no access token or one scoped to all."""
    if not principal.is_admin:
        return False
    if principal.token_scopes is None:
        return True
    return any(
        grant.pattern == "*" and ADMIN in expand_actions(grant.actions)
        for grant in principal.token_scopes
    )


def _policy_namespace(target: str) -> str | None:
    """The namespace a target lies in, or None for a glob across namespaces."""
    first = namespace_of(target)
    return None if any(char in first for char in "*?[") else first


@endpoint
async def policy(request: Request) -> Response:
    """GET, PUT or DELETE the lifecycle policy of a repository, namespace or glob."""
    target = check_target(request.path_params["target"])
    actor = await _allow_admin(request, _policy_namespace(target))
    store = LifecycleStore(request.app.state.registry.metadata)

    if request.method == "PUT":
        parsed = _parse_policy(await _bounded_body(request))
        await store.put_policy(target, orjson.dumps(parsed.to_json()).decode())
        await request.app.state.auditor.record_async(
            "policy.put", actor, target=target, address=client_address(request)
        )
        return json_body(parsed.to_json())
    if request.method == "DELETE":
        if not await store.delete_policy(target):
            raise LifecyclePolicyUnknown(f"no lifecycle policy for {target}")
        await request.app.state.auditor.record_async(
            "policy.delete", actor, target=target, address=client_address(request)
        )
        return Response(status_code=204)

    policies = await store.policies()
    if target not in policies:
        raise LifecyclePolicyUnknown(f"no lifecycle policy for {target}")
    return json_body(orjson.loads(policies[target]))


# ECR policies are a few kilobytes; this bounds what one request can hold.
MAX_POLICY_BYTES = 1024 * 1024


async def _bounded_body(request: Request) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_POLICY_BYTES:
            raise LifecyclePolicyInvalid(
                f"a policy is limited to {MAX_POLICY_BYTES} bytes"
            )
    return bytes(body)


def _parse_policy(body: bytes) -> Policy:
    try:
        return parse_policy(body)
    except PolicyInvalid as exc:
        raise LifecyclePolicyInvalid(str(exc), {"faults": list(exc.faults)}) from None


@endpoint
async def lifecycle_preview(request: Request) -> Response:
    """What the policies would expire now: one repository (?repository=) or all."""
    repository = request.query_params.get("repository")
    if repository is not None:
        check_name(repository)
    namespace = namespace_of(repository) if repository else None
    await _allow_admin(request, namespace)

    results = await request.app.state.lifecycle.preview(repository)
    return json_body([result.to_json() for result in results])


@endpoint
async def lifecycle_run(request: Request) -> Response:
    """Apply every policy now (registry administrators only)."""
    actor = await _allow_admin(request, None)
    results = await request.app.state.lifecycle.run(actor)
    return json_body([result.to_json() for result in results])


ROUTES = [
    Route(
        "/api/v1/repositories/{name:path}/referrers/{reference}",
        referrers,
        methods=["GET"],
    ),
    Route("/api/v1/repositories/{name:path}", delete_repository, methods=["DELETE"]),
    Route("/api/v1/namespaces/{namespace}/usage", namespace_usage, methods=["GET"]),
    Route("/api/v1/policies/{target:path}", policy, methods=["GET", "PUT", "DELETE"]),
    Route("/api/v1/lifecycle/preview", lifecycle_preview, methods=["GET"]),
    Route("/api/v1/lifecycle/run", lifecycle_run, methods=["POST"]),
]
