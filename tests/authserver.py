"""A real `dockyard serve` with authentication on, and the accounts tests share.

`auth_server` starts the server, then sets it up with the `dockyard` command
line, as an administrator would while it runs:

- `root`, an admin; `alice` and `bob`, plain users owning their namespaces;
- the organisation namespace `team`, where alice may pull and push;
- the public namespace `pub`, holding `pub/base:latest`, pushed by root.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.helpers import push_image
from tests.server import RunningServer, start_server


@dataclass(frozen=True)
class Account:
    name: str
    password: str

    @property
    def basic(self) -> httpx.BasicAuth:
        return httpx.BasicAuth(self.name, self.password)


ROOT = Account("root", "root-secret-pw1")
ALICE = Account("alice", "alice-secret-pw2")
BOB = Account("bob", "bob-secret-pw3")
PUBLIC_REPO = "pub/base"

# Every test connects from 127.0.0.1, so one address makes all the failed
# logins the tests make on purpose; only the per-user window is kept small.
GENEROUS_ADDRESS_LIMIT = {"DOCKYARD_AUTH__FAILED_LOGINS_PER_ADDRESS": "1000/minute"}


@dataclass
class AuthServer:
    """A running server with auth on, and its command line."""

    server: RunningServer

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def signing_key(self) -> Path:
        return self.server.data_dir / "token-signing-key.pem"

    def cli(self, *args: str, stdin: str | None = None) -> str:
        """Run `dockyard ARGS --data-dir D` and return its standard output."""
        result = run_cli(self.server.data_dir, *args, stdin=stdin)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def add_user(self, account: Account, admin: bool = False) -> None:
        flags = ["--admin"] if admin else []
        command = ["user", "add", account.name, *flags, "--password-stdin"]
        self.cli(*command, stdin=account.password + "\n")

    def client(self, auth: httpx.Auth | None = None, **kwargs: Any) -> httpx.Client:
        """A client for this server; `kwargs` as for `httpx.Client`."""
        return httpx.Client(base_url=self.url, auth=auth, timeout=60, **kwargs)


def run_cli(
    data_dir: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dockyard", *args, "--data-dir", str(data_dir)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


@contextmanager
def auth_server(
    tmp_path_factory: pytest.TempPathFactory,
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
) -> Iterator[AuthServer]:
    """A server with auth on and the accounts above; `env` adds settings."""
    with empty_auth_server(tmp_path_factory, env, args) as running:
        _set_up_accounts(running)
        yield running


@contextmanager
def empty_auth_server(
    tmp_path_factory: pytest.TempPathFactory,
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
) -> Iterator[AuthServer]:
    """A server with auth on and no accounts yet, for tests that need few."""
    data_dir = tmp_path_factory.mktemp("auth-registry")
    settings = {"DOCKYARD_AUTH__ENABLED": "true", **GENEROUS_ADDRESS_LIMIT}
    with start_server(data_dir, env={**settings, **(env or {})}, args=args) as server:
        yield AuthServer(server)


def _set_up_accounts(running: AuthServer) -> None:
    running.add_user(ROOT, admin=True)
    running.add_user(ALICE)
    running.add_user(BOB)
    running.cli("namespace", "create", "team")
    running.cli("permission", "grant", "--user", "alice", "team", "pull,push")
    running.cli("namespace", "create", "pub")
    running.cli("visibility", "pub", "public")
    with running.client(ROOT.basic) as client:
        push_image(client, PUBLIC_REPO)
