"""Real clients against `dockyard serve` with authentication on, over HTTPS.

podman and skopeo log in, get Docker registry tokens from /token and push and
pull as the users, access tokens and anonymous callers the CLI sets up. Every
client trusts the throwaway CA through its own cert-dir flag; none is told to
skip verification. Tokens the clients cannot make (expired, tampered) and the
two-scope token of a cross-repository mount are also checked with httpx.
"""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from tests.e2e.clients import TIMEOUT, Clients, oci_json, oci_ref
from tests.server import RunningServer, start_server
from tests.tls import Certificates, write_certificates

TAG = "1.4.2"
ACCEPT = "application/vnd.oci.image.manifest.v1+json"
PUBLIC_REPO = "pub/app"
PRIVATE_REPO = "vault/app"
# On from the start, before the CLI adds the first user.
SETTINGS = {"DOCKYARD_AUTH__ENABLED": "true"}
# One access line: client "METHOD PATH" STATUS repository=R in=BYTES ...
ACCESS_LINE = re.compile(
    r'"(?P<method>[A-Z]+) (?P<path>\S+)" (?P<status>\d{3}) .* in=(?P<bytes>\d+)'
)


@dataclass(frozen=True)
class Account:
    name: str
    password: str

    @property
    def basic(self) -> httpx.BasicAuth:
        return httpx.BasicAuth(self.name, self.password)


ROOT = Account("root", "root-client-pw1")
ALICE = Account("alice", "alice-client-pw2")
BOB = Account("bob", "bob-client-pw3")

Command = Callable[..., list[str]]


@dataclass(frozen=True)
class Registry:
    server: RunningServer
    certs: Certificates

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def trust(self) -> str:
        return str(self.certs.trust_dir)

    def cli_command(self, *args: str) -> list[str]:
        data_dir = str(self.server.data_dir)
        return [sys.executable, "-m", "dockyard", *args, "--data-dir", data_dir]

    def cli(self, *args: str, stdin: str | None = None) -> str:
        """Run `dockyard ARGS` on the server's data; return its stdout."""
        result = subprocess.run(
            self.cli_command(*args),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def client(self, auth: httpx.Auth | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.server.url, auth=auth, verify=self.server.verify, timeout=60
        )


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A server with auth and TLS on, and root (admin), alice and bob."""
    certs = write_certificates(tmp_path_factory.mktemp("auth-certs"))
    data_dir = tmp_path_factory.mktemp("auth-tls-registry") / "data"
    args = ["--tls-cert", str(certs.cert), "--tls-key", str(certs.key)]
    args += ["--workers", "2"]
    with start_server(data_dir, args=args, env=SETTINGS, ca_file=certs.ca) as server:
        running = Registry(server, certs)
        for account in (ROOT, ALICE, BOB):
            admin = ["--admin"] if account is ROOT else []
            running.cli(
                "user",
                "add",
                account.name,
                *admin,
                "--password-stdin",
                stdin=account.password + "\n",
            )
        yield running


@pytest.fixture(scope="module")
def published(
    registry: Registry, images: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """pyapp, pushed by root to the public PUBLIC_REPO and private PRIVATE_REPO."""
    clients = Clients.create(tmp_path_factory.mktemp("root-clients"))
    login(clients, clients.skopeo, registry, ROOT.name, ROOT.password)
    for repo in (PUBLIC_REPO, PRIVATE_REPO):
        push(clients, registry, images / "pyapp", repo)
    registry.cli("visibility", PUBLIC_REPO.split("/")[0], "public")


@pytest.fixture
def clients(tmp_path: Path) -> Clients:
    """Clients of one test, with an empty auth file: anonymous until a login."""
    return Clients.create(tmp_path / "clients")


def unique(namespace: str) -> str:
    return f"{namespace}/app-{uuid.uuid4().hex[:8]}"


def run_with_input(
    clients: Clients, command: list[str], stdin: str | int
) -> subprocess.CompletedProcess[str]:
    """Run a client with `stdin` (text, or a file descriptor to read)."""
    text = stdin if isinstance(stdin, str) else None
    pipe = stdin if isinstance(stdin, int) else None
    return subprocess.run(
        command,
        input=text,
        stdin=pipe,
        env=clients.env,
        cwd=clients.base,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def login_command(tool: Command, registry: Registry, username: str) -> list[str]:
    return tool(
        "login",
        "--cert-dir",
        registry.trust,
        "--username",
        username,
        "--password-stdin",
        registry.host,
    )


def login(
    clients: Clients, tool: Command, registry: Registry, username: str, secret: str
) -> None:
    command = login_command(tool, registry, username)
    result = run_with_input(clients, command, secret + "\n")
    assert result.returncode == 0, result.stderr
    assert "Login Succeeded" in result.stdout


def push_command(
    clients: Clients, registry: Registry, source: Path, repo: str
) -> list[str]:
    return clients.skopeo(
        "copy",
        "--all",
        "--dest-cert-dir",
        registry.trust,
        f"oci:{source}:{TAG}",
        f"docker://{registry.host}/{repo}:{TAG}",
    )


def push(clients: Clients, registry: Registry, source: Path, repo: str) -> None:
    clients.run(push_command(clients, registry, source, repo))


def podman_pull(clients: Clients, registry: Registry, repo: str) -> str:
    """Pull with podman; the manifest digest podman stored."""
    image = f"{registry.host}/{repo}:{TAG}"
    clients.run(clients.podman("pull", "-q", "--cert-dir", registry.trust, image))
    found = clients.run(
        clients.podman("image", "inspect", "--format={{.Digest}}", image)
    )
    return found.strip()


def remote_digest(clients: Clients, registry: Registry, repo: str) -> str:
    inspected = clients.run(
        clients.skopeo(
            "inspect",
            "--cert-dir",
            registry.trust,
            "--format",
            "{{.Digest}}",
            f"docker://{registry.host}/{repo}:{TAG}",
        )
    )
    return inspected.strip()


def assert_nothing_stored(registry: Registry, repo: str) -> None:
    with registry.client(ROOT.basic) as admin:
        response = admin.get(f"/v2/{repo}/tags/list")
    assert response.status_code == 404, response.text
    assert response.json()["errors"][0]["code"] == "NAME_UNKNOWN"


def assert_refused(error: str) -> None:
    assert re.search(r"denied|403|unauthorized", error, re.IGNORECASE), error


# Logging in and pushing


@pytest.mark.parametrize("tool", ["podman", "skopeo"])
def test_password_login_then_push_and_pull(
    registry: Registry, clients: Clients, images: Path, tool: str
) -> None:
    source, repo = images / "pyapp", unique("alice")
    login(clients, getattr(clients, tool), registry, ALICE.name, ALICE.password)

    push(clients, registry, source, repo)
    pulled = podman_pull(clients, registry, repo)

    assert registry.host in (clients.base / "auth.json").read_text()
    assert pulled == oci_ref(source, TAG)["digest"]


def test_access_token_login_pushes_inside_its_scope_only(
    registry: Registry, clients: Clients, images: Path
) -> None:
    source, inside, outside = images / "pyapp", unique("team"), unique("alice")
    secret = registry.cli(
        "token",
        "create",
        "--name",
        "ci",
        "--scope",
        "repository:team/*:pull,push",
    ).strip()
    # An access token's secret logs in with any username.
    login(clients, clients.podman, registry, "whoever", secret)

    push(clients, registry, source, inside)
    refused = clients.fail(push_command(clients, registry, source, outside))

    assert remote_digest(clients, registry, inside) == oci_ref(source, TAG)["digest"]
    assert_refused(refused)
    assert_nothing_stored(registry, outside)


def test_login_password_pipes_into_podman_login(
    registry: Registry, clients: Clients, images: Path
) -> None:
    source, repo = images / "pyapp", unique("alice")
    cli = registry.cli_command("login-password", "--user", "alice")
    with subprocess.Popen(cli, stdout=subprocess.PIPE) as printer:
        assert printer.stdout is not None
        command = login_command(clients.podman, registry, "alice")
        logged_in = run_with_input(clients, command, printer.stdout.fileno())
    assert printer.returncode == 0
    assert logged_in.returncode == 0, logged_in.stderr

    push(clients, registry, source, repo)

    assert remote_digest(clients, registry, repo) == oci_ref(source, TAG)["digest"]


def test_push_into_another_users_namespace_is_denied(
    registry: Registry, clients: Clients, images: Path
) -> None:
    repo = unique("alice")
    login(clients, clients.skopeo, registry, BOB.name, BOB.password)

    refused = clients.fail(push_command(clients, registry, images / "pyapp", repo))
    with registry.client(BOB.basic) as bob:
        upload = bob.post(f"/v2/{repo}/blobs/uploads/")

    assert_refused(refused)
    assert upload.status_code == 403
    assert upload.json()["errors"][0]["code"] == "DENIED"
    assert_nothing_stored(registry, repo)


# Anonymous pulls


@pytest.mark.usefixtures("published")
def test_anonymous_pull_of_a_public_repository(
    registry: Registry, clients: Clients, images: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    remote = f"docker://{registry.host}/{PUBLIC_REPO}:{TAG}"

    pulled = podman_pull(clients, registry, PUBLIC_REPO)
    clients.run(
        clients.skopeo(
            "copy", "--src-cert-dir", registry.trust, remote, f"oci:{out}:{TAG}"
        )
    )

    expected = oci_ref(images / "pyapp", TAG)["digest"]
    assert pulled == expected
    assert oci_ref(out, TAG)["digest"] == expected


@pytest.mark.usefixtures("published")
def test_anonymous_pull_of_a_private_repository_is_refused(
    registry: Registry, clients: Clients, tmp_path: Path
) -> None:
    image = f"{registry.host}/{PRIVATE_REPO}:{TAG}"

    by_podman = clients.fail(
        clients.podman("pull", "-q", "--cert-dir", registry.trust, image)
    )
    by_skopeo = clients.fail(
        clients.skopeo(
            "copy",
            "--src-cert-dir",
            registry.trust,
            f"docker://{image}",
            f"oci:{tmp_path / 'out'}:{TAG}",
        )
    )

    for error in (by_podman, by_skopeo):
        assert "unauthorized: authentication required" in error


# Tokens no client would send


def signed_token(registry: Registry, lifetime: int) -> str:
    """A token for root to pull PRIVATE_REPO, signed with the server's key."""
    key_file = registry.server.data_dir / "token-signing-key.pem"
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    now = int(time.time())
    claims = {
        "iss": "dockyard",
        "aud": "dockyard",
        "sub": ROOT.name,
        "iat": now - 7200,
        "nbf": now - 7200,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
        "access": [{"type": "repository", "name": PRIVATE_REPO, "actions": ["pull"]}],
    }
    return jwt.encode(claims, key, "ES256")


def get_manifest(registry: Registry, token: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}", "Accept": ACCEPT}
    with registry.client() as client:
        return client.get(f"/v2/{PRIVATE_REPO}/manifests/{TAG}", headers=headers)


def assert_invalid_token(response: httpx.Response) -> str:
    """The 401 for a bad token; its message."""
    assert response.status_code == 401, response.text
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    message: str = response.json()["errors"][0]["message"]
    return message


@pytest.mark.usefixtures("published")
def test_expired_token_is_refused(registry: Registry) -> None:
    # Past the 30 s the server allows for clock skew.
    expired = signed_token(registry, lifetime=-120)
    current = signed_token(registry, lifetime=300)

    assert get_manifest(registry, current).status_code == 200
    assert "expired" in assert_invalid_token(get_manifest(registry, expired))


def change_expiry(token: str) -> str:
    """The token with one byte of its payload changed: the expiry, pushed ahead."""
    header, payload, signature = token.split(".")
    claims = bytearray(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    first_digit = claims.index(b'"exp":') + len(b'"exp":')
    claims[first_digit] += 1
    changed = base64.urlsafe_b64encode(bytes(claims)).rstrip(b"=").decode()
    return f"{header}.{changed}.{signature}"


@pytest.mark.usefixtures("published")
def test_tampered_token_is_refused(registry: Registry) -> None:
    with registry.client(ROOT.basic) as client:
        answer = client.get(
            "/token",
            params={"service": "dockyard", "scope": f"repository:{PRIVATE_REPO}:pull"},
        )
    token = answer.json()["token"]
    tampered = change_expiry(token)

    assert get_manifest(registry, token).status_code == 200
    assert tampered != token
    assert_invalid_token(get_manifest(registry, tampered))


# Cross-repository mounts


def access_lines(server: RunningServer, start: int, prefix: str) -> list[re.Match[str]]:
    """Access-log matches after offset `start` whose path starts with `prefix`."""
    lines = server.log()[start:].splitlines()
    matches = (ACCESS_LINE.search(line) for line in lines)
    return [m for m in matches if m and m["path"].startswith(prefix)]


def test_skopeo_mounts_layers_from_another_repository(
    registry: Registry, clients: Clients, images: Path
) -> None:
    source, origin, copy = images / "pyapp", unique("alice"), unique("alice")
    manifest = oci_json(source, oci_ref(source, TAG)["digest"])
    login(clients, clients.skopeo, registry, ALICE.name, ALICE.password)
    push(clients, registry, source, origin)
    start = len(registry.server.log())

    # The push recorded where its layers now live in the clients' blob-info
    # cache, so containers/image offers them to the copy as mount sources.
    clients.run(
        clients.skopeo(
            "copy",
            "--src-cert-dir",
            registry.trust,
            "--dest-cert-dir",
            registry.trust,
            f"docker://{registry.host}/{origin}:{TAG}",
            f"docker://{registry.host}/{copy}:{TAG}",
        )
    )

    assert remote_digest(clients, registry, copy) == oci_ref(source, TAG)["digest"]
    uploads = access_lines(registry.server, start, f"/v2/{copy}/blobs/uploads/")
    # A mount is only 201 when the token held pull on the source as well as
    # push on the copy (else the server falls back to an upload: 202).
    mounted = [m for m in uploads if m["method"] == "POST" and m["status"] == "201"]
    sent = sum(int(m["bytes"]) for m in uploads if m["method"] in ("PATCH", "PUT"))
    assert len(mounted) == len(manifest["layers"])
    # Only the config was uploaded: no layer's bytes were.
    assert sent == manifest["config"]["size"]


def first_layer(layout: Path) -> str:
    manifest = oci_json(layout, oci_ref(layout, TAG)["digest"])
    digest: str = manifest["layers"][0]["digest"]
    return digest


def location(response: httpx.Response) -> str:
    return httpx.URL(response.headers["Location"]).path


def mount_token(registry: Registry, account: Account, scopes: list[str]) -> str:
    with registry.client(account.basic) as client:
        answer = client.get("/token", params={"service": "dockyard", "scope": scopes})
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["token"]
    return token


def try_mount(registry: Registry, token: str, repo: str, digest: str) -> httpx.Response:
    with registry.client() as client:
        return client.post(
            f"/v2/{repo}/blobs/uploads/",
            params={"mount": digest, "from": PRIVATE_REPO},
            headers={"Authorization": f"Bearer {token}"},
        )


@pytest.mark.usefixtures("published")
def test_mount_with_a_token_for_both_repositories(
    registry: Registry, images: Path
) -> None:
    repo, digest = unique("root"), first_layer(images / "pyapp")
    scopes = [f"repository:{repo}:pull,push", f"repository:{PRIVATE_REPO}:pull"]

    token = mount_token(registry, ROOT, scopes)
    mounted = try_mount(registry, token, repo, digest)

    access = jwt.decode(token, options={"verify_signature": False})["access"]
    assert sorted((a["name"], sorted(a["actions"])) for a in access) == sorted(
        [(repo, ["pull", "push"]), (PRIVATE_REPO, ["pull"])]
    )
    assert mounted.status_code == 201, mounted.text
    assert location(mounted) == f"/v2/{repo}/blobs/{digest}"
    with registry.client() as client:
        head = client.head(
            f"/v2/{repo}/blobs/{digest}", headers={"Authorization": f"Bearer {token}"}
        )
    assert head.status_code == 200


@pytest.mark.usefixtures("published")
@pytest.mark.parametrize(
    ("account", "namespace", "asks_for_source"),
    [
        pytest.param(ROOT, "root", False, id="token-without-the-source"),
        pytest.param(BOB, "bob", True, id="source-not-pullable"),
    ],
)
def test_mount_without_pull_on_the_source_opens_an_upload(
    registry: Registry,
    images: Path,
    account: Account,
    namespace: str,
    asks_for_source: bool,
) -> None:
    repo, digest = unique(namespace), first_layer(images / "pyapp")
    scopes = [f"repository:{repo}:pull,push"]
    scopes += [f"repository:{PRIVATE_REPO}:pull"] if asks_for_source else []

    token = mount_token(registry, account, scopes)
    response = try_mount(registry, token, repo, digest)

    assert response.status_code == 202, response.text
    assert location(response).startswith(f"/v2/{repo}/blobs/uploads/")
