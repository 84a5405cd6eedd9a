"""Pull-through caches on a registry with logins: who may pull through them,
and that a mirror never tells a caller which private repositories exist.

The upstream is a second, open Dockyard holding `lib/app:1`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import pytest

from tests.api.helpers import assert_error, push_image
from tests.authserver import ALICE, BOB, ROOT, AuthServer, auth_server
from tests.server import RunningServer, start_server

MANIFEST = "/v2/{}/manifests/1"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("upstream")) as server:
        with httpx.Client(base_url=server.url) as client:
            push_image(client, "lib/app", "1")
            push_image(client, "lib/tool", "1")
            push_image(client, "alice/secret", "1")
        yield server


@pytest.fixture(scope="module")
def registry(
    tmp_path_factory: pytest.TempPathFactory, upstream: RunningServer
) -> Iterator[AuthServer]:
    upstreams = [{"name": "hub", "url": upstream.url, "mirror": True}]
    env = {"DOCKYARD_UPSTREAMS": json.dumps(upstreams)}
    with auth_server(tmp_path_factory, env=env) as running:
        with running.client(ALICE.basic) as client:
            push_image(client, "alice/secret", "1")
        yield running


def token(registry: AuthServer, scope: str, auth: httpx.Auth | None = None) -> dict:
    with registry.client(auth) as client:
        response = client.get("/token", params={"service": "dockyard", "scope": scope})
    assert response.status_code == 200, response.text
    return response.json()


def bearer(answer: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {answer['token']}"}


def test_a_private_cache_asks_for_a_login_naming_the_pulled_name(registry):
    with registry.client() as client:
        prefixed = client.get(MANIFEST.format("hub/lib/app"))
        mirrored = client.get(MANIFEST.format("lib/app"))

    assert_error(prefixed, 401, "UNAUTHORIZED")
    assert 'scope="repository:hub/lib/app:pull"' in prefixed.headers["www-authenticate"]
    assert_error(mirrored, 401, "UNAUTHORIZED")
    assert 'scope="repository:lib/app:pull"' in mirrored.headers["www-authenticate"]


def test_a_token_for_a_mirrored_name_covers_the_cache_and_nothing_local(registry):
    registry.cli("permission", "grant", "--user", "bob", "hub", "pull")
    answer = token(registry, "repository:lib/app:pull", BOB.basic)
    with registry.client(headers=bearer(answer)) as client:
        mirrored = client.get(MANIFEST.format("lib/app"))

    assert mirrored.status_code == 200, mirrored.text
    assert [entry["name"] for entry in _claims(answer)] == ["hub/lib/app"]
    # The claim names the cache's repository, not lib/app: the same token is
    # no pass to a local repository of that name, which bob may not pull.
    with registry.client(ROOT.basic) as client:
        _, local_digest = push_image(client, "lib/app", "1")
    with registry.client(headers=bearer(answer)) as client:
        again = client.get(MANIFEST.format("lib/app"))
    assert (
        again.headers["docker-content-digest"]
        == mirrored.headers["docker-content-digest"]
    )
    assert again.headers["docker-content-digest"] != local_digest


def test_a_token_that_grants_the_local_name_covers_the_cache_as_well(registry):
    # The admin may pull lib/tool here, which does not exist: the mirror
    # answers, and the token must cover its repository too, or a client would
    # fetch the same token and be refused again without end.
    answer = token(registry, "repository:lib/tool:pull", ROOT.basic)
    with registry.client(headers=bearer(answer)) as client:
        response = client.get(MANIFEST.format("lib/tool"))

    assert response.status_code == 200, response.text
    names = sorted(entry["name"] for entry in _claims(answer))
    assert names == ["hub/lib/tool", "lib/tool"]


def test_the_mirror_hides_which_private_repositories_exist(registry):
    registry.cli("visibility", "hub", "public")
    with registry.client() as client:
        existing = client.get(MANIFEST.format("alice/secret"))
        missing = client.get(MANIFEST.format("alice/nothing"))

    # alice/secret exists here, private: an anonymous caller is answered by
    # the mirror, as for a name that exists nowhere here.
    assert existing.status_code == 200
    assert existing.headers["docker-content-digest"] != _local_digest(registry)
    assert_error(missing, 404, "MANIFEST_UNKNOWN")
    assert "upstream hub" in missing.json()["errors"][0]["message"]


def test_a_caller_who_may_pull_the_local_repository_gets_it(registry):
    answer = token(registry, "repository:alice/secret:pull", ALICE.basic)
    with registry.client(headers=bearer(answer)) as client:
        response = client.get(MANIFEST.format("alice/secret"))

    assert response.status_code == 200
    assert response.headers["docker-content-digest"] == _local_digest(registry)


def test_pushes_into_a_cache_are_refused_and_unprefixed_pushes_stay_local(registry):
    with registry.client(ROOT.basic) as client:
        refused = client.post("/v2/hub/lib/new/blobs/uploads/")
        _, digest = push_image(client, "lib/fresh", "1")
        pulled = client.get(MANIFEST.format("lib/fresh"))

    assert_error(refused, 403, "DENIED")
    assert "pull-through cache" in refused.json()["errors"][0]["message"]
    assert pulled.headers["docker-content-digest"] == digest


def test_a_push_into_a_cache_asks_strangers_to_log_in_first(registry, upstream):
    with registry.client() as client:
        anonymous = client.post("/v2/hub/lib/new/blobs/uploads/")

    # Only those who may push there learn that the name is a cache of what.
    assert_error(anonymous, 401, "UNAUTHORIZED")
    assert upstream.url not in anonymous.text


def _claims(answer: dict) -> list[dict]:
    payload = answer["token"].split(".")[1]
    padded = payload + "=" * (-len(payload) % 4)
    return json.loads(base64.urlsafe_b64decode(padded))["access"]


def _local_digest(registry: AuthServer) -> str:
    with registry.client(ALICE.basic) as client:
        response = client.head(MANIFEST.format("alice/secret"))
    assert response.status_code == 200
    return response.headers["docker-content-digest"]
