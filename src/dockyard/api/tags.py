"""GET /v2/<name>/tags/list."""

from __future__ import annotations

from functools import partial

from starlette.responses import Response

from dockyard.api.context import RepositoryRequest
from dockyard.api.pagination import paginated
from dockyard.core.errors import Unsupported


async def list_tags(ctx: RepositoryRequest) -> Response:
    if ctx.target != "list":
        raise Unsupported(f"no such endpoint: /v2/{ctx.name}/tags/{ctx.target}")
    await ctx.registry.check_repository(ctx.name)

    lister = partial(ctx.registry.list_tags, ctx.name)
    return await paginated(ctx.request, "tags", lister, None, name=ctx.name)


HANDLERS = {"GET": list_tags}
