"""Dockyard's management API: /api/v1/repositories/<name>/referrers/<reference>."""

from __future__ import annotations

import socket
import time
from typing import Any

import httpx
import pytest

from tests.api.helpers import (
    OCI_MANIFEST,
    assert_error,
    descriptor,
    manifest_descriptor,
    push_artifact,
    push_image,
)

SBOM = "application/spdx+json"
SIGNATURE = "application/vnd.dev.cosign.artifact.sig.v1+json"
ATTESTATION = "application/vnd.in-toto+json"


def referrer_tree(client: httpx.Client, repo: str, reference: str) -> Any:
    response = client.get(f"/api/v1/repositories/{repo}/referrers/{reference}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def by_digest(nodes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {node["digest"]: node for node in nodes}


@pytest.fixture
def signed_image(client: httpx.Client, repo: str) -> dict[str, str]:
    """An image `repo:v1` with an SBOM and a signature, and a signed SBOM.

    Returns the digests by role: image, sbom, signature, sbom_signature.
    """
    image, image_digest = push_image(client, repo, "v1")
    sbom, sbom_digest = push_artifact(client, repo, manifest_descriptor(image), SBOM)
    _, signature = push_artifact(client, repo, manifest_descriptor(image), SIGNATURE)
    _, sbom_signature = push_artifact(
        client, repo, manifest_descriptor(sbom), SIGNATURE
    )
    return {
        "image": image_digest,
        "sbom": sbom_digest,
        "signature": signature,
        "sbom_signature": sbom_signature,
    }


def test_tree_names_the_repository_and_the_subject(
    client: httpx.Client, repo: str, signed_image: dict[str, str]
) -> None:
    tree = referrer_tree(client, repo, "v1")

    assert tree["repository"] == repo
    assert tree["subject"] == signed_image["image"]


def test_tree_lists_the_direct_referrers_with_their_kinds(
    client: httpx.Client, repo: str, signed_image: dict[str, str]
) -> None:
    tree = referrer_tree(client, repo, "v1")

    nodes = by_digest(tree["referrers"])
    assert set(nodes) == {signed_image["sbom"], signed_image["signature"]}
    assert nodes[signed_image["sbom"]]["kind"] == "sbom"
    assert nodes[signed_image["sbom"]]["artifactType"] == SBOM
    assert nodes[signed_image["signature"]]["kind"] == "signature"
    assert nodes[signed_image["signature"]]["artifactType"] == SIGNATURE


def test_tree_nests_the_referrers_of_referrers(
    client: httpx.Client, repo: str, signed_image: dict[str, str]
) -> None:
    tree = referrer_tree(client, repo, "v1")

    nodes = by_digest(tree["referrers"])
    [nested] = nodes[signed_image["sbom"]]["referrers"]
    assert nested["digest"] == signed_image["sbom_signature"]
    assert nested["kind"] == "signature"
    assert nested["referrers"] == []
    assert nodes[signed_image["signature"]]["referrers"] == []


def test_tree_nodes_are_descriptors(client: httpx.Client, repo: str) -> None:
    image, _ = push_image(client, repo, "v1")
    annotations = {"org.opencontainers.image.created": "2024-05-01T12:00:00Z"}
    body, digest = push_artifact(
        client, repo, manifest_descriptor(image), SBOM, annotations=annotations
    )

    tree = referrer_tree(client, repo, "v1")

    assert tree["referrers"] == [
        {
            "mediaType": OCI_MANIFEST,
            "digest": digest,
            "size": len(body),
            "artifactType": SBOM,
            "annotations": annotations,
            "kind": "sbom",
            "referrers": [],
        }
    ]


def test_tree_by_digest_equals_the_tree_by_tag(
    client: httpx.Client, repo: str, signed_image: dict[str, str]
) -> None:
    assert referrer_tree(client, repo, signed_image["image"]) == referrer_tree(
        client, repo, "v1"
    )


def test_tree_of_a_referrer_is_its_own_subtree(
    client: httpx.Client, repo: str, signed_image: dict[str, str]
) -> None:
    tree = referrer_tree(client, repo, signed_image["sbom"])

    assert tree["subject"] == signed_image["sbom"]
    assert [n["digest"] for n in tree["referrers"]] == [signed_image["sbom_signature"]]


def test_image_without_referrers_has_an_empty_tree(
    client: httpx.Client, repo: str
) -> None:
    _, digest = push_image(client, repo, "v1")

    tree = referrer_tree(client, repo, "v1")

    assert tree == {"repository": repo, "subject": digest, "referrers": []}


@pytest.mark.parametrize(
    ("artifact_type", "kind"),
    [
        ("application/vnd.cyclonedx+json", "sbom"),
        ("application/vnd.cncf.notary.signature", "signature"),
        (ATTESTATION, "attestation"),
        ("application/vnd.example.unknown.v1", "artifact"),
    ],
)
def test_kind_follows_the_artifact_type(
    client: httpx.Client, repo: str, artifact_type: str, kind: str
) -> None:
    image, _ = push_image(client, repo, "v1")
    push_artifact(client, repo, manifest_descriptor(image), artifact_type)

    [node] = referrer_tree(client, repo, "v1")["referrers"]

    assert node["kind"] == kind


def test_unknown_tag_is_manifest_unknown(client: httpx.Client, repo: str) -> None:
    push_image(client, repo, "v1")

    response = client.get(f"/api/v1/repositories/{repo}/referrers/missing")

    assert_error(response, 404, "MANIFEST_UNKNOWN")


def test_unknown_repository_is_manifest_unknown(
    client: httpx.Client, repo: str
) -> None:
    response = client.get(f"/api/v1/repositories/{repo}/referrers/v1")

    assert_error(response, 404, "MANIFEST_UNKNOWN")


def test_invalid_name_is_name_invalid(client: httpx.Client) -> None:
    response = client.get("/api/v1/repositories/Upper/Case/referrers/v1")

    assert_error(response, 400, "NAME_INVALID")


def test_malformed_digest_is_digest_invalid(client: httpx.Client, repo: str) -> None:
    push_image(client, repo, "v1")

    response = client.get(f"/api/v1/repositories/{repo}/referrers/sha256:1234")

    assert_error(response, 400, "DIGEST_INVALID")


def test_invalid_tag_is_tag_invalid(client: httpx.Client, repo: str) -> None:
    push_image(client, repo, "v1")

    response = client.get(f"/api/v1/repositories/{repo}/referrers/-bad")

    assert_error(response, 400, "TAG_INVALID")


def test_digest_not_pushed_lists_the_referrers_pushed_for_it(
    client: httpx.Client, repo: str
) -> None:
    absent = descriptor(OCI_MANIFEST, b"an image pushed later, or deleted")
    _, signature = push_artifact(client, repo, absent, SIGNATURE)

    tree = referrer_tree(client, repo, absent["digest"])

    assert tree["subject"] == absent["digest"]
    assert [node["digest"] for node in tree["referrers"]] == [signature]


def test_a_client_gone_mid_body_is_a_quiet_400(server, repo: str) -> None:
    path = f"/api/v1/policies/{repo}"
    head = f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head.encode() + b'{"rules": [')

    deadline = time.monotonic() + 10
    while not (lines := [line for line in server.log().splitlines() if path in line]):
        assert time.monotonic() < deadline, "no access line"
        time.sleep(0.05)

    [access] = lines
    assert f'"PUT {path}" 400 ' in access
    assert "dockyard.access" in access
