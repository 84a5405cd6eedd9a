import json

import pytest

from dockyard.core.digest import Digest
from dockyard.core.errors import ManifestInvalid
from dockyard.core.manifest import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    parse_manifest,
)

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def descriptor(digest, media_type="application/octet-stream", size=1, **extra):
    return {"mediaType": media_type, "digest": digest, "size": size, **extra}


def image(**extra):
    return {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(D1, "application/vnd.oci.image.config.v1+json"),
        "layers": [descriptor(D2)],
        **extra,
    }


def parse(document, content_type=OCI_MANIFEST):
    return parse_manifest(json.dumps(document).encode(), content_type)


def test_image_manifest_references_config_and_layers():
    manifest = parse(image())
    assert [str(d.digest) for d in manifest.blobs] == [D1, D2]
    assert manifest.children == ()
    assert manifest.config_media_type == "application/vnd.oci.image.config.v1+json"


def test_index_references_child_manifests():
    index = {"schemaVersion": 2, "manifests": [descriptor(D3, OCI_MANIFEST)]}
    manifest = parse(index, OCI_INDEX)
    assert [str(d.digest) for d in manifest.children] == [D3]
    assert manifest.blobs == ()


def test_docker_types_are_accepted():
    docker = image(mediaType=DOCKER_MANIFEST)
    assert parse(docker, DOCKER_MANIFEST).media_type == DOCKER_MANIFEST
    listing = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST_LIST,
        "manifests": [descriptor(D3, DOCKER_MANIFEST)],
    }
    assert parse(listing, DOCKER_MANIFEST_LIST).media_type == DOCKER_MANIFEST_LIST


def test_media_type_from_body_when_header_is_generic():
    assert parse(image(), "application/json").media_type == OCI_MANIFEST


def test_media_type_guessed_from_shape_when_absent():
    document = image()
    del document["mediaType"]
    assert parse(document, None).media_type == OCI_MANIFEST


def test_header_and_body_must_agree():
    with pytest.raises(ManifestInvalid, match="does not match"):
        parse(image(), OCI_INDEX)


def test_artifact_type_and_subject_are_read():
    manifest = parse(image(artifactType="application/x.sbom", subject=descriptor(D3)))
    assert manifest.artifact_type == "application/x.sbom"
    assert manifest.subject is not None
    assert manifest.subject.digest == Digest.parse(D3)


def test_nondistributable_layers_are_not_required():
    foreign = descriptor(
        D3, "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", urls=["x"]
    )
    manifest = parse(image(layers=[descriptor(D2), foreign]))
    assert [str(d.digest) for d in manifest.required_blobs] == [D1, D2]


def test_oci_manifest_without_layers_is_accepted():
    document = image()
    del document["layers"]
    assert [str(d.digest) for d in parse(document).blobs] == [D1]


@pytest.mark.parametrize(
    "document, fault",
    [
        (image(schemaVersion=1), "schemaVersion"),
        (image(schemaVersion=True), "schemaVersion"),
        (image(config="x"), "config"),
        (image(layers={}), "layers"),
        (image(layers=[descriptor("sha256:short")]), "layers\\[0\\].digest"),
        (image(layers=[descriptor(D2, size=-1)]), "size"),
        (image(layers=[descriptor(D2, size=True)]), "size"),
        (image(layers=[descriptor(D2, media_type="")]), "mediaType"),
        (image(annotations={"a": 1}), "annotations"),
        (image(artifactType=5), "artifactType"),
    ],
)
def test_invalid_manifests_name_the_fault(document, fault):
    with pytest.raises(ManifestInvalid, match=fault):
        parse(document)


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b"\xff\xfe", b"null"])
def test_non_object_bodies_are_invalid(body):
    with pytest.raises(ManifestInvalid):
        parse_manifest(body, OCI_MANIFEST)


def test_unknown_media_types_are_refused():
    with pytest.raises(ManifestInvalid, match="unsupported"):
        parse(image(mediaType="application/x-custom"), "application/x-custom")


@pytest.mark.parametrize(
    "body, fault",
    [
        (b"[" * 100_000 + b"]" * 100_000, "JSON"),
        (json.dumps(image()).encode("utf-16"), "JSON"),
        (
            json.dumps(image(artifactType="x\ud800")).encode("utf-8", "surrogatepass"),
            "JSON",
        ),
        (b'{"schemaVersion": 2, "config": {"x": "\\udcff"}}', "JSON"),
    ],
)
def test_bodies_other_clients_could_not_read_are_invalid(body, fault):
    with pytest.raises(ManifestInvalid, match=fault):
        parse_manifest(body, OCI_MANIFEST)


@pytest.mark.parametrize("digest", [5, ["x"], None, {"a": 1}])
def test_descriptor_digest_must_be_a_string(digest):
    with pytest.raises(ManifestInvalid, match="digest must be a string"):
        parse(image(config=descriptor(D1) | {"digest": digest}))


def test_schema_version_must_be_the_integer_two():
    with pytest.raises(ManifestInvalid, match="schemaVersion"):
        parse(image(schemaVersion=2.0))
