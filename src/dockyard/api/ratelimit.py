"""The `requests` limit at the HTTP edge: each request under /v2/ counted once.

A request is counted against the caller its credentials prove, else against
its client address: one without credentials, with wrong ones, or answered
before they were read (an unknown endpoint, a bad repository name). So a flood
of 401s is limited like any other, and no request is counted twice. The client
address is the one `api.proxy` settled, which believes only trusted proxies.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dockyard.api.auth import Caller, identify
from dockyard.api.errors import registry_error_response
from dockyard.core.errors import TooManyRequests
from dockyard.services.auth.service import AuthService
from dockyard.services.ratelimit import Caller as RateCaller
from dockyard.services.ratelimit import RateLimiter


async def identified(request: Request, auth: AuthService, scope: str = "") -> Caller:
    """`identify`, counting a request whose credentials fail by its address.

    Past the address's `requests` limit it raises `TooManyRequests` instead of
    the 401, so guessing credentials is limited too.
    """
    try:
        return await identify(request, auth, scope)
    except Exception:
        await count_request(request, None)
        raise


async def count_request(request: Request, caller: Caller | None) -> None:
    """Count the request against `caller` (None: nobody proven, the address)."""
    limiter: RateLimiter | None = request.app.state.rate_limiter
    if limiter is not None:
        await limiter.request(rate_caller(request, caller))


async def counted_by_address(request: Request, response: Response) -> Response:
    """`response`, answered before any credentials were read, once counted
    against the client address; past its limit, 429 instead."""
    try:
        await count_request(request, None)
    except TooManyRequests as exc:
        return registry_error_response(exc)
    return response


def rate_caller(request: Request, caller: Caller | None) -> RateCaller:
    address = request.client.host if request.client else None
    principal = caller.principal if caller else None
    if principal is None or principal.anonymous:
        return RateCaller(address)
    return RateCaller(address, principal.subject, principal.token)
