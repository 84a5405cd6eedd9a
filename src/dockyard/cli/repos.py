"""`dockyard repo ...`, `dockyard quota` and `dockyard usage`: whole
repositories, tag immutability, namespace quotas and storage usage."""

from __future__ import annotations

import getpass
import json
import re
from dataclasses import dataclass
from pathlib import Path

import anyio
import click
from rich.console import Console
from rich.table import Table

from dockyard.cli.options import config_options, fail, load, open_registry
from dockyard.core.errors import RegistryError
from dockyard.core.names import check_name, namespace_of
from dockyard.core.registry import Registry
from dockyard.core.settings import TagRule, Usage
from dockyard.metadata.accounts import SqlAccountStore
from dockyard.metadata.store import SqlMetadataStore
from dockyard.services.audit import Auditor

_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


# What the database's 64-bit integer holds.
MAX_QUOTA = 2**63 - 1


def parse_size(text: str) -> int:
    """`500MB`, `10GiB`, `1073741824`."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise click.BadParameter(f"{text!r} is not a size such as 500MB or 10GiB")
    size = float(match[1]) * _UNITS[(match[2] or "").lower()]
    if not 1 <= size <= MAX_QUOTA:
        raise click.BadParameter(f"{text!r}: a quota is 1 byte to {MAX_QUOTA} bytes")
    return int(size)


def _open(config_file: Path | None, data_dir: Path | None) -> Registry:
    return open_registry(load(config_file, data_dir=data_dir))


def _store(registry: Registry) -> SqlMetadataStore:
    assert isinstance(registry.metadata, SqlMetadataStore)
    return registry.metadata


def _audit(registry: Registry, action: str, target: str, **detail: object) -> None:
    auditor = Auditor(SqlAccountStore(_store(registry).engine))
    actor = f"cli:{getpass.getuser()}"
    auditor.record(action, actor, target=target, detail=detail or None)


@click.group()
def repo() -> None:
    """Delete repositories and set tag immutability."""


@repo.command("delete")
@config_options
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def repo_delete(
    config_file: Path | None, data_dir: Path | None, name: str, yes: bool
) -> None:
    """Delete repository NAME: its tags, manifests and upload sessions.

    The catalog stops listing it at once; garbage collection reclaims the
    blobs no other repository uses.
    """
    registry = _open(config_file, data_dir)
    if not yes:
        click.confirm(f"delete repository {name} and all its images?", abort=True)
    try:
        anyio.run(registry.delete_repository, name)
    except RegistryError as exc:
        fail(exc.message)
    _audit(registry, "repository.delete", name)
    click.echo(f"deleted repository {name}")


@repo.command("immutability")
@config_options
@click.argument("name")
@click.argument("setting", type=click.Choice(["mutable", "immutable"]))
@click.option(
    "--exclude",
    "exclusions",
    multiple=True,
    help="A tag glob that stays mutable, such as latest or 'dev-*'. Repeatable.",
)
def repo_immutability(
    config_file: Path | None,
    data_dir: Path | None,
    name: str,
    setting: str,
    exclusions: tuple[str, ...],
) -> None:
    """Make the tags of namespace or repository NAME immutable, or mutable.

    Pushing another manifest under an immutable tag is refused with DENIED;
    pushing the same manifest again succeeds. A repository's own setting
    wins over its namespace's.
    """
    registry = _open(config_file, data_dir)
    try:
        check_name(name)
    except RegistryError as exc:
        fail(exc.message)
    rule = TagRule(setting == "immutable", exclusions)
    anyio.run(_store(registry).set_tag_rule, name, rule)
    _audit(registry, "immutability.set", name, setting=setting, exclude=exclusions)
    shown = f" except {', '.join(exclusions)}" if exclusions and rule.immutable else ""
    click.echo(f"tags of {name} are {setting}{shown}")


@click.command()
@config_options
@click.argument("namespace")
@click.argument("limit")
def quota(
    config_file: Path | None, data_dir: Path | None, namespace: str, limit: str
) -> None:
    """Limit NAMESPACE to LIMIT bytes of blobs (10GiB, 500MB), or `none`.

    A push past the quota is refused with DENIED and a message giving the
    usage and the limit.
    """
    registry = _open(config_file, data_dir)
    try:
        check_name(namespace)
    except RegistryError as exc:
        fail(exc.message)
    if "/" in namespace:
        fail(f"{namespace} is not a namespace; quotas cover a whole namespace")
    size = None if limit.lower() == "none" else parse_size(limit)
    anyio.run(_store(registry).set_quota, namespace, size)
    _audit(registry, "quota.set", namespace, bytes=size)
    click.echo(
        f"quota of {namespace} removed"
        if size is None
        else f"quota of {namespace}: {size} bytes"
    )


@click.command()
@config_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def usage(config_file: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """Bytes stored per namespace and per repository, with quotas.

    A blob counts once in each repository that links it.
    """
    store = _store(_open(config_file, data_dir))
    report = anyio.run(_usage_report, store)
    if as_json:
        click.echo(json.dumps([entry.to_json() for entry in report], indent=2))
        return
    table = Table(title="storage usage")
    for column in ("namespace", "repository", "bytes", "quota"):
        table.add_column(column, overflow="fold")
    for entry in report:
        limit = "" if entry.quota is None else str(entry.quota)
        table.add_row(entry.namespace, "", str(entry.bytes), limit)
        for repository in entry.repositories:
            table.add_row("", repository.name, str(repository.bytes), "")
    Console().print(table)


@dataclass
class NamespaceUsage:
    namespace: str
    quota: int | None
    repositories: list[Usage]

    @property
    def bytes(self) -> int:
        return sum(repository.bytes for repository in self.repositories)

    def to_json(self) -> dict[str, object]:
        return {
            "namespace": self.namespace,
            "bytes": self.bytes,
            "quota": self.quota,
            "repositories": [
                {"name": r.name, "bytes": r.bytes} for r in self.repositories
            ],
        }


async def _usage_report(store: SqlMetadataStore) -> list[NamespaceUsage]:
    grouped: dict[str, list[Usage]] = {}
    for entry in await store.repository_usage():
        grouped.setdefault(namespace_of(entry.name), []).append(entry)
    return [
        NamespaceUsage(namespace, await store.namespace_quota(namespace), entries)
        for namespace, entries in grouped.items()
    ]
