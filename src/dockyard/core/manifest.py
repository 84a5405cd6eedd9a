"""Manifest media types, descriptors, and the parsing a registry must do.

A manifest is stored byte for byte; parsing only extracts what the registry
needs to check and index: the blobs and child manifests it references and its
subject. Fields Dockyard does not know are kept because the bytes are kept.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import orjson

from dockyard.core.digest import Digest
from dockyard.core.errors import DigestInvalid, ManifestInvalid

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

IMAGE_MANIFESTS = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
INDEXES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_MEDIA_TYPES = IMAGE_MANIFESTS | INDEXES

# Layers whose bytes may live elsewhere (the descriptor's `urls`); a registry
# must accept a manifest that references them without holding the blob.
NON_DISTRIBUTABLE_LAYERS = frozenset(
    {
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.foreign.diff.tar",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    }
)

DEFAULT_MAX_MANIFEST_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    urls: tuple[str, ...] = ()

    @property
    def distributable(self) -> bool:
        return self.media_type not in NON_DISTRIBUTABLE_LAYERS

    def to_json(self) -> dict[str, Any]:
        """The descriptor as OCI JSON, leaving out the fields it lacks."""
        document: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.artifact_type:
            document["artifactType"] = self.artifact_type
        if self.annotations:
            document["annotations"] = self.annotations
        if self.urls:
            document["urls"] = list(self.urls)
        return document


@dataclass(frozen=True, slots=True)
class Manifest:
    """What the registry reads from a manifest: references, subject, types."""

    media_type: str
    blobs: tuple[Descriptor, ...] = ()
    children: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    artifact_type: str | None = None
    config_media_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def required_blobs(self) -> tuple[Descriptor, ...]:
        return tuple(d for d in self.blobs if d.distributable)


def parse_manifest(body: bytes, content_type: str | None) -> Manifest:
    """Parse and validate a manifest; raise `ManifestInvalid` naming the fault."""
    document = _load_json(body)
    media_type = _media_type(document, content_type)

    if media_type in INDEXES:
        return _parse_index(document, media_type)
    return _parse_image_manifest(document, media_type)


def manifest_annotations(body: bytes) -> dict[str, str]:
    """The annotations of a manifest already stored, hence already valid."""
    annotations = orjson.loads(body).get("annotations")
    return annotations if isinstance(annotations, dict) else {}


def _load_json(body: bytes) -> dict[str, Any]:
    # orjson accepts UTF-8 only and refuses lone surrogates and nesting past
    # 1,024 levels: what other clients could not read back is refused here.
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ManifestInvalid(f"manifest is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ManifestInvalid("manifest must be a JSON object")
    return document


def _media_type(document: dict[str, Any], content_type: str | None) -> str:
    """The manifest's media type, from Content-Type and the `mediaType` field.

    When both are given they must agree, or a client could store a manifest
    that other clients would parse differently.
    """
    declared = document.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise ManifestInvalid("mediaType must be a string")

    header = (content_type or "").split(";", 1)[0].strip().lower() or None
    if header in MANIFEST_MEDIA_TYPES:
        if declared is not None and declared != header:
            raise ManifestInvalid(
                f"mediaType {declared!r} does not match Content-Type {header!r}"
            )
        return header
    if declared in MANIFEST_MEDIA_TYPES:
        return declared
    if declared is None and header in (None, "application/json"):
        return _guess_oci_type(document)

    shown = declared or header
    supported = ", ".join(sorted(MANIFEST_MEDIA_TYPES))
    raise ManifestInvalid(
        f"unsupported manifest media type {shown!r} (supported: {supported})"
    )


def _guess_oci_type(document: dict[str, Any]) -> str:
    # OCI makes mediaType optional; the shape tells an index from a manifest.
    if "manifests" in document:
        return OCI_INDEX
    if "config" in document:
        return OCI_MANIFEST
    raise ManifestInvalid("cannot tell the manifest's media type: set Content-Type")


def _parse_image_manifest(document: dict[str, Any], media_type: str) -> Manifest:
    _check_schema_version(document)
    config = _descriptor(document.get("config"), "config")
    layers = _descriptor_list(document, "layers", required=media_type != OCI_MANIFEST)
    artifact_type = _optional_str(document, "artifactType")

    return Manifest(
        media_type=media_type,
        blobs=(config, *layers),
        subject=_subject(document),
        artifact_type=artifact_type,
        config_media_type=config.media_type,
        annotations=_annotations(document.get("annotations"), "annotations"),
    )


def _parse_index(document: dict[str, Any], media_type: str) -> Manifest:
    _check_schema_version(document)
    children = _descriptor_list(document, "manifests", required=True)

    return Manifest(
        media_type=media_type,
        children=tuple(children),
        subject=_subject(document),
        artifact_type=_optional_str(document, "artifactType"),
        annotations=_annotations(document.get("annotations"), "annotations"),
    )


def _check_schema_version(document: dict[str, Any]) -> None:
    version = document.get("schemaVersion")
    if type(version) is not int or version != 2:
        raise ManifestInvalid(f"schemaVersion must be 2, not {version!r}")


def _subject(document: dict[str, Any]) -> Descriptor | None:
    if document.get("subject") is None:
        return None
    return _descriptor(document["subject"], "subject")


def _descriptor_list(
    document: dict[str, Any], key: str, required: bool
) -> list[Descriptor]:
    items = document.get(key)
    if items is None and not required:
        return []
    if not isinstance(items, list):
        raise ManifestInvalid(f"{key} must be a list of descriptors")
    return [_descriptor(item, f"{key}[{i}]") for i, item in enumerate(items)]


def _descriptor(item: Any, where: str) -> Descriptor:
    if not isinstance(item, dict):
        raise ManifestInvalid(f"{where} must be a descriptor object")

    media_type = item.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        raise ManifestInvalid(f"{where}.mediaType must be a non-empty string")
    size = item.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ManifestInvalid(f"{where}.size must be a non-negative integer")
    text = item.get("digest")
    if not isinstance(text, str):
        raise ManifestInvalid(f"{where}.digest must be a string")
    try:
        digest = Digest.parse(text)
    except DigestInvalid as exc:
        raise ManifestInvalid(f"{where}.digest: {exc.message}") from None

    _check_embedded_data(item.get("data"), digest, size, where)
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        artifact_type=_optional_str(item, "artifactType", where),
        annotations=_annotations(item.get("annotations"), f"{where}.annotations")
        or None,
        urls=_urls(item.get("urls"), where),
    )


def _check_embedded_data(data: Any, digest: Digest, size: int, where: str) -> None:
    """A descriptor may carry its content inline; it must be that content."""
    if data is None:
        return
    try:
        content = base64.b64decode(data, validate=True)
    except (TypeError, ValueError):
        raise ManifestInvalid(f"{where}.data must be base64") from None
    if len(content) != size or Digest.of(content, digest.algorithm) != digest:
        raise ManifestInvalid(f"{where}.data does not match its digest and size")


def _optional_str(item: dict[str, Any], key: str, where: str = "") -> str | None:
    value = item.get(key)
    if value is not None and not isinstance(value, str):
        raise ManifestInvalid(f"{where + '.' if where else ''}{key} must be a string")
    return value


def _annotations(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(v, str) for v in value.values()
    ):
        raise ManifestInvalid(f"{where} must map strings to strings")
    return value


def _urls(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(u, str) for u in value):
        raise ManifestInvalid(f"{where}.urls must be a list of strings")
    return tuple(value)
