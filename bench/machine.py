"""What the benchmark ran on: the numbers mean little without it."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

import psutil


def describe() -> dict[str, object]:
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "dockyard": _package("dockyard"),
        "dockyard_commit": _commit(),
        "granian": _package("granian"),
        "starlette": _package("starlette"),
        "docker-registry": _first_line(["docker-registry", "--version"]),
        "wrk": _first_line(["wrk", "-v"]),
        "ab": _first_line(["ab", "-V"]),
        "curl": _first_line(["curl", "--version"]),
        "skopeo": _first_line(["skopeo", "--version"]),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _package(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _commit() -> str:
    """The checked-out commit, marked when the source differs from it."""
    source = Path(__file__).resolve().parents[1]
    git = ["git", "-C", str(source)]
    commit = _first_line([*git, "rev-parse", "--short", "HEAD"])
    changes = _output([*git, "status", "--porcelain", "src"])
    return f"{commit} with uncommitted changes in src" if changes else commit


def _first_line(command: list[str]) -> str:
    lines = _output(command).splitlines()
    return lines[0].strip() if lines else "unknown"


def _output(command: list[str]) -> str:
    """What the command prints (some tools print their version on stderr)."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout or done.stderr
