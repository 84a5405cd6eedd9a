"""The metadata of pull-through caches: their counters and what they hold."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select

from dockyard.core.digest import Digest
from dockyard.core.names import namespace_of
from dockyard.metadata.schema import (
    manifest_blobs,
    manifests,
    repositories,
    repository_blobs,
    upstream_counters,
)
from dockyard.metadata.store import SqlMetadataStore, _in_thread, _now, utc


@dataclass(frozen=True, slots=True)
class Counters:
    hits: int = 0
    misses: int = 0
    failures: int = 0
    last_failure: str | None = None
    last_failure_at: datetime | None = None


class MirrorStore:
    def __init__(self, store: SqlMetadataStore) -> None:
        self._store = store

    @_in_thread
    def add(
        self,
        upstream: str,
        hits: int,
        misses: int,
        failures: int,
        last_failure: str | None,
    ) -> None:
        """Add to the upstream's counters; `last_failure` replaces the last."""
        values: dict[str, object] = {
            "hits": hits,
            "misses": misses,
            "failures": failures,
        }
        if last_failure is not None:
            values |= {"last_failure": last_failure, "last_failure_at": _now()}
        insert = self._store._insert(upstream_counters).values(
            upstream=upstream, **values
        )
        table = upstream_counters.c
        added = {
            "hits": table.hits + insert.excluded.hits,
            "misses": table.misses + insert.excluded.misses,
            "failures": table.failures + insert.excluded.failures,
        }
        if last_failure is not None:
            added |= {
                "last_failure": insert.excluded.last_failure,
                "last_failure_at": insert.excluded.last_failure_at,
            }
        statement = insert.on_conflict_do_update(
            index_elements=[table.upstream], set_=added
        )
        # Counters are no answer any cache keeps.
        with self._store._writing(cached=False) as connection:
            connection.execute(statement)

    @_in_thread
    def counters(self, upstream: str) -> Counters:
        query = select(
            upstream_counters.c.hits,
            upstream_counters.c.misses,
            upstream_counters.c.failures,
            upstream_counters.c.last_failure,
            upstream_counters.c.last_failure_at,
        ).where(upstream_counters.c.upstream == upstream)
        with self._store._reading() as connection:
            row = connection.execute(query).first()
        if row is None:
            return Counters()
        failed_at = utc(row.last_failure_at) if row.last_failure_at else None
        return Counters(row.hits, row.misses, row.failures, row.last_failure, failed_at)

    @_in_thread
    def lists_cached_blob(self, repository: str, digest: Digest) -> bool:
        """Whether a manifest of the cache's repository lists the blob, and
        another repository of the same cache holds it: the upstream showed
        both that the image has the blob and that the bytes are its own."""
        listed = (
            select(manifest_blobs.c.digest)
            .select_from(repositories)
            .join(manifests, manifests.c.repository_id == repositories.c.id)
            .join(manifest_blobs, manifest_blobs.c.manifest_id == manifests.c.id)
            .where(
                repositories.c.name == repository,
                manifest_blobs.c.digest == str(digest),
            )
            .limit(1)
        )
        namespace = namespace_of(repository)
        held = (
            select(repository_blobs.c.digest)
            .join(repositories, repositories.c.id == repository_blobs.c.repository_id)
            .where(
                repository_blobs.c.digest == str(digest),
                repositories.c.name.startswith(namespace + "/", autoescape=True),
            )
            .limit(1)
        )
        with self._store._reading() as connection:
            if connection.execute(listed).first() is None:
                return False
            return connection.execute(held).first() is not None

    @_in_thread
    def cached_images(self, namespace: str) -> tuple[int, int]:
        """Repositories and manifests stored under the namespace."""
        under = or_(
            repositories.c.name == namespace,
            repositories.c.name.startswith(namespace + "/", autoescape=True),
        )
        query = (
            select(
                func.count(func.distinct(repositories.c.id)),
                func.count(manifests.c.id),
            )
            .select_from(repositories)
            .join(manifests, manifests.c.repository_id == repositories.c.id)
            .where(under)
        )
        with self._store._reading() as connection:
            count_repositories, count_manifests = connection.execute(query).one()
        return int(count_repositories), int(count_manifests)
