"""The interfaces the registry operations need from storage and metadata.

Drivers implement these; `Registry` depends only on them, so the same
operations run on a filesystem and SQLite or on S3 and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from dockyard.core.digest import Digest
from dockyard.core.settings import TagRule, Usage


class BlobStore(Protocol):
    """Content-addressed blobs plus the staging area of open uploads.

    A blob exists in the store only once its bytes are durable and verified:
    `commit_upload` moves staged bytes in atomically, so readers never see a
    partial blob.
    """

    async def stat(self, digest: Digest) -> int | None:
        """The blob's size, or None when the store does not hold it."""

    async def open(
        self, digest: Digest, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes] | None:
        """Stream `length` bytes (or the rest) of a blob from `offset`.

        None when the store lacks the blob, known before any byte is sent.
        """

    async def delete(self, digest: Digest) -> None: ...

    def local_path(self, digest: Digest) -> Path | None:
        """The file holding the blob, for the server to send itself; None
        when the store keeps no local files."""

    def list(self) -> AsyncIterator[Digest]: ...

    async def create_upload(self, upload_id: str) -> None: ...

    async def upload_size(self, upload_id: str) -> int | None:
        """Bytes staged so far, or None when the upload has no staging area."""

    async def append_upload(
        self,
        upload_id: str,
        offset: int,
        chunks: AsyncIterable[bytes],
        hasher: Any = None,
    ) -> int:
        """Append a stream at `offset`, which must be the staged size.

        Raises `UploadOffsetMismatch` without writing when it is not. Returns
        the new staged size. Bytes received before a failure stay staged.
        `hasher`, if given, is updated with exactly the bytes written, in
        order, so the digest costs no second read.
        """

    def read_upload(self, upload_id: str) -> AsyncIterator[bytes]: ...

    async def open_upload(
        self, upload_id: str, offset: int, length: int
    ) -> AsyncIterator[bytes] | None:
        """Stream staged bytes from `offset`, all of them already staged.

        None when the upload is gone: cancelled, or committed as a blob. It
        may also go before the first byte is read: `FileNotFoundError`.
        """

    def fetch_lock(self, digest: Digest) -> AbstractAsyncContextManager[bool]:
        """Try to become the one fetcher of a blob from an upstream registry.

        Yields True to the one holder, which keeps it until the fetch ends,
        and False at once to everyone else meanwhile.
        """
        ...

    def sealed_upload(self, upload_id: str) -> AbstractAsyncContextManager[None]:
        """Hold off every other request on the upload while it is finished.

        Raises `UploadInvalid` if another request holds it, `UploadUnknown`
        if it is gone.
        """

    async def commit_upload(self, upload_id: str, digest: Digest) -> None:
        """Make the staged bytes durable and visible as blob `digest`."""

    async def cancel_upload(self, upload_id: str) -> None: ...

    def collection_guard(self, exclusive: bool) -> AbstractAsyncContextManager[None]:
        """Keep garbage collection and new blob references apart.

        Storing a blob and recording it, or mounting one, hold it shared;
        garbage collection holds it exclusively while it deletes blobs, so a
        blob is never deleted between being stored and being recorded.
        """
        ...


@dataclass(frozen=True, slots=True)
class UploadRecord:
    upload_id: str
    repository: str
    algorithm: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class StoredManifest:
    digest: Digest
    media_type: str
    content: bytes


@dataclass(frozen=True, slots=True)
class NewManifest:
    """A verified manifest ready to store, with what it references."""

    digest: Digest
    media_type: str
    content: bytes
    artifact_type: str | None
    subject: Digest | None
    blobs: Sequence[Digest]
    children: Sequence[Digest]
    # What must be in the repository when the manifest is recorded: checked
    # in that transaction, so a concurrent garbage collection cannot pass.
    required_blobs: Sequence[Digest] = ()
    required_children: Sequence[Digest] = ()


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """Who did what to which target, kept in the audit trail."""

    occurred_at: datetime
    action: str
    actor: str
    outcome: str = "success"
    address: str | None = None
    target: str | None = None
    detail: dict[str, object] | None = None


@dataclass(frozen=True, slots=True)
class Referrer:
    """A manifest whose subject is another manifest, as the referrers API lists it."""

    digest: Digest
    media_type: str
    artifact_type: str | None
    content: bytes


class MetadataStore(Protocol):
    """Repositories, the blobs linked into them, manifests, tags and uploads."""

    async def repository_exists(self, name: str) -> bool: ...

    async def linked_blob_size(self, repository: str, digest: Digest) -> int | None:
        """The blob's size if it is linked into the repository."""

    async def link_blob(self, repository: str, digest: Digest, size: int) -> None: ...

    async def renew_link(
        self, repository: str, digest: Digest, older_than: datetime
    ) -> None:
        """Restart the grace period of a link made before `older_than`."""

    async def unlink_blob(self, repository: str, digest: Digest) -> bool: ...

    async def create_upload(self, record: UploadRecord) -> None: ...

    async def get_upload(self, upload_id: str) -> UploadRecord | None: ...

    async def delete_upload(self, upload_id: str) -> None: ...

    async def put_manifest(
        self,
        repository: str,
        manifest: NewManifest,
        tags: Sequence[str],
        frozen_tags: Sequence[str] = (),
        audit: AuditEvent | None = None,
    ) -> None:
        """Store the manifest (once per repository) and point the tags at it,
        and the `audit` event in the same transaction.

        Raises `errors.missing_references` if a required blob or manifest is
        not in the repository, and `TagImmutable` if one of `frozen_tags`
        points at another manifest already.
        """

    async def renew_manifest(self, repository: str, digest: Digest) -> None:
        """Restart the manifest's grace period against garbage collection."""

    async def record_pull(self, repository: str, digest: Digest) -> None:
        """Note that the manifest was pulled now, for lifecycle policies."""

    async def tag_rule(self, repository: str) -> TagRule:
        """The repository's immutability setting, else its namespace's."""

    async def namespace_quota(self, namespace: str) -> int | None: ...

    async def usage(self, namespace: str) -> Usage:
        """Blob bytes linked into the namespace's repositories."""

    async def delete_repository(self, name: str) -> list[str]:
        """Delete a repository's tags, manifests and links; its upload ids."""

    async def get_manifest(
        self, repository: str, reference: str | Digest
    ) -> StoredManifest | None: ...

    async def delete_manifest(self, repository: str, digest: Digest) -> bool:
        """Delete the manifest and every tag pointing at it."""

    async def delete_tag(self, repository: str, tag: str) -> bool: ...

    async def list_referrers(
        self,
        repository: str,
        subject: Digest,
        artifact_type: str | None,
        limit: int | None,
        last: str | None,
    ) -> list[Referrer]:
        """Manifests of the repository naming `subject`, in digest order."""

    async def list_tags(
        self, repository: str, limit: int | None, last: str | None
    ) -> list[str]: ...

    async def list_repositories(
        self, limit: int | None, last: str | None
    ) -> list[str]: ...
