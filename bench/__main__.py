"""`python -m bench [--quick] [--output FILE]`: Dockyard against Distribution."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from bench import machine
from bench.memory import PeakSampler
from bench.results import Result, table
from bench.runner import WORKLOADS, memory_results, progress, run_workloads
from bench.servers import Server, start_distribution, start_dockyard
from bench.settings import FULL, QUICK, Settings
from bench.workload import Bench, Workload

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "bench" / "results" / "latest.json"
DEFAULT_IMAGES = REPO_ROOT.parent / "shared" / "images"
# Let the servers finish starting before their idle memory is read.
IDLE_SETTLE_SECONDS = 3


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(arguments)
    settings = QUICK if args.quick else FULL
    workloads = _select(args.only)
    started, load_at_start = time.time(), os.getloadavg()

    with _workdir(args.workdir, args.keep) as workdir:
        results = _run(Bench(settings, workdir, args.images.resolve()), workloads)

    report = _report(arguments, settings, results, started)
    # Other work on the machine skews every number; the load shows how much.
    report["load_average"] = {"start": _rounded(load_at_start), "end": _rounded()}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    progress(f"results in {args.output}")
    return 1 if any(result.errors for result in results) else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes, only to show that the benchmark works",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--only",
        help="comma-separated workloads to run: "
        + ", ".join(workload.name for workload in WORKLOADS),
    )
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    parser.add_argument("--workdir", type=Path, help="parent of the work folder")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    return parser


def _select(only: str | None) -> list[Workload]:
    if not only:
        return list(WORKLOADS)
    names = only.split(",")
    known = {workload.name for workload in WORKLOADS}
    if unknown := set(names) - known:
        sys.exit(f"unknown workloads {sorted(unknown)}; known: {sorted(known)}")
    return [workload for workload in WORKLOADS if workload.name in names]


@contextmanager
def _workdir(parent: Path | None, keep: bool) -> Iterator[Path]:
    """A new folder for both registries' data, logs and the blob file."""
    workdir = Path(tempfile.mkdtemp(prefix="dockyard-bench-", dir=parent))
    try:
        yield workdir
    finally:
        if keep:
            progress(f"kept {workdir}")
        else:
            progress(f"removing {workdir}")
            shutil.rmtree(workdir, ignore_errors=True)


def _run(bench: Bench, workloads: list[Workload]) -> list[Result]:
    """Start both registries, run the workloads, and stop them again."""
    servers: list[Server] = []
    try:
        servers.append(start_distribution(bench.workdir))
        servers.append(start_dockyard(bench.workdir))
        progress("both registries answer; letting them settle")
        time.sleep(IDLE_SETTLE_SECONDS)
        idle = {server.key: server.rss() for server in servers}
        idle_pss = {server.key: server.pss() for server in servers}

        with PeakSampler(servers) as sampler:
            results = run_workloads(servers, bench, workloads)
        return results + memory_results(idle, idle_pss, sampler.peak)
    finally:
        progress("stopping the registries")
        for server in servers:
            server.stop()


def _report(
    arguments: list[str], settings: Settings, results: list[Result], started: float
) -> dict[str, object]:
    return {
        "mode": settings.mode,
        "command": " ".join(["python", "-m", "bench", *arguments]),
        "started": datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat(),
        "duration_s": round(time.time() - started, 1),
        "machine": machine.describe(),
        "settings": asdict(settings),
        "results": [result.to_json() for result in results],
    }


def _rounded(load: tuple[float, float, float] | None = None) -> list[float]:
    """The 1, 5 and 15 minute load averages, now unless given."""
    return [round(value, 2) for value in load or os.getloadavg()]


if __name__ == "__main__":
    sys.exit(main())
