"""GET /v2/_catalog: the repositories, in lexical order."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dockyard.api.errors import registry_error_response, unexpected_error_response
from dockyard.api.pagination import paginated
from dockyard.core.errors import RegistryError

DEFAULT_PAGE = 1000


async def catalog(request: Request) -> Response:
    registry = request.app.state.registry
    try:
        return await paginated(
            request, "repositories", registry.list_repositories, DEFAULT_PAGE
        )
    except RegistryError as exc:
        return registry_error_response(exc)
    except Exception as exc:
        return unexpected_error_response(exc, "GET /v2/_catalog")
