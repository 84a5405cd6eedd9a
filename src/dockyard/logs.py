"""Logging set-up: readable text for people, JSON lines for log pipelines.

Access lines go to the `dockyard.access` logger with their fields as extras,
so the JSON format carries them as keys; diagnostics use module loggers.
"""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

ACCESS_LOGGER = "dockyard.access"


def configure_logging(log_format: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(
            JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s")
        )
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )

    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Migrations run at every start; their step-by-step chatter is noise.
    logging.getLogger("alembic").setLevel(logging.WARNING)
