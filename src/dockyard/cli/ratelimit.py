"""`dockyard ratelimit show`: what an address or account has used."""

from __future__ import annotations

import ipaddress
import re
import sys
from pathlib import Path

import anyio
import click

from dockyard.bootstrap import build_rate_limiter
from dockyard.cli.options import config_options, load
from dockyard.core.errors import RegistryError
from dockyard.core.names import check_name
from dockyard.services.auth.accounts import TOKEN_NAME
from dockyard.services.ratelimit import Caller

TOKEN_PREFIX = "token:"
FORMS = "an IPv4 or IPv6 address, an IPv6 /64, an account name, or token:NAME"

# Four dotted numbers are meant as an IPv4 address, never as an account name.
_DOTTED_QUAD = re.compile(r"[0-9]+(\.[0-9]+){3}")


def parse_source(text: str) -> Caller:
    """The caller whose counters SOURCE names; ValueError if it names none.

    Counters exist per IPv4 address, per IPv6 /64 and per account, so any
    IPv6 address stands for its /64 and no other network is accepted: it
    would name a counter that never exists and always show nothing used.
    """
    if text.startswith(TOKEN_PREFIX):
        return Caller(None, _token_account(text))
    if ":" in text or "/" in text or _DOTTED_QUAD.fullmatch(text):
        return Caller(_address(text))
    return Caller(None, _user_account(text))


def _address(text: str) -> str:
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not {FORMS}") from None
    if "/" in text and not (network.version == 6 and network.prefixlen == 64):
        raise ValueError(
            f"{text!r}: counters are kept per IPv4 address and per IPv6 /64; "
            "give an address or an IPv6 /64"
        )
    return str(network.network_address)


def _token_account(text: str) -> str:
    if not TOKEN_NAME.fullmatch(text.removeprefix(TOKEN_PREFIX)):
        raise ValueError(
            f"{text!r}: a token name is up to 64 letters, digits, . _ and -, "
            "starting with a letter or digit"
        )
    return text


def _user_account(text: str) -> str:
    try:
        return check_name(text)
    except RegistryError:
        raise ValueError(f"{text!r} is not {FORMS}") from None


class SourceType(click.ParamType):
    name = "source"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> Caller:
        if isinstance(value, Caller):
            return value
        try:
            return parse_source(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@click.group()
def ratelimit() -> None:
    """Inspect rate limits (see rate_limits in the configuration)."""


@ratelimit.command("show")
@config_options
@click.argument("source", type=SourceType())
def ratelimit_show(
    config_file: Path | None, data_dir: Path | None, source: Caller
) -> None:
    """Show what SOURCE has used of each configured limit.

    \b
    SOURCE is one of:
      203.0.113.7          an IPv4 address
      2001:db8:1:2::7      an IPv6 address, shown as its /64 (counted per /64)
      2001:db8:1:2::/64    an IPv6 /64
      alice                a user account
      token:mirror-sync    a robot access token (a user's tokens count as the user)

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
