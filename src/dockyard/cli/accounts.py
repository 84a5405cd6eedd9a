"""Users, access tokens, namespaces, teams, permissions and the audit log.

These commands work on the server's database directly: whoever can run them
with the server's config is an administrator. Each change is audited with
the operating-system user as its actor.
"""

from __future__ import annotations

import functools
import getpass
import json
import re
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from dockyard.cli.options import config_options, fail, load, open_accounts
from dockyard.services.auth.accounts import LOGIN_PASSWORD_TTL, Accounts
from dockyard.services.auth.records import AccountError

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_duration(text: str) -> timedelta:
    """`90s`, `30m`, `12h` or `7d`."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or int(match[1]) == 0:
        raise click.BadParameter(f"{text!r} is not a duration such as 30m, 12h or 7d")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


def with_accounts(command: Callable[..., None]) -> Callable[..., None]:
    """Open the account store from --config/--data-dir; report refusals."""

    @config_options
    @functools.wraps(command)
    def run(config_file: Path | None, data_dir: Path | None, **kwargs: Any) -> None:
        accounts = open_accounts(load(config_file, data_dir=data_dir))
        try:
            command(accounts, **kwargs)
        except AccountError as exc:
            fail(str(exc))

    return run


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        # Otherwise getpass reads the pipe with a warning about echo, twice
        # for the confirmation, and a script gets a bare "Aborted!".
        fail(
            "no terminal to ask for the password on: give it with --password-stdin",
            status=2,
        )
    password: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


def _when(moment: Any) -> str:
    return moment.isoformat(timespec="seconds") if moment else "-"


def _print_table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title)
    for column in columns:
        # Fold rather than cut: ids and digests are copied from here.
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    Console().print(table)


# Users

password_stdin = click.option(
    "--password-stdin", is_flag=True, help="Read the password from standard input."
)


@click.group()
def user() -> None:
    """Manage users; each owns the namespace of their name."""


@user.command("add")
@click.argument("name")
@click.option("--admin", is_flag=True, help="May do everything, everywhere.")
@password_stdin
@with_accounts
def user_add(accounts: Accounts, name: str, admin: bool, password_stdin: bool) -> None:
    """Add user NAME (and the namespace NAME)."""
    first = accounts.store.count_users() == 0
    accounts.add_user(name, _read_password(password_stdin), admin)
    click.echo(f"added user {name}" + (" (admin)" if admin else ""))
    if first:
        click.echo(
            "authentication turns on at the next start of `dockyard serve` "
            "(unless auth.enabled is false)"
        )


@user.command("passwd")
@click.argument("name")
@password_stdin
@with_accounts
def user_passwd(accounts: Accounts, name: str, password_stdin: bool) -> None:
    """Set NAME's password; refresh tokens issued before stop working."""
    accounts.set_password(name, _read_password(password_stdin))
    click.echo(f"password of {name} changed")


@user.command("remove")
@click.argument("name")
@with_accounts
def user_remove(accounts: Accounts, name: str) -> None:
    """Remove user NAME, their grants and tokens; repositories stay."""
    accounts.remove_user(name)
    click.echo(f"removed user {name}")
    if accounts.store.count_users() == 0:
        click.echo(
            "warning: no users are left: at its next start `dockyard serve` lets "
            "anyone push and pull, unless auth.enabled is true",
            err=True,
        )


@user.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_accounts
def user_list(accounts: Accounts, as_json: bool) -> None:
    """List users."""
    users = accounts.list_users()
    if as_json:
        rows = [{"name": u.name, "admin": u.is_admin} for u in users]
        click.echo(json.dumps(rows, indent=2))
        return
    _print_table(
        "users",
        ["name", "admin", "created"],
        [[u.name, "yes" if u.is_admin else "", _when(u.created_at)] for u in users],
    )


# Access tokens


@click.group()
def token() -> None:
    """Manage access tokens for CI and robots."""


@token.command("create")
@click.option("--name", required=True, help="A unique name, shown in lists and logs.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    help="repository:PATTERN:ACTIONS, for example 'repository:team/*:pull,push'. "
    "Repeat for more.",
)
@click.option("--ttl", help="Lifetime such as 12h or 30d [never expires].")
@click.option("--user", "owner", help="Cap the token at this user's rights.")
@with_accounts
def token_create(
    accounts: Accounts,
    name: str,
    scopes: tuple[str, ...],
    ttl: str | None,
    owner: str | None,
) -> None:
    """Create a token and print its secret, once.

    The secret is the password for `podman login` (with any username) and for
    Basic credentials. Without --user the token is a robot: its scopes are
    all it may do.
    """
    lifetime = parse_duration(ttl) if ttl else None
    created, secret = accounts.create_token(name, list(scopes), lifetime, owner)
    click.echo(secret)
    expiry = _when(created.expires_at) if created.expires_at else "never"
    click.echo(f"token {name} ({created.id}) expires {expiry}", err=True)


@token.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_accounts
def token_list(accounts: Accounts, as_json: bool) -> None:
    """List tokens (never their secrets)."""
    tokens = accounts.list_tokens()
    if as_json:
        rows = [
            {
                "id": t.id,
                "name": t.name,
                "user": t.user,
                "scopes": list(t.scopes),
                "created_at": _when(t.created_at),
                "expires_at": t.expires_at and _when(t.expires_at),
                "revoked_at": t.revoked_at and _when(t.revoked_at),
                "last_used_at": t.last_used_at and _when(t.last_used_at),
            }
            for t in tokens
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    _print_table(
        "access tokens",
        ["id", "name", "user", "scopes", "expires", "revoked", "last used"],
        [
            [
                t.id,
                t.name,
                t.user or "(robot)",
                " ".join(t.scopes),
                _when(t.expires_at),
                _when(t.revoked_at),
                _when(t.last_used_at),
            ]
            for t in tokens
        ],
    )


@token.command("revoke")
@click.argument("name_or_id")
@with_accounts
def token_revoke(accounts: Accounts, name_or_id: str) -> None:
    """Revoke a token by name or id; logins with it fail from now on."""
    revoked = accounts.revoke_token(name_or_id)
    click.echo(f"revoked token {revoked.name} ({revoked.id})")


@click.command("login-password")
@click.option("--user", "name", help="Whose rights the token carries [$USER].")
@click.option("--ttl", default="12h", show_default=True, help="Token lifetime.")
@with_accounts
def login_password(accounts: Accounts, name: str | None, ttl: str) -> None:
    """Print a short-lived password for `podman login --password-stdin`.

    Like ECR's get-login-password:
    `dockyard login-password --user alice | podman login -u alice
    --password-stdin HOST`.
    """
    lifetime = parse_duration(ttl) if ttl else LOGIN_PASSWORD_TTL
    click.echo(accounts.login_password(name or getpass.getuser(), lifetime))


# Namespaces, visibility, teams, permissions


@click.group()
def namespace() -> None:
    """Manage organisation namespaces."""


@namespace.command("create")
@click.argument("name")
@with_accounts
def namespace_create(accounts: Accounts, name: str) -> None:
    """Create organisation namespace NAME; grant users or teams rights on it."""
    accounts.create_namespace(name)
    click.echo(f"created namespace {name}")


@namespace.command("list")
@with_accounts
def namespace_list(accounts: Accounts) -> None:
    """List namespaces and their owners' kind."""
    rows = [[name, kind] for name, kind in accounts.store.list_namespaces()]
    _print_table("namespaces", ["name", "kind"], rows)


@click.command("visibility")
@click.argument("name")
@click.argument("setting", type=click.Choice(["public", "private"]))
@with_accounts
def visibility(accounts: Accounts, name: str, setting: str) -> None:
    """Make namespace or repository NAME public (anonymous pull) or private.

    A repository's own setting wins over its namespace's; private is the
    default.
    """
    accounts.set_visibility(name, setting == "public")
    click.echo(f"{name} is {setting}")


@click.group()
def team() -> None:
    """Manage teams, which grants can name."""


@team.command("create")
@click.argument("name")
@with_accounts
def team_create(accounts: Accounts, name: str) -> None:
    """Create team NAME."""
    accounts.create_team(name)
    click.echo(f"created team {name}")


@team.command("remove")
@click.argument("name")
@with_accounts
def team_remove(accounts: Accounts, name: str) -> None:
    """Remove team NAME and its grants."""
    accounts.remove_team(name)
    click.echo(f"removed team {name}")


@team.command("add-member")
@click.argument("team_name")
@click.argument("user_name")
@with_accounts
def team_add_member(accounts: Accounts, team_name: str, user_name: str) -> None:
    """Add a user to a team."""
    accounts.add_member(team_name, user_name)
    click.echo(f"{user_name} is in team {team_name}")


@team.command("remove-member")
@click.argument("team_name")
@click.argument("user_name")
@with_accounts
def team_remove_member(accounts: Accounts, team_name: str, user_name: str) -> None:
    """Take a user out of a team."""
    accounts.remove_member(team_name, user_name)
    click.echo(f"{user_name} left team {team_name}")


@team.command("list")
@with_accounts
def team_list(accounts: Accounts) -> None:
    """List teams and members."""
    rows = [[name, ", ".join(members)] for name, members in accounts.store.list_teams()]
    _print_table("teams", ["team", "members"], rows)


@click.group()
def permission() -> None:
    """Grant and revoke rights on namespaces and repository globs."""


@permission.command("grant")
@click.option("--user", "user_name", help="The user to grant to.")
@click.option("--team", "team_name", help="The team to grant to.")
@click.argument("pattern")
@click.argument("actions")
@with_accounts
def permission_grant(
    accounts: Accounts,
    user_name: str | None,
    team_name: str | None,
    pattern: str,
    actions: str,
) -> None:
    """Grant ACTIONS (pull,push,delete,admin) on PATTERN.

    PATTERN is a namespace (`team`: the repository team and all under team/),
    a repository, or a glob such as `team/app-*`.
    """
    grant_id = accounts.grant(user_name, team_name, pattern, actions)
    click.echo(f"grant {grant_id}: {actions} on {pattern}")


@permission.command("revoke")
@click.argument("grant_id", type=int)
@with_accounts
def permission_revoke(accounts: Accounts, grant_id: int) -> None:
    """Revoke grant GRANT_ID (see `permission list`)."""
    record = accounts.revoke_grant(grant_id)
    click.echo(f"revoked grant {grant_id} on {record.grant.pattern}")


@permission.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_accounts
def permission_list(accounts: Accounts, as_json: bool) -> None:
    """List grants and visibility settings."""
    grants = accounts.store.list_grants()
    rows = [
        {
            "id": g.id,
            "to": f"user:{g.user}" if g.user else f"team:{g.team}",
            "pattern": g.grant.pattern,
            "actions": ",".join(sorted(g.grant.actions)),
        }
        for g in grants
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    _print_table(
        "grants",
        ["id", "to", "pattern", "actions"],
        [
            [str(r["id"]), str(r["to"]), str(r["pattern"]), str(r["actions"])]
            for r in rows
        ],
    )
    settings = accounts.store.list_visibility()
    _print_table(
        "visibility",
        ["name", "setting"],
        [[name, "public" if public else "private"] for name, public in settings],
    )


@click.command("audit")
@click.option("--limit", default=50, show_default=True, help="Newest events shown.")
@click.option("--action", help="Only this action; * matches any text (login*).")
@click.option("--actor", help="Only events by this actor.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
@with_accounts
def audit(
    accounts: Accounts,
    limit: int,
    action: str | None,
    actor: str | None,
    as_json: bool,
) -> None:
    """List audit events, newest first."""
    events = accounts.store.list_events(limit, action, actor)
    if as_json:
        for event in events:
            click.echo(
                json.dumps(
                    {
                        "occurred_at": _when(event.occurred_at),
                        "action": event.action,
                        "actor": event.actor,
                        "outcome": event.outcome,
                        "address": event.address,
                        "target": event.target,
                        "detail": event.detail,
                    }
                )
            )
        return
    _print_table(
        "audit events",
        ["when", "action", "outcome", "actor", "address", "target"],
        [
            [
                _when(e.occurred_at),
                e.action,
                e.outcome,
                e.actor,
                e.address or "",
                e.target or "",
            ]
            for e in events
        ],
    )
