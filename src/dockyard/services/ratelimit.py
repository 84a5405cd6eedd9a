"""Pull rate limits as Docker Hub counts them, with the headers clients read.

A pull is a manifest GET; a HEAD (a version check) costs nothing and reports
what is left. Anonymous callers are counted per address (an IPv6 address per
/64, which one host can easily spread across), logged-in callers per account;
configured overrides give an account (or an access token, `token:<name>`)
its own limit or none. Optional separate limits count pushes and all requests.

The windows are `limits` moving windows: in each server process by default,
so with several workers a caller gets up to `workers` times a limit, and
shared by every worker and node when `redis_url` is set. When the counters
cannot be reached, requests are served unlimited and a warning is logged.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dockyard.core.errors import TooManyRequests

# `limits` is imported where used: only a registry with limits needs it.
if TYPE_CHECKING:
    from limits import RateLimitItem

UNLIMITED = "unlimited"

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Caller:
    """Whom a request is counted against: an account, else an address."""

    address: str | None
    account: str | None = None
    # The access token used, whose `token:<name>` override wins.
    token: str | None = None

    @property
    def source(self) -> str:
        """What `Docker-RateLimit-Source` names."""
        return self.account or network_of(self.address)

    @property
    def key(self) -> str:
        """The counter's name: an account named like an address stays apart."""
        if self.account:
            return f"account:{self.account}"
        return f"address:{network_of(self.address)}"


@dataclass(frozen=True, slots=True)
class Quota:
    """Where a caller stands in a window, for the RateLimit headers."""

    limit: int
    remaining: int
    window: int
    source: str

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": f"{self.limit};w={self.window}",
            "RateLimit-Remaining": f"{self.remaining};w={self.window}",
            "Docker-RateLimit-Source": self.source,
        }


def network_of(address: str | None) -> str:
    """The address counted: IPv4 as it is, IPv6 by its /64."""
    if not address:
        return "unknown"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if parsed.version == 6:
        if parsed.ipv4_mapped:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def parse_limit(text: str | None) -> RateLimitItem | None:
    """`100/6hours`, or None for `unlimited` and unset."""
    if text is None or text == UNLIMITED:
        return None
    from limits import parse

    return parse(text)


class RateLimiter:
    def __init__(
        self,
        anonymous: str | None,
        authenticated: str | None,
        overrides: dict[str, str],
        pushes: str | None,
        requests: str | None,
        redis_url: str | None,
    ) -> None:
        from limits.aio.strategies import MovingWindowRateLimiter

        storage = _storage(redis_url)
        self._windows = MovingWindowRateLimiter(storage)  # type: ignore[arg-type]
        self._anonymous = parse_limit(anonymous)
        self._authenticated = parse_limit(authenticated)
        self._overrides = {name: parse_limit(v) for name, v in overrides.items()}
        self._pushes = parse_limit(pushes)
        self._requests = parse_limit(requests)

    def pull_limit(self, caller: Caller) -> RateLimitItem | None:
        if caller.account is None:
            return self._anonymous
        overridden, limit = self._override(caller)
        return limit if overridden else self._authenticated

    def _override(self, caller: Caller) -> tuple[bool, RateLimitItem | None]:
        names = [f"token:{caller.token}" if caller.token else None, caller.account]
        for name in names:
            if name is not None and name in self._overrides:
                return True, self._overrides[name]
        return False, None

    async def pull(self, caller: Caller, counted: bool) -> Quota | None:
        """Count a pull (a GET) or only look (a HEAD); raise past the limit."""
        limit = self.pull_limit(caller)
        if limit is None:
            return None
        if counted:
            await self._hit(limit, "pull", caller, "pull rate limit")
        return await self._quota(limit, "pull", caller)

    async def push(self, caller: Caller) -> None:
        if self._pushes is not None and self._is_limited(caller):
            await self._hit(self._pushes, "push", caller, "push rate limit")

    async def request(self, caller: Caller) -> None:
        if self._requests is not None and self._is_limited(caller):
            await self._hit(self._requests, "request", caller, "request rate limit")

    async def usage(self, caller: Caller) -> list[tuple[str, Quota]]:
        """What a caller (an address, or an account) has used, per kind."""
        found = []
        for kind, limit in (
            ("pull", self.pull_limit(caller)),
            ("push", self._pushes),
            ("request", self._requests),
        ):
            quota = None if limit is None else await self._quota(limit, kind, caller)
            if quota is not None:
                found.append((kind, quota))
        return found

    def _is_limited(self, caller: Caller) -> bool:
        # An account overridden as unlimited is unlimited in every kind.
        overridden, limit = self._override(caller)
        return not overridden or limit is not None

    async def _hit(
        self, limit: RateLimitItem, kind: str, caller: Caller, what: str
    ) -> None:
        try:
            if await self._windows.hit(limit, kind, caller.key):
                return
            reset, _ = await self._windows.get_window_stats(limit, kind, caller.key)
        except Exception as exc:
            _unavailable(exc)
            return
        wait = max(1, math.ceil(reset - time.time()))
        advice = "wait" if caller.account else "log in or wait"
        raise TooManyRequests(
            f"You have reached your {what} of {limit.amount} per "
            f"{_window_text(limit)} for {caller.source}; {advice} {wait} seconds",
            wait,
        )

    async def _quota(
        self, limit: RateLimitItem, kind: str, caller: Caller
    ) -> Quota | None:
        try:
            _, remaining = await self._windows.get_window_stats(limit, kind, caller.key)
        except Exception as exc:
            _unavailable(exc)
            return None
        window = limit.get_expiry()
        return Quota(limit.amount, max(0, remaining), window, caller.source)


_warned_at = 0.0


def _unavailable(exc: Exception) -> None:
    """Counters out of reach (Redis down): serve rather than refuse, and say
    so at most once a minute."""
    global _warned_at
    if time.monotonic() - _warned_at > 60:
        _warned_at = time.monotonic()
        logger.warning("rate-limit counters unavailable, not limiting: %s", exc)


def _window_text(limit: RateLimitItem) -> str:
    seconds = limit.get_expiry()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}s" if count > 1 else unit
    return f"{seconds} seconds"


def _storage(redis_url: str | None) -> object:
    from limits.storage import storage_from_string

    if redis_url is None:
        return storage_from_string("async+memory://")
    # redis-py is a dependency already; `limits` would otherwise want coredis.
    return storage_from_string("async+" + redis_url, implementation="redispy")
