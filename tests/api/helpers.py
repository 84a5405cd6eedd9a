"""Small builders shared by the API tests: blobs, descriptors and manifests.

Manifests are returned as the exact bytes to PUT, so a test can compare what
it sent with what the registry answers byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_NONDISTRIBUTABLE_LAYER = (
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
)
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

Descriptor = dict[str, Any]


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


def random_bytes(size: int = 64) -> bytes:
    return os.urandom(size)


def descriptor(media_type: str, data: bytes, **extra: Any) -> Descriptor:
    """The descriptor of `data`, without pushing it."""
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


def push_blob(
    client: httpx.Client, repo: str, data: bytes, media_type: str = OCI_LAYER
) -> Descriptor:
    """Push `data` in one POST with ?digest= and return its descriptor."""
    digest = sha256(data)
    response = client.post(
        f"/v2/{repo}/blobs/uploads/",
        params={"digest": digest},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 201, response.text
    return descriptor(media_type, data)


def to_bytes(document: dict[str, Any]) -> bytes:
    return json.dumps(document, indent=2).encode()


def oci_manifest(config: Descriptor, layers: list[Descriptor], **extra: Any) -> bytes:
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": layers,
        **extra,
    }
    return to_bytes(document)


def oci_index(manifests: list[Descriptor], **extra: Any) -> bytes:
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
        **extra,
    }
    return to_bytes(document)


def docker_manifest(config: Descriptor, layers: list[Descriptor]) -> bytes:
    document = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": config,
        "layers": layers,
    }
    return to_bytes(document)


def docker_manifest_list(manifests: list[Descriptor]) -> bytes:
    document = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST_LIST,
        "manifests": manifests,
    }
    return to_bytes(document)


def platform(architecture: str, os_name: str = "linux") -> dict[str, str]:
    return {"architecture": architecture, "os": os_name}


def push_image_blobs(
    client: httpx.Client, repo: str, docker: bool = False
) -> tuple[Descriptor, list[Descriptor]]:
    """Push a fresh config and one layer; return their descriptors."""
    config_type, layer_type = (
        (DOCKER_CONFIG, DOCKER_LAYER) if docker else (OCI_CONFIG, OCI_LAYER)
    )
    config_data = to_bytes({"nonce": random_bytes(8).hex()})
    config = push_blob(client, repo, config_data, config_type)
    return config, [push_blob(client, repo, random_bytes(), layer_type)]


def put_manifest(
    client: httpx.Client,
    repo: str,
    reference: str,
    body: bytes,
    media_type: str = OCI_MANIFEST,
    **kwargs: Any,
) -> httpx.Response:
    return client.put(
        f"/v2/{repo}/manifests/{reference}",
        content=body,
        headers={"Content-Type": media_type},
        **kwargs,
    )


def push_image(
    client: httpx.Client, repo: str, reference: str = "latest", **extra: Any
) -> tuple[bytes, str]:
    """Push a small OCI image (config, one layer, manifest); return body, digest."""
    config, layers = push_image_blobs(client, repo)
    body = oci_manifest(config, layers, **extra)
    response = put_manifest(client, repo, reference, body)
    assert response.status_code == 201, response.text
    return body, sha256(body)


def manifest_descriptor(body: bytes, media_type: str = OCI_MANIFEST) -> Descriptor:
    return descriptor(media_type, body)


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    """The spec's error body: a JSON list of one {code, message, detail}."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    errors = response.json()["errors"]
    assert [e["code"] for e in errors] == [code], response.text
    assert set(errors[0]) == {"code", "message", "detail"}
    assert errors[0]["message"]


# Referrers

EMPTY_JSON = b"{}"


def push_artifact(
    client: httpx.Client,
    repo: str,
    subject: Descriptor | None,
    artifact_type: str | None = "application/vnd.example.artifact.v1",
    reference: str | None = None,
    config: Descriptor | None = None,
    **extra: Any,
) -> tuple[bytes, str]:
    """Push an artifact manifest naming `subject`; return its body and digest.

    The config is the OCI empty descriptor unless given; the one layer is
    fresh random bytes, so every call pushes a different manifest.
    """
    config = config or push_blob(client, repo, EMPTY_JSON, OCI_EMPTY)
    layer = push_blob(client, repo, random_bytes(), "application/vnd.example.data")
    if subject is not None:
        extra["subject"] = subject
    if artifact_type is not None:
        extra["artifactType"] = artifact_type
    body = oci_manifest(config, [layer], **extra)

    response = put_manifest(client, repo, reference or sha256(body), body)
    assert response.status_code == 201, response.text
    return body, sha256(body)


def get_referrers(
    client: httpx.Client, repo: str, digest: str, **params: Any
) -> httpx.Response:
    return client.get(f"/v2/{repo}/referrers/{digest}", params=params)
