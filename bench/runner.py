"""Run every workload against both registries, alternating which goes first."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from bench import listing, manifests, skopeo, transfer
from bench.results import Result
from bench.servers import Server
from bench.settings import MIB
from bench.workload import Bench, Metric, Workload

WORKLOADS: tuple[Workload, ...] = (
    *transfer.WORKLOADS,
    *manifests.WORKLOADS,
    *listing.WORKLOADS,
    *skopeo.WORKLOADS,
)

# Summed RSS counts pages that forked workers share once per process; PSS
# splits them between the sharers, and is reported beside it.
IDLE_MEMORY = Metric("memory-idle", "server RSS at idle after start", "MiB", "lower", 2)
IDLE_PSS = Metric("memory-idle-pss", "server PSS at idle after start", "MiB", "lower")
PEAK_MEMORY = Metric("memory-peak", "server RSS peak during the run", "MiB", "lower")

_started = time.monotonic()


def progress(message: str) -> None:
    elapsed = time.monotonic() - _started
    print(f"[{elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)


def run_workloads(
    servers: Sequence[Server], bench: Bench, workloads: Sequence[Workload]
) -> list[Result]:
    results: list[Result] = []
    for workload in workloads:
        results.extend(run_workload(servers, bench, workload))
    return results


def run_workload(
    servers: Sequence[Server], bench: Bench, workload: Workload
) -> list[Result]:
    """Prepare each registry, then measure it `repeats` times, in turns."""
    sizes = bench.sizes()
    results = {m.key: Result(m, m.title.format(**sizes)) for m in workload.metrics}
    ready = [server for server in servers if _prepare(workload, server, bench, results)]

    runs = bench.settings.repeats if workload.repeat else 1
    for run in range(runs):
        for server in ready if run % 2 == 0 else ready[::-1]:
            _measure(workload, server, bench, run, results)
    return list(results.values())


def _prepare(
    workload: Workload, server: Server, bench: Bench, results: dict[str, Result]
) -> bool:
    if workload.prepare is None:
        return True
    progress(f"{workload.name}: preparing {server.title}")
    try:
        workload.prepare(server, bench)
    except Exception as exc:  # noqa: BLE001 - one failure must not end the run
        _fail(workload, server, exc, results)
        return False
    return True


def _measure(
    workload: Workload,
    server: Server,
    bench: Bench,
    run: int,
    results: dict[str, Result],
) -> None:
    """One run on one registry; after a failure the registry is skipped."""
    if any(server.key in result.errors for result in results.values()):
        return
    progress(f"{workload.name}: run {run + 1} on {server.title}")
    try:
        values = workload.measure(server, bench, run)
    except Exception as exc:  # noqa: BLE001 - one failure must not end the run
        _fail(workload, server, exc, results)
        return

    for key, value in values.items():
        results[key].samples.setdefault(server.key, []).append(value)


def _fail(
    workload: Workload, server: Server, exc: Exception, results: dict[str, Result]
) -> None:
    progress(f"{workload.name}: {server.title} failed: {exc}")
    for result in results.values():
        result.errors[server.key] = str(exc)[:2000]


def memory_results(
    idle: dict[str, int], idle_pss: dict[str, int], peak: dict[str, int]
) -> list[Result]:
    return [
        Result(IDLE_MEMORY, IDLE_MEMORY.title, _mib(idle)),
        Result(IDLE_PSS, IDLE_PSS.title, _mib(idle_pss)),
        Result(PEAK_MEMORY, PEAK_MEMORY.title, _mib(peak)),
    ]


def _mib(rss: dict[str, int]) -> dict[str, list[float]]:
    return {server: [size / MIB] for server, size in rss.items()}
