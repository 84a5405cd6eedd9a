"""`dockyard gc`: delete blobs no manifest references, and stale uploads."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import click

from dockyard.bootstrap import build_collector
from dockyard.cli.options import config_options, load, open_registry
from dockyard.config import MAX_GRACE_PERIOD
from dockyard.services.gc import Report


@click.command()
@config_options
@click.option("--dry-run", is_flag=True, help="List what would go; delete nothing.")
@click.option(
    "--untagged/--no-untagged",
    default=None,
    help="Also delete manifests no tag reaches [config gc.untagged].",
)
@click.option(
    "--grace-period",
    type=click.IntRange(min=0, max=MAX_GRACE_PERIOD),
    help="Seconds anything new is kept [config gc.grace_period, 3600]. A "
    "push in flight needs its blobs until its manifest arrives.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def gc(
    config_file: Path | None,
    data_dir: Path | None,
    dry_run: bool,
    untagged: bool | None,
    grace_period: int | None,
    as_json: bool,
) -> None:
    """Collect garbage while the registry keeps serving.

    Deletes blobs no repository still needs, links no manifest references
    and upload sessions older than gc.upload_max_age; nothing younger than
    gc.grace_period. With --untagged, manifests no tag reaches go first.
    """
    given = {"untagged": untagged, "grace_period": grace_period}
    overrides = {key: value for key, value in given.items() if value is not None}
    config = load(config_file, data_dir=data_dir, gc=overrides or None)
    collector = build_collector(config, open_registry(config))
    report = anyio.run(collector.run, dry_run)

    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
    else:
        _print(report)
        click.echo(
            f"(anything younger than {config.gc.grace_period}s is kept; see "
            "--grace-period)"
        )


def _print(report: Report) -> None:
    verb = "would delete" if report.dry_run else "deleted"
    for repository, digest in report.manifests:
        click.echo(f"manifest {repository}@{digest}")
    for digest, size in report.blobs:
        click.echo(f"blob {digest} {size}")
    click.echo(
        f"{verb} {len(report.manifests)} manifests, {report.links} repository "
        f"links, {len(report.blobs)} blobs ({report.bytes} bytes) and "
        f"{report.uploads} stale uploads"
    )
