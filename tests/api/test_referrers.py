"""Referrers: GET /v2/<name>/referrers/<digest> and manifests with a subject.

Also the manifest features that artifacts lean on: the descriptor `data`
field, empty blobs, and the fallback tag of clients without the referrers API.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator

import httpx
import pytest

from tests.api.helpers import (
    EMPTY_JSON,
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    assert_error,
    descriptor,
    get_referrers,
    manifest_descriptor,
    oci_index,
    oci_manifest,
    platform,
    push_artifact,
    push_blob,
    push_image,
    push_image_blobs,
    put_manifest,
    random_bytes,
    sha256,
    sha512,
    to_bytes,
)
from tests.server import RunningServer, start_server

SBOM = "application/spdx+json"
SIGNATURE = "application/vnd.example.signature.v1+json"

_LINK = re.compile(r'^<(?P<url>[^>]+)>;\s*rel="next"$')


def referrer_digests(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [entry["digest"] for entry in response.json()["manifests"]]


def next_link(response: httpx.Response) -> str | None:
    header = response.headers.get("link")
    if header is None:
        return None
    match = _LINK.match(header.strip())
    assert match, f"malformed Link header: {header!r}"
    return match["url"]


def follow(client: httpx.Client, url: str) -> list[httpx.Response]:
    """Every page from `url` to the one without a `Link`."""
    pages = []
    next_url: str | None = url
    while next_url is not None:
        response = client.get(next_url)
        assert response.status_code == 200, response.text
        pages.append(response)
        next_url = next_link(response)
        assert len(pages) < 100, "pagination does not end"
    return pages


@pytest.fixture
def subject(client: httpx.Client, repo: str) -> dict[str, object]:
    """The descriptor of an image pushed as `repo:v1`."""
    body, _ = push_image(client, repo, "v1")
    return manifest_descriptor(body)


# Listing


def test_answers_an_oci_index(
    client: httpx.Client, repo: str, subject: dict[str, object]
) -> None:
    push_artifact(client, repo, subject)

    response = get_referrers(client, repo, subject["digest"])

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == OCI_INDEX
    index = response.json()
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == OCI_INDEX


def test_lists_every_manifest_whose_subject_it_is(
    client: httpx.Client, repo: str, subject: dict[str, object]
) -> None:
    _, sbom = push_artifact(client, repo, subject, SBOM)
    _, signature = push_artifact(client, repo, subject, SIGNATURE)
    push_image(client, repo, "unrelated")
    push_artifact(client, repo, None, SIGNATURE)

    response = get_referrers(client, repo, subject["digest"])

    assert sorted(referrer_digests(response)) == sorted([sbom, signature])


def test_descriptor_has_type_digest_size_artifact_type_and_annotations(
    client: httpx.Client, repo: str, subject: dict[str, object]
) -> None:
    annotations = {
        "org.opencontainers.image.created": "2024-05-01T12:00:00Z",
        "org.example.format": "json",
    }
    body, digest = push_artifact(client, repo, subject, SBOM, annotations=annotations)

    response = get_referrers(client, repo, subject["digest"])

    assert response.json()["manifests"] == [
        {
            "mediaType": OCI_MANIFEST,
            "digest": digest,
            "size": len(body),
            "artifactType": SBOM,
            "annotations": annotations,
        }
    ]


def test_artifact_type_falls_back_to_the_config_media_type(
    client: httpx.Client, repo: str, subject: dict[str, object]
) -> None:
    config_type = "application/vnd.example.report.config.v1+json"
    config = push_blob(client, repo, b'{"tool": "example"}', config_type)
    _, digest = push_artifact(client, repo, subject, None, config=config)

    response = get_referrers(client, repo, subject["digest"])

    [entry] = response.json()["manifests"]
    assert entry["digest"] == digest
    assert entry["artifactType"] == config_type


def test_image_with_a_subject_is_listed_with_its_config_type(
    client: httpx.Client, repo: str, subject: dict[str, object]
) -> None:
    _, digest = push_image(client, repo, "child", subject=subject)

    response = get_referrers(client, repo, subject["digest"])

    [entry] = response.json()["manifests"]
    assert entry["digest"] == digest
    assert entry["artifactType"] == OCI_CONFIG


def test_index_with_a_subject_is_listed_without_artifact_type(
    client: httpx.Client, repo: str, subject: dict[str, object]
) -> None:
    child, _ = push_image(client, repo, "child")
    annotations = {"org.example.bundle": "yes"}
    body = oci_index(
        [manifest_descriptor(child)], subject=subject, annotations=annotations
    )
    assert put_manifest(client, repo, sha256(body), body, OCI_INDEX).status_code == 201

    response = get_referrers(client, repo, subject["digest"])

    assert response.json()["manifests"] == [
        {
            "mediaType": OCI_INDEX,
            "digest": sha256(body),
            "size": len(body),
            "annotations": annotations,
        }
    ]


def test_index_with_a_subject_answers_oci_subject(
    client: httpx.Client, repo: str, subject: dict[str, object]
) -> None:
    child, _ = push_image(client, repo, "child")
    body = oci_index([manifest_descriptor(child)], subject=subject)

    response = put_manifest(client, repo, sha256(body), body, OCI_INDEX)

    assert response.status_code == 201, response.text
    assert response.headers["oci-subject"] == subject["digest"]


def test_index_with_a_subject_and_artifact_type_carries_it(
    client: httpx.Client, repo: str, subject: dict[str, object]
) -> None:
    child, _ = push_image(client, repo, "child")
    body = oci_index(
        [manifest_descriptor(child)],
        subject=subject,
        artifactType="application/vnd.example.bundle.v1",
    )
    assert put_manifest(client, repo, sha256(body), body, OCI_INDEX).status_code == 201

    response = get_referrers(client, repo, subject["digest"])

    [entry] = response.json()["manifests"]
    assert entry["artifactType"] == "application/vnd.example.bundle.v1"


def test_referrer_of_an_index_is_listed_under_the_index(
    client: httpx.Client, repo: str
) -> None:
    children = []
    for architecture in ("amd64", "arm64"):
        child, _ = push_image(client, repo, architecture)
        children.append(
            {**manifest_descriptor(child), "platform": platform(architecture)}
        )
    index = oci_index(children)
    assert put_manifest(client, repo, "multi", index, OCI_INDEX).status_code == 201
    _, signature = push_artifact(
        client, repo, manifest_descriptor(index, OCI_INDEX), SIGNATURE
    )

    response = get_referrers(client, repo, sha256(index))

    assert referrer_digests(response) == [signature]


def test_no_referrers_is_an_empty_index(
    client: httpx.Client, repo: str, subject: dict[str, object]
) -> None:
    response = get_referrers(client, repo, subject["digest"])

    assert response.status_code == 200
    assert response.headers["content-type"] == OCI_INDEX
    assert response.json()["manifests"] == []


def test_unknown_subject_is_an_empty_index_not_404(
    client: httpx.Client, repo: str
) -> None:
    push_image(client, repo, "v1")

    response = get_referrers(client, repo, sha256(b"never pushed"))

    assert response.status_code == 200
    assert response.headers["content-type"] == OCI_INDEX
    assert response.json()["manifests"] == []


def test_referrers_in_another_repository_are_not_listed(
    client: httpx.Client, repo: str, subject: dict[str, object]
) -> None:
    other = f"{repo}-other"
    push_artifact(client, other, subject, SIGNATURE)

    response = get_referrers(client, repo, subject["digest"])

    assert referrer_digests(response) == []


def test_the_same_referrer_pushed_twice_is_listed_once(
    client: httpx.Client, repo: str, subject: dict[str, object]
) -> None:
    body, digest = push_artifact(client, repo, subject, SIGNATURE)
    assert put_manifest(client, repo, "again", body).status_code == 201

    response = get_referrers(client, repo, subject["digest"])

    assert referrer_digests(response) == [digest]


def test_subject_with_a_sha512_digest(client: httpx.Client, repo: str) -> None:
    config, layers = push_image_blobs(client, repo)
    image = oci_manifest(config, layers)
    assert put_manifest(client, repo, sha512(image), image).status_code == 201
    target = {"mediaType": OCI_MANIFEST, "digest": sha512(image), "size": len(image)}
    _, digest = push_artifact(client, repo, target, SIGNATURE)

    response = get_referrers(client, repo, sha512(image))

    assert referrer_digests(response) == [digest]


@pytest.mark.parametrize(
    "digest",
    ["sha256:1234", "sha256:" + "G" * 64, "not-a-digest", "md5:" + "a" * 32],
    ids=["short", "not-hex", "no-algorithm", "unknown-algorithm"],
)
def test_malformed_digest_is_digest_invalid(
    client: httpx.Client, repo: str, digest: str
) -> None:
    push_image(client, repo, "v1")

    response = get_referrers(client, repo, digest)

    assert_error(response, 400, "DIGEST_INVALID")


def test_other_methods_are_405(
    client: httpx.Client, repo: str, subject: dict[str, object]
) -> None:
    response = client.delete(f"/v2/{repo}/referrers/{subject['digest']}")

    assert_error(response, 405, "UNSUPPORTED")


# Filtering


def test_artifact_type_filter_lists_only_that_type(
    client: httpx.Client, repo: str, subject: dict[str, object]
) -> None:
    _, sbom = push_artifact(client, repo, subject, SBOM)
    push_artifact(client, repo, subject, SIGNATURE)

    response = get_referrers(client, repo, subject["digest"], artifactType=SBOM)

    assert referrer_digests(response) == [sbom]
    assert response.headers["oci-filters-applied"] == "artifactType"


def test_artifact_type_filter_matches_the_config_media_type_fallback(
    client: httpx.Client, repo: str, subject: dict[str, object]
) -> None:
    config = push_blob(client, repo, b'{"spdxVersion": "SPDX-2.3"}', SBOM)
    _, sbom = push_artifact(client, repo, subject, None, config=config)
    push_artifact(client, repo, subject, SIGNATURE)

    response = get_referrers(client, repo, subject["digest"], artifactType=SBOM)

    assert referrer_digests(response) == [sbom]


def test_filter_matching_nothing_is_an_empty_filtered_index(
    client: httpx.Client, repo: str, subject: dict[str, object]
) -> None:
    push_artifact(client, repo, subject, SIGNATURE)

    response = get_referrers(
        client, repo, subject["digest"], artifactType="application/vnd.example.none"
    )

    assert referrer_digests(response) == []
    assert response.headers["oci-filters-applied"] == "artifactType"


def test_without_a_filter_no_filter_is_reported(
    client: httpx.Client, repo: str, subject: dict[str, object]
) -> None:
    push_artifact(client, repo, subject, SIGNATURE)

    response = get_referrers(client, repo, subject["digest"])

    assert response.status_code == 200
    assert "oci-filters-applied" not in response.headers


# Pagination


def test_n_limits_the_page_and_links_to_the_next(
    client: httpx.Client, repo: str, subject: dict[str, object]
) -> None:
    for _ in range(3):
        push_artifact(client, repo, subject, SIGNATURE)

    response = get_referrers(client, repo, subject["digest"], n=2)

    assert len(referrer_digests(response)) == 2
    assert next_link(response) is not None


def test_following_links_yields_every_referrer_once(
    client: httpx.Client, repo: str, subject: dict[str, object]
) -> None:
    pushed = [push_artifact(client, repo, subject, SIGNATURE)[1] for _ in range(7)]

    pages = follow(client, f"/v2/{repo}/referrers/{subject['digest']}?n=3")

    listed = [digest for page in pages for digest in referrer_digests(page)]
    assert [len(referrer_digests(page)) for page in pages] == [3, 3, 1]
    assert sorted(listed) == sorted(pushed)
    assert all(page.headers["content-type"] == OCI_INDEX for page in pages)


def test_links_keep_the_artifact_type_filter(
    client: httpx.Client, repo: str, subject: dict[str, object]
) -> None:
    sboms = [push_artifact(client, repo, subject, SBOM)[1] for _ in range(3)]
    for _ in range(3):
        push_artifact(client, repo, subject, SIGNATURE)
    url = str(
        httpx.URL(
            f"/v2/{repo}/referrers/{subject['digest']}",
            params={"artifactType": SBOM, "n": 1},
        )
    )

    pages = follow(client, url)

    listed = [digest for page in pages for digest in referrer_digests(page)]
    assert sorted(listed) == sorted(sboms)
    assert all(p.headers["oci-filters-applied"] == "artifactType" for p in pages)


# Push order and deletion


def test_referrer_pushed_before_its_subject_is_accepted_and_listed(
    client: httpx.Client, repo: str
) -> None:
    config, layers = push_image_blobs(client, repo)
    image = oci_manifest(config, layers)
    body = oci_manifest(
        push_blob(client, repo, EMPTY_JSON, OCI_EMPTY),
        [],
        artifactType=SIGNATURE,
        subject=manifest_descriptor(image),
    )

    put = put_manifest(client, repo, sha256(body), body)
    response = get_referrers(client, repo, sha256(image))

    assert put.status_code == 201, put.text
    assert put.headers["oci-subject"] == sha256(image)
    assert referrer_digests(response) == [sha256(body)]


def test_referrer_pushed_first_is_listed_once_the_subject_is_pushed(
    client: httpx.Client, repo: str
) -> None:
    config, layers = push_image_blobs(client, repo)
    image = oci_manifest(config, layers)
    _, digest = push_artifact(client, repo, manifest_descriptor(image), SIGNATURE)

    assert put_manifest(client, repo, "v1", image).status_code == 201
    response = get_referrers(client, repo, sha256(image))

    assert referrer_digests(response) == [digest]


def test_deleting_a_referrer_removes_it_from_the_list(
    client: httpx.Client, repo: str, subject: dict[str, object]
) -> None:
    _, kept = push_artifact(client, repo, subject, SBOM)
    _, deleted = push_artifact(client, repo, subject, SIGNATURE)

    response = client.delete(f"/v2/{repo}/manifests/{deleted}")

    assert response.status_code == 202
    assert referrer_digests(get_referrers(client, repo, subject["digest"])) == [kept]


def test_deleting_a_referrers_tag_keeps_it_listed(
    client: httpx.Client, repo: str, subject: dict[str, object]
) -> None:
    _, digest = push_artifact(client, repo, subject, SIGNATURE, reference="sig")

    response = client.delete(f"/v2/{repo}/manifests/sig")

    assert response.status_code == 202
    assert referrer_digests(get_referrers(client, repo, subject["digest"])) == [digest]


def test_deleting_the_subject_leaves_its_referrers_listed_and_pullable(
    client: httpx.Client, repo: str, subject: dict[str, object]
) -> None:
    body, digest = push_artifact(client, repo, subject, SIGNATURE)

    response = client.delete(f"/v2/{repo}/manifests/{subject['digest']}")

    assert response.status_code == 202
    assert client.get(f"/v2/{repo}/manifests/{subject['digest']}").status_code == 404
    assert referrer_digests(get_referrers(client, repo, subject["digest"])) == [digest]
    pulled = client.get(f"/v2/{repo}/manifests/{digest}")
    assert pulled.status_code == 200
    assert pulled.content == body
    layer = httpx.Response(200, content=body).json()["layers"][0]
    assert client.get(f"/v2/{repo}/blobs/{layer['digest']}").status_code == 200


# The referrers tag schema of clients without the referrers API


def fallback_tag(digest: str) -> str:
    algorithm, encoded = digest.split(":", 1)
    return f"{algorithm}-{encoded}"


def fallback_index(
    client: httpx.Client, repo: str, subject: dict[str, object]
) -> bytes:
    """An index of the subject's referrers, as such a client would build it."""
    entries = []
    for artifact_type in (SBOM, SIGNATURE):
        body, _ = push_artifact(client, repo, subject, artifact_type)
        entries.append({**manifest_descriptor(body), "artifactType": artifact_type})
    return oci_index(entries)


def test_fallback_tag_holds_an_index_like_any_tag(
    client: httpx.Client, repo: str, subject: dict[str, object]
) -> None:
    tag = fallback_tag(str(subject["digest"]))
    index = fallback_index(client, repo, subject)

    put = put_manifest(client, repo, tag, index, OCI_INDEX)
    response = client.get(f"/v2/{repo}/manifests/{tag}")

    assert put.status_code == 201, put.text
    assert response.content == index
    assert response.headers["content-type"] == OCI_INDEX
    assert tag in client.get(f"/v2/{repo}/tags/list").json()["tags"]


def test_fallback_tag_can_be_replaced_by_a_longer_list(
    client: httpx.Client, repo: str, subject: dict[str, object]
) -> None:
    tag = fallback_tag(str(subject["digest"]))
    first = fallback_index(client, repo, subject)
    put_manifest(client, repo, tag, first, OCI_INDEX)
    entries = httpx.Response(200, content=first).json()["manifests"]
    body, _ = push_artifact(client, repo, subject, SIGNATURE)
    second = oci_index([*entries, manifest_descriptor(body)])

    put = put_manifest(client, repo, tag, second, OCI_INDEX)

    assert put.status_code == 201, put.text
    assert client.get(f"/v2/{repo}/manifests/{tag}").content == second


def test_fallback_index_is_not_itself_a_referrer(
    client: httpx.Client, repo: str, subject: dict[str, object]
) -> None:
    tag = fallback_tag(str(subject["digest"]))
    index = fallback_index(client, repo, subject)
    put_manifest(client, repo, tag, index, OCI_INDEX)

    response = get_referrers(client, repo, subject["digest"])

    listed = sorted(referrer_digests(response))
    entries = httpx.Response(200, content=index).json()["manifests"]
    assert listed == sorted(entry["digest"] for entry in entries)


# Descriptors with embedded data, empty blobs, no layers


def test_descriptor_with_matching_data_is_accepted(
    client: httpx.Client, repo: str
) -> None:
    config = push_blob(client, repo, EMPTY_JSON, OCI_EMPTY)
    content = b"signed payload"
    layer = push_blob(client, repo, content, "application/vnd.example.payload")
    body = oci_manifest(
        {**config, "data": base64.b64encode(EMPTY_JSON).decode()},
        [{**layer, "data": base64.b64encode(content).decode()}],
        artifactType=SIGNATURE,
    )

    put = put_manifest(client, repo, "embedded", body)

    assert put.status_code == 201, put.text
    assert client.get(f"/v2/{repo}/manifests/embedded").content == body


@pytest.mark.parametrize(
    "data",
    [
        base64.b64encode(b"other bytes").decode(),
        base64.b64encode(b"signed payloa").decode(),
        "not base64!",
    ],
    ids=["other-content", "short-content", "not-base64"],
)
def test_descriptor_with_wrong_data_is_manifest_invalid(
    client: httpx.Client, repo: str, data: str
) -> None:
    config = push_blob(client, repo, EMPTY_JSON, OCI_EMPTY)
    layer = push_blob(client, repo, b"signed payload", "application/vnd.example.x")
    body = oci_manifest(config, [{**layer, "data": data}], artifactType=SIGNATURE)

    response = put_manifest(client, repo, "embedded", body)

    assert_error(response, 400, "MANIFEST_INVALID")
    assert client.get(f"/v2/{repo}/manifests/embedded").status_code == 404


def test_subject_descriptor_with_wrong_data_is_manifest_invalid(
    client: httpx.Client, repo: str, subject: dict[str, object]
) -> None:
    config = push_blob(client, repo, EMPTY_JSON, OCI_EMPTY)
    wrong = {**subject, "data": base64.b64encode(b"not the subject").decode()}
    body = oci_manifest(config, [], artifactType=SIGNATURE, subject=wrong)

    response = put_manifest(client, repo, sha256(body), body)

    assert_error(response, 400, "MANIFEST_INVALID")


def test_empty_blob_as_a_layer(client: httpx.Client, repo: str) -> None:
    config, layers = push_image_blobs(client, repo)
    empty = push_blob(client, repo, b"", OCI_LAYER)
    body = oci_manifest(config, [*layers, empty])

    put = put_manifest(client, repo, "v1", body)
    blob = client.get(f"/v2/{repo}/blobs/{empty['digest']}")

    assert put.status_code == 201, put.text
    assert empty["size"] == 0
    assert blob.status_code == 200
    assert blob.content == b""


def test_empty_blob_as_the_config(client: httpx.Client, repo: str) -> None:
    config = push_blob(client, repo, b"", "application/vnd.example.config")
    layer = push_blob(client, repo, random_bytes(), "application/vnd.example.data")
    body = oci_manifest(config, [layer], artifactType="application/vnd.example.a")

    put = put_manifest(client, repo, "v1", body)

    assert put.status_code == 201, put.text
    assert client.get(f"/v2/{repo}/manifests/v1").content == body


def test_empty_json_descriptor_as_config_and_layer(
    client: httpx.Client, repo: str, subject: dict[str, object]
) -> None:
    empty = push_blob(client, repo, EMPTY_JSON, OCI_EMPTY)
    body = oci_manifest(empty, [empty], artifactType=SIGNATURE, subject=subject)

    put = put_manifest(client, repo, sha256(body), body)
    blob = client.get(f"/v2/{repo}/blobs/{empty['digest']}")

    assert put.status_code == 201, put.text
    assert blob.content == EMPTY_JSON
    assert empty["size"] == 2
    assert referrer_digests(get_referrers(client, repo, subject["digest"])) == [
        sha256(body)
    ]


def test_referrer_with_no_layers_is_listed(
    client: httpx.Client, repo: str, subject: dict[str, object]
) -> None:
    config = push_blob(client, repo, EMPTY_JSON, OCI_EMPTY)
    body = oci_manifest(
        config,
        [],
        artifactType=SIGNATURE,
        subject=subject,
        annotations={"org.example.signature": "abcd"},
    )
    assert put_manifest(client, repo, sha256(body), body).status_code == 201

    response = get_referrers(client, repo, subject["digest"])

    [entry] = response.json()["manifests"]
    assert entry["digest"] == sha256(body)
    assert entry["annotations"] == {"org.example.signature": "abcd"}


# Sparse indexes, a config switch


@pytest.fixture(scope="module")
def sparse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    base = tmp_path_factory.mktemp("sparse")
    config = base / "dockyard.yaml"
    config.write_text("sparse_indexes: true\n")
    args = ["--config", str(config), "--workers", "1"]
    with start_server(base / "data", args=args) as running:
        yield running


@pytest.fixture
def sparse_client(sparse_server: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sparse_server.url, timeout=60) as http:
        yield http


def test_sparse_index_is_accepted_when_switched_on(
    sparse_client: httpx.Client, repo: str
) -> None:
    present, _ = push_image(sparse_client, repo, "amd64")
    absent = to_bytes({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "x": "absent"})
    body = oci_index(
        [
            {**manifest_descriptor(present), "platform": platform("amd64")},
            {**manifest_descriptor(absent), "platform": platform("arm64")},
        ]
    )

    put = put_manifest(sparse_client, repo, "multi", body, OCI_INDEX)
    response = sparse_client.get(f"/v2/{repo}/manifests/multi")

    assert put.status_code == 201, put.text
    assert response.content == body
    assert (
        sparse_client.get(f"/v2/{repo}/manifests/{sha256(absent)}").status_code == 404
    )


def test_sparse_indexes_still_need_the_blobs_of_image_manifests(
    sparse_client: httpx.Client, repo: str
) -> None:
    config, layers = push_image_blobs(sparse_client, repo)
    absent = descriptor(OCI_LAYER, random_bytes())

    response = put_manifest(sparse_client, repo, "v1", oci_manifest(config, [absent]))

    assert_error(response, 400, "MANIFEST_BLOB_UNKNOWN")


def test_page_of_zero_referrers_is_empty(client, repo):
    body, digest = push_image(client, repo)
    push_artifact(client, repo, manifest_descriptor(body))

    assert len(get_referrers(client, repo, digest).json()["manifests"]) == 1
    response = client.get(f"/v2/{repo}/referrers/{digest}?n=0")
    assert response.status_code == 200
    assert response.json()["manifests"] == []
    assert "Link" not in response.headers
