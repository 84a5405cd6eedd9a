"""Manifests: PUT, GET, HEAD and DELETE /v2/<name>/manifests/<reference>."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.api.helpers import (
    DOCKER_FOREIGN_LAYER,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    OCI_NONDISTRIBUTABLE_LAYER,
    assert_error,
    descriptor,
    docker_manifest,
    docker_manifest_list,
    manifest_descriptor,
    oci_index,
    oci_manifest,
    platform,
    push_blob,
    push_image,
    push_image_blobs,
    put_manifest,
    random_bytes,
    sha256,
    sha512,
    to_bytes,
)

MAX_MANIFEST_BYTES = 4 * 1024 * 1024


def tags_of(client: httpx.Client, repo: str) -> list[str]:
    response = client.get(f"/v2/{repo}/tags/list")
    assert response.status_code == 200, response.text
    return response.json()["tags"] or []


def push_empty_config(client: httpx.Client, repo: str) -> dict[str, object]:
    return push_blob(client, repo, b"{}", OCI_EMPTY)


# Pushing and pulling


def test_put_by_tag_answers_201_with_location_and_digest(
    client: httpx.Client, repo: str
) -> None:
    config, layers = push_image_blobs(client, repo)
    body = oci_manifest(config, layers)

    response = put_manifest(client, repo, "v1", body)

    assert response.status_code == 201, response.text
    assert response.headers["docker-content-digest"] == sha256(body)
    location = response.headers["location"]
    assert client.get(location).content == body


def test_get_by_tag_returns_the_bytes_and_media_type(
    client: httpx.Client, repo: str
) -> None:
    body, digest = push_image(client, repo, "v1")

    response = client.get(f"/v2/{repo}/manifests/v1")

    assert response.status_code == 200
    assert response.content == body
    assert response.headers["content-type"] == OCI_MANIFEST
    assert response.headers["docker-content-digest"] == digest
    assert response.headers["content-length"] == str(len(body))


def test_get_by_digest_returns_the_bytes(client: httpx.Client, repo: str) -> None:
    body, digest = push_image(client, repo, "v1")

    response = client.get(f"/v2/{repo}/manifests/{digest}")

    assert response.status_code == 200
    assert response.content == body
    assert response.headers["docker-content-digest"] == digest


def test_put_by_digest_stores_the_manifest(client: httpx.Client, repo: str) -> None:
    config, layers = push_image_blobs(client, repo)
    body = oci_manifest(config, layers)
    digest = sha256(body)

    response = put_manifest(client, repo, digest, body)

    assert response.status_code == 201, response.text
    assert response.headers["docker-content-digest"] == digest
    assert response.headers["location"].endswith(f"/v2/{repo}/manifests/{digest}")
    assert client.get(f"/v2/{repo}/manifests/{digest}").content == body


def test_put_by_digest_of_other_bytes_is_digest_invalid(
    client: httpx.Client, repo: str
) -> None:
    config, layers = push_image_blobs(client, repo)
    body = oci_manifest(config, layers)

    response = put_manifest(client, repo, sha256(body + b" "), body)

    assert_error(response, 400, "DIGEST_INVALID")
    assert client.get(f"/v2/{repo}/manifests/{sha256(body)}").status_code == 404


def test_artifact_bytes_are_kept_exactly(client: httpx.Client, repo: str) -> None:
    """Odd whitespace, key order, escapes and unknown fields all survive."""
    config = push_empty_config(client, repo)
    layer = push_blob(client, repo, random_bytes(), "application/vnd.example.sbom")
    layers = json.dumps([layer], indent=3)
    compact_config = json.dumps(config, separators=(",", ":"))
    body = (
        '{"layers":' + layers + ',\n\t"artifactType" : "application/vnd.example.a",'
        ' "schemaVersion":2,  "x-unknown":{"nested":[1, 2.50,true,null]},\r\n'
        ' "annotations":{"org.example.note":"caf\\u00e9 \\ud83d\\udea2"},'
        ' "config":' + compact_config + ","
        '"mediaType":"application/vnd.oci.image.manifest.v1+json"}  \n'
    ).encode()

    put = put_manifest(client, repo, "sbom", body)
    response = client.get(f"/v2/{repo}/manifests/sbom")

    assert put.status_code == 201, put.text
    assert response.content == body
    assert response.headers["docker-content-digest"] == sha256(body)


def test_content_type_is_the_stored_media_type(client: httpx.Client, repo: str) -> None:
    config, layers = push_image_blobs(client, repo)
    body = oci_manifest(config, layers)
    put_manifest(client, repo, "v1", body, media_type=f"{OCI_MANIFEST}; charset=utf-8")

    response = client.get(f"/v2/{repo}/manifests/v1")

    assert response.status_code == 200
    assert response.headers["content-type"] == OCI_MANIFEST


def test_head_sends_the_headers_get_sends_and_no_body(
    client: httpx.Client, repo: str
) -> None:
    _, digest = push_image(client, repo, "v1")
    names = ("content-type", "content-length", "docker-content-digest")

    for reference in ("v1", digest):
        url = f"/v2/{repo}/manifests/{reference}"
        head, get = client.head(url), client.get(url)

        assert head.status_code == 200
        assert head.content == b""
        assert {n: head.headers[n] for n in names} == {n: get.headers[n] for n in names}


def test_head_of_an_unknown_manifest_is_404(client: httpx.Client, repo: str) -> None:
    push_image(client, repo, "v1")

    response = client.head(f"/v2/{repo}/manifests/missing")

    assert response.status_code == 404
    assert response.content == b""


def test_putting_the_same_manifest_twice_is_idempotent(
    client: httpx.Client, repo: str
) -> None:
    body, digest = push_image(client, repo, "v1")

    response = put_manifest(client, repo, "v1", body)

    assert response.status_code == 201
    assert response.headers["docker-content-digest"] == digest
    assert tags_of(client, repo) == ["v1"]


def test_put_to_an_existing_tag_moves_it(client: httpx.Client, repo: str) -> None:
    _, first = push_image(client, repo, "latest")
    second_body, second = push_image(client, repo, "latest")

    response = client.get(f"/v2/{repo}/manifests/latest")

    assert response.content == second_body
    assert response.headers["docker-content-digest"] == second
    assert client.get(f"/v2/{repo}/manifests/{first}").status_code == 200


# Manifest kinds


def test_docker_manifest_round_trip(client: httpx.Client, repo: str) -> None:
    config, layers = push_image_blobs(client, repo, docker=True)
    body = docker_manifest(config, layers)

    put = put_manifest(client, repo, "docker", body, DOCKER_MANIFEST)
    response = client.get(f"/v2/{repo}/manifests/docker")

    assert put.status_code == 201, put.text
    assert response.content == body
    assert response.headers["content-type"] == DOCKER_MANIFEST


def test_docker_manifest_list_round_trip(client: httpx.Client, repo: str) -> None:
    children = []
    for architecture in ("amd64", "arm64"):
        config, layers = push_image_blobs(client, repo, docker=True)
        child = docker_manifest(config, layers)
        pushed = put_manifest(client, repo, sha256(child), child, DOCKER_MANIFEST)
        assert pushed.status_code == 201, pushed.text
        entry = manifest_descriptor(child, DOCKER_MANIFEST)
        children.append({**entry, "platform": platform(architecture)})
    body = docker_manifest_list(children)

    put = put_manifest(client, repo, "multi", body, DOCKER_MANIFEST_LIST)
    response = client.get(f"/v2/{repo}/manifests/multi")

    assert put.status_code == 201, put.text
    assert response.content == body
    assert response.headers["content-type"] == DOCKER_MANIFEST_LIST


def test_oci_index_round_trip(client: httpx.Client, repo: str) -> None:
    children = []
    for architecture in ("amd64", "arm64"):
        child, _ = push_image(client, repo, architecture)
        entry = manifest_descriptor(child)
        children.append({**entry, "platform": platform(architecture)})
    body = oci_index(children, annotations={"org.example.kind": "multi"})

    put = put_manifest(client, repo, "multi", body, OCI_INDEX)
    response = client.get(f"/v2/{repo}/manifests/{sha256(body)}")

    assert put.status_code == 201, put.text
    assert response.content == body
    assert response.headers["content-type"] == OCI_INDEX


def test_index_with_artifact_type_and_unknown_fields_is_kept(
    client: httpx.Client, repo: str
) -> None:
    child, _ = push_image(client, repo, "child")
    body = oci_index(
        [manifest_descriptor(child)],
        artifactType="application/vnd.example.bundle",
        **{"x-extra": {"kept": True}},
    )

    put = put_manifest(client, repo, "bundle", body, OCI_INDEX)

    assert put.status_code == 201, put.text
    assert client.get(f"/v2/{repo}/manifests/bundle").content == body


def test_oci_manifest_with_no_layers_is_accepted(
    client: httpx.Client, repo: str
) -> None:
    config = push_empty_config(client, repo)
    body = oci_manifest(config, [], artifactType="application/vnd.example.note")

    put = put_manifest(client, repo, "note", body)

    assert put.status_code == 201, put.text
    assert client.get(f"/v2/{repo}/manifests/note").content == body


def test_manifest_without_media_type_field_uses_content_type(
    client: httpx.Client, repo: str
) -> None:
    config, layers = push_image_blobs(client, repo)
    body = to_bytes({"schemaVersion": 2, "config": config, "layers": layers})

    put = put_manifest(client, repo, "v1", body, OCI_MANIFEST)
    response = client.get(f"/v2/{repo}/manifests/v1")

    assert put.status_code == 201, put.text
    assert response.headers["content-type"] == OCI_MANIFEST


def test_sha512_digest_reference(client: httpx.Client, repo: str) -> None:
    config, layers = push_image_blobs(client, repo)
    body = oci_manifest(config, layers)
    digest = sha512(body)

    put = put_manifest(client, repo, digest, body)
    response = client.get(f"/v2/{repo}/manifests/{digest}")

    assert put.status_code == 201, put.text
    assert put.headers["docker-content-digest"] == digest
    assert response.status_code == 200
    assert response.content == body
    assert response.headers["docker-content-digest"] == digest


def test_tag_query_tags_the_manifest_several_times(
    client: httpx.Client, repo: str
) -> None:
    config, layers = push_image_blobs(client, repo)
    body = oci_manifest(config, layers)
    digest = sha256(body)

    response = put_manifest(
        client, repo, digest, body, params=[("tag", "1.2.3"), ("tag", "1.2")]
    )

    assert response.status_code == 201, response.text
    accepted = ", ".join(response.headers.get_list("oci-tag"))
    assert sorted(t.strip() for t in accepted.split(",")) == ["1.2", "1.2.3"]
    for tag in ("1.2.3", "1.2"):
        tagged = client.head(f"/v2/{repo}/manifests/{tag}")
        assert tagged.headers["docker-content-digest"] == digest
    assert tags_of(client, repo) == ["1.2", "1.2.3"]


def test_invalid_tag_in_tag_query_stores_nothing(
    client: httpx.Client, repo: str
) -> None:
    config, layers = push_image_blobs(client, repo)
    body = oci_manifest(config, layers)
    digest = sha256(body)

    response = put_manifest(
        client, repo, digest, body, params=[("tag", "ok"), ("tag", ".bad")]
    )

    assert_error(response, 400, "TAG_INVALID")
    assert client.get(f"/v2/{repo}/manifests/{digest}").status_code == 404


def test_manifest_with_subject_answers_oci_subject(
    client: httpx.Client, repo: str
) -> None:
    subject_body, subject_digest = push_image(client, repo, "v1")
    config = push_empty_config(client, repo)
    body = oci_manifest(
        config,
        [],
        artifactType="application/vnd.example.signature",
        subject=manifest_descriptor(subject_body),
    )

    response = put_manifest(client, repo, sha256(body), body)

    assert response.status_code == 201, response.text
    assert response.headers["oci-subject"] == subject_digest


def test_manifest_without_subject_has_no_oci_subject(
    client: httpx.Client, repo: str
) -> None:
    config, layers = push_image_blobs(client, repo)

    response = put_manifest(client, repo, "v1", oci_manifest(config, layers))

    assert response.status_code == 201
    assert "oci-subject" not in response.headers


def test_subject_need_not_be_in_the_repository(client: httpx.Client, repo: str) -> None:
    config = push_empty_config(client, repo)
    absent = descriptor(OCI_MANIFEST, b"a manifest pushed later")
    body = oci_manifest(config, [], subject=absent)

    response = put_manifest(client, repo, sha256(body), body)

    assert response.status_code == 201, response.text
    assert response.headers["oci-subject"] == absent["digest"]


def test_identical_concurrent_puts_under_many_tags_all_succeed(
    client: httpx.Client, repo: str
) -> None:
    config, layers = push_image_blobs(client, repo)
    body = oci_manifest(config, layers)
    tags = [f"t{i}" for i in range(8)]
    start = threading.Barrier(len(tags))

    def put(tag: str) -> httpx.Response:
        start.wait()
        return put_manifest(client, repo, tag, body)

    with ThreadPoolExecutor(len(tags)) as pool:
        responses = list(pool.map(put, tags))

    assert [r.status_code for r in responses] == [201] * len(tags)
    for tag in tags:
        response = client.head(f"/v2/{repo}/manifests/{tag}")
        assert response.headers["docker-content-digest"] == sha256(body)
    assert tags_of(client, repo) == tags


# Missing references


def test_missing_layer_is_manifest_blob_unknown(
    client: httpx.Client, repo: str
) -> None:
    config, layers = push_image_blobs(client, repo)
    absent = descriptor(layers[0]["mediaType"], random_bytes())
    body = oci_manifest(config, [*layers, absent])

    response = put_manifest(client, repo, "v1", body)

    assert_error(response, 400, "MANIFEST_BLOB_UNKNOWN")
    assert client.get(f"/v2/{repo}/manifests/v1").status_code == 404


def test_missing_config_is_manifest_blob_unknown(
    client: httpx.Client, repo: str
) -> None:
    _, layers = push_image_blobs(client, repo)
    config = descriptor(OCI_CONFIG, b'{"absent": true}')

    response = put_manifest(client, repo, "v1", oci_manifest(config, layers))

    assert_error(response, 400, "MANIFEST_BLOB_UNKNOWN")


def test_blob_in_another_repository_is_manifest_blob_unknown(
    client: httpx.Client, repo: str
) -> None:
    config, layers = push_image_blobs(client, f"{repo}-other")
    body = oci_manifest(config, layers)

    response = put_manifest(client, repo, "v1", body)

    assert_error(response, 400, "MANIFEST_BLOB_UNKNOWN")


def test_oci_nondistributable_layer_may_be_absent(
    client: httpx.Client, repo: str
) -> None:
    config, layers = push_image_blobs(client, repo)
    foreign = descriptor(
        OCI_NONDISTRIBUTABLE_LAYER,
        random_bytes(),
        urls=["https://example.com/layer.tar.gz"],
    )
    body = oci_manifest(config, [*layers, foreign])

    response = put_manifest(client, repo, "v1", body)

    assert response.status_code == 201, response.text
    assert client.get(f"/v2/{repo}/manifests/v1").content == body


def test_docker_foreign_layer_may_be_absent(client: httpx.Client, repo: str) -> None:
    config, layers = push_image_blobs(client, repo, docker=True)
    foreign = descriptor(
        DOCKER_FOREIGN_LAYER,
        random_bytes(),
        urls=["https://example.com/windows-base.tar.gz"],
    )
    body = docker_manifest(config, [foreign, *layers])

    response = put_manifest(client, repo, "v1", body, DOCKER_MANIFEST)

    assert response.status_code == 201, response.text


def test_index_with_child_not_in_repository_is_manifest_blob_unknown(
    client: httpx.Client, repo: str
) -> None:
    present, _ = push_image(client, repo, "present")
    config, layers = push_image_blobs(client, repo)
    absent = oci_manifest(config, layers)
    children = [manifest_descriptor(present), manifest_descriptor(absent)]

    response = put_manifest(client, repo, "multi", oci_index(children), OCI_INDEX)

    assert_error(response, 400, "MANIFEST_BLOB_UNKNOWN")


# Invalid manifests


def test_manifest_of_the_size_limit_is_accepted(
    client: httpx.Client, repo: str
) -> None:
    config = push_empty_config(client, repo)
    empty = oci_manifest(config, [], annotations={"pad": ""})
    padding = "x" * (MAX_MANIFEST_BYTES - len(empty))
    body = oci_manifest(config, [], annotations={"pad": padding})
    assert len(body) == MAX_MANIFEST_BYTES

    response = put_manifest(client, repo, "big", body)

    assert response.status_code == 201, response.text
    assert client.get(f"/v2/{repo}/manifests/big").content == body


def test_manifest_over_4_mib_is_413(client: httpx.Client, repo: str) -> None:
    config = push_empty_config(client, repo)
    empty = oci_manifest(config, [], annotations={"pad": ""})
    padding = "x" * (MAX_MANIFEST_BYTES - len(empty) + 1)
    body = oci_manifest(config, [], annotations={"pad": padding})

    response = put_manifest(client, repo, "big", body)

    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["errors"]
    assert client.get(f"/v2/{repo}/manifests/big").status_code == 404


def test_streamed_manifest_over_4_mib_is_413(client: httpx.Client, repo: str) -> None:
    """Without Content-Length the limit holds while the body is read."""
    config = push_empty_config(client, repo)
    body = oci_manifest(config, [], annotations={"pad": "x" * MAX_MANIFEST_BYTES})
    chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))

    response = put_manifest(client, repo, "big", chunks)

    assert_error(response, 413, "SIZE_INVALID")


def test_invalid_json_is_manifest_invalid(client: httpx.Client, repo: str) -> None:
    response = put_manifest(client, repo, "v1", b'{"schemaVersion": 2,')

    assert_error(response, 400, "MANIFEST_INVALID")


def test_json_that_is_not_an_object_is_manifest_invalid(
    client: httpx.Client, repo: str
) -> None:
    response = put_manifest(client, repo, "v1", b"[1, 2, 3]")

    assert_error(response, 400, "MANIFEST_INVALID")


@pytest.mark.parametrize("version", [1, 3, "2", None])
def test_wrong_schema_version_is_manifest_invalid(
    client: httpx.Client, repo: str, version: object
) -> None:
    config, layers = push_image_blobs(client, repo)
    body = oci_manifest(config, layers, schemaVersion=version)

    response = put_manifest(client, repo, "v1", body)

    assert_error(response, 400, "MANIFEST_INVALID")


def test_media_type_disagreeing_with_content_type_is_manifest_invalid(
    client: httpx.Client, repo: str
) -> None:
    config, layers = push_image_blobs(client, repo)
    body = oci_manifest(config, layers)

    response = put_manifest(client, repo, "v1", body, OCI_INDEX)

    assert_error(response, 400, "MANIFEST_INVALID")


@pytest.mark.parametrize(
    "fault",
    [
        {"digest": "sha256:not-hex"},
        {"digest": None},
        {"size": -1},
        {"size": "12"},
        {"mediaType": ""},
    ],
    ids=["bad-digest", "no-digest", "negative-size", "string-size", "no-type"],
)
def test_bad_layer_descriptor_is_manifest_invalid(
    client: httpx.Client, repo: str, fault: dict[str, object]
) -> None:
    config, layers = push_image_blobs(client, repo)
    broken = {**layers[0], **fault}

    response = put_manifest(client, repo, "v1", oci_manifest(config, [broken]))

    assert_error(response, 400, "MANIFEST_INVALID")


def test_config_that_is_not_a_descriptor_is_manifest_invalid(
    client: httpx.Client, repo: str
) -> None:
    _, layers = push_image_blobs(client, repo)

    response = put_manifest(client, repo, "v1", oci_manifest("config", layers))

    assert_error(response, 400, "MANIFEST_INVALID")


def test_index_without_manifests_list_is_manifest_invalid(
    client: httpx.Client, repo: str
) -> None:
    body = to_bytes({"schemaVersion": 2, "mediaType": OCI_INDEX})

    response = put_manifest(client, repo, "v1", body, OCI_INDEX)

    assert_error(response, 400, "MANIFEST_INVALID")


def test_schema1_manifest_is_rejected(client: httpx.Client, repo: str) -> None:
    body = to_bytes({"schemaVersion": 1, "name": repo, "tag": "v1", "fsLayers": []})
    media_type = "application/vnd.docker.distribution.manifest.v1+prettyjws"

    response = put_manifest(client, repo, "v1", body, media_type)

    assert_error(response, 400, "MANIFEST_INVALID")


def test_unknown_manifest_media_type_is_manifest_invalid(
    client: httpx.Client, repo: str
) -> None:
    config, layers = push_image_blobs(client, repo)
    body = oci_manifest(config, layers, mediaType="application/vnd.example+json")

    response = put_manifest(client, repo, "v1", body, "application/vnd.example+json")

    assert_error(response, 400, "MANIFEST_INVALID")


# Deleting


def test_delete_by_digest_removes_the_manifest_and_its_tags(
    client: httpx.Client, repo: str
) -> None:
    config, layers = push_image_blobs(client, repo)
    body = oci_manifest(config, layers)
    digest = sha256(body)
    for tag in ("a", "b"):
        assert put_manifest(client, repo, tag, body).status_code == 201
    push_image(client, repo, "other")

    response = client.delete(f"/v2/{repo}/manifests/{digest}")

    assert response.status_code == 202
    assert_error(client.get(f"/v2/{repo}/manifests/{digest}"), 404, "MANIFEST_UNKNOWN")
    for tag in ("a", "b"):
        assert_error(client.get(f"/v2/{repo}/manifests/{tag}"), 404, "MANIFEST_UNKNOWN")
    assert tags_of(client, repo) == ["other"]


def test_delete_by_tag_removes_only_the_tag(client: httpx.Client, repo: str) -> None:
    body, digest = push_image(client, repo, "a")
    put_manifest(client, repo, "b", body)

    response = client.delete(f"/v2/{repo}/manifests/a")

    assert response.status_code == 202
    assert_error(client.get(f"/v2/{repo}/manifests/a"), 404, "MANIFEST_UNKNOWN")
    assert client.get(f"/v2/{repo}/manifests/{digest}").content == body
    assert client.get(f"/v2/{repo}/manifests/b").content == body
    assert tags_of(client, repo) == ["b"]


def test_delete_of_an_unknown_manifest_is_manifest_unknown(
    client: httpx.Client, repo: str
) -> None:
    push_image(client, repo, "v1")

    by_tag = client.delete(f"/v2/{repo}/manifests/missing")
    by_digest = client.delete(f"/v2/{repo}/manifests/{sha256(b'missing')}")

    assert_error(by_tag, 404, "MANIFEST_UNKNOWN")
    assert_error(by_digest, 404, "MANIFEST_UNKNOWN")


def test_deleted_manifest_can_be_pushed_again(client: httpx.Client, repo: str) -> None:
    body, digest = push_image(client, repo, "v1")
    client.delete(f"/v2/{repo}/manifests/{digest}")

    response = put_manifest(client, repo, "v1", body)

    assert response.status_code == 201, response.text
    assert client.get(f"/v2/{repo}/manifests/v1").content == body


# Unknown manifests and invalid references


def test_unknown_tag_is_manifest_unknown(client: httpx.Client, repo: str) -> None:
    push_image(client, repo, "v1")

    response = client.get(f"/v2/{repo}/manifests/v2")

    assert_error(response, 404, "MANIFEST_UNKNOWN")


def test_unknown_digest_is_manifest_unknown(client: httpx.Client, repo: str) -> None:
    push_image(client, repo, "v1")

    response = client.get(f"/v2/{repo}/manifests/{sha256(b'nothing')}")

    assert_error(response, 404, "MANIFEST_UNKNOWN")


def test_manifest_in_unknown_repository_is_404(client: httpx.Client, repo: str) -> None:
    response = client.get(f"/v2/{repo}/manifests/latest")

    assert response.status_code == 404
    codes = {error["code"] for error in response.json()["errors"]}
    assert codes & {"MANIFEST_UNKNOWN", "NAME_UNKNOWN"}


def test_manifest_of_another_repository_is_manifest_unknown(
    client: httpx.Client, repo: str
) -> None:
    _, digest = push_image(client, repo, "v1")
    push_image(client, f"{repo}-other", "v1")

    response = client.get(f"/v2/{repo}-other/manifests/{digest}")

    assert_error(response, 404, "MANIFEST_UNKNOWN")


INVALID_TAGS = {".hidden": ".hidden", "-dash": "-dash", "129": "a" * 129}


@pytest.mark.parametrize("tag", INVALID_TAGS.values(), ids=INVALID_TAGS.keys())
def test_invalid_tag_is_tag_invalid(client: httpx.Client, repo: str, tag: str) -> None:
    config, layers = push_image_blobs(client, repo)

    response = put_manifest(client, repo, tag, oci_manifest(config, layers))

    assert_error(response, 400, "TAG_INVALID")


def test_tag_of_128_characters_is_accepted(client: httpx.Client, repo: str) -> None:
    tag = "_" + "a" * 127

    body, _ = push_image(client, repo, tag)

    assert client.get(f"/v2/{repo}/manifests/{tag}").content == body


def test_malformed_digest_reference_is_digest_invalid(
    client: httpx.Client, repo: str
) -> None:
    push_image(client, repo, "v1")

    response = client.get(f"/v2/{repo}/manifests/sha256:1234")

    assert_error(response, 400, "DIGEST_INVALID")


def test_invalid_repository_name_is_name_invalid(client: httpx.Client) -> None:
    response = client.get("/v2/Upper/Case/manifests/latest")

    assert_error(response, 400, "NAME_INVALID")


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_unsupported_method_on_manifests_is_405(
    client: httpx.Client, repo: str, method: str
) -> None:
    response = client.request(method, f"/v2/{repo}/manifests/latest")

    assert_error(response, 405, "UNSUPPORTED")
