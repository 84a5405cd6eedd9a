"""Failed-login throttling per user and per client address.

Only failures count. The windows live in the process by default and in Redis
when `redis_url` is set, so that every worker and node shares them; with the
in-process default each worker keeps its own count, so a client can make up to
`workers` times the configured failures before all of them refuse.

Failures for an access token are counted per token, not per claimed username.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

from dockyard.core.errors import TooManyRequests

if TYPE_CHECKING:
    from limits import RateLimitItem

# Locks striped by key: logins for one user or address take turns in a
# process, so parallel guesses cannot all pass the check before any failure
# is counted.
_STRIPES = 256


class LoginThrottle:
    def __init__(self, per_user: str, per_address: str, redis_url: str | None) -> None:
        # Imported here: only a registry with logins needs it.
        from limits import parse, storage, strategies

        backend = storage.storage_from_string(redis_url or "memory://")
        self._limiter = strategies.MovingWindowRateLimiter(backend)
        self._per_user = parse(per_user)
        self._per_address = parse(per_address)
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]

    @contextmanager
    def attempt(self, username: str, address: str | None) -> Iterator[None]:
        """Hold the user's and address's turn, once neither window is full."""
        keys = [key for _, key in self._keys(username, address)]
        stripes = sorted({hash(key) % _STRIPES for key in keys})
        with ExitStack() as held:
            for index in stripes:
                held.enter_context(self._stripes[index])
            self.check(username, address)
            yield

    def check(self, username: str, address: str | None) -> None:
        """Raise `TooManyRequests` if either window is full."""
        for limit, key in self._keys(username, address):
            if not self._limiter.test(limit, "login-failure", key):
                reset, _ = self._limiter.get_window_stats(limit, "login-failure", key)
                wait = max(1, math.ceil(reset - time.time()))
                raise TooManyRequests(
                    f"too many failed logins; try again in {wait} seconds", wait
                )

    def failed(self, username: str, address: str | None) -> None:
        for limit, key in self._keys(username, address):
            self._limiter.hit(limit, "login-failure", key)

    def _keys(
        self, username: str, address: str | None
    ) -> list[tuple[RateLimitItem, str]]:
        keys: list[tuple[RateLimitItem, str]] = [(self._per_user, f"user:{username}")]
        if address:
            keys.append((self._per_address, f"address:{address}"))
        return keys
