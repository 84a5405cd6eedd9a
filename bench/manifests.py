"""Manifest GET and HEAD by tag under load, and tag PUTs from threads."""

from __future__ import annotations

import time

from bench import load
from bench.client import Client, put_manifest
from bench.parallel import run_in_threads
from bench.seed import seed_image
from bench.servers import Server
from bench.workload import Bench, Metric, Workload

MANIFEST_REPO = "bench/manifest"


def prepare_manifest(server: Server, bench: Bench) -> None:
    with Client(server.url) as client:
        put_manifest(client, MANIFEST_REPO, "latest", seed_image(client, MANIFEST_REPO))


def manifest_get(server: Server, bench: Bench, run: int) -> dict[str, float]:
    rate, p99 = load.wrk_get(_manifest_url(server), bench.settings)
    return {"manifest-get": rate, "manifest-get-p99": p99}


def manifest_head(server: Server, bench: Bench, run: int) -> dict[str, float]:
    rate, p99 = load.ab_head(_manifest_url(server), bench.settings)
    return {"manifest-head": rate, "manifest-head-p99": p99}


def _manifest_url(server: Server) -> str:
    return f"{server.url}/v2/{MANIFEST_REPO}/manifests/latest"


def tag_puts(server: Server, bench: Bench, run: int) -> dict[str, float]:
    """The same manifest PUT under many tag names, from several threads."""
    repo = f"bench/tag-put-{run}"
    with Client(server.url) as client:
        manifest = seed_image(client, repo)
    tags = [f"t{number:05d}" for number in range(bench.settings.tag_puts)]

    started = time.perf_counter()
    run_in_threads(
        server.url,
        bench.settings.client_threads,
        tags,
        lambda client, tag: put_manifest(client, repo, tag, manifest),
    )
    return {"tag-puts": len(tags) / (time.perf_counter() - started)}


def _read_metrics(method: str, tool: str) -> tuple[Metric, ...]:
    key = f"manifest-{method.lower()}"
    title = f"manifest {method} by tag, {{connections}} connections ({tool})"
    return (
        Metric(key, title, "requests/s", "higher", 1.5),
        Metric(f"{key}-p99", f"{title}, p99", "ms", "lower"),
    )


TAG_PUTS = Metric(
    "tag-puts", "{tag_puts} tag PUTs, {threads} threads", "tags/s", "higher"
)

WORKLOADS = (
    Workload(
        "manifest-get",
        _read_metrics("GET", "wrk"),
        manifest_get,
        prepare=prepare_manifest,
        repeat=False,
    ),
    Workload(
        "manifest-head",
        _read_metrics("HEAD", "ab"),
        manifest_head,
        prepare=prepare_manifest,
        repeat=False,
    ),
    Workload("tag-puts", (TAG_PUTS,), tag_puts),
)
