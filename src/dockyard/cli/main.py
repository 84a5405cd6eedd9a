"""`dockyard`: run the registry and manage it from the command line."""

from __future__ import annotations

import click

from dockyard import __version__
from dockyard.cli.accounts import COMMANDS as ACCOUNT_COMMANDS
from dockyard.cli.gc import gc
from dockyard.cli.policy import policy
from dockyard.cli.ratelimit import ratelimit
from dockyard.cli.referrers import referrers
from dockyard.cli.repos import quota, repo, usage
from dockyard.cli.serve import serve
from dockyard.cli.upstreams import upstream


@click.group()
@click.version_option(__version__, prog_name="dockyard")
def main() -> None:
    """Dockyard, a self-hosted OCI container registry."""


main.add_command(serve)
main.add_command(referrers)
main.add_command(gc)
main.add_command(upstream)
for command in (repo, quota, usage, policy, ratelimit):
    main.add_command(command)
for command in ACCOUNT_COMMANDS:
    main.add_command(command)
