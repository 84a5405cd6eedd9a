"""The registry operations: push and pull blobs, put and resolve manifests.

`Registry` joins a `BlobStore` and a `MetadataStore`. Every check the spec asks
for happens here, so each HTTP handler only translates a request into one call.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dockyard.core import errors
from dockyard.core.digest import Digest, new_hasher
from dockyard.core.manifest import (
    DEFAULT_MAX_MANIFEST_BYTES,
    Descriptor,
    manifest_annotations,
    parse_manifest,
)
from dockyard.core.names import check_name, check_tag, namespace_of
from dockyard.core.ports import (
    AuditEvent,
    BlobStore,
    MetadataStore,
    NewManifest,
    StoredManifest,
    UploadRecord,
)


class _OncePer:
    """Says yes to a key at most once per `interval` seconds, remembering the
    most recent keys only: a missed entry costs one extra write, no more."""

    def __init__(self, interval: float, capacity: int = 65536) -> None:
        self._interval = interval
        self._capacity = capacity
        self._last: OrderedDict[object, float] = OrderedDict()

    def due(self, key: object) -> bool:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            return False
        self._last[key] = now
        self._last.move_to_end(key)
        if len(self._last) > self._capacity:
            self._last.popitem(last=False)
        return True


@dataclass(frozen=True, slots=True)
class UploadStatus:
    upload_id: str
    size: int


@dataclass(frozen=True, slots=True)
class PutResult:
    digest: Digest
    subject: Digest | None
    # The event stored with the manifest, for the caller to log.
    audit: AuditEvent | None = None


logger = logging.getLogger(__name__)


class _RunningHashes:
    """Hash state of uploads whose bytes this process has seen in order.

    Hash state cannot be saved, and the next chunk of an upload may reach
    another worker or come after a restart. When the state here does not end
    exactly at the staged size, `finish_upload` hashes the staged bytes again.
    """

    def __init__(self, capacity: int = 1024) -> None:
        self._states: OrderedDict[str, tuple[int, Any]] = OrderedDict()
        self._capacity = capacity

    def take(self, upload_id: str, offset: int, algorithm: str) -> Any | None:
        state = self._states.pop(upload_id, None)
        if state is not None and state[0] == offset and state[1].name == algorithm:
            return state[1]
        if offset == 0:
            return new_hasher(algorithm)
        return None

    def keep(self, upload_id: str, offset: int, hasher: Any) -> None:
        self._states[upload_id] = (offset, hasher)
        if len(self._states) > self._capacity:
            self._states.popitem(last=False)

    def forget(self, upload_id: str) -> None:
        self._states.pop(upload_id, None)


class Registry:
    def __init__(
        self,
        blobs: BlobStore,
        metadata: MetadataStore,
        max_manifest_bytes: int = DEFAULT_MAX_MANIFEST_BYTES,
        sparse_indexes: bool = False,
        link_renewal: timedelta = timedelta(minutes=15),
    ) -> None:
        self.blobs = blobs
        self.metadata = metadata
        self.max_manifest_bytes = max_manifest_bytes
        # Indexes may name manifests the repository lacks, as for a mirror
        # of a single platform of a multi-platform image.
        self.sparse_indexes = sparse_indexes
        # How old a link may be before a HEAD renews it; well inside the
        # garbage collector's grace period.
        self.link_renewal = link_renewal
        self._hashes = _RunningHashes()
        # Policies count pulls in days: one write an hour per manifest will do.
        self._pulls = _OncePer(3600.0)
        self._renewals = _OncePer(link_renewal.total_seconds())

    # Blobs

    async def stat_blob(self, repository: str, digest: Digest) -> int:
        """The size of a blob linked into the repository, else `BlobUnknown`."""
        size = await self.metadata.linked_blob_size(repository, digest)
        if size is None:
            raise errors.BlobUnknown(f"blob {digest} is not in repository {repository}")
        return size

    async def check_blob(self, repository: str, digest: Digest) -> int:
        """`stat_blob` for a client asking whether to push a blob (HEAD).

        A client that is told yes will name the blob in a manifest soon, so
        the link's grace period against garbage collection starts again.
        """
        # Renew first: a collector that runs between the lookup and a later
        # renewal could delete what the client was just told exists.
        cutoff = datetime.now(UTC) - self.link_renewal
        await self.metadata.renew_link(repository, digest, cutoff)
        return await self.stat_blob(repository, digest)

    async def open_blob(
        self, digest: Digest, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """The blob's bytes; `BlobUnknown` if the store lost what was recorded."""
        stream = await self.blobs.open(digest, offset, length)
        if stream is None:
            raise self.blob_lost(digest)
        return stream

    def blob_lost(self, digest: Digest) -> errors.BlobUnknown:
        """The error for a blob the metadata records but storage lacks."""
        logger.error("blob %s is recorded but missing from storage", digest)
        return errors.BlobUnknown(f"blob {digest} is missing from storage")

    async def delete_blob(self, repository: str, digest: Digest) -> None:
        if not await self.metadata.unlink_blob(repository, digest):
            raise errors.BlobUnknown(f"blob {digest} is not in repository {repository}")

    async def mount_blob(self, repository: str, digest: Digest, source: str) -> bool:
        """Link a blob from `source` without copying; False if it is not there."""
        async with self.blobs.collection_guard(exclusive=False):
            size = await self.metadata.linked_blob_size(source, digest)
            if size is None or await self.blobs.stat(digest) is None:
                return False
            await self.check_quota(repository, digest, size)
            await self.metadata.link_blob(repository, digest, size)
        return True

    async def check_quota(self, repository: str, digest: Digest, size: int) -> None:
        """Refuse a blob that would take the namespace past its quota.

        Checked per blob, so uploads finishing at the same moment may together
        pass the quota by up to their own sizes.
        """
        namespace = namespace_of(repository)
        limit = await self.metadata.namespace_quota(namespace)
        if limit is None:
            return
        if await self.metadata.linked_blob_size(repository, digest) is not None:
            return
        used = (await self.metadata.usage(namespace)).bytes
        if used + size > limit:
            raise errors.QuotaExceeded(
                f"namespace {namespace} uses {used} of its {limit}-byte quota and "
                f"this {size}-byte blob would pass it; delete images or ask an "
                "administrator for more"
            )

    # Uploads

    async def start_upload(self, repository: str, algorithm: str = "sha256") -> str:
        check_name(repository)
        new_hasher(algorithm)
        upload_id = str(uuid.uuid4())

        await self.blobs.create_upload(upload_id)
        record = UploadRecord(upload_id, repository, algorithm, datetime.now(UTC))
        await self.metadata.create_upload(record)
        return upload_id

    async def upload_status(self, repository: str, upload_id: str) -> UploadStatus:
        await self._upload(repository, upload_id)
        return UploadStatus(upload_id, await self._staged_size(upload_id))

    async def append_upload(
        self,
        repository: str,
        upload_id: str,
        chunks: AsyncIterable[bytes],
        start: int | None = None,
    ) -> UploadStatus:
        """Append a chunk; `start`, when given, must equal the bytes staged."""
        record = await self._upload(repository, upload_id)
        size = await self._staged_size(upload_id)
        if start is not None and start != size:
            raise errors.UploadOffsetMismatch(
                f"chunk starts at byte {start} but the upload holds {size} bytes; "
                f"send the chunk starting at {size}",
                size,
            )

        hasher = self._hashes.take(upload_id, size, record.algorithm)
        size = await self.blobs.append_upload(upload_id, size, chunks, hasher)
        if hasher is not None:
            self._hashes.keep(upload_id, size, hasher)
        return UploadStatus(upload_id, size)

    async def finish_upload(
        self,
        repository: str,
        upload_id: str,
        digest: Digest,
        chunks: AsyncIterable[bytes] | None = None,
        start: int | None = None,
    ) -> int:
        """Append the last chunk, verify the digest and store the blob.

        On a digest mismatch the upload is cancelled and nothing is kept.
        Returns the blob's size.
        """
        if chunks is not None:
            await self.append_upload(repository, upload_id, chunks, start)
        else:
            await self._upload(repository, upload_id)

        async with self.blobs.sealed_upload(upload_id):
            size = await self._staged_size(upload_id)
            actual = await self._staged_digest(upload_id, size, digest.algorithm)
            if actual != digest:
                await self._discard(upload_id)
                raise errors.DigestInvalid(
                    f"digest {digest} does not match the uploaded content "
                    f"({actual}, {size} bytes); the upload was discarded"
                )
            try:
                await self.check_quota(repository, digest, size)
            except errors.QuotaExceeded:
                await self._discard(upload_id)
                raise
            async with self.blobs.collection_guard(exclusive=False):
                await self.blobs.commit_upload(upload_id, digest)
                await self.metadata.link_blob(repository, digest, size)

        await self.metadata.delete_upload(upload_id)
        return size

    async def push_blob(
        self, repository: str, digest: Digest, chunks: AsyncIterable[bytes]
    ) -> int:
        """A whole blob in one request: upload, verify, store, or keep nothing."""
        upload_id = await self.start_upload(repository, digest.algorithm)
        try:
            return await self.finish_upload(repository, upload_id, digest, chunks)
        except BaseException:
            await self._discard(upload_id)
            raise

    async def cancel_upload(self, repository: str, upload_id: str) -> None:
        await self._upload(repository, upload_id)
        await self._discard(upload_id)

    async def _discard(self, upload_id: str) -> None:
        self._hashes.forget(upload_id)
        await self.blobs.cancel_upload(upload_id)
        await self.metadata.delete_upload(upload_id)

    async def _upload(self, repository: str, upload_id: str) -> UploadRecord:
        record = await self.metadata.get_upload(upload_id)
        if record is None or record.repository != repository:
            raise errors.UploadUnknown(
                f"upload {upload_id} is unknown to repository {repository}; "
                "it may have finished, been cancelled or expired"
            )
        return record

    async def _staged_size(self, upload_id: str) -> int:
        size = await self.blobs.upload_size(upload_id)
        if size is None:
            raise errors.UploadUnknown(f"upload {upload_id} has no data area")
        return size

    async def _staged_digest(self, upload_id: str, size: int, algorithm: str) -> Digest:
        hasher = self._hashes.take(upload_id, size, algorithm)
        self._hashes.forget(upload_id)
        if hasher is None or size == 0:
            hasher = new_hasher(algorithm)
            async for chunk in self.blobs.read_upload(upload_id):
                hasher.update(chunk)
        return Digest.from_hasher(hasher)

    # Manifests

    async def put_manifest(
        self,
        repository: str,
        reference: str | Digest,
        body: bytes,
        content_type: str | None,
        extra_tags: Sequence[str] = (),
        audit: Callable[[Digest], AuditEvent] | None = None,
    ) -> PutResult:
        """Verify and store a manifest under a tag or its digest.

        The metadata store checks the referenced blobs and manifests in the
        transaction that records the manifest: a check before it would cost
        a round trip and could not rule out a concurrent garbage collection.
        `audit` makes the push's audit event from the manifest's digest; the
        event is stored in that transaction too, so neither is kept alone.
        """
        check_name(repository)
        if len(body) > self.max_manifest_bytes:
            raise errors.ManifestTooLarge(
                f"manifest is {len(body)} bytes; the limit is {self.max_manifest_bytes}"
            )
        digest = self._manifest_digest(reference, body)
        tags = [check_tag(t) for t in extra_tags]
        if isinstance(reference, str):
            tags.insert(0, reference)

        manifest = parse_manifest(body, content_type)
        subject = manifest.subject.digest if manifest.subject else None
        record = NewManifest(
            digest=digest,
            media_type=manifest.media_type,
            content=body,
            artifact_type=manifest.artifact_type or manifest.config_media_type,
            subject=subject,
            blobs=[d.digest for d in manifest.blobs],
            children=[d.digest for d in manifest.children],
            required_blobs=[d.digest for d in manifest.required_blobs],
            required_children=(
                [] if self.sparse_indexes else [d.digest for d in manifest.children]
            ),
        )
        rule = await self.metadata.tag_rule(repository)
        frozen = [tag for tag in tags if rule.protects(tag)]
        event = audit(digest) if audit else None
        await self.metadata.put_manifest(repository, record, tags, frozen, event)
        return PutResult(digest, subject, event)

    async def cache_manifest(
        self,
        repository: str,
        digest: Digest,
        body: bytes,
        content_type: str | None,
        tag: str | None = None,
    ) -> StoredManifest:
        """Store a manifest a pull-through cache fetched, whose digest the
        cache checked, under `tag` if given.

        Its blobs and listed manifests are fetched when first asked for, so
        none need be present. Tag immutability does not apply: a cache
        follows its upstream's tags.
        """
        manifest = parse_manifest(body, content_type)
        subject = manifest.subject.digest if manifest.subject else None
        record = NewManifest(
            digest=digest,
            media_type=manifest.media_type,
            content=body,
            artifact_type=manifest.artifact_type or manifest.config_media_type,
            subject=subject,
            blobs=[d.digest for d in manifest.blobs],
            children=[d.digest for d in manifest.children],
        )
        await self.metadata.put_manifest(repository, record, [tag] if tag else [])
        return StoredManifest(digest, manifest.media_type, body)

    def _manifest_digest(self, reference: str | Digest, body: bytes) -> Digest:
        if not isinstance(reference, Digest):
            return Digest.of(body)

        actual = Digest.of(body, reference.algorithm)
        if actual != reference:
            raise errors.DigestInvalid(
                f"manifest digest is {actual}, not {reference} as the reference says"
            )
        return actual

    async def get_manifest(
        self, repository: str, reference: str | Digest
    ) -> StoredManifest:
        manifest = await self.metadata.get_manifest(repository, reference)
        if manifest is None:
            raise errors.ManifestUnknown(
                f"manifest {reference} is not in repository {repository}"
            )
        return manifest

    async def check_manifest(
        self, repository: str, reference: str | Digest
    ) -> StoredManifest:
        """`get_manifest` for a HEAD, which may decide a push: a client that
        finds an index's child skips pushing it, so the child's grace period
        against garbage collection starts again (at most once per
        `link_renewal` per manifest and process)."""
        manifest = await self.get_manifest(repository, reference)
        if self._renewals.due((repository, manifest.digest)):
            await self.metadata.renew_manifest(repository, manifest.digest)
        return manifest

    async def note_pull(self, repository: str, digest: Digest) -> None:
        """Record a pull of the manifest, at most hourly per process."""
        if self._pulls.due((repository, digest)):
            await self.metadata.record_pull(repository, digest)

    async def delete_manifest(self, repository: str, reference: str | Digest) -> None:
        """By digest: the manifest and its tags. By tag: only the tag."""
        if isinstance(reference, Digest):
            deleted = await self.metadata.delete_manifest(repository, reference)
        else:
            deleted = await self.metadata.delete_tag(repository, reference)
        if not deleted:
            raise errors.ManifestUnknown(
                f"manifest {reference} is not in repository {repository}"
            )

    # Referrers

    async def list_referrers(
        self,
        repository: str,
        subject: Digest,
        artifact_type: str | None = None,
        limit: int | None = None,
        last: str | None = None,
    ) -> list[Descriptor]:
        """Descriptors of the manifests whose subject is `subject`.

        The subject need not exist: referrers may be pushed before it, and
        they outlive its deletion.
        """
        referrers = await self.metadata.list_referrers(
            repository, subject, artifact_type, limit, last
        )
        return [
            Descriptor(
                media_type=r.media_type,
                digest=r.digest,
                size=len(r.content),
                artifact_type=r.artifact_type,
                annotations=manifest_annotations(r.content) or None,
            )
            for r in referrers
        ]

    # Listings

    async def check_repository(self, repository: str) -> None:
        if not await self.metadata.repository_exists(repository):
            raise errors.NameUnknown(f"repository {repository} is not known")

    async def list_tags(
        self, repository: str, limit: int | None, last: str | None
    ) -> list[str]:
        return await self.metadata.list_tags(repository, limit, last)

    async def delete_repository(self, name: str) -> None:
        """Its tags, manifests, links and upload sessions; the blobs go to
        garbage collection once no repository links them."""
        check_name(name)
        if not await self.metadata.repository_exists(name):
            raise errors.NameUnknown(f"repository {name} is not known")
        for upload_id in await self.metadata.delete_repository(name):
            await self._discard(upload_id)

    async def list_repositories(self, limit: int | None, last: str | None) -> list[str]:
        return await self.metadata.list_repositories(limit, last)
