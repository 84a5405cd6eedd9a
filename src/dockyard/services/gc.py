"""Online garbage collection: plan from a metadata snapshot, then delete what
is still garbage while pushes and pulls go on.

What a push in flight relies on is never collected:

- anything younger than the grace period: blobs stored, links made (a link is
  renewed when it is made again or checked with HEAD) and manifests pushed
  within it, so an image's blobs and child manifests survive until the
  manifest or index that names them arrives;
- blobs of open upload sessions, which are not blobs yet;
- and each deletion re-checks, in its own transaction, that nothing
  references what it deletes, while a manifest PUT re-checks its blobs in the
  transaction that records it: whichever commits second sees the other.

Blob bytes are deleted with the store's collection guard held exclusively,
which storing-and-recording a blob holds shared, so a blob is never deleted
between its bytes landing and its row being written.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from dockyard.core.digest import Digest
from dockyard.core.ports import BlobStore
from dockyard.metadata.collection import CollectionStore, ManifestRow, Snapshot
from dockyard.services.audit import Auditor

logger = logging.getLogger(__name__)

# Blobs deleted per hold of the exclusive guard: uploads wait at most this long.
_BLOB_BATCH = 64


@dataclass
class Plan:
    manifests: list[ManifestRow] = field(default_factory=list)
    # repository -> digests whose link to it goes
    links: dict[str, list[str]] = field(default_factory=dict)
    # digest -> size
    blobs: dict[str, int] = field(default_factory=dict)
    uploads: list[str] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(self.blobs.values())


@dataclass
class Report:
    """What a run deleted (or, dry, would delete)."""

    dry_run: bool
    manifests: list[tuple[str, str]] = field(default_factory=list)
    links: int = 0
    blobs: list[tuple[str, int]] = field(default_factory=list)
    uploads: int = 0

    @property
    def bytes(self) -> int:
        return sum(size for _, size in self.blobs)

    def to_json(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "manifests": [{"repository": r, "digest": d} for r, d in self.manifests],
            "links": self.links,
            "blobs": [{"digest": d, "size": s} for d, s in self.blobs],
            "uploads": self.uploads,
            "bytes": self.bytes,
        }


def plan(
    snapshot: Snapshot,
    now: datetime,
    grace: timedelta,
    upload_max_age: timedelta,
    untagged: bool,
) -> Plan:
    cutoff = now - grace
    doomed = _unreachable(snapshot.manifests, cutoff) if untagged else []
    gone = {row.id for row in doomed}

    referenced = {
        (row.repository, digest)
        for row in snapshot.manifests
        if row.id not in gone
        for digest in row.blobs
    }
    links: dict[str, list[str]] = defaultdict(list)
    kept_links = set()
    for (repository, digest), linked_at in snapshot.links.items():
        if (repository, digest) in referenced or linked_at >= cutoff:
            kept_links.add(digest)
        else:
            links[repository].append(digest)

    blobs = {
        digest: size
        for digest, (size, created_at) in snapshot.blobs.items()
        if digest not in kept_links and created_at < cutoff
    }
    stale = [
        upload_id
        for upload_id, created_at in snapshot.uploads.items()
        if created_at < now - upload_max_age
    ]
    return Plan(doomed, dict(links), blobs, stale)


def _unreachable(rows: list[ManifestRow], cutoff: datetime) -> list[ManifestRow]:
    """Old manifests no tag reaches, through index children or as a referrer
    of a manifest that is kept."""
    by_repository: dict[str, list[ManifestRow]] = defaultdict(list)
    for row in rows:
        by_repository[row.repository].append(row)

    doomed = []
    for repository_rows in by_repository.values():
        kept = _reachable(repository_rows, cutoff)
        doomed += _parents_first([r for r in repository_rows if r.digest not in kept])
    return doomed


def _parents_first(rows: list[ManifestRow]) -> list[ManifestRow]:
    """Indexes before the manifests they list: a manifest is deleted only
    once no index lists it, so its index must go first in the same run."""
    by_digest = {row.digest: row for row in rows}
    parents = Counter(c for row in rows for c in set(row.children) if c in by_digest)
    ordered = [row for row in rows if not parents[row.digest]]
    for row in ordered:
        for child in set(row.children) & by_digest.keys():
            parents[child] -= 1
            if not parents[child]:
                ordered.append(by_digest[child])
    return ordered


def _reachable(rows: list[ManifestRow], cutoff: datetime) -> set[str]:
    roots = [row for row in rows if row.tagged or row.pushed_at >= cutoff]
    return reach(rows, roots)


def reach(rows: list[ManifestRow], roots: list[ManifestRow]) -> set[str]:
    """Digests reached from `roots` through index children and referrers."""
    by_digest = {row.digest: row for row in rows}
    referrers: dict[str, list[ManifestRow]] = defaultdict(list)
    for row in rows:
        if row.subject:
            referrers[row.subject].append(row)

    kept: set[str] = set()
    pending = list(roots)
    while pending:
        row = pending.pop()
        if row.digest in kept:
            continue
        kept.add(row.digest)
        pending += [by_digest[c] for c in row.children if c in by_digest]
        pending += referrers[row.digest]
    return kept


class GarbageCollector:
    def __init__(
        self,
        metadata: CollectionStore,
        blobs: BlobStore,
        grace: timedelta,
        upload_max_age: timedelta,
        untagged: bool,
        auditor: Auditor | None = None,
    ) -> None:
        self._metadata = metadata
        self._auditor = auditor
        self._blobs = blobs
        self._grace = grace
        self._upload_max_age = upload_max_age
        self._untagged = untagged

    async def run(self, dry_run: bool = False) -> Report:
        now = datetime.now(UTC)
        snapshot = await self._metadata.snapshot()
        work = plan(snapshot, now, self._grace, self._upload_max_age, self._untagged)
        if dry_run:
            return _would_delete(work)

        cutoff = now - self._grace
        report = Report(dry_run=False)
        report.uploads = await self._purge_uploads(work.uploads)
        for row in work.manifests:
            if await self._metadata.delete_untagged(row.id, cutoff):
                report.manifests.append((row.repository, row.digest))
        for repository, digests in work.links.items():
            report.links += await self._metadata.unlink_unreferenced(
                repository, digests, cutoff
            )
        report.blobs = await self._delete_blobs(work.blobs, cutoff)
        _log(report)
        if self._auditor is not None and (report.manifests or report.blobs):
            await self._auditor.record_async(
                "gc",
                "gc",
                detail={
                    "manifests": [f"{r}@{d}" for r, d in report.manifests],
                    "blobs": len(report.blobs),
                    "bytes": report.bytes,
                    "uploads": report.uploads,
                },
            )
        return report

    async def _purge_uploads(self, upload_ids: list[str]) -> int:
        for upload_id in upload_ids:
            await self._blobs.cancel_upload(upload_id)
            await self._metadata.forget_upload(upload_id)
        return len(upload_ids)

    async def _delete_blobs(
        self, candidates: dict[str, int], cutoff: datetime
    ) -> list[tuple[str, int]]:
        deleted = []
        for batch in _batches(list(candidates.items()), _BLOB_BATCH):
            async with self._blobs.collection_guard(exclusive=True):
                for digest, size in batch:
                    parsed = Digest.parse(digest)
                    if await self._metadata.forget_blob(parsed, cutoff):
                        await self._blobs.delete(parsed)
                        deleted.append((digest, size))
        return deleted


def _would_delete(work: Plan) -> Report:
    return Report(
        dry_run=True,
        manifests=[(row.repository, row.digest) for row in work.manifests],
        links=sum(len(digests) for digests in work.links.values()),
        blobs=sorted(work.blobs.items()),
        uploads=len(work.uploads),
    )


def _batches(
    items: list[tuple[str, int]], size: int
) -> Iterator[list[tuple[str, int]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _log(report: Report) -> None:
    logger.info(
        "garbage collection deleted %d manifests, %d links, %d blobs (%d bytes) "
        "and %d stale uploads",
        len(report.manifests),
        report.links,
        len(report.blobs),
        report.bytes,
        report.uploads,
    )
