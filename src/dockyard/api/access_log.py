"""One access line per request, and the API version header on every answer."""

from __future__ import annotations

import logging
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dockyard.core.errors import RegistryError
from dockyard.logs import ACCESS_LOGGER

access_logger = logging.getLogger(ACCESS_LOGGER)
logger = logging.getLogger(__name__)

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
        line: dict[str, Any] = {
            "status": 0,
            "bytes_in": 0,
            "declared": None,
            "sent": 0,
            "complete": False,
        }

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
                line["complete"] = not message.get("more_body", False)
            elif message["type"] == "http.response.pathsend":
                # The server sends the file; its length is the declared one.
                line["sent"] = line["declared"] or 0
                line["complete"] = True
            await send(message)

        try:
            await self.app(scope, counting_receive, counting_send)
        except Exception as exc:
            if not line["status"] or line["complete"]:
                raise
            # Returning with the body unfinished makes the server close the
            # connection short of the promised length, which the client sees
            # as the failure it is; raising would only add a traceback.
            _broken_off(scope, exc)
        finally:
            _log(scope, line, time.perf_counter() - started)


def _broken_off(scope: Scope, exc: Exception) -> None:
    where = f"{scope['method']} {scope['path']}"
    if isinstance(exc, RegistryError):
        logger.warning("%s: answer broken off: %s", where, exc.message)
    else:
        logger.exception("%s: answer broken off by an unexpected error", where)


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name.lower() == b"content-length":
            return int(value)
    return None


def _log(scope: Scope, line: dict[str, Any], seconds: float) -> None:
    fields = scope.get("dockyard.log", {})
    client = scope.get("client")
    method = scope["method"]
    bytes_out = 0 if method == "HEAD" else line["sent"]
    # Cut short by an error or by a client that went away.
    broken_off = method != "HEAD" and bool(line["status"]) and not line["complete"]
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
        "broken_off": broken_off,
    }
    access_logger.info(
        '%s "%s %s" %s repository=%s in=%d out=%d %.1fms%s',
        extra["client"],
        method,
        scope["path"],
        extra["status"],
        extra["repository"] or "-",
        extra["bytes_in"],
        bytes_out,
        extra["duration_ms"],
        " broken off" if broken_off else "",
        extra=extra,
    )
