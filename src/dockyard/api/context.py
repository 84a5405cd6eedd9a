"""What a resource handler receives from the dispatcher."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from dockyard.core.ports import AuditEvent
from dockyard.core.registry import Registry

if TYPE_CHECKING:
    from dockyard.api.auth import Caller
    from dockyard.services.mirror.cache import Route


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
    # None when authentication is off: everyone may do everything.
    caller: Caller | None = None
    # Set when a pull-through cache answers for the repository.
    route: Route | None = None

    @property
    def actor(self) -> str:
        return self.caller.actor if self.caller else "anonymous"

    async def may(self, repository: str, actions: set[str]) -> bool:
        """Whether the caller may also take `actions` on another repository."""
        if self.caller is None:
            return True
        return await self.caller.may(self.request.app.state.auth, repository, actions)

    @property
    def address(self) -> str | None:
        return self.request.client.host if self.request.client else None

    async def audit(self, action: str, target: str, **detail: object) -> None:
        address = self.address
        await self.request.app.state.auditor.record_async(
            action, self.actor, target=target, address=address, detail=detail or None
        )

    def audit_event(self, action: str, target: str, **detail: object) -> AuditEvent:
        """The event `audit` would record, for a change that stores it in its
        own transaction; `audited` writes its log line once that commits."""
        return AuditEvent(
            datetime.now(UTC),
            action,
            self.actor,
            address=self.address,
            target=target,
            detail=detail or None,
        )

    def audited(self, event: AuditEvent) -> None:
        self.request.app.state.auditor.log(event)

    def url(self, path: str) -> str:
        """An absolute URL on this registry, for `Location` headers."""
        return str(self.request.base_url).rstrip("/") + path


Handler = Callable[[RepositoryRequest], Awaitable[Response]]
