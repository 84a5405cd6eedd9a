"""What a workload is, and what it is handed when it runs."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.blobfile import BlobFile
from bench.servers import Server
from bench.settings import MIB, Settings


@dataclass(frozen=True)
class Metric:
    """One number a workload reports for each registry.

    `title` may name the sizes in `Bench.sizes()`, e.g. "{blob}". `target` is
    the Dockyard/Distribution ratio to reach: at least it when higher is
    better, at most it when lower is better.
    """

    key: str
    title: str
    unit: str
    better: str
    target: float | None = None

    def __post_init__(self) -> None:
        if self.better not in ("higher", "lower"):
            raise ValueError(f"better must be higher or lower, not {self.better}")


@dataclass
class Bench:
    """The run's settings and files, shared by every workload."""

    settings: Settings
    workdir: Path
    images: Path

    @functools.cached_property
    def blobs(self) -> BlobFile:
        """The large blobs to push and pull, made on first use."""
        return BlobFile.create(
            self.workdir / "blobs.bin",
            self.settings.blob_bytes,
            count=2 * self.settings.repeats + 1,
        )

    def sizes(self) -> dict[str, str]:
        settings = self.settings
        return {
            "blob": _mib(settings.blob_bytes),
            "chunk": _mib(settings.chunk_bytes),
            "clients": str(settings.pull_clients),
            "connections": str(settings.wrk_connections),
            "tag_puts": f"{settings.tag_puts:,}",
            "threads": str(settings.client_threads),
            "tags": f"{settings.list_tags:,}",
            "repos": f"{settings.catalog_repos:,}",
        }


# measure(server, bench, run) returns a value for each of the workload's metrics.
Measure = Callable[[Server, Bench, int], dict[str, float]]
Prepare = Callable[[Server, Bench], None]


@dataclass(frozen=True)
class Workload:
    """Something done to each registry in turn, `repeats` times if `repeat`."""

    name: str
    metrics: tuple[Metric, ...]
    measure: Measure
    prepare: Prepare | None = None
    repeat: bool = True


def _mib(size: int) -> str:
    return f"{size // MIB} MiB" if size % MIB == 0 else f"{size:,} B"
