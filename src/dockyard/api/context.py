"""What a resource handler receives from the dispatcher."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from dockyard.core.registry import Registry


@dataclass(slots=True)
class RepositoryRequest:
    """A request under /v2/<name>/ whose name the dispatcher has validated.

    `target` is the last path segment: a reference, a digest, an upload id,
    or empty for a new upload.
    """

    request: Request
    registry: Registry
    name: str
    target: str

    def url(self, path: str) -> str:
        """An absolute URL on this registry, for `Location` headers."""
        return str(self.request.base_url).rstrip("/") + path


Handler = Callable[[RepositoryRequest], Awaitable[Response]]
