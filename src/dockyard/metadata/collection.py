"""The metadata side of garbage collection: a snapshot to plan from, and
deletions that re-check, inside their own transaction, that what they delete
is still garbage.

Planning reads every manifest, tag, reference and link once; nothing reads a
blob file, so the cost grows with the metadata, not with the bytes stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, delete, exists, func, select

from dockyard.core.digest import Digest
from dockyard.metadata.schema import (
    blobs,
    lifecycle_policies,
    manifest_blobs,
    manifest_children,
    manifests,
    repositories,
    repository_blobs,
    tags,
    uploads,
)
from dockyard.metadata.store import SqlMetadataStore, _in_thread, utc

# Rows from before migration 0004 have no last_pushed_at.
_LAST_PUSHED = func.coalesce(manifests.c.last_pushed_at, manifests.c.pushed_at)


@dataclass(slots=True)
class ManifestRow:
    id: int
    repository: str
    digest: str
    subject: str | None
    pushed_at: datetime
    tagged: bool = False
    children: list[str] = field(default_factory=list)
    blobs: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Snapshot:
    """What garbage collection plans from, read in one transaction."""

    manifests: list[ManifestRow]
    # (repository, digest) -> linked_at
    links: dict[tuple[str, str], datetime]
    # digest -> (size, created_at)
    blobs: dict[str, tuple[int, datetime]]
    # upload id -> created_at
    uploads: dict[str, datetime]


def _listed_by_index() -> Any:
    """True for a manifest some index of its repository lists."""
    parent = manifests.alias("parent")
    return exists().where(
        manifest_children.c.manifest_id == parent.c.id,
        parent.c.repository_id == manifests.c.repository_id,
        manifest_children.c.digest == manifests.c.digest,
    )


class CollectionStore:
    def __init__(self, store: SqlMetadataStore) -> None:
        self._store = store

    @_in_thread
    def snapshot(self) -> Snapshot:
        return self._snapshot(None)

    @_in_thread
    def repository_manifests(self, repository: str) -> list[ManifestRow]:
        return self._snapshot(repository).manifests

    def _snapshot(self, repository: str | None) -> Snapshot:
        query = select(
            manifests.c.id,
            repositories.c.name,
            manifests.c.digest,
            manifests.c.subject,
            _LAST_PUSHED.label("pushed_at"),
        ).join(repositories, repositories.c.id == manifests.c.repository_id)
        if repository is not None:
            query = query.where(repositories.c.name == repository)
        with self._store._reading() as connection, connection.begin():
            rows = connection.execute(query)
            found = {
                row.id: ManifestRow(
                    row.id, row.name, row.digest, row.subject, utc(row.pushed_at)
                )
                for row in rows
            }
            for (manifest_id,) in connection.execute(select(tags.c.manifest_id)):
                if manifest_id in found:
                    found[manifest_id].tagged = True
            for row in connection.execute(select(manifest_children)):
                if row.manifest_id in found:
                    found[row.manifest_id].children.append(row.digest)
            if repository is not None:
                return Snapshot(list(found.values()), {}, {}, {})
            for row in connection.execute(select(manifest_blobs)):
                found[row.manifest_id].blobs.append(row.digest)

            link_rows = connection.execute(
                select(
                    repositories.c.name,
                    repository_blobs.c.digest,
                    repository_blobs.c.linked_at,
                ).join(
                    repositories, repositories.c.id == repository_blobs.c.repository_id
                )
            )
            links = {(r.name, r.digest): utc(r.linked_at) for r in link_rows}
            blob_rows = connection.execute(select(blobs))
            stored = {r.digest: (r.size, utc(r.created_at)) for r in blob_rows}
            upload_rows = connection.execute(select(uploads.c.id, uploads.c.created_at))
            open_uploads = {r.id: utc(r.created_at) for r in upload_rows}
        return Snapshot(list(found.values()), links, stored, open_uploads)

    @_in_thread
    def delete_untagged(self, manifest_id: int, cutoff: datetime) -> bool:
        """Delete a manifest if it is still untagged, unlisted and old."""
        listed_by_index = _listed_by_index()
        tagged = exists().where(tags.c.manifest_id == manifests.c.id)
        statement = delete(manifests).where(
            manifests.c.id == manifest_id,
            cutoff > _LAST_PUSHED,
            ~tagged,
            ~listed_by_index,
        )
        # Its references go with it (ON DELETE CASCADE).
        with self._store._writing() as connection:
            return connection.execute(statement).rowcount > 0

    @_in_thread
    def expire_manifest(
        self, repository: str, digest: str, tags_seen: Sequence[str], cutoff: datetime
    ) -> bool:
        """Delete an image a lifecycle policy chose, if it still has exactly
        the tags it was chosen with, no index lists it, and it is older than
        `cutoff`; its tags go with it."""
        listed_by_index = _listed_by_index()
        repository_id = (
            select(repositories.c.id)
            .where(repositories.c.name == repository)
            .scalar_subquery()
        )
        with self._store._writing() as connection:
            manifest_id = connection.scalar(
                select(manifests.c.id).where(
                    manifests.c.repository_id == repository_id,
                    manifests.c.digest == digest,
                    cutoff > _LAST_PUSHED,
                    ~listed_by_index,
                )
            )
            if manifest_id is None:
                return False
            current = connection.scalars(
                select(tags.c.name).where(tags.c.manifest_id == manifest_id)
            )
            if set(current) != set(tags_seen):
                return False
            statement = delete(manifests).where(manifests.c.id == manifest_id)
            return connection.execute(statement).rowcount > 0

    @_in_thread
    def unlink_unreferenced(
        self, repository: str, digests: Sequence[str], cutoff: datetime
    ) -> int:
        """Drop links no manifest of the repository references, if old."""
        referenced = exists().where(
            manifest_blobs.c.digest == repository_blobs.c.digest,
            manifests.c.id == manifest_blobs.c.manifest_id,
            manifests.c.repository_id == repository_blobs.c.repository_id,
        )
        repository_id = (
            select(repositories.c.id)
            .where(repositories.c.name == repository)
            .scalar_subquery()
        )
        statement = delete(repository_blobs).where(
            repository_blobs.c.repository_id == repository_id,
            repository_blobs.c.digest.in_(list(digests)),
            repository_blobs.c.linked_at < cutoff,
            ~referenced,
        )
        with self._store._writing() as connection:
            return int(connection.execute(statement).rowcount)

    @_in_thread
    def forget_blob(self, digest: Digest, cutoff: datetime) -> bool:
        """Delete a blob's row if no repository links it and it is old.

        Call with the blob store's collection guard held exclusively, and
        delete the bytes before letting go of it.
        """
        linked = exists().where(repository_blobs.c.digest == blobs.c.digest)
        statement = delete(blobs).where(
            and_(blobs.c.digest == str(digest), blobs.c.created_at < cutoff, ~linked)
        )
        with self._store._writing() as connection:
            return connection.execute(statement).rowcount > 0

    @_in_thread
    def forget_upload(self, upload_id: str) -> None:
        with self._store._writing(cached=False) as connection:
            connection.execute(delete(uploads).where(uploads.c.id == upload_id))


@dataclass(slots=True)
class ImageRow:
    """A top-level manifest as lifecycle policies see it: an image or index
    that no index of its repository lists, and that refers to nothing."""

    digest: str
    tags: tuple[str, ...]
    pushed_at: datetime
    last_pulled_at: datetime | None
    size: int
    # Pushed again (or cached again) since; the grace period counts from it.
    last_pushed_at: datetime


class LifecycleStore:
    def __init__(self, store: SqlMetadataStore) -> None:
        self._store = store

    @_in_thread
    def put_policy(self, target: str, document: str) -> None:
        values = {"document": document, "updated_at": datetime.now(UTC)}
        with self._store._writing(cached=False) as connection:
            connection.execute(
                delete(lifecycle_policies).where(lifecycle_policies.c.target == target)
            )
            connection.execute(
                lifecycle_policies.insert().values(target=target, **values)
            )

    @_in_thread
    def policies(self) -> dict[str, str]:
        query = select(lifecycle_policies.c.target, lifecycle_policies.c.document)
        with self._store._reading() as connection:
            return {row.target: row.document for row in connection.execute(query)}

    @_in_thread
    def delete_policy(self, target: str) -> bool:
        statement = delete(lifecycle_policies).where(
            lifecycle_policies.c.target == target
        )
        with self._store._writing(cached=False) as connection:
            return connection.execute(statement).rowcount > 0

    @_in_thread
    def repositories(self) -> list[str]:
        with self._store._reading() as connection:
            return list(connection.scalars(select(repositories.c.name)))

    @_in_thread
    def images(self, repository: str) -> list[ImageRow]:
        with self._store._reading() as connection, connection.begin():
            rows = connection.execute(
                select(
                    manifests.c.id,
                    manifests.c.digest,
                    manifests.c.subject,
                    manifests.c.pushed_at,
                    manifests.c.last_pulled_at,
                    _LAST_PUSHED.label("last_pushed_at"),
                )
                .join(repositories, repositories.c.id == manifests.c.repository_id)
                .where(repositories.c.name == repository)
            ).all()
            ids = [row.id for row in rows]
            tag_rows = connection.execute(
                select(tags.c.manifest_id, tags.c.name).where(
                    tags.c.manifest_id.in_(ids)
                )
            )
            tagged: dict[int, list[str]] = {}
            for row in tag_rows:
                tagged.setdefault(row.manifest_id, []).append(row.name)
            children = connection.execute(
                select(
                    manifest_children.c.manifest_id, manifest_children.c.digest
                ).where(manifest_children.c.manifest_id.in_(ids))
            ).all()
            sizes = dict(
                connection.execute(
                    select(manifest_blobs.c.manifest_id, func.sum(blobs.c.size))
                    .join(blobs, blobs.c.digest == manifest_blobs.c.digest)
                    .where(manifest_blobs.c.manifest_id.in_(ids))
                    .group_by(manifest_blobs.c.manifest_id)
                ).all()
            )
        return _top_level(rows, tagged, children, sizes)


def _top_level(
    rows: Sequence[Any],
    tagged: dict[int, list[str]],
    children: Sequence[Any],
    sizes: dict[int, int],
) -> list[ImageRow]:
    by_digest = {row.digest: row for row in rows}
    listed = {child.digest for child in children}
    child_sizes: dict[int, int] = {}
    for child in children:
        row = by_digest.get(child.digest)
        if row is not None:
            child_sizes[child.manifest_id] = child_sizes.get(
                child.manifest_id, 0
            ) + int(sizes.get(row.id) or 0)
    return [
        ImageRow(
            row.digest,
            tuple(sorted(tagged.get(row.id, []))),
            utc(row.pushed_at),
            utc(row.last_pulled_at) if row.last_pulled_at else None,
            int(sizes.get(row.id) or 0) + child_sizes.get(row.id, 0),
            utc(row.last_pushed_at),
        )
        for row in rows
        if row.digest not in listed and row.subject is None
    ]
