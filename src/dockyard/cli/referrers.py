"""`dockyard referrers`: an image's signatures, SBOMs and attestations."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import click
from rich.console import Console
from rich.tree import Tree

from dockyard.cli.options import config_options, load, open_registry
from dockyard.core.digest import Digest
from dockyard.core.errors import RegistryError
from dockyard.core.names import check_name, parse_reference
from dockyard.core.registry import Registry
from dockyard.services.referrers import ReferrerNode, referrer_tree

# Wide enough for any tree `MAX_DEPTH` deep without wrapping a line.
_PIPE_WIDTH = 1000


@click.command()
@config_options
@click.argument("image")
@click.option("--json", "as_json", is_flag=True, help="Print the tree as JSON.")
def referrers(
    config_file: Path | None, data_dir: Path | None, image: str, as_json: bool
) -> None:
    """List the referrers of IMAGE (NAME:TAG or NAME@DIGEST) as a tree."""
    config = load(config_file, data_dir=data_dir)
    try:
        name, reference = split_image(image)
        registry = open_registry(config)
        subject, tree = anyio.run(_tree, registry, name, reference)
    except RegistryError as exc:
        click.echo(f"dockyard: {exc.message}", err=True)
        sys.exit(1)

    if as_json:
        document = {
            "repository": name,
            "subject": str(subject),
            "referrers": [node.to_json() for node in tree],
        }
        click.echo(json.dumps(document, indent=2))
    else:
        root = Tree(f"{name}@{subject}")
        if not tree:
            root.add("[dim]no referrers[/dim]")
        _console().print(_render(root, tree))


def _console() -> Console:
    console = Console()
    if not console.is_terminal:
        # Piped to grep or a script: one line per referrer, digests whole.
        console.width = _PIPE_WIDTH
    return console


def split_image(image: str) -> tuple[str, str | Digest]:
    """`name:tag` or `name@digest` into a name and a reference; tag `latest`."""
    if "@" in image:
        name, reference = image.split("@", 1)
    else:
        name, _, tag = image.rpartition(":")
        if not name or "/" in tag:
            name, tag = image, "latest"
        reference = tag
    return check_name(name), parse_reference(reference)


async def _tree(
    registry: Registry, name: str, reference: str | Digest
) -> tuple[Digest, list[ReferrerNode]]:
    manifest = await registry.get_manifest(name, reference)
    return manifest.digest, await referrer_tree(registry, name, manifest.digest)


def _render(branch: Tree, nodes: list[ReferrerNode]) -> Tree:
    for node in nodes:
        d = node.descriptor
        label = (
            f"[bold]{node.kind}[/bold] {d.artifact_type or d.media_type} "
            f"{d.digest} ({d.size} bytes)"
        )
        _render(branch.add(label), node.referrers)
    return branch
