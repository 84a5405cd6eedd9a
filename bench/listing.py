"""Listing a repository's many tags and a catalog of many repositories.

Both follow the `Link` header to the last page with each registry's default
page size, as a client that wants the whole list does.
"""

from __future__ import annotations

import time

from bench.client import Client, entries_of, fetch_pages, put_manifest
from bench.parallel import run_in_threads
from bench.seed import mount_image, seed_image
from bench.servers import Server
from bench.workload import Bench, Metric, Workload

TAGS_REPO = "bench/tag-list"
CATALOG_SOURCE = "bench/catalog-source"


def prepare_tags(server: Server, bench: Bench) -> None:
    with Client(server.url) as client:
        manifest = seed_image(client, TAGS_REPO)
    run_in_threads(
        server.url,
        bench.settings.client_threads,
        [f"t{number:05d}" for number in range(bench.settings.list_tags)],
        lambda client, tag: put_manifest(client, TAGS_REPO, tag, manifest),
    )


def list_tags(server: Server, bench: Bench, run: int) -> dict[str, float]:
    with Client(server.url) as client:
        elapsed, pages = _timed_pages(client, f"/v2/{TAGS_REPO}/tags/list")
    tags = entries_of(pages, "tags")

    if len(tags) != bench.settings.list_tags:
        raise RuntimeError(f"listed {len(tags)} tags, not {bench.settings.list_tags}")
    return {"tag-list": elapsed * 1000}


def prepare_catalog(server: Server, bench: Bench) -> None:
    """Repositories each holding the small image, its blobs mounted."""
    with Client(server.url) as client:
        seed_image(client, CATALOG_SOURCE)

    def create(client: Client, repo: str) -> None:
        put_manifest(client, repo, "latest", mount_image(client, repo, CATALOG_SOURCE))

    repos = [
        f"bench/catalog/r{number:05d}" for number in range(bench.settings.catalog_repos)
    ]
    run_in_threads(server.url, bench.settings.client_threads, repos, create)


def list_catalog(server: Server, bench: Bench, run: int) -> dict[str, float]:
    with Client(server.url) as client:
        elapsed, pages = _timed_pages(client, "/v2/_catalog")
    repos = entries_of(pages, "repositories")

    listed = sum(repo.startswith("bench/catalog/") for repo in repos)
    if listed != bench.settings.catalog_repos:
        raise RuntimeError(f"listed {listed} of {bench.settings.catalog_repos} repos")
    return {"catalog": elapsed * 1000}


def _timed_pages(client: Client, path: str) -> tuple[float, list[bytes]]:
    """Seconds to fetch every page, on a connection opened before the clock.

    Decoding the JSON happens after the clock stops: it is the client's work,
    the same for both registries, and would only blur the comparison.
    """
    client.request("GET", "/v2/")
    started = time.perf_counter()
    pages = fetch_pages(client, path)
    return time.perf_counter() - started, pages


WORKLOADS = (
    Workload(
        "tag-list",
        (Metric("tag-list", "list {tags} tags of a repository", "ms", "lower", 0.1),),
        list_tags,
        prepare=prepare_tags,
    ),
    Workload(
        "catalog",
        (Metric("catalog", "catalog of {repos} repositories", "ms", "lower", 0.1),),
        list_catalog,
        prepare=prepare_catalog,
    ),
)
