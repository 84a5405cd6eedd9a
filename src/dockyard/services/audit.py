"""Audit events: who logged in, created or revoked a token, changed a
permission, pushed or deleted, kept in the database and written as one
structured line each on the `dockyard.audit` logger, apart from diagnostics.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import anyio.to_thread

from dockyard.core.ports import AuditEvent
from dockyard.services.auth.records import AccountStore

logger = logging.getLogger("dockyard.audit")


class Auditor:
    def __init__(self, store: AccountStore) -> None:
        self._store = store

    def record(
        self,
        action: str,
        actor: str,
        target: str | None = None,
        outcome: str = "success",
        address: str | None = None,
        detail: dict[str, object] | None = None,
    ) -> None:
        event = AuditEvent(
            datetime.now(UTC), action, actor, outcome, address, target, detail
        )
        self._store.record_event(event)
        self.log(event)

    def log(self, event: AuditEvent) -> None:
        """The log line alone, for an event stored with the change it records."""
        logger.info(
            "%s %s by %s on %s",
            event.action,
            event.outcome,
            event.actor or "anonymous",
            event.target or "-",
            extra={
                "audit": event.action,
                "actor": event.actor,
                "outcome": event.outcome,
                "address": event.address,
                "target": event.target,
                "detail": event.detail,
            },
        )

    async def record_async(self, action: str, actor: str, **fields: object) -> None:
        await anyio.to_thread.run_sync(
            lambda: self.record(action, actor, **fields)  # type: ignore[arg-type]
        )
