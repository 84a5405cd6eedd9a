"""How big each workload is: the full run and the quick one."""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    mode: str
    blob_bytes: int
    chunk_bytes: int
    pull_clients: int
    wrk_seconds: int
    wrk_connections: int
    wrk_threads: int
    tag_puts: int
    list_tags: int
    catalog_repos: int
    # Python threads that send tag PUTs, and that create tags and repositories.
    client_threads: int
    # Runs of each short workload; the median is reported.
    repeats: int


FULL = Settings(
    mode="full",
    blob_bytes=256 * MIB,
    chunk_bytes=8 * MIB,
    pull_clients=8,
    wrk_seconds=10,
    wrk_connections=32,
    wrk_threads=2,
    tag_puts=2_000,
    list_tags=10_000,
    catalog_repos=5_000,
    client_threads=8,
    repeats=5,
)

QUICK = Settings(
    mode="quick",
    blob_bytes=8 * MIB,
    chunk_bytes=1 * MIB,
    pull_clients=8,
    wrk_seconds=2,
    wrk_connections=32,
    wrk_threads=2,
    tag_puts=100,
    list_tags=200,
    catalog_repos=50,
    client_threads=8,
    repeats=1,
)
