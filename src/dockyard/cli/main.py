"""`dockyard`: run the registry and manage it from the command line."""

from __future__ import annotations

import importlib

import click

from dockyard import __version__

# Each command's module is imported only when that command runs (or --help lists
# them all). The server's processes fork from `serve`, so whatever the other
# commands import (alembic, rich, the cache's HTTP client) would otherwise sit
# in every worker's memory for nothing.
COMMANDS = {
    "serve": "dockyard.cli.serve:serve",
    "gc": "dockyard.cli.gc:gc",
    "policy": "dockyard.cli.policy:policy",
    "referrers": "dockyard.cli.referrers:referrers",
    "repo": "dockyard.cli.repos:repo",
    "quota": "dockyard.cli.repos:quota",
    "usage": "dockyard.cli.repos:usage",
    "ratelimit": "dockyard.cli.ratelimit:ratelimit",
    "upstream": "dockyard.cli.upstreams:upstream",
    "user": "dockyard.cli.accounts:user",
    "token": "dockyard.cli.accounts:token",
    "login-password": "dockyard.cli.accounts:login_password",
    "namespace": "dockyard.cli.accounts:namespace",
    "visibility": "dockyard.cli.accounts:visibility",
    "team": "dockyard.cli.accounts:team",
    "permission": "dockyard.cli.accounts:permission",
    "audit": "dockyard.cli.accounts:audit",
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported by name when first asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attribute = target.split(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command


@click.group(cls=LazyGroup)
@click.version_option(__version__, prog_name="dockyard")
def main() -> None:
    """Dockyard, a self-hosted OCI container registry."""
