"""Manifest PUTs through `Registry` on SQLite: what one costs the database, and
that the push's audit event is kept exactly when the manifest is."""

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, event, select

from dockyard.core.digest import Digest
from dockyard.core.errors import ManifestBlobUnknown, TagImmutable
from dockyard.core.ports import AuditEvent
from dockyard.core.registry import Registry
from dockyard.core.settings import TagRule
from dockyard.metadata.cache import CachedMetadataStore, ChangeStamp
from dockyard.metadata.migrate import upgrade
from dockyard.metadata.schema import audit_events
from dockyard.metadata.store import create_db_engine
from dockyard.storage.filesystem import FilesystemBlobStore

pytestmark = pytest.mark.anyio

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REPO = "team/app"


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def registry(tmp_path) -> Registry:
    url = f"sqlite:///{tmp_path / 'dockyard.db'}"
    upgrade(create_engine(url))
    stamp = tmp_path / "dockyard.db-stamp"
    metadata = CachedMetadataStore(
        create_db_engine(url), ChangeStamp(stamp), ChangeStamp(stamp, 1)
    )
    return Registry(FilesystemBlobStore(tmp_path / "storage"), metadata)


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def push_image(registry: Registry, layer: bytes) -> bytes:
    """Push a config and a layer; the manifest naming them."""
    blobs = {
        "application/vnd.oci.image.config.v1+json": b"{}",
        "application/vnd.oci.image.layer.v1.tar": layer,
    }
    for data in blobs.values():
        await registry.push_blob(REPO, Digest.of(data), one_chunk(data))
    config, *layers = (
        {"mediaType": media_type, "digest": str(Digest.of(data)), "size": len(data)}
        for media_type, data in blobs.items()
    )
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": layers,
    }
    return json.dumps(document).encode()


def pushed(digest: Digest) -> AuditEvent:
    target = f"{REPO}@{digest}"
    return AuditEvent(datetime.now(UTC), "push", "alice", target=target)


def audit_rows(registry: Registry) -> list[str]:
    engine = registry.metadata.engine  # type: ignore[attr-defined]
    with engine.connect() as connection:
        return list(connection.scalars(select(audit_events.c.target)))


def count_statements(registry: Registry) -> dict[str, int]:
    """Transactions begun and statements run from now on."""
    counted = {"transactions": 0, "statements": 0}
    engine = registry.metadata.engine  # type: ignore[attr-defined]

    @event.listens_for(engine, "begin")
    def began(connection):
        counted["transactions"] += 1

    @event.listens_for(engine, "before_cursor_execute")
    def executed(connection, cursor, statement, *args):
        counted["statements"] += 1

    return counted


async def test_a_tag_put_is_one_transaction_audit_included(registry):
    body = await push_image(registry, b"layer")
    await registry.put_manifest(REPO, "first", body, OCI_MANIFEST, audit=pushed)
    counted = count_statements(registry)

    result = await registry.put_manifest(
        REPO, "second", body, OCI_MANIFEST, audit=pushed
    )

    # BEGIN IMMEDIATE; the repository, the blobs, the manifest renewed, the
    # tag, the audit event.
    assert counted == {"transactions": 1, "statements": 6}
    assert result.audit is not None
    assert audit_rows(registry) == [f"{REPO}@{result.digest}"] * 2


async def test_a_push_refused_for_an_immutable_tag_leaves_no_audit_event(registry):
    await registry.metadata.set_tag_rule(REPO, TagRule(immutable=True))
    first = await push_image(registry, b"one")
    second = await push_image(registry, b"two")
    await registry.put_manifest(REPO, "v1", first, OCI_MANIFEST, audit=pushed)

    with pytest.raises(TagImmutable):
        await registry.put_manifest(REPO, "v1", second, OCI_MANIFEST, audit=pushed)

    assert audit_rows(registry) == [f"{REPO}@{Digest.of(first)}"]


async def test_a_push_missing_a_blob_leaves_no_audit_event(registry):
    body = await push_image(registry, b"layer")
    await registry.delete_blob(REPO, Digest.of(b"layer"))

    with pytest.raises(ManifestBlobUnknown):
        await registry.put_manifest(REPO, "v1", body, OCI_MANIFEST, audit=pushed)

    assert audit_rows(registry) == []
    assert await registry.metadata.list_tags(REPO, None, None) == []
