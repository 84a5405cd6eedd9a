"""Authentication on the wire: challenges, the token endpoint, Bearer and Basic
credentials, 401 against 403, public repositories, the filtered catalog,
access tokens, failed-login throttling and the audit trail.

One real server with auth on serves the module; its accounts are the ones
`tests.authserver` sets up (root, alice, bob, `team`, the public `pub`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.api.helpers import assert_error, push_image, put_manifest
from tests.authserver import (
    ALICE,
    BOB,
    PUBLIC_REPO,
    ROOT,
    Account,
    AuthServer,
    auth_server,
    empty_auth_server,
)

WRONG_PASSWORD = "not-the-password-0"
# What httpx takes as `auth=`: Basic credentials as a pair, or an Auth.
Credentials = httpx.Auth | tuple[str, str] | None
NO_BLOB = "sha256:" + "0" * 64


@dataclass(frozen=True)
class Image:
    repo: str
    body: bytes
    digest: str

    @property
    def config_digest(self) -> str:
        return str(json.loads(self.body)["config"]["digest"])


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    with auth_server(tmp_path_factory) as running:
        yield running


@pytest.fixture(scope="module")
def alice_image(registry: AuthServer) -> Image:
    return pushed(registry, ALICE, "alice/existing")


@pytest.fixture(scope="module")
def bob_image(registry: AuthServer) -> Image:
    return pushed(registry, BOB, "bob/private")


@pytest.fixture(scope="module")
def team_image(registry: AuthServer) -> Image:
    return pushed(registry, ALICE, "team/app")


def pushed(registry: AuthServer, account: Account, repo: str) -> Image:
    with registry.client(account.basic) as client:
        body, digest = push_image(client, repo)
    return Image(repo, body, digest)


def fresh(namespace: str) -> str:
    """A repository in `namespace` no other test uses."""
    return f"{namespace}/{uuid.uuid4().hex[:12]}"


def get_token(
    registry: AuthServer,
    *scopes: str,
    auth: Credentials = None,
    **params: str,
) -> dict[str, Any]:
    """The answer of GET /token for `scopes`, asserted to be a 200."""
    query = {"service": "dockyard", "scope": list(scopes), **params}
    response = httpx.get(f"{registry.url}/token", params=query, auth=auth)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def token(registry: AuthServer, *scopes: str, auth: Credentials = None) -> str:
    return str(get_token(registry, *scopes, auth=auth)["token"])


def refresh_token(registry: AuthServer, account: Account) -> str:
    answer = get_token(registry, auth=account.basic, offline_token="true")
    return str(answer["refresh_token"])


def bearer(signed: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {signed}"}


def payload(signed: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(signed, options={"verify_signature": False})
    return claims


def access(signed: str) -> dict[str, list[str]]:
    """The token's `access` claim as {repository name: actions}."""
    return {entry["name"]: entry["actions"] for entry in payload(signed)["access"]}


def challenge(registry: AuthServer, scope: str | None = None, error: str = "") -> str:
    parts = [f'realm="{registry.url}/token"', 'service="dockyard"']
    if scope:
        parts.append(f'scope="{scope}"')
    if error:
        parts.append(f'error="{error}"')
    return "Bearer " + ",".join(parts)


def assert_challenged(
    response: httpx.Response, registry: AuthServer, scope: str, error: str = ""
) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == challenge(registry, scope, error)
    if response.request.method != "HEAD":
        assert_error(response, 401, "UNAUTHORIZED")


def message(response: httpx.Response) -> str:
    return str(response.json()["errors"][0]["message"])


# The base endpoint


def test_base_without_credentials_is_challenged(registry):
    response = httpx.get(f"{registry.url}/v2/")

    assert_error(response, 401, "UNAUTHORIZED")
    assert response.headers["www-authenticate"] == (
        f'Bearer realm="http://127.0.0.1:{registry.server.port}/token",'
        'service="dockyard"'
    )


def test_base_with_basic_credentials_answers_200(registry):
    response = httpx.get(f"{registry.url}/v2/", auth=ALICE.basic)
    assert response.status_code == 200, response.text


def test_base_with_a_wrong_password_is_challenged(registry):
    response = httpx.get(f"{registry.url}/v2/", auth=("alice", WRONG_PASSWORD))

    assert_challenged(response, registry, "")
    assert "invalid username or password" in message(response)


def test_base_with_any_valid_bearer_token_answers_200(registry):
    anonymous = token(registry)
    response = httpx.get(f"{registry.url}/v2/", headers=bearer(anonymous))
    assert response.status_code == 200, response.text


# Challenges name the scope a request needs


@pytest.mark.parametrize(
    ("method", "path", "actions"),
    [
        ("GET", "manifests/latest", "pull"),
        ("HEAD", "manifests/latest", "pull"),
        ("GET", f"blobs/{NO_BLOB}", "pull"),
        ("HEAD", f"blobs/{NO_BLOB}", "pull"),
        ("GET", "tags/list", "pull"),
        ("POST", "blobs/uploads/", "pull,push"),
        ("PATCH", "blobs/uploads/some-upload", "pull,push"),
        ("PUT", "manifests/latest", "pull,push"),
        ("DELETE", "manifests/latest", "delete"),
        ("DELETE", f"blobs/{NO_BLOB}", "delete"),
    ],
)
def test_challenge_names_the_scope_needed(registry, method, path, actions):
    response = httpx.request(method, f"{registry.url}/v2/alice/app/{path}")
    assert_challenged(response, registry, f"repository:alice/app:{actions}")


def test_catalog_challenge_asks_for_the_catalog_scope(registry):
    response = httpx.get(f"{registry.url}/v2/_catalog")
    assert_challenged(response, registry, "registry:catalog:*")


# GET /token


def test_anonymous_token_grants_nothing_on_a_private_repository(registry):
    signed = token(registry, "repository:alice/existing:pull")
    assert payload(signed)["access"] == []
    assert payload(signed)["sub"] == ""


def test_anonymous_token_grants_pull_on_a_public_repository(registry):
    signed = token(registry, f"repository:{PUBLIC_REPO}:pull,push")
    assert access(signed) == {PUBLIC_REPO: ["pull"]}


def test_token_answer_and_claims(registry):
    before = int(time.time())
    answer = get_token(
        registry,
        "repository:alice/app:pull,push",
        "repository:bob/private:pull",
        auth=ALICE.basic,
    )

    assert set(answer) == {"token", "access_token", "expires_in", "issued_at"}
    assert answer["access_token"] == answer["token"]
    assert answer["expires_in"] == 300
    assert answer["issued_at"].endswith("Z")
    claims = payload(answer["token"])
    assert claims["iss"] == "dockyard"
    assert claims["sub"] == "alice"
    assert claims["aud"] == "dockyard"
    assert before <= claims["iat"] <= int(time.time())
    assert claims["exp"] == claims["iat"] + 300
    assert claims["nbf"] <= claims["iat"]
    assert len(claims["jti"]) >= 16
    # Asking for more than one may have is no error: bob's repository is left out.
    assert claims["access"] == [
        {"type": "repository", "name": "alice/app", "actions": ["pull", "push"]}
    ]


def test_token_answers_are_not_cached(registry):
    response = httpx.get(f"{registry.url}/token", auth=ALICE.basic)
    assert response.headers["cache-control"] == "no-store"


def test_every_token_has_its_own_id(registry):
    first = token(registry, auth=ALICE.basic)
    second = token(registry, auth=ALICE.basic)
    assert payload(first)["jti"] != payload(second)["jti"]


def test_offline_token_adds_a_refresh_token(registry):
    online = get_token(registry, auth=ALICE.basic)
    offline = get_token(registry, auth=ALICE.basic, offline_token="true")

    assert "refresh_token" not in online
    refresh = payload(offline["refresh_token"])
    assert refresh["sub"] == "alice"
    assert refresh["aud"] == "dockyard/refresh"


def test_anonymous_callers_get_no_refresh_token(registry):
    assert "refresh_token" not in get_token(registry, offline_token="true")


def test_token_with_a_wrong_password_is_401(registry):
    response = httpx.get(
        f"{registry.url}/token",
        params={"service": "dockyard", "scope": "repository:alice/app:pull"},
        auth=("alice", WRONG_PASSWORD),
    )
    assert_error(response, 401, "UNAUTHORIZED")


@pytest.mark.parametrize("scope", ["repository:alice/app", "repository", "x y:z:"])
def test_malformed_scope_is_400(registry, scope):
    response = httpx.get(f"{registry.url}/token", params={"scope": scope})
    assert_error(response, 400, "UNSUPPORTED")
    assert "scope" in message(response)


def test_token_endpoint_wants_a_login_not_a_token(registry):
    signed = token(registry, auth=ALICE.basic)
    response = httpx.get(f"{registry.url}/token", headers=bearer(signed))
    assert_error(response, 401, "UNAUTHORIZED")


# POST /token (OAuth2)


def post_token(registry: AuthServer, **form: str) -> httpx.Response:
    return httpx.post(f"{registry.url}/token", data={"service": "dockyard", **form})


def test_password_grant_with_offline_access_gives_a_refresh_token(registry):
    response = post_token(
        registry,
        grant_type="password",
        username="alice",
        password=ALICE.password,
        scope="repository:alice/app:pull repository:team/app:pull,push",
        access_type="offline",
        client_id="test",
    )

    assert response.status_code == 200, response.text
    answer = response.json()
    assert access(answer["access_token"]) == {
        "alice/app": ["pull"],
        "team/app": ["pull", "push"],
    }
    assert payload(answer["refresh_token"])["aud"] == "dockyard/refresh"


def test_password_grant_with_a_wrong_password_is_401(registry):
    response = post_token(
        registry, grant_type="password", username="bob", password=WRONG_PASSWORD
    )
    assert_error(response, 401, "UNAUTHORIZED")


def test_refresh_token_grant_issues_access_tokens(registry):
    refresh = refresh_token(registry, BOB)

    response = post_token(
        registry,
        grant_type="refresh_token",
        refresh_token=refresh,
        scope="repository:bob/app:push repository:alice/app:pull",
    )

    assert response.status_code == 200, response.text
    answer = response.json()
    assert payload(answer["access_token"])["sub"] == "bob"
    assert access(answer["access_token"]) == {"bob/app": ["push"]}
    assert answer["refresh_token"] == refresh


def test_access_token_is_not_a_refresh_token(registry):
    signed = token(registry, auth=BOB.basic)
    response = post_token(registry, grant_type="refresh_token", refresh_token=signed)
    assert_error(response, 401, "UNAUTHORIZED")


def test_unknown_grant_type_is_400(registry):
    response = post_token(registry, grant_type="client_credentials")
    assert_error(response, 400, "UNSUPPORTED")
    assert "grant_type" in message(response)


def test_oversized_token_form_is_refused(registry):
    response = post_token(registry, grant_type="password", password="x" * 70_000)
    assert_error(response, 413, "UNSUPPORTED")


def test_refresh_token_is_not_an_access_token(registry):
    refresh = refresh_token(registry, ALICE)
    response = httpx.get(
        f"{registry.url}/v2/alice/existing/tags/list", headers=bearer(refresh)
    )
    assert_challenged(
        response, registry, "repository:alice/existing:pull", "invalid_token"
    )


# Bearer tokens on the API


def test_push_and_pull_with_a_token(registry):
    repo = fresh("alice")
    signed = token(registry, f"repository:{repo}:pull,push", auth=ALICE.basic)

    with registry.client(headers=bearer(signed)) as client:
        body, digest = push_image(client, repo)
        response = client.get(f"/v2/{repo}/manifests/{digest}")

    assert response.status_code == 200, response.text
    assert response.content == body


def test_pull_token_cannot_push_the_caller_could(registry, alice_image):
    signed = token(registry, f"repository:{alice_image.repo}:pull", auth=ALICE.basic)

    with registry.client(headers=bearer(signed)) as client:
        pulled = client.get(f"/v2/{alice_image.repo}/manifests/latest")
        put = put_manifest(client, alice_image.repo, "again", alice_image.body)
        upload = client.post(f"/v2/{alice_image.repo}/blobs/uploads/")

    assert pulled.status_code == 200, pulled.text
    scope = f"repository:{alice_image.repo}:pull,push"
    assert_challenged(put, registry, scope, "insufficient_scope")
    assert_challenged(upload, registry, scope, "insufficient_scope")


def test_token_of_a_caller_without_rights_is_denied(registry, alice_image):
    repo = alice_image.repo
    signed = token(registry, f"repository:{repo}:pull,push", auth=BOB.basic)
    assert payload(signed)["access"] == []

    with registry.client(headers=bearer(signed)) as client:
        pulled = client.get(f"/v2/{repo}/manifests/latest")
        put = put_manifest(client, repo, "bobs", alice_image.body)

    assert_error(pulled, 403, "DENIED")
    assert_error(put, 403, "DENIED")
    assert "www-authenticate" not in pulled.headers


def test_anonymous_token_on_a_private_repository_is_challenged(registry, alice_image):
    signed = token(registry, f"repository:{alice_image.repo}:pull")
    response = httpx.get(
        f"{registry.url}/v2/{alice_image.repo}/tags/list", headers=bearer(signed)
    )
    assert_challenged(response, registry, f"repository:{alice_image.repo}:pull")


def flip_character(signed: str) -> str:
    header, body, signature = signed.split(".")
    middle = len(body) // 2
    flipped = "A" if body[middle] != "A" else "B"
    return ".".join([header, body[:middle] + flipped + body[middle + 1 :], signature])


def widen_access(signed: str) -> str:
    """The same token, claiming push too, with the original signature."""
    header, _, signature = signed.split(".")
    claims = payload(signed)
    claims["access"][0]["actions"] = ["pull", "push", "delete"]
    return ".".join([header, b64url(json.dumps(claims).encode()), signature])


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize("tamper", [flip_character, widen_access])
def test_tampered_token_is_rejected(registry, alice_image, tamper):
    signed = token(registry, f"repository:{alice_image.repo}:pull", auth=ALICE.basic)
    response = httpx.get(
        f"{registry.url}/v2/{alice_image.repo}/tags/list",
        headers=bearer(tamper(signed)),
    )
    assert_challenged(
        response, registry, f"repository:{alice_image.repo}:pull", "invalid_token"
    )


def claims_for(repo: str, **changes: Any) -> dict[str, Any]:
    """Claims as the server would issue them to alice for pull on `repo`."""
    now = int(time.time())
    return {
        "iss": "dockyard",
        "sub": "alice",
        "aud": "dockyard",
        "exp": now + 300,
        "nbf": now - 30,
        "iat": now,
        "jti": secrets.token_urlsafe(16),
        "access": [{"type": "repository", "name": repo, "actions": ["pull"]}],
        **changes,
    }


def server_key(registry: AuthServer) -> Any:
    return serialization.load_pem_private_key(
        registry.signing_key.read_bytes(), password=None
    )


def tags_with(registry: AuthServer, repo: str, signed: str) -> httpx.Response:
    return httpx.get(f"{registry.url}/v2/{repo}/tags/list", headers=bearer(signed))


def test_token_signed_with_the_servers_key_is_accepted(registry, alice_image):
    # The control for the forgeries below: these claims pass when well signed.
    signed = jwt.encode(claims_for(alice_image.repo), server_key(registry), "ES256")
    response = tags_with(registry, alice_image.repo, signed)
    assert response.status_code == 200, response.text


def test_expired_token_is_rejected(registry, alice_image):
    # Older than the 30 seconds of clock skew the server allows.
    past = int(time.time()) - 600
    claims = claims_for(alice_image.repo, iat=past - 300, nbf=past - 330, exp=past)
    signed = jwt.encode(claims, server_key(registry), "ES256")

    response = tags_with(registry, alice_image.repo, signed)

    scope = f"repository:{alice_image.repo}:pull"
    assert_challenged(response, registry, scope, "invalid_token")
    assert "expired" in message(response)


def hs256_with_public_key(registry: AuthServer, claims: dict[str, Any]) -> str:
    """The algorithm-confusion forgery: HMAC keyed with the public key PEM."""
    key = server_key(registry).public_key()
    pem = serialization.Encoding.PEM
    public = key.public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo)
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims).encode())
    mac = hmac.new(public, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64url(mac)}"


def forge(kind: str, registry: AuthServer, claims: dict[str, Any]) -> str:
    if kind == "another key":
        return jwt.encode(claims, ec.generate_private_key(ec.SECP256R1()), "ES256")
    if kind == "alg none":
        return jwt.encode(claims, "", "none")
    if kind == "wrong audience":
        return jwt.encode({**claims, "aud": "other"}, server_key(registry), "ES256")
    if kind == "refresh audience":
        claims = {**claims, "aud": "dockyard/refresh"}
        return jwt.encode(claims, server_key(registry), "ES256")
    if kind == "no jti":
        claims = {k: v for k, v in claims.items() if k != "jti"}
        return jwt.encode(claims, server_key(registry), "ES256")
    return hs256_with_public_key(registry, claims)


@pytest.mark.parametrize(
    "kind",
    [
        "another key",
        "alg none",
        "HS256 keyed with the public key",
        "wrong audience",
        "refresh audience",
        "no jti",
    ],
)
def test_forged_token_is_rejected(registry, alice_image, kind):
    signed = forge(kind, registry, claims_for(alice_image.repo))
    response = tags_with(registry, alice_image.repo, signed)
    assert_challenged(
        response, registry, f"repository:{alice_image.repo}:pull", "invalid_token"
    )


def test_unknown_authorization_scheme_is_challenged(registry, alice_image):
    response = httpx.get(
        f"{registry.url}/v2/{alice_image.repo}/tags/list",
        headers={"Authorization": "Digest username=alice"},
    )
    assert_challenged(response, registry, f"repository:{alice_image.repo}:pull")


# 401 against 403, and no word on what exists


def answers(client: httpx.Client, repo: str, blob: str) -> list[tuple[int, bytes]]:
    responses = [
        client.get(f"/v2/{repo}/manifests/latest"),
        client.get(f"/v2/{repo}/tags/list"),
        client.head(f"/v2/{repo}/blobs/{blob}"),
        client.get(f"/v2/{repo}/blobs/{blob}"),
    ]
    return [(response.status_code, response.content) for response in responses]


def test_known_caller_gets_the_same_403_whether_a_repository_exists(
    registry, alice_image
):
    blob = alice_image.config_digest
    with registry.client(BOB.basic) as client:
        existing = answers(client, alice_image.repo, blob)
        missing = answers(client, fresh("alice"), blob)

    assert existing == missing
    assert [status for status, _ in existing] == [403] * 4


def test_anonymous_caller_gets_the_same_401_whether_a_repository_exists(
    registry, alice_image
):
    blob = alice_image.config_digest
    missing_repo = fresh("alice")
    with registry.client() as client:
        existing = client.get(f"/v2/{alice_image.repo}/manifests/latest")
        missing = client.get(f"/v2/{missing_repo}/manifests/latest")
        existing_blob = client.head(f"/v2/{alice_image.repo}/blobs/{blob}")
        missing_blob = client.head(f"/v2/{missing_repo}/blobs/{blob}")

    assert (existing.status_code, existing.content) == (401, missing.content)
    assert (existing_blob.status_code, missing_blob.status_code) == (401, 401)
    # The challenges differ only in the repository they name.
    assert existing.headers["www-authenticate"] == missing.headers[
        "www-authenticate"
    ].replace(missing_repo, alice_image.repo)


def test_user_without_push_on_a_public_repository_is_denied(registry):
    with registry.client(ALICE.basic) as client:
        response = client.post(f"/v2/{PUBLIC_REPO}/blobs/uploads/")
    assert_error(response, 403, "DENIED")


# Public repositories


def test_anyone_pulls_a_public_repository_without_a_token(registry):
    with registry.client() as client:
        manifest = client.get(f"/v2/{PUBLIC_REPO}/manifests/latest")
        config = json.loads(manifest.content)["config"]["digest"]
        blob = client.get(f"/v2/{PUBLIC_REPO}/blobs/{config}")
        tags = client.get(f"/v2/{PUBLIC_REPO}/tags/list")

    assert manifest.status_code == 200, manifest.text
    assert blob.status_code == 200, blob.text
    assert tags.json()["tags"] == ["latest"]


def test_anonymous_push_to_a_public_repository_is_challenged(registry):
    with registry.client() as client:
        upload = client.post(f"/v2/{PUBLIC_REPO}/blobs/uploads/")
        delete = client.delete(f"/v2/{PUBLIC_REPO}/manifests/latest")

    assert_challenged(upload, registry, f"repository:{PUBLIC_REPO}:pull,push")
    assert_challenged(delete, registry, f"repository:{PUBLIC_REPO}:delete")


# The catalog


def catalog(registry: AuthServer, **kwargs: Any) -> list[str]:
    response = httpx.get(f"{registry.url}/v2/_catalog", **kwargs)
    assert response.status_code == 200, response.text
    repositories: list[str] = response.json()["repositories"]
    return repositories


@pytest.fixture(scope="module")
def all_images(alice_image, bob_image, team_image) -> list[Image]:
    return [alice_image, bob_image, team_image]


def test_catalog_lists_what_the_caller_may_pull(registry, all_images):
    listed = catalog(registry, auth=ALICE.basic)

    assert {"alice/existing", "team/app", PUBLIC_REPO} <= set(listed)
    assert not [name for name in listed if name.startswith("bob/")]
    assert listed == sorted(listed)


def test_admin_catalog_lists_everything(registry, all_images):
    listed = catalog(registry, auth=ROOT.basic)
    assert {"alice/existing", "bob/private", "team/app", PUBLIC_REPO} <= set(listed)


def test_anonymous_catalog_token_lists_public_repositories_only(registry, all_images):
    signed = token(registry, "registry:catalog:*")
    assert payload(signed)["access"] == [
        {"type": "registry", "name": "catalog", "actions": ["*"]}
    ]
    assert catalog(registry, headers=bearer(signed)) == [PUBLIC_REPO]


def test_bearer_catalog_lists_by_the_tokens_user(registry, all_images):
    signed = token(registry, "registry:catalog:*", auth=BOB.basic)
    listed = catalog(registry, headers=bearer(signed))
    assert "bob/private" in listed
    assert not [name for name in listed if name.startswith(("alice/", "team/"))]


def test_catalog_needs_the_catalog_scope_in_a_token(registry):
    signed = token(registry, "repository:alice/existing:pull", auth=ALICE.basic)
    response = httpx.get(f"{registry.url}/v2/_catalog", headers=bearer(signed))
    assert_challenged(response, registry, "registry:catalog:*", "insufficient_scope")


# Cross-repository mounts


def mount(client: httpx.Client, repo: str, digest: str, source: str) -> httpx.Response:
    return client.post(
        f"/v2/{repo}/blobs/uploads/", params={"mount": digest, "from": source}
    )


def test_mount_from_a_repository_the_caller_cannot_pull_opens_an_upload(
    registry, bob_image
):
    target = fresh("alice")
    signed = token(
        registry,
        f"repository:{target}:pull,push",
        f"repository:{bob_image.repo}:pull",
        auth=ALICE.basic,
    )

    with registry.client(headers=bearer(signed)) as client:
        response = mount(client, target, bob_image.config_digest, bob_image.repo)
        mounted = client.head(f"/v2/{target}/blobs/{bob_image.config_digest}")

    assert response.status_code == 202, response.text
    assert "/blobs/uploads/" in response.headers["location"]
    assert mounted.status_code == 404


def test_mount_with_basic_credentials_checks_the_source_too(registry, bob_image):
    target = fresh("alice")
    with registry.client(ALICE.basic) as client:
        response = mount(client, target, bob_image.config_digest, bob_image.repo)
    assert response.status_code == 202, response.text


def test_mount_from_the_callers_own_repository(registry, alice_image):
    target = fresh("alice")
    signed = token(
        registry,
        f"repository:{target}:pull,push",
        f"repository:{alice_image.repo}:pull",
        auth=ALICE.basic,
    )

    with registry.client(headers=bearer(signed)) as client:
        response = mount(client, target, alice_image.config_digest, alice_image.repo)

    assert response.status_code == 201, response.text
    assert response.headers["docker-content-digest"] == alice_image.config_digest


def test_mount_needs_the_source_in_the_token(registry, alice_image):
    # Alice may pull the source, but this token was not issued for it.
    target = fresh("alice")
    signed = token(registry, f"repository:{target}:pull,push", auth=ALICE.basic)
    with registry.client(headers=bearer(signed)) as client:
        response = mount(client, target, alice_image.config_digest, alice_image.repo)
    assert response.status_code == 202, response.text


# Access tokens


def create_token(registry: AuthServer, name: str, scope: str, *options: str) -> str:
    """`dockyard token create --name NAME --scope SCOPE OPTIONS`: its secret."""
    command = ["token", "create", "--name", name, "--scope", scope, *options]
    return registry.cli(*command).strip()


@pytest.fixture(scope="module")
def ci_secret(registry: AuthServer) -> str:
    return create_token(registry, "ci", "repository:team/*:pull,push", "--ttl", "1h")


def test_access_token_is_a_password_for_any_username(registry, ci_secret):
    repo = fresh("team")
    with registry.client(httpx.BasicAuth("whoever", ci_secret)) as client:
        base = client.get("/v2/")
        body, digest = push_image(client, repo)
        pulled = client.get(f"/v2/{repo}/manifests/{digest}")

    assert base.status_code == 200, base.text
    assert pulled.content == body


def test_access_token_cannot_push_outside_its_scopes(registry, ci_secret):
    with registry.client(httpx.BasicAuth("ci", ci_secret)) as client:
        own = client.post(f"/v2/{fresh('alice')}/blobs/uploads/")
        other = client.post(f"/v2/{fresh('bob')}/blobs/uploads/")
        delete = client.delete(f"/v2/{fresh('team')}/manifests/latest")

    assert_error(own, 403, "DENIED")
    assert_error(other, 403, "DENIED")
    assert_error(delete, 403, "DENIED")


def test_access_token_at_the_token_endpoint(registry, ci_secret):
    repo = fresh("team")
    signed = token(
        registry,
        f"repository:{repo}:pull,push,delete",
        "repository:alice/existing:pull",
        auth=httpx.BasicAuth("anyone", ci_secret),
    )

    assert payload(signed)["sub"] == "token:ci"
    assert access(signed) == {repo: ["pull", "push"]}
    with registry.client(headers=bearer(signed)) as client:
        push_image(client, repo)


def test_user_token_is_capped_by_its_scopes(registry, bob_image):
    secret = create_token(registry, "bob-reader", "repository:*:pull", "--user", "bob")

    with registry.client(httpx.BasicAuth("bob", secret)) as client:
        pulled = client.get(f"/v2/{bob_image.repo}/manifests/latest")
        pushed = client.post(f"/v2/{bob_image.repo}/blobs/uploads/")
        foreign = client.get("/v2/alice/existing/manifests/latest")

    assert pulled.status_code == 200, pulled.text
    assert_error(pushed, 403, "DENIED")
    assert_error(foreign, 403, "DENIED")


def test_expired_access_token_is_refused(registry, team_image):
    secret = create_token(registry, "short", "repository:team/*:pull", "--ttl", "3s")
    created = time.monotonic()
    scope = f"repository:{team_image.repo}:pull"
    signed = token(registry, scope, auth=("ci", secret))
    time.sleep(max(0, created + 4 - time.monotonic()))

    basic = httpx.get(f"{registry.url}/v2/", auth=("ci", secret))
    jwt_after = tags_with(registry, team_image.repo, signed)

    assert_error(basic, 401, "UNAUTHORIZED")
    assert "expired" in message(basic)
    # The JWT outlives the access token by its own lifetime, but is refused.
    assert_challenged(jwt_after, registry, scope, "invalid_token")
    assert "expired" in message(jwt_after)


def test_revoked_access_token_is_refused(registry, team_image):
    secret = create_token(registry, "doomed", "repository:team/*:pull")
    url = f"{registry.url}/v2/{team_image.repo}/manifests/latest"
    scope = f"repository:{team_image.repo}:pull"
    signed = token(registry, scope, auth=("ci", secret))
    assert httpx.get(url, auth=("ci", secret)).status_code == 200
    assert httpx.get(url, headers=bearer(signed)).status_code == 200

    registry.cli("token", "revoke", "doomed")
    basic = httpx.get(url, auth=("ci", secret))
    jwt_after = httpx.get(url, headers=bearer(signed))

    assert_error(basic, 401, "UNAUTHORIZED")
    assert "revoked" in message(basic)
    assert_challenged(jwt_after, registry, scope, "invalid_token")
    assert "revoked" in message(jwt_after)


def test_unknown_access_token_secret_is_refused(registry, ci_secret):
    forged = ci_secret[:-4] + ("aaaa" if not ci_secret.endswith("aaaa") else "bbbb")
    response = httpx.get(f"{registry.url}/v2/", auth=("ci", forged))
    assert_error(response, 401, "UNAUTHORIZED")


def test_login_password_carries_the_users_rights(registry):
    secret = registry.cli("login-password", "--user", "alice").strip()
    repo = fresh("alice")

    with registry.client(httpx.BasicAuth("alice", secret)) as client:
        push_image(client, repo)
        denied = client.get("/v2/bob/private/tags/list")

    assert_error(denied, 403, "DENIED")


# Failed-login throttling


@pytest.fixture(scope="module")
def throttled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    # One worker: each keeps its own window unless redis_url is set.
    env = {"DOCKYARD_AUTH__FAILED_LOGINS_PER_USER": "3/minute"}
    with empty_auth_server(tmp_path_factory, env, ["--workers", "1"]) as running:
        running.add_user(ALICE)
        running.add_user(BOB)
        yield running


def test_failed_logins_are_throttled_per_user(throttled):
    wrong = ("alice", WRONG_PASSWORD)
    with throttled.client() as client:
        failures = [client.get("/v2/alice/x/tags/list", auth=wrong) for _ in range(3)]
        throttled_wrong = client.get("/v2/alice/x/tags/list", auth=wrong)
        throttled_right = client.get("/token", auth=ALICE.basic)
        other_user = client.get("/token", auth=BOB.basic)

    assert [r.status_code for r in failures] == [401] * 3
    for response in (throttled_wrong, throttled_right):
        assert_error(response, 429, "TOOMANYREQUESTS")
        assert 0 < int(response.headers["retry-after"]) <= 60
    assert other_user.status_code == 200, other_user.text


def test_throttled_login_on_the_base_endpoint_is_429(throttled):
    # A name of its own, so the other test's window does not matter; an
    # unknown name is throttled like a known one.
    wrong = ("mallory", WRONG_PASSWORD)
    with throttled.client() as client:
        for _ in range(3):
            assert client.get("/v2/", auth=wrong).status_code == 401
        response = client.get("/v2/", auth=wrong)

    assert_error(response, 429, "TOOMANYREQUESTS")
    assert response.headers["retry-after"]


# The audit trail


def audit_events(registry: AuthServer) -> list[dict[str, Any]]:
    output = registry.cli("audit", "--json", "--limit", "100000")
    return [json.loads(line) for line in output.splitlines()]


def has_event(events: list[dict[str, Any]], **fields: Any) -> bool:
    return any(all(event.get(k) == v for k, v in fields.items()) for event in events)


def test_audit_records_logins_tokens_grants_pushes_and_deletes(registry):
    repo = fresh("alice")
    with registry.client(ALICE.basic) as client:
        _, digest = push_image(client, repo)
        deleted = client.delete(f"/v2/{repo}/manifests/{digest}")
    assert deleted.status_code == 202, deleted.text
    httpx.get(f"{registry.url}/v2/", auth=("bob", WRONG_PASSWORD))
    secret = create_token(registry, "audited", "repository:x:pull")
    registry.cli("token", "revoke", "audited")

    events = audit_events(registry)

    assert has_event(events, action="login", actor="alice", outcome="success")
    assert has_event(events, action="login", actor="bob", outcome="failure")
    assert has_event(events, action="token.create", target="audited")
    assert has_event(events, action="token.revoke", target="audited")
    assert has_event(events, action="permission.grant", target="team")
    assert has_event(events, action="push", actor="alice", target=f"{repo}@{digest}")
    deletes = [e for e in events if e["action"] == "delete" and e["actor"] == "alice"]
    assert [e for e in deletes if e["target"].startswith(repo)], deletes
    assert secret not in json.dumps(events)


def test_no_password_reaches_the_log_or_the_audit_trail(registry):
    # Run after logins with each password, right and wrong, have happened.
    for account in (ROOT, ALICE, BOB):
        httpx.get(f"{registry.url}/v2/", auth=account.basic)
    httpx.get(f"{registry.url}/v2/", auth=("alice", WRONG_PASSWORD))
    table = registry.cli("audit", "--limit", "100000")
    as_json = registry.cli("audit", "--json", "--limit", "100000")
    log = registry.server.log()

    for secret in (ROOT.password, ALICE.password, BOB.password, WRONG_PASSWORD):
        assert secret not in log
        assert secret not in table
        assert secret not in as_json
    assert "login failure by alice" in log
    assert "Traceback" not in log


# Authentication off (the shared session server)


def test_token_endpoint_is_404_with_auth_off(client):
    response = client.get("/token", params={"scope": "repository:a/b:pull"})
    assert_error(response, 404, "UNSUPPORTED")


def test_base_endpoint_is_open_with_auth_off(client):
    response = client.get("/v2/")
    assert response.status_code == 200
    assert "www-authenticate" not in response.headers


# Found by attacking the server: each of these failed once.


def test_failing_as_token_does_not_lock_out_a_valid_access_token(throttled):
    secret = throttled.cli(
        "token", "create", "--name", "pipeline", "--scope", "repository:alice/*:pull"
    ).strip()
    with throttled.client() as client:
        for attempt in range(4):
            bad = ("token", f"dky_{attempt:012x}_guess")
            assert client.get("/v2/", auth=bad).status_code == 401
        response = client.get("/v2/alice/app/tags/list", auth=("token", secret))

    assert response.status_code != 429, response.text
    assert_error(response, 404, "NAME_UNKNOWN")


def test_parallel_guesses_cannot_pass_the_failure_limit(throttled):
    guesses = [("bob", f"{WRONG_PASSWORD}{n}") for n in range(12)]

    def guess(credentials: tuple[str, str]) -> int:
        with throttled.client() as client:
            return client.get("/v2/", auth=credentials).status_code

    with ThreadPoolExecutor(len(guesses)) as pool:
        statuses = list(pool.map(guess, guesses))

    assert statuses.count(401) == 3, statuses
    assert statuses.count(429) == len(guesses) - 3


def test_non_ascii_basic_credentials_are_a_json_401(registry):
    with registry.client() as client:
        response = client.get("/v2/", headers={"Authorization": b"Basic \xc3\xa9"})
    assert_error(response, 401, "UNAUTHORIZED")


def test_too_many_scopes_are_refused(registry):
    scopes = [f"repository:alice/r{n}:pull" for n in range(33)]
    with registry.client(auth=ALICE.basic) as client:
        response = client.get("/token", params={"scope": scopes})
    assert_error(response, 400, "UNSUPPORTED")
    assert "limit" in response.json()["errors"][0]["message"]


def test_a_secret_typed_as_username_is_never_logged(registry):
    secret = registry.cli(
        "token", "create", "--name", "pasted", "--scope", "repository:alice/*:pull"
    ).strip()
    with registry.client() as client:
        client.get("/v2/alice/x/tags/list", auth=(secret, ""))

    assert secret not in registry.server.log()
    assert secret not in registry.cli("audit", "--json", "--limit", "1000")


def test_the_database_is_readable_by_its_owner_only(registry):
    database = registry.server.data_dir / "dockyard.db"
    assert database.stat().st_mode & 0o777 == 0o600
