"""The spec's `n` and `last` pagination, and the `Link` header for more."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse

from dockyard.core.errors import PaginationInvalid

# The most entries one response holds; clients follow `Link` for the rest.
MAX_PAGE = 10_000

Lister = Callable[[int | None, str | None], Awaitable[list[str]]]


async def paginated(
    request: Request, key: str, lister: Lister, default: int | None, **body: str
) -> JSONResponse:
    """List one page through `lister(limit, last)`, linking to the next.

    One entry more than the page is asked for, so that `Link` appears only
    when more entries remain.
    """
    limit, last = _page_request(request, default)
    if limit == 0:
        return JSONResponse({**body, key: []})

    items = await lister(None if limit is None else limit + 1, last)
    headers = {}
    if limit is not None and len(items) > limit:
        items = items[:limit]
        query = urlencode({"n": limit, "last": items[-1]})
        headers["Link"] = f'<{request.url.path}?{query}>; rel="next"'
    return JSONResponse({**body, key: items}, headers=headers)


def _page_request(
    request: Request, default: int | None
) -> tuple[int | None, str | None]:
    raw = request.query_params.get("n")
    if raw is None or raw == "":
        limit = default
    elif raw.isdigit():
        limit = min(int(raw), MAX_PAGE)
    else:
        raise PaginationInvalid(f"n must be a non-negative integer, not {raw!r}")
    return limit, request.query_params.get("last") or None
