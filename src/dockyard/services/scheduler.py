"""Periodic work for `dockyard serve`: garbage collection and lifecycle policies.

One thread in the serving process's parent runs the jobs with an event loop
of its own, one after another, so a slow run delays the next rather than
overlapping it. A failed run is logged and tried again at the next interval.
With several nodes, each runs its own schedule; runs are safe to overlap
because every deletion re-checks what it deletes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    interval: float
    run: Callable[[], Awaitable[object]]


def start_schedule(jobs: list[Job]) -> threading.Thread | None:
    """Run `jobs` forever on a daemon thread; None if none has an interval."""
    active = [job for job in jobs if job.interval > 0]
    if not active:
        return None
    thread = threading.Thread(
        target=anyio.run, args=(_loop, active), name="dockyard-schedule", daemon=True
    )
    thread.start()
    return thread


async def _loop(jobs: list[Job]) -> None:
    due = {job.name: time.monotonic() + job.interval for job in jobs}
    while True:
        job = min(jobs, key=lambda each: due[each.name])
        await anyio.sleep(max(0.0, due[job.name] - time.monotonic()))
        await _run_once(job)
        due[job.name] = time.monotonic() + job.interval


async def _run_once(job: Job) -> None:
    started = time.monotonic()
    try:
        await job.run()
    except Exception:
        logger.exception(
            "scheduled %s failed; it runs again in %ss", job.name, job.interval
        )
        return
    logger.info("scheduled %s took %.1fs", job.name, time.monotonic() - started)
