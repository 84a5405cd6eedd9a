"""`dockyard gc` against the data directory of a registry that keeps serving.

Each test has a registry of its own: collecting garbage with no grace period
in the shared one would take blobs other tests are about to name.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.helpers import (
    OCI_CONFIG,
    OCI_INDEX,
    Descriptor,
    assert_error,
    descriptor,
    get_referrers,
    manifest_descriptor,
    oci_index,
    oci_manifest,
    push_artifact,
    push_blob,
    push_image,
    push_image_blobs,
    put_manifest,
    random_bytes,
    sha256,
    to_bytes,
)
from tests.server import RunningServer, start_server

AGE_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RunningServer]:
    with start_server(tmp_path / "data") as running:
        yield running


@pytest.fixture
def http(registry: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=registry.url, timeout=60) as client:
        yield client


def gc(server: RunningServer, *flags: str, **settings: int) -> dict[str, Any]:
    """Run `dockyard gc --json` as an operator would; its report, parsed.

    `settings` are gc config keys; the grace period is 0 unless given.
    """
    env = {f"DOCKYARD_GC__{k.upper()}": str(v) for k, v in settings.items()}
    env.setdefault("DOCKYARD_GC__GRACE_PERIOD", "0")
    command = [sys.executable, "-m", "dockyard", "gc", "--json"]
    result = subprocess.run(
        [*command, "--data-dir", str(server.data_dir), *flags],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def make_old(server: RunningServer, table: str, column: str, **where: str) -> None:
    """Move a timestamp two hours back, straight in the registry's database."""
    moment = (datetime.now(UTC) - timedelta(hours=2)).strftime(AGE_FORMAT)
    condition = " AND ".join(f"{key} = ?" for key in where)
    with sqlite3.connect(server.data_dir / "dockyard.db", timeout=30) as db:
        changed = db.execute(
            f"UPDATE {table} SET {column} = ? WHERE {condition}",
            [moment, *where.values()],
        ).rowcount
    assert changed > 0


def assert_no_server_error(server: RunningServer) -> None:
    log = server.log()
    assert '" 500 ' not in log
    assert "Traceback" not in log


def blob_file(server: RunningServer, digest: str) -> Path:
    algorithm, encoded = digest.split(":")
    return server.data_dir / "storage" / "blobs" / algorithm / encoded[:2] / encoded


def blob_status(http: httpx.Client, repo: str, digest: str) -> int:
    return http.head(f"/v2/{repo}/blobs/{digest}").status_code


def manifest_status(http: httpx.Client, repo: str, digest: str) -> int:
    return http.head(f"/v2/{repo}/manifests/{digest}").status_code


def assert_pulls_intact(http: httpx.Client, repo: str, tag: str, body: bytes) -> None:
    """The tag gives `body`, and every blob it names comes back byte for byte."""
    response = http.get(f"/v2/{repo}/manifests/{tag}")
    assert response.status_code == 200, response.text
    assert response.content == body
    document = json.loads(body)
    for entry in [document["config"], *document["layers"]]:
        blob = http.get(f"/v2/{repo}/blobs/{entry['digest']}")
        assert blob.status_code == 200, blob.text
        assert sha256(blob.content) == entry["digest"]
        assert len(blob.content) == entry["size"]


def push_with(
    http: httpx.Client, repo: str, tag: str, layers: list[Descriptor]
) -> bytes:
    """A tagged image of a fresh config and `layers`, already pushed."""
    nonce = to_bytes({"nonce": random_bytes(8).hex()})
    config = push_blob(http, repo, nonce, OCI_CONFIG)
    body = oci_manifest(config, layers)
    response = put_manifest(http, repo, tag, body)
    assert response.status_code == 201, response.text
    return body


def push_child(http: httpx.Client, repo: str) -> Descriptor:
    """An image pushed by digest, as a client pushes an index's manifests."""
    config, layers = push_image_blobs(http, repo)
    body = oci_manifest(config, layers)
    response = put_manifest(http, repo, sha256(body), body)
    assert response.status_code == 201, response.text
    return manifest_descriptor(body)


def push_index(
    http: httpx.Client, repo: str, tag: str
) -> tuple[Descriptor, list[Descriptor]]:
    children = [push_child(http, repo), push_child(http, repo)]
    body = oci_index(children)
    response = put_manifest(http, repo, tag, body, OCI_INDEX)
    assert response.status_code == 201, response.text
    return descriptor(OCI_INDEX, body), children


def garbage_of(body: bytes, *kept: Descriptor) -> list[dict[str, Any]]:
    """How a report lists the config and layers of `body`, but for `kept`."""
    document = json.loads(body)
    entries = [document["config"], *document["layers"]]
    spared = {k["digest"] for k in kept}
    listed = [
        {"digest": e["digest"], "size": e["size"]}
        for e in entries
        if e["digest"] not in spared
    ]
    return sorted(listed, key=lambda e: e["digest"])


def delete_manifest(http: httpx.Client, repo: str, body: bytes) -> None:
    """Delete by digest; the blobs stay linked, and readable, until GC."""
    response = http.delete(f"/v2/{repo}/manifests/{sha256(body)}")
    assert response.status_code == 202, response.text


def test_dry_run_lists_garbage_and_its_bytes_and_deletes_nothing(
    registry: RunningServer, http: httpx.Client
) -> None:
    body, _ = push_image(http, "team/app", "doomed")
    delete_manifest(http, "team/app", body)
    garbage = garbage_of(body)

    report = gc(registry, "--dry-run")

    assert report["dry_run"] is True
    assert report["blobs"] == garbage
    assert report["bytes"] == sum(entry["size"] for entry in garbage)
    assert report["links"] == len(garbage)
    assert report["manifests"] == []
    for entry in garbage:
        blob = http.get(f"/v2/team/app/blobs/{entry['digest']}")
        assert blob.status_code == 200
        assert sha256(blob.content) == entry["digest"]
        assert blob_file(registry, entry["digest"]).exists()
    assert gc(registry, "--dry-run") == report


def test_gc_deletes_blobs_no_manifest_needs_and_keeps_shared_layers(
    registry: RunningServer, http: httpx.Client
) -> None:
    shared_data = random_bytes(1000)
    shared = push_blob(http, "team/app", shared_data)
    unique = push_blob(http, "team/app", random_bytes(500))
    doomed = push_with(http, "team/app", "old", [unique, shared])
    delete_manifest(http, "team/app", doomed)
    kept_here = push_with(http, "team/app", "kept", [shared])
    push_blob(http, "team/other", shared_data)
    kept_there = push_with(http, "team/other", "kept", [shared])
    garbage = garbage_of(doomed, shared)

    report = gc(registry)

    assert report["dry_run"] is False
    assert sorted(report["blobs"], key=lambda e: e["digest"]) == garbage
    assert report["bytes"] == sum(entry["size"] for entry in garbage)
    for entry in garbage:
        assert blob_status(http, "team/app", entry["digest"]) == 404
        assert not blob_file(registry, entry["digest"]).exists()
    assert blob_file(registry, shared["digest"]).exists()
    assert_pulls_intact(http, "team/app", "kept", kept_here)
    assert_pulls_intact(http, "team/other", "kept", kept_there)
    assert gc(registry)["blobs"] == []


def test_grace_period_protects_a_blob_not_yet_in_a_manifest(
    registry: RunningServer, http: httpx.Client
) -> None:
    old = push_blob(http, "team/app", random_bytes())
    make_old(registry, "repository_blobs", "linked_at", digest=old["digest"])
    make_old(registry, "blobs", "created_at", digest=old["digest"])
    config, layers = push_image_blobs(http, "team/app")

    report = gc(registry, grace_period=600)

    assert report["blobs"] == [{"digest": old["digest"], "size": old["size"]}]
    assert blob_status(http, "team/app", old["digest"]) == 404
    for entry in [config, *layers]:
        assert blob_status(http, "team/app", entry["digest"]) == 200
    body = oci_manifest(config, layers)
    assert put_manifest(http, "team/app", "late", body).status_code == 201
    assert_pulls_intact(http, "team/app", "late", body)


def test_manifest_naming_a_collected_blob_is_manifest_blob_unknown(
    registry: RunningServer, http: httpx.Client
) -> None:
    config, layers = push_image_blobs(http, "team/app")
    body = oci_manifest(config, layers)

    assert len(gc(registry)["blobs"]) == 2

    refused = put_manifest(http, "team/app", "latest", body)
    assert_error(refused, 400, "MANIFEST_BLOB_UNKNOWN")
    for entry in [config, *layers]:
        assert entry["digest"] in refused.text
    assert manifest_status(http, "team/app", "latest") == 404
    assert_no_server_error(registry)


def test_blob_pushed_again_after_collection_can_be_named(
    registry: RunningServer, http: httpx.Client
) -> None:
    data = random_bytes(300)
    layer = push_blob(http, "team/app", data)
    gc(registry)
    assert blob_status(http, "team/app", layer["digest"]) == 404

    push_blob(http, "team/app", data)
    body = push_with(http, "team/app", "latest", [layer])

    assert_pulls_intact(http, "team/app", "latest", body)
    assert blob_file(registry, layer["digest"]).read_bytes() == data


def test_stale_upload_sessions_are_purged_with_their_bytes(
    registry: RunningServer, http: httpx.Client
) -> None:
    uploads = registry.data_dir / "storage" / "uploads"
    stale, fresh = (open_upload(http, "team/app") for _ in range(2))
    make_old(registry, "uploads", "created_at", id=upload_id(stale))

    report = gc(registry, upload_max_age=3600)

    assert report["uploads"] == 1
    assert_error(http.get(stale), 404, "BLOB_UPLOAD_UNKNOWN")
    assert not (uploads / upload_id(stale)).exists()
    assert http.get(fresh).status_code == 204
    assert (uploads / upload_id(fresh)).read_bytes() == b"staged"


def open_upload(http: httpx.Client, repo: str) -> str:
    """The Location of an upload session holding a few staged bytes."""
    response = http.post(f"/v2/{repo}/blobs/uploads/")
    assert response.status_code == 202, response.text
    location = response.headers["location"]
    response = http.patch(location, content=b"staged")
    assert response.status_code == 202, response.text
    return str(response.headers["location"])


def upload_id(location: str) -> str:
    return httpx.URL(location).path.rstrip("/").rsplit("/", 1)[-1]


def test_untagged_deletes_what_no_tag_reaches_and_keeps_referrers_and_children(
    registry: RunningServer, http: httpx.Client
) -> None:
    overwritten, _ = push_image(http, "team/app", "v1")
    dangling_signature, _ = push_artifact(
        http, "team/app", manifest_descriptor(overwritten)
    )
    tagged, _ = push_image(http, "team/app", "v1")
    signature, _ = push_artifact(http, "team/app", manifest_descriptor(tagged))
    index, children = push_index(http, "team/app", "multi")
    old_index, old_children = push_index(http, "team/app", "multi-old")
    push_image(http, "team/app", "multi-old")
    gone = [sha256(overwritten), sha256(dangling_signature), old_index["digest"]]
    gone += [child["digest"] for child in old_children]
    kept = [sha256(tagged), sha256(signature), index["digest"]]
    kept += [child["digest"] for child in children]

    assert gc(registry)["manifests"] == []
    report = gc(registry, "--untagged")

    deleted = [entry["digest"] for entry in report["manifests"]]
    assert sorted(deleted) == sorted(gone)
    assert {entry["repository"] for entry in report["manifests"]} == {"team/app"}
    for digest in gone:
        assert manifest_status(http, "team/app", digest) == 404
    for digest in kept:
        assert manifest_status(http, "team/app", digest) == 200
    assert_pulls_intact(http, "team/app", "v1", tagged)
    referrers = get_referrers(http, "team/app", sha256(tagged)).json()
    assert [r["digest"] for r in referrers["manifests"]] == [sha256(signature)]
    for entry in garbage_of(overwritten):
        assert entry in report["blobs"]
        assert blob_status(http, "team/app", entry["digest"]) == 404
    assert gc(registry, "--untagged")["manifests"] == []


def test_manifest_pushed_again_gets_a_new_grace_period(
    registry: RunningServer, http: httpx.Client
) -> None:
    # Pushing an index again, a client first PUTs each child again; one left
    # untagged by an earlier push must last until the index names it, as a
    # blob a client checked with HEAD does.
    child = push_child(http, "team/app")
    make_old(registry, "manifests", "pushed_at", digest=child["digest"])
    body = http.get(f"/v2/team/app/manifests/{child['digest']}").content

    again = put_manifest(http, "team/app", child["digest"], body)
    assert again.status_code == 201, again.text
    gc(registry, "--untagged", grace_period=600)

    index = put_manifest(http, "team/app", "multi", oci_index([child]), OCI_INDEX)
    assert index.status_code == 201, index.text
    assert manifest_status(http, "team/app", child["digest"]) == 200


def test_the_grace_flag_overrides_the_config_and_runs_are_audited(
    registry: RunningServer, http: httpx.Client
) -> None:
    body, _ = push_image(http, "audited/app", "doomed")
    delete_manifest(http, "audited/app", body)
    garbage = garbage_of(body)

    kept = gc(registry, "--grace-period", "3600", grace_period=0)
    freed = gc(registry, "--grace-period", "0", grace_period=3600)

    assert not {b["digest"] for b in garbage} & {b["digest"] for b in kept["blobs"]}
    assert {b["digest"] for b in garbage} <= {b["digest"] for b in freed["blobs"]}
    audit = subprocess.run(
        [sys.executable, "-m", "dockyard", "audit", "--json", "--action", "gc"]
        + ["--data-dir", str(registry.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    events = [json.loads(line) for line in audit.stdout.splitlines()]
    assert events and events[0]["detail"]["bytes"] == freed["bytes"]
