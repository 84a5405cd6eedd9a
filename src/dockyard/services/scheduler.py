"""Periodic work for `dockyard serve`: garbage collection and lifecycle policies.

Every server worker runs the schedule in its own event loop; a lock file per
job lets one worker of the machine at a time run it and records when it last
finished, so a job runs once per interval however many workers there are.
The workers do it, not a thread of the parent process: that process forks
workers (also when it replaces one that died), and a fork while another
thread holds a lock leaves the lock held forever in the child.

A failed run is logged and tried again at the next interval. Several nodes
each run their own schedule; overlapping runs are safe, because every
deletion re-checks what it deletes.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import anyio

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    interval: float
    run: Callable[[], Awaitable[object]]

    @property
    def lock_name(self) -> str:
        return "schedule-" + self.name.replace(" ", "-") + ".lock"


async def run_schedule(jobs: list[Job], lock_dir: Path) -> None:
    """Run the jobs with an interval, each when it is due; never returns."""
    active = [job for job in jobs if job.interval > 0]
    if not active:
        return
    # Look often enough that a job starts soon after it falls due.
    pause = min(60.0, max(1.0, min(job.interval for job in active) / 4))
    while True:
        for job in active:
            await _run_if_due(job, lock_dir / job.lock_name)
        await anyio.sleep(pause)


async def _run_if_due(job: Job, lock_path: Path) -> None:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another worker is running it
        last = _last_run(fd)
        if last == 0.0:
            # A new data directory: the first run comes one interval from now,
            # not at the first start.
            _record_run(fd)
            return
        if time.time() - last < job.interval:
            return
        await _run_once(job)
        _record_run(fd)
    finally:
        os.close(fd)


def _last_run(fd: int) -> float:
    os.lseek(fd, 0, os.SEEK_SET)
    with contextlib.suppress(ValueError):
        return float(os.read(fd, 64).decode() or 0)
    return 0.0


def _record_run(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{time.time():.3f}".encode(), 0)


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
