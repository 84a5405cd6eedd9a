"""What an operator sets on repositories and namespaces, seen over HTTP: tag
immutability, namespace quotas, storage usage and deleting whole repositories.

Settings are made with the `dockyard` command line against the data of a
running registry, as an operator would; the module has a registry of its own,
and each test a namespace of its own.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.helpers import (
    OCI_LAYER,
    Descriptor,
    assert_error,
    oci_manifest,
    push_blob,
    push_image,
    push_image_blobs,
    put_manifest,
    random_bytes,
    sha256,
)
from tests.authserver import ALICE, BOB, ROOT, AuthServer, auth_server, run_cli
from tests.server import RunningServer, start_server


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with start_server(tmp_path_factory.mktemp("settings")) as running:
        yield running


@pytest.fixture
def http(registry: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=registry.url, timeout=60) as client:
        yield client


@pytest.fixture
def ns() -> str:
    """A namespace of this test's own."""
    return f"ns{uuid.uuid4().hex[:10]}"


def dockyard(server: RunningServer, *args: str) -> str:
    """Run a `dockyard` command against the server's data that must succeed."""
    result = run_cli(server.data_dir, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def error_message(response: httpx.Response) -> str:
    return str(response.json()["errors"][0]["message"])


def database_rows(server: RunningServer, query: str, *args: object) -> list[Any]:
    with closing(sqlite3.connect(server.data_dir / "dockyard.db")) as db:
        return db.execute(query, args).fetchall()


def blob_file(server: RunningServer, digest: str) -> Path:
    encoded = digest.removeprefix("sha256:")
    return server.data_dir / "storage" / "blobs" / "sha256" / encoded[:2] / encoded


def new_image(http: httpx.Client, repo: str) -> bytes:
    """A fresh image's manifest, its blobs pushed, the manifest not yet."""
    config, layers = push_image_blobs(http, repo)
    return oci_manifest(config, layers)


def put(http: httpx.Client, repo: str, reference: str, body: bytes) -> httpx.Response:
    return put_manifest(http, repo, reference, body)


def tagged_digest(http: httpx.Client, repo: str, tag: str) -> str:
    response = http.head(f"/v2/{repo}/manifests/{tag}")
    assert response.status_code == 200, response.text
    return response.headers["Docker-Content-Digest"]


# Tag immutability


def immutability(server: RunningServer, name: str, setting: str, *globs: str) -> str:
    excludes = [flag for glob in globs for flag in ("--exclude", glob)]
    return dockyard(server, "repo", "immutability", name, setting, *excludes)


def assert_frozen(response: httpx.Response, repo: str, tag: str) -> None:
    assert_error(response, 403, "DENIED")
    message = error_message(response)
    assert f"tag '{tag}' of {repo} is immutable" in message


def test_immutable_tag_refuses_another_manifest(
    registry: RunningServer, http: httpx.Client, ns: str
) -> None:
    repo = f"{ns}/app"
    said = immutability(registry, repo, "immutable")
    _, first = push_image(http, repo, "v1")

    response = put(http, repo, "v1", new_image(http, repo))

    assert f"tags of {repo} are immutable" in said
    assert_frozen(response, repo, "v1")
    assert first in error_message(response)
    assert tagged_digest(http, repo, "v1") == first


def test_pushing_the_same_manifest_again_succeeds(
    registry: RunningServer, http: httpx.Client, ns: str
) -> None:
    repo = f"{ns}/app"
    immutability(registry, repo, "immutable")
    body, digest = push_image(http, repo, "v1")

    again = put(http, repo, "v1", body)

    assert again.status_code == 201, again.text
    assert again.headers["Docker-Content-Digest"] == digest


def test_new_tags_and_untagged_pushes_are_accepted(
    registry: RunningServer, http: httpx.Client, ns: str
) -> None:
    repo = f"{ns}/app"
    immutability(registry, repo, "immutable")
    push_image(http, repo, "v1")
    body = new_image(http, repo)

    by_digest = put(http, repo, sha256(body), body)
    new_tag = put(http, repo, "v2", body)

    assert by_digest.status_code == 201, by_digest.text
    assert new_tag.status_code == 201, new_tag.text


def test_a_tag_query_cannot_move_a_frozen_tag(
    registry: RunningServer, http: httpx.Client, ns: str
) -> None:
    repo = f"{ns}/app"
    immutability(registry, repo, "immutable")
    push_image(http, repo, "v1")
    body = new_image(http, repo)

    response = put_manifest(http, repo, sha256(body), body, params={"tag": "v1"})

    assert_frozen(response, repo, "v1")
    # Refused as a whole: the manifest was not stored under its digest either.
    assert http.head(f"/v2/{repo}/manifests/{sha256(body)}").status_code == 404


def test_excluded_tags_stay_mutable(
    registry: RunningServer, http: httpx.Client, ns: str
) -> None:
    repo = f"{ns}/app"
    said = immutability(registry, repo, "immutable", "latest", "dev-*")
    for tag in ("latest", "dev-1", "v1"):
        push_image(http, repo, tag)
    body = new_image(http, repo)

    moved = {tag: put(http, repo, tag, body) for tag in ("latest", "dev-1", "v1")}

    assert "except latest, dev-*" in said
    assert moved["latest"].status_code == 201, moved["latest"].text
    assert moved["dev-1"].status_code == 201, moved["dev-1"].text
    assert_frozen(moved["v1"], repo, "v1")
    assert tagged_digest(http, repo, "latest") == sha256(body)


def test_repository_setting_overrides_its_namespace(
    registry: RunningServer, http: httpx.Client, ns: str
) -> None:
    free, strict, other = f"{ns}/free", f"{ns}/strict", f"{ns}/other"
    immutability(registry, ns, "immutable", "latest")
    immutability(registry, free, "mutable")
    immutability(registry, strict, "immutable", "dev-*")
    for repo in (free, strict, other):
        for tag in ("v1", "latest", "dev-1"):
            push_image(http, repo, tag)

    def move(repo: str, tag: str) -> httpx.Response:
        return put(http, repo, tag, new_image(http, repo))

    assert move(free, "v1").status_code == 201
    assert_frozen(move(other, "v1"), other, "v1")
    assert move(other, "latest").status_code == 201
    # The repository's exclusions replace the namespace's; they do not add up.
    assert_frozen(move(strict, "latest"), strict, "latest")
    assert move(strict, "dev-1").status_code == 201


def test_tags_are_mutable_again_once_set_so(
    registry: RunningServer, http: httpx.Client, ns: str
) -> None:
    repo = f"{ns}/app"
    immutability(registry, repo, "immutable")
    push_image(http, repo, "v1")
    body = new_image(http, repo)
    assert_frozen(put(http, repo, "v1", body), repo, "v1")

    immutability(registry, repo, "mutable")
    response = put(http, repo, "v1", body)

    assert response.status_code == 201, response.text
    assert tagged_digest(http, repo, "v1") == sha256(body)


# Quotas


def quota(server: RunningServer, namespace: str, limit: str) -> str:
    return dockyard(server, "quota", namespace, limit)


def post_blob(http: httpx.Client, repo: str, data: bytes) -> httpx.Response:
    return http.post(
        f"/v2/{repo}/blobs/uploads/",
        params={"digest": sha256(data)},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )


def mount(http: httpx.Client, repo: str, digest: str, source: str) -> httpx.Response:
    return http.post(
        f"/v2/{repo}/blobs/uploads/", params={"mount": digest, "from": source}
    )


def blob_status(http: httpx.Client, repo: str, digest: str) -> int:
    return http.head(f"/v2/{repo}/blobs/{digest}").status_code


def namespace_usage(http: httpx.Client, namespace: str) -> dict[str, Any]:
    response = http.get(f"/api/v1/namespaces/{namespace}/usage")
    assert response.status_code == 200, response.text
    return dict(response.json())


def assert_over_quota(
    response: httpx.Response, namespace: str, used: int, limit: int, size: int
) -> None:
    assert_error(response, 403, "DENIED")
    message = error_message(response)
    assert f"namespace {namespace} uses {used} of its {limit}-byte quota" in message
    assert f"{size}-byte blob" in message


def test_pushes_up_to_the_quota_succeed(
    registry: RunningServer, http: httpx.Client, ns: str
) -> None:
    repo = f"{ns}/app"
    said = quota(registry, ns, "1KB")

    push_blob(http, repo, random_bytes(600))
    push_blob(http, repo, random_bytes(400))
    one_more = post_blob(http, repo, random_bytes(1))

    assert f"quota of {ns}: 1000 bytes" in said
    assert_over_quota(one_more, ns, 1000, 1000, 1)
    assert namespace_usage(http, ns)["bytes"] == 1000


def test_upload_past_the_quota_is_denied_and_leaves_nothing_behind(
    registry: RunningServer, http: httpx.Client, ns: str
) -> None:
    repo = f"{ns}/app"
    quota(registry, ns, "1000")
    push_blob(http, repo, random_bytes(600))
    data = random_bytes(500)
    started = http.post(f"/v2/{repo}/blobs/uploads/")
    location = started.headers["Location"]
    upload_id = location.rsplit("/", 1)[1]
    patched = http.patch(
        location, content=data, headers={"Content-Type": "application/octet-stream"}
    )

    response = http.put(patched.headers["Location"], params={"digest": sha256(data)})

    assert_over_quota(response, ns, 600, 1000, 500)
    assert_error(http.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert blob_status(http, repo, sha256(data)) == 404
    assert not (registry.data_dir / "storage" / "uploads" / upload_id).exists()
    assert not blob_file(registry, sha256(data)).exists()
    blobs = "SELECT digest FROM blobs WHERE digest = ?"
    assert database_rows(registry, blobs, sha256(data)) == []
    assert namespace_usage(http, ns)["bytes"] == 600


def test_monolithic_push_past_the_quota_keeps_no_upload(
    registry: RunningServer, http: httpx.Client, ns: str
) -> None:
    repo = f"{ns}/app"
    quota(registry, ns, "100")

    response = post_blob(http, repo, random_bytes(101))

    assert_over_quota(response, ns, 0, 100, 101)
    uploads = "SELECT id FROM uploads WHERE repository = ?"
    assert database_rows(registry, uploads, repo) == []


def test_a_blob_already_in_the_repository_is_not_counted_again(
    registry: RunningServer, http: httpx.Client, ns: str
) -> None:
    repo = f"{ns}/app"
    quota(registry, ns, "1000")
    data = random_bytes(800)
    push_blob(http, repo, data)

    again = post_blob(http, repo, data)

    assert again.status_code == 201, again.text


def test_mount_past_the_quota_is_refused(
    registry: RunningServer, http: httpx.Client, ns: str
) -> None:
    source, repo = f"{ns}src/base", f"{ns}/app"
    data = random_bytes(600)
    blob = push_blob(http, source, data)
    push_blob(http, repo, random_bytes(600))
    quota(registry, ns, "1000")

    response = mount(http, repo, blob["digest"], source)

    # Not mounted: the client is offered an upload instead, as for any mount
    # that cannot happen, and the upload is then refused.
    assert response.status_code == 202, response.text
    assert blob_status(http, repo, blob["digest"]) == 404
    finish = http.put(
        response.headers["Location"],
        params={"digest": blob["digest"]},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert_over_quota(finish, ns, 600, 1000, 600)
    assert namespace_usage(http, ns)["bytes"] == 600


def test_mount_within_the_namespace_counts_the_blob_again(
    registry: RunningServer, http: httpx.Client, ns: str
) -> None:
    first, second = f"{ns}/first", f"{ns}/second"
    blob = push_blob(http, first, random_bytes(600))
    quota(registry, ns, "1000")

    refused = mount(http, second, blob["digest"], first)
    quota(registry, ns, "1200")
    mounted = mount(http, second, blob["digest"], first)

    assert refused.status_code == 202
    assert mounted.status_code == 201, mounted.text
    assert blob_status(http, second, blob["digest"]) == 200
    assert namespace_usage(http, ns)["bytes"] == 1200


def test_quota_none_lifts_the_limit(
    registry: RunningServer, http: httpx.Client, ns: str
) -> None:
    repo = f"{ns}/app"
    quota(registry, ns, "100")
    data = random_bytes(300)
    assert_error(post_blob(http, repo, data), 403, "DENIED")

    said = quota(registry, ns, "none")
    response = post_blob(http, repo, data)

    assert f"quota of {ns} removed" in said
    assert response.status_code == 201, response.text
    assert namespace_usage(http, ns)["quota"] is None


def test_other_namespaces_are_not_limited(
    registry: RunningServer, http: httpx.Client, ns: str
) -> None:
    quota(registry, ns, "100")

    response = post_blob(http, f"{ns}x/app", random_bytes(300))

    assert response.status_code == 201, response.text


def test_quota_is_set_on_namespaces_only(
    registry: RunningServer, http: httpx.Client, ns: str
) -> None:
    result = run_cli(registry.data_dir, "quota", f"{ns}/app", "100")

    assert result.returncode == 1
    assert f"{ns}/app is not a namespace" in result.stderr
    assert post_blob(http, f"{ns}/app", random_bytes(300)).status_code == 201


def test_bad_quota_size_is_refused(registry: RunningServer, ns: str) -> None:
    result = run_cli(registry.data_dir, "quota", ns, "lots")

    assert result.returncode == 2
    assert "'lots' is not a size such as 500MB or 10GiB" in result.stderr


# Usage


def test_usage_counts_a_blob_once_per_repository(
    registry: RunningServer, http: httpx.Client, ns: str
) -> None:
    first, second = f"{ns}/first", f"{ns}/second"
    shared = random_bytes(100)
    push_blob(http, first, shared)
    push_blob(http, first, random_bytes(200))
    push_blob(http, first, shared)
    push_blob(http, second, shared)
    quota(registry, ns, "10MB")

    [report] = [
        entry
        for entry in json.loads(dockyard(registry, "usage", "--json"))
        if entry["namespace"] == ns
    ]
    from_api = namespace_usage(http, ns)

    assert report == {
        "namespace": ns,
        "bytes": 400,
        "quota": 10_000_000,
        "repositories": [
            {"name": first, "bytes": 300},
            {"name": second, "bytes": 100},
        ],
    }
    assert from_api == {
        "namespace": ns,
        "bytes": 400,
        "repositories": 2,
        "quota": 10_000_000,
    }


def test_usage_of_an_empty_namespace_is_zero(http: httpx.Client, ns: str) -> None:
    assert namespace_usage(http, ns) == {
        "namespace": ns,
        "bytes": 0,
        "repositories": 0,
        "quota": None,
    }


def test_usage_table_lists_namespaces_and_repositories(
    registry: RunningServer, http: httpx.Client, ns: str
) -> None:
    push_blob(http, f"{ns}/app", random_bytes(123))

    table = dockyard(registry, "usage")

    assert ns in table
    assert f"{ns}/app" in table
    assert "123" in table


# Deleting repositories


def catalog(http: httpx.Client) -> list[str]:
    response = http.get("/v2/_catalog")
    assert response.status_code == 200, response.text
    return list(response.json()["repositories"])


def assert_gone(http: httpx.Client, repo: str, digest: str, blob: str) -> None:
    assert repo not in catalog(http)
    assert_error(http.get(f"/v2/{repo}/tags/list"), 404, "NAME_UNKNOWN")
    assert_error(http.get(f"/v2/{repo}/manifests/v1"), 404, "MANIFEST_UNKNOWN")
    assert_error(http.get(f"/v2/{repo}/manifests/{digest}"), 404, "MANIFEST_UNKNOWN")
    assert blob_status(http, repo, blob) == 404


def config_digest(body: bytes) -> str:
    return str(json.loads(body)["config"]["digest"])


def test_cli_deletes_a_repository(
    registry: RunningServer, http: httpx.Client, ns: str
) -> None:
    repo, nested = f"{ns}/app", f"{ns}/app/cache"
    body, digest = push_image(http, repo, "v1")
    push_image(http, nested, "v1")
    upload = http.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]
    assert repo in catalog(http)

    said = dockyard(registry, "repo", "delete", repo, "--yes")

    assert f"deleted repository {repo}" in said
    assert_gone(http, repo, digest, config_digest(body))
    assert nested in catalog(http)
    assert_error(http.get(upload), 404, "BLOB_UPLOAD_UNKNOWN")
    upload_id = upload.rsplit("/", 1)[1]
    assert not (registry.data_dir / "storage" / "uploads" / upload_id).exists()


def test_api_deletes_a_repository(
    registry: RunningServer, http: httpx.Client, ns: str
) -> None:
    repo = f"{ns}/app"
    body, digest = push_image(http, repo, "v1")
    push_image(http, repo, "v2")

    before = namespace_usage(http, ns)

    response = http.delete(f"/api/v1/repositories/{repo}")

    assert response.status_code == 202, response.text
    assert_gone(http, repo, digest, config_digest(body))
    assert before["repositories"] == 1
    assert namespace_usage(http, ns)["repositories"] == 0
    assert namespace_usage(http, ns)["bytes"] == 0
    [event] = [
        json.loads(line)
        for line in dockyard(
            registry, "audit", "--json", "--action", "repository.*"
        ).splitlines()
        if json.loads(line)["target"] == repo
    ]
    assert event["action"] == "repository.delete"


def test_a_deleted_repository_can_be_pushed_again(http: httpx.Client, ns: str) -> None:
    repo = f"{ns}/app"
    push_image(http, repo, "v1")
    http.delete(f"/api/v1/repositories/{repo}")

    _, digest = push_image(http, repo, "v2")

    assert http.get(f"/v2/{repo}/tags/list").json()["tags"] == ["v2"]
    assert tagged_digest(http, repo, "v2") == digest


def test_deleting_a_missing_repository_is_name_unknown(
    registry: RunningServer, http: httpx.Client, ns: str
) -> None:
    repo = f"{ns}/missing"

    response = http.delete(f"/api/v1/repositories/{repo}")
    result = run_cli(registry.data_dir, "repo", "delete", repo, "--yes")

    assert_error(response, 404, "NAME_UNKNOWN")
    assert result.returncode == 1
    assert f"repository {repo} is not known" in result.stderr


def test_deleting_an_invalid_name_is_name_invalid(http: httpx.Client) -> None:
    assert_error(http.delete("/api/v1/repositories/Not/Valid"), 400, "NAME_INVALID")


@pytest.fixture
def own_registry(tmp_path: Path) -> Iterator[RunningServer]:
    """A registry of the test's own, for garbage collection without grace."""
    with start_server(tmp_path / "data") as running:
        yield running


def gc(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("DOCKYARD_GC__GRACE_PERIOD", "0")
    return dict(json.loads(dockyard(server, "gc", "--json")))


def test_gc_frees_the_blobs_only_a_deleted_repository_used(
    own_registry: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = random_bytes(1000)
    with httpx.Client(base_url=own_registry.url, timeout=60) as http:
        gone = push_repository(http, "team/gone", shared)
        kept = push_repository(http, "team/kept", shared)
        http.delete("/api/v1/repositories/team/gone")

        report = gc(own_registry, monkeypatch)

        freed = {blob["digest"] for blob in report["blobs"]}
        assert freed == {gone["config"]["digest"], gone["layer"]["digest"]}
        for digest in freed:
            assert not blob_file(own_registry, digest).exists()
        pulled = http.get(f"/v2/team/kept/blobs/{sha256(shared)}")
        assert pulled.status_code == 200
        assert pulled.content == shared
        for blob in (kept["config"], kept["layer"]):
            assert blob_status(http, "team/kept", blob["digest"]) == 200
        assert http.get("/v2/team/kept/manifests/v1").status_code == 200


def push_repository(
    http: httpx.Client, repo: str, shared: bytes
) -> dict[str, Descriptor]:
    """`repo:v1`: a fresh config and layer, and the `shared` layer."""
    config, [layer] = push_image_blobs(http, repo)
    common = push_blob(http, repo, shared, OCI_LAYER)
    body = oci_manifest(config, [layer, common])
    assert put_manifest(http, repo, "v1", body).status_code == 201
    return {"config": config, "layer": layer}


# With authentication on


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    with auth_server(tmp_path_factory) as running:
        yield running


def test_deleting_needs_the_delete_right(secured: AuthServer) -> None:
    with secured.client(ALICE.basic) as alice:
        push_image(alice, "alice/app", "v1")
        push_image(alice, "team/app", "v1")
        without_right = alice.delete("/api/v1/repositories/team/app")
    with secured.client(BOB.basic) as bob:
        by_bob = bob.delete("/api/v1/repositories/alice/app")
    with secured.client() as anonymous:
        by_anonymous = anonymous.delete("/api/v1/repositories/alice/app")

    assert_error(by_bob, 403, "DENIED")
    assert_error(without_right, 403, "DENIED")
    assert_error(by_anonymous, 401, "UNAUTHORIZED")
    with secured.client(ROOT.basic) as root:
        assert root.get("/v2/alice/app/tags/list").status_code == 200
        assert root.get("/v2/team/app/tags/list").status_code == 200


def test_owners_and_administrators_delete(secured: AuthServer) -> None:
    with secured.client(ALICE.basic) as alice:
        push_image(alice, "alice/old", "v1")
        push_image(alice, "team/old", "v1")
        by_owner = alice.delete("/api/v1/repositories/alice/old")
    with secured.client(ROOT.basic) as root:
        by_admin = root.delete("/api/v1/repositories/team/old")
        listed = root.get("/v2/_catalog").json()["repositories"]

    assert by_owner.status_code == 202, by_owner.text
    assert by_admin.status_code == 202, by_admin.text
    assert "alice/old" not in listed
    assert "team/old" not in listed


def test_a_grant_of_delete_lets_others_delete(secured: AuthServer) -> None:
    secured.cli("permission", "grant", "--user", "bob", "team/scratch", "delete")
    with secured.client(ALICE.basic) as alice:
        push_image(alice, "team/scratch", "v1")
    with secured.client(BOB.basic) as bob:
        response = bob.delete("/api/v1/repositories/team/scratch")

    assert response.status_code == 202, response.text
