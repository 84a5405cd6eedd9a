"""GET /v2/<name>/tags/list."""

from __future__ import annotations

from functools import partial

from starlette.responses import Response

from dockyard.api.context import RepositoryRequest
from dockyard.api.errors import error_response
from dockyard.api.pagination import paginated


async def list_tags(ctx: RepositoryRequest) -> Response:
    if ctx.target != "list":
        message = f"no such endpoint: GET /v2/{ctx.name}/tags/{ctx.target}"
        return error_response("UNSUPPORTED", 404, message)
    await ctx.registry.check_repository(ctx.name)

    lister = partial(ctx.registry.list_tags, ctx.name)
    return await paginated(ctx.request, "tags", lister, None, name=ctx.name)


HANDLERS = {"GET": list_tags}
