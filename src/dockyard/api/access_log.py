"""One access line per request, and the API version header on every answer."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dockyard.logs import ACCESS_LOGGER

access_logger = logging.getLogger(ACCESS_LOGGER)

_VERSION_HEADER = (b"docker-distribution-api-version", b"registry/2.0")


class AccessLog:
    """ASGI middleware: logs method, path, repository, status, bytes, time."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()
        line: dict[str, Any] = {"status": 0, "bytes_in": 0, "declared": None, "sent": 0}

        async def counting_receive() -> Message:
            message = await receive()
            line["bytes_in"] += len(message.get("body", b""))
            return message

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                line["status"] = message["status"]
                message["headers"] = [*message.get("headers", []), _VERSION_HEADER]
                line["declared"] = _content_length(message["headers"])
            elif message["type"] == "http.response.body":
                line["sent"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, counting_send)
        finally:
            _log(scope, line, time.perf_counter() - started)


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name.lower() == b"content-length":
            return int(value)
    return None


def _log(scope: Scope, line: dict[str, Any], seconds: float) -> None:
    fields = scope.get("dockyard.log", {})
    client = scope.get("client")
    method = scope["method"]
    bytes_out = line["sent"] if line["declared"] is None else line["declared"]
    if method == "HEAD":
        bytes_out = 0
    extra = {
        "method": method,
        "path": scope["path"],
        "repository": fields.get("repository"),
        "reference": fields.get("reference"),
        "status": line["status"],
        "bytes_in": line["bytes_in"],
        "bytes_out": bytes_out,
        "duration_ms": round(seconds * 1000, 1),
        "client": client[0] if client else None,
    }
    access_logger.info(
        '%s "%s %s" %s repository=%s in=%d out=%d %.1fms',
        extra["client"],
        method,
        scope["path"],
        extra["status"],
        extra["repository"] or "-",
        extra["bytes_in"],
        bytes_out,
        extra["duration_ms"],
        extra=extra,
    )
