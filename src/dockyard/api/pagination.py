"""The spec's `n` and `last` pagination, and the `Link` header for more."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from dockyard.api.jsonbody import json_body
from dockyard.core.errors import PaginationInvalid

# The most entries one response holds; clients follow `Link` for the rest.
MAX_PAGE = 10_000

Lister = Callable[[int | None, str | None], Awaitable[list[str]]]


async def paginated(
    request: Request, key: str, lister: Lister, default: int | None, **body: str
) -> Response:
    """List one page through `lister(limit, last)`, linking to the next.

    One entry more than the page is asked for, so that `Link` appears only
    when more entries remain.
    """
    limit, last = page_request(request, default)
    if limit == 0:
        return json_body({**body, key: []})

    items = await lister(None if limit is None else limit + 1, last)
    headers = {}
    if limit is not None and len(items) > limit:
        items = items[:limit]
        headers["Link"] = next_link(request, limit, items[-1])
    return json_body({**body, key: items}, headers)


def next_link(request: Request, limit: int, last: str, **query: str) -> str:
    """`Link` to the page after `last`, keeping the request's other filters."""
    params = urlencode({**query, "n": limit, "last": last})
    return f'<{request.url.path}?{params}>; rel="next"'


def page_request(
    request: Request, default: int | None
) -> tuple[int | None, str | None]:
    """(`n`, `last`) from the query; `n` is capped at `MAX_PAGE`."""
    raw = request.query_params.get("n")
    if raw is None or raw == "":
        limit = default
    elif raw.isascii() and raw.isdigit():
        limit = min(int(raw), MAX_PAGE)
    else:
        raise PaginationInvalid(f"n must be a non-negative integer, not {raw!r}")
    return limit, request.query_params.get("last") or None
