"""Logging set-up: readable text for people, JSON lines for log pipelines.

Access lines go to the `dockyard.access` logger with their fields as extras,
so the JSON format carries them as keys; diagnostics use module loggers.
"""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

ACCESS_LOGGER = "dockyard.access"


# Control characters a client could put in a path or a username.
_CONTROL = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F)}


class TextFormatter(logging.Formatter):
    """One line per record, whatever a client sent: a path or a username with
    a newline must not start a line that looks like a log line of its own.
    Tracebacks, added after the message, keep their lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802
        return super().formatMessage(record).translate(_CONTROL)


def configure_logging(log_format: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(
            JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
        )
    else:
        handler.setFormatter(
            TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )

    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Migrations run at every start; their step-by-step chatter is noise.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # One line per upstream request, mostly duplicating Dockyard's own.
    logging.getLogger("httpx").setLevel(logging.WARNING)
