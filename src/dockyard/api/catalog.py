"""GET /v2/_catalog: the repositories, in lexical order.

With authentication on, the listing holds only repositories the caller may
pull; pages are filled from as many store pages as that takes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response

from dockyard.api.auth import (
    auth_service,
    refusal,
    token_allows,
    unauthorized_response,
)
from dockyard.api.errors import registry_error_response, unexpected_error_response
from dockyard.api.pagination import paginated
from dockyard.api.ratelimit import count_request, identified
from dockyard.core.errors import RegistryError, Unauthorized
from dockyard.services.auth.permissions import Principal, allowed_actions
from dockyard.services.auth.scopes import PULL
from dockyard.services.auth.service import CATALOG, AuthService, is_public

DEFAULT_PAGE = 1000

Lister = Callable[[int | None, str | None], Awaitable[list[str]]]


async def catalog(request: Request) -> Response:
    registry = request.app.state.registry
    try:
        lister: Lister = registry.list_repositories
        auth = auth_service(request)
        if auth is None:
            await count_request(request, None)
        else:
            principal = await _catalog_caller(request, auth)
            lister = await _visible_to(auth, principal, registry.list_repositories)
        return await paginated(request, "repositories", lister, DEFAULT_PAGE)
    except Unauthorized as exc:
        return unauthorized_response(request, exc)
    except RegistryError as exc:
        return registry_error_response(exc)
    except Exception as exc:
        return unexpected_error_response(exc, "GET /v2/_catalog")


async def _catalog_caller(request: Request, auth: AuthService) -> Principal:
    scope = str(CATALOG)
    caller = await identified(request, auth, scope)
    await count_request(request, caller)
    if caller.claims is None:
        if caller.principal.anonymous:
            raise refusal(caller.principal, scope)
        return caller.principal
    if not token_allows(caller.claims, CATALOG):
        raise Unauthorized(
            "the token does not cover the catalog", scope, "insufficient_scope"
        )
    return await auth.principal_for(caller.claims)


async def _visible_to(
    auth: AuthService, principal: Principal, source: Lister
) -> Lister:
    settings = await auth.public_settings()

    def visible(name: str) -> bool:
        public = is_public(settings, name)
        return PULL in allowed_actions(principal, name, public)

    async def lister(limit: int | None, last: str | None) -> list[str]:
        found: list[str] = []
        while limit is None or len(found) < limit:
            page = await source(DEFAULT_PAGE, last)
            found += [name for name in page if visible(name)]
            if len(page) < DEFAULT_PAGE:
                break
            last = page[-1]
        return found if limit is None else found[:limit]

    return lister
