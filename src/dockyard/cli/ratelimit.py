"""`dockyard ratelimit show`: what an address or account has used."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio
import click

from dockyard.bootstrap import build_rate_limiter
from dockyard.cli.options import config_options, load


@click.group()
def ratelimit() -> None:
    """Inspect rate limits (see rate_limits in the configuration)."""


@ratelimit.command("show")
@config_options
@click.argument("source")
def ratelimit_show(
    config_file: Path | None, data_dir: Path | None, source: str
) -> None:
    """Show what SOURCE (an address, an IPv6 /64, or an account) has used.

    The counters are read from Redis (redis_url); without it each server
    process keeps its own, which no other process can see.
    """
    config = load(config_file, data_dir=data_dir)
    limiter = build_rate_limiter(config)
    if limiter is None:
        click.echo("no rate limits are configured")
        return
    if config.redis_url is None:
        click.echo(
            "dockyard: the counters live in each server process; set redis_url "
            "to share them and to show them here",
            err=True,
        )
        sys.exit(1)

    for kind, quota in anyio.run(limiter.usage, source):
        used = quota.limit - quota.remaining
        click.echo(
            f"{kind}: {used} of {quota.limit} used in the last {quota.window}s, "
            f"{quota.remaining} left ({quota.source})"
        )
