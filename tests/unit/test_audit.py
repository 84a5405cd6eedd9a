"""An event stored with the change it records is logged as `record` logs it."""

import logging
from datetime import UTC, datetime

from dockyard.core.ports import AuditEvent
from dockyard.services.audit import Auditor

FIELDS = ("audit", "actor", "outcome", "address", "target", "detail")


class Events:
    def __init__(self) -> None:
        self.stored: list[AuditEvent] = []

    def record_event(self, event: AuditEvent) -> None:
        self.stored.append(event)


def logged(caplog) -> list[tuple[str, tuple[object, ...]]]:
    return [
        (r.getMessage(), tuple(getattr(r, f) for f in FIELDS))
        for r in caplog.records
        if r.name == "dockyard.audit"
    ]


def test_log_writes_the_line_record_writes(caplog):
    caplog.set_level(logging.INFO, logger="dockyard.audit")
    events = Events()
    auditor = Auditor(events)  # type: ignore[arg-type]
    detail = {"tags": ["v1"]}

    auditor.record("push", "alice", "a/b@sha256:00", address="10.0.0.1", detail=detail)
    recorded = logged(caplog)
    caplog.clear()
    auditor.log(
        AuditEvent(
            datetime.now(UTC),
            "push",
            "alice",
            "success",
            "10.0.0.1",
            "a/b@sha256:00",
            detail,
        )
    )

    assert logged(caplog) == recorded
    assert recorded[0][0] == "push success by alice on a/b@sha256:00"
    assert len(events.stored) == 1
