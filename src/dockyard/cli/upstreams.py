"""`dockyard upstream list`: the pull-through caches and their upstreams."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import click

from dockyard.bootstrap import build_registry
from dockyard.cli.options import config_options, load
from dockyard.metadata.mirror import MirrorStore
from dockyard.metadata.store import SqlMetadataStore
from dockyard.services.mirror.status import UpstreamStatus, upstream_status


@click.group()
def upstream() -> None:
    """Inspect pull-through caches (see upstreams in the configuration)."""


@upstream.command("list")
@config_options
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
def upstream_list(
    config_file: Path | None, data_dir: Path | None, as_json: bool
) -> None:
    """Each upstream: whether it answers now, what is cached from it, and
    the hits (answered from the cache) and misses (fetched) so far."""
    config = load(config_file, data_dir=data_dir)
    registry = build_registry(config)
    assert isinstance(registry.metadata, SqlMetadataStore)
    store = MirrorStore(registry.metadata)

    async def gather() -> list[UpstreamStatus]:
        return [
            await upstream_status(settings, registry.metadata, store)
            for settings in config.upstreams
        ]

    statuses = anyio.run(gather)
    if as_json:
        click.echo(json.dumps([status.to_json() for status in statuses], indent=2))
    elif not statuses:
        click.echo(
            "no upstreams are configured; give the --config file (or the "
            "DOCKYARD_* variables) that serve runs with"
        )
    for status in [] if as_json else statuses:
        click.echo("\n".join(_describe(status)))


def _describe(status: UpstreamStatus) -> list[str]:
    mirror = " (the mirror for unprefixed names)" if status.mirror else ""
    reachable = "yes" if status.reachable else "no"
    lines = [
        f"{status.name}{mirror}: {status.url}",
        f"  reachable: {reachable} ({status.answer})",
        f"  cached: {status.cached_repositories} repositories, "
        f"{status.cached_images} manifests, {status.bytes} bytes",
        f"  served: {status.hits} hits, {status.misses} misses, "
        f"{status.failures} upstream failures",
    ]
    if status.last_failure and status.last_failure_at:
        when = status.last_failure_at.isoformat(timespec="seconds")
        lines.append(f"  last failure: {when}: {status.last_failure}")
    return lines
