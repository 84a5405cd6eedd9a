"""`dockyard policy`: lifecycle policies in ECR's JSON format."""

from __future__ import annotations

import getpass
import json
import sys
from pathlib import Path

import anyio
import click
from rich.console import Console
from rich.table import Table

from dockyard.bootstrap import build_lifecycle
from dockyard.cli.options import config_options, fail, load, open_registry
from dockyard.config import MAX_GRACE_PERIOD
from dockyard.core.errors import RegistryError
from dockyard.core.names import check_name
from dockyard.metadata.collection import LifecycleStore
from dockyard.metadata.store import SqlMetadataStore
from dockyard.services.lifecycle import PolicyInvalid, parse_policy
from dockyard.services.lifecycle.runner import (
    LifecycleRunner,
    RepositoryEvaluation,
    check_target,
)


def _lifecycle(
    config_file: Path | None,
    data_dir: Path | None,
    gc_overrides: dict[str, int] | None = None,
) -> tuple[LifecycleRunner, LifecycleStore]:
    config = load(config_file, data_dir=data_dir, gc=gc_overrides)
    registry = open_registry(config)
    assert isinstance(registry.metadata, SqlMetadataStore)
    return build_lifecycle(config, registry), LifecycleStore(registry.metadata)


@click.group()
def policy() -> None:
    """Lifecycle policies: which images expire, in ECR's JSON format.

    A policy is set on a repository, a namespace (all its repositories) or a
    glob such as 'team/app-*'; the most specific one governs a repository.
    `dockyard serve` runs them every lifecycle.interval seconds.
    """


@policy.command("put")
@config_options
@click.argument("target")
@click.option(
    "--file",
    "policy_file",
    type=click.File("rb"),
    required=True,
    help="The policy JSON ('-' reads standard input).",
)
def policy_put(
    config_file: Path | None, data_dir: Path | None, target: str, policy_file: object
) -> None:
    """Set the policy for TARGET (repository, namespace or glob)."""
    try:
        check_target(target)
    except RegistryError as exc:
        fail(exc.message)
    text = policy_file.read()  # type: ignore[attr-defined]
    try:
        parsed = parse_policy(text)
    except PolicyInvalid as exc:
        for fault in exc.faults:
            click.echo(f"dockyard: {fault}", err=True)
        sys.exit(1)
    runner, store = _lifecycle(config_file, data_dir)
    anyio.run(store.put_policy, target, json.dumps(parsed.to_json()))
    actor = f"cli:{getpass.getuser()}"
    runner.auditor.record("policy.put", actor, target=target)
    click.echo(f"policy for {target}: {len(parsed.rules)} rules")


@policy.command("get")
@config_options
@click.argument("target")
def policy_get(config_file: Path | None, data_dir: Path | None, target: str) -> None:
    """Print the policy set for TARGET."""
    _, store = _lifecycle(config_file, data_dir)
    policies = anyio.run(store.policies)
    if target not in policies:
        fail(f"no policy for {target}")
    click.echo(json.dumps(json.loads(policies[target]), indent=2))


@policy.command("list")
@config_options
def policy_list(config_file: Path | None, data_dir: Path | None) -> None:
    """List the targets that have policies."""
    _, store = _lifecycle(config_file, data_dir)
    for target in sorted(anyio.run(store.policies)):
        click.echo(target)


@policy.command("delete")
@config_options
@click.argument("target")
def policy_delete(config_file: Path | None, data_dir: Path | None, target: str) -> None:
    """Remove the policy for TARGET."""
    runner, store = _lifecycle(config_file, data_dir)
    if not anyio.run(store.delete_policy, target):
        fail(f"no policy for {target}")
    runner.auditor.record("policy.delete", f"cli:{getpass.getuser()}", target=target)
    click.echo(f"removed the policy for {target}")


_grace_option = click.option(
    "--grace-period",
    type=click.IntRange(min=0, max=MAX_GRACE_PERIOD),
    help="Seconds a new image is held back [config gc.grace_period, 3600].",
)


@policy.command("preview")
@config_options
@click.argument("repository", required=False)
@_grace_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def policy_preview(
    config_file: Path | None,
    data_dir: Path | None,
    repository: str | None,
    grace_period: int | None,
    as_json: bool,
) -> None:
    """Show what the policies would expire now, by rule, with the bytes freed,
    and what they hold back for being pushed within the grace period.

    Sizes count each image's blobs in full; blobs shared with images that stay
    are not freed, so the total is an upper bound.
    """
    if repository is not None:
        try:
            check_name(repository)
        except RegistryError as exc:
            fail(exc.message)
    runner, _ = _lifecycle(config_file, data_dir, _grace(grace_period))
    results = anyio.run(runner.preview, repository)
    _show(results, as_json, "would expire", runner.grace_seconds)


@policy.command("run")
@config_options
@_grace_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def policy_run(
    config_file: Path | None,
    data_dir: Path | None,
    grace_period: int | None,
    as_json: bool,
) -> None:
    """Expire what the policies select, now; garbage collection frees the bytes.

    Images pushed or cached within the grace period are held back, and listed
    as such.
    """
    runner, _ = _lifecycle(config_file, data_dir, _grace(grace_period))
    results = anyio.run(runner.run, f"cli:{getpass.getuser()}")
    _show(results, as_json, "expired", runner.grace_seconds)


def _grace(seconds: int | None) -> dict[str, int] | None:
    return None if seconds is None else {"grace_period": seconds}


def _show(
    results: list[RepositoryEvaluation], as_json: bool, verb: str, grace: int
) -> None:
    if as_json:
        click.echo(json.dumps([result.to_json() for result in results], indent=2))
        return
    table = Table(title=f"images the lifecycle policies {verb}")
    for column in ("repository", "policy", "rule", "digest", "tags", "pushed", "bytes"):
        table.add_column(column, overflow="fold")
    total = 0
    for result in results:
        for expiry in result.evaluation.expiries:
            image = expiry.image
            table.add_row(
                result.repository,
                result.target,
                str(expiry.rule_priority),
                image.digest[:19],
                ", ".join(image.tags),
                image.pushed_at.isoformat(timespec="seconds"),
                str(image.size),
            )
        total += result.evaluation.bytes_freed
    Console().print(table)
    count = sum(len(result.evaluation.expiries) for result in results)
    click.echo(f"{verb} {count} images, {total} bytes")
    _show_held(results, grace)


def _show_held(results: list[RepositoryEvaluation], grace: int) -> None:
    for result in results:
        for held in result.held:
            image = held.expiry.image
            reason = held.reason
            if held.last_pushed_at is not None:
                last = held.last_pushed_at.isoformat(timespec="seconds")
                reason += f" ({grace} s; see --grace-period), last at {last}"
            click.echo(
                f"held back: {result.repository}@{image.digest[:19]} "
                f"({', '.join(image.tags) or 'untagged'}): {reason}"
            )
