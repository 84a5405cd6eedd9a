"""`MetadataStore` on SQLAlchemy Core, for SQLite and PostgreSQL alike.

Queries run synchronously on a worker thread; each public method is one short
transaction. On SQLite, writes begin with `BEGIN IMMEDIATE` so that concurrent
writers from several server processes queue on the busy timeout instead of
failing when a read lock cannot be upgraded.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

import anyio.to_thread
from sqlalchemy import (
    Connection,
    create_engine,
    delete,
    event,
    exists,
    func,
    or_,
    select,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Engine, Row

from dockyard.core.digest import Digest
from dockyard.core.errors import TagImmutable, missing_references
from dockyard.core.names import namespace_of
from dockyard.core.ports import (
    AuditEvent,
    NewManifest,
    Referrer,
    StoredManifest,
    UploadRecord,
)
from dockyard.core.settings import TagRule, Usage
from dockyard.metadata.schema import (
    audit_events,
    blobs,
    manifest_blobs,
    manifest_children,
    manifests,
    quotas,
    repositories,
    repository_blobs,
    tag_immutability,
    tags,
    uploads,
)

P = ParamSpec("P")
R = TypeVar("R")


def _in_thread(
    method: Callable[P, R],
) -> Callable[P, Coroutine[Any, Any, R]]:
    @functools.wraps(method)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        call = functools.partial(method, *args, **kwargs)
        return await anyio.to_thread.run_sync(call)

    return run


def create_db_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so `on_begin` decides.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # Sync the log at every commit: a client that got its 201 for a tag
        # keeps it through a power cut, as it keeps the blobs (NORMAL would
        # sync only at checkpoints). Tag PUTs measured no slower for it.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Connection) -> None:
        writing = connection.get_execution_options().get("writing", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")


def _now() -> datetime:
    return datetime.now(UTC)


def utc(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored one is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def insert_audit_event(connection: Connection, event: AuditEvent) -> None:
    """Add the event to the audit trail in the caller's transaction."""
    detail = json.dumps(event.detail) if event.detail is not None else None
    connection.execute(
        audit_events.insert().values(
            occurred_at=event.occurred_at,
            action=event.action,
            actor=event.actor,
            address=event.address,
            target=event.target,
            outcome=event.outcome,
            detail=detail,
        )
    )


class SqlMetadataStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert: Callable[..., Any]
        if engine.dialect.name == "sqlite":
            self._insert = sqlite.insert
        else:
            # Imported only when used: a few MiB per process otherwise.
            from sqlalchemy.dialects import postgresql

            self._insert = postgresql.insert

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        with self.engine.connect() as connection:
            yield connection

    @contextmanager
    def _writing(self, cached: bool = True) -> Iterator[Connection]:
        """A write transaction; `cached=False` if it changes nothing cached."""
        with self.engine.connect() as connection:
            connection = connection.execution_options(writing=True)
            with connection.begin():
                yield connection
        if cached:
            self._committed()

    def _committed(self) -> None:
        """Called after each commit that may change what readers cached."""

    def _rule_committed(self) -> None:
        """Called after each commit that may change a tag rule."""

    def _repository_id(self, connection: Connection, name: str) -> int | None:
        query = select(repositories.c.id).where(repositories.c.name == name)
        return connection.scalar(query)

    def _ensure_repository(self, connection: Connection, name: str) -> int:
        # Look first: nearly every write is to a repository that exists.
        repository_id = self._repository_id(connection, name)
        if repository_id is not None:
            return repository_id
        statement = self._insert(repositories).values(name=name, created_at=_now())
        connection.execute(statement.on_conflict_do_nothing())
        repository_id = self._repository_id(connection, name)
        assert repository_id is not None
        return repository_id

    # Repositories and blobs

    @_in_thread
    def repository_exists(self, name: str) -> bool:
        with self._reading() as connection:
            return self._repository_id(connection, name) is not None

    @_in_thread
    def linked_blob_size(self, repository: str, digest: Digest) -> int | None:
        query = (
            select(blobs.c.size)
            .join(repository_blobs, repository_blobs.c.digest == blobs.c.digest)
            .join(repositories, repositories.c.id == repository_blobs.c.repository_id)
            .where(repositories.c.name == repository, blobs.c.digest == str(digest))
        )
        with self._reading() as connection:
            return connection.scalar(query)

    @_in_thread
    def link_blob(self, repository: str, digest: Digest, size: int) -> None:
        now = _now()
        blob = self._insert(blobs).values(digest=str(digest), size=size, created_at=now)
        with self._writing() as connection:
            repository_id = self._ensure_repository(connection, repository)
            connection.execute(blob.on_conflict_do_nothing())
            link = self._insert(repository_blobs).values(
                repository_id=repository_id, digest=str(digest), linked_at=now
            )
            # Linking again renews the garbage collector's grace period.
            connection.execute(
                link.on_conflict_do_update(
                    index_elements=[
                        repository_blobs.c.repository_id,
                        repository_blobs.c.digest,
                    ],
                    set_={"linked_at": now},
                )
            )

    @_in_thread
    def renew_link(self, repository: str, digest: Digest, older_than: datetime) -> None:
        link = (
            select(repository_blobs.c.repository_id, repository_blobs.c.linked_at)
            .join(repositories, repositories.c.id == repository_blobs.c.repository_id)
            .where(
                repositories.c.name == repository,
                repository_blobs.c.digest == str(digest),
            )
        )
        with self._reading() as connection:
            row = connection.execute(link).first()
        # Read first: most links are fresh, and a write would queue behind
        # every other writer.
        if row is None or utc(row.linked_at) >= older_than:
            return
        renew = (
            repository_blobs.update()
            .where(
                repository_blobs.c.repository_id == row.repository_id,
                repository_blobs.c.digest == str(digest),
            )
            .values(linked_at=_now())
        )
        with self._writing(cached=False) as connection:
            connection.execute(renew)

    @_in_thread
    def unlink_blob(self, repository: str, digest: Digest) -> bool:
        with self._writing() as connection:
            repository_id = self._repository_id(connection, repository)
            statement = repository_blobs.delete().where(
                repository_blobs.c.repository_id == repository_id,
                repository_blobs.c.digest == str(digest),
            )
            return connection.execute(statement).rowcount > 0

    # Uploads

    @_in_thread
    def create_upload(self, record: UploadRecord) -> None:
        with self._writing(cached=False) as connection:
            connection.execute(
                uploads.insert().values(
                    id=record.upload_id,
                    repository=record.repository,
                    algorithm=record.algorithm,
                    created_at=record.created_at,
                )
            )

    @_in_thread
    def get_upload(self, upload_id: str) -> UploadRecord | None:
        query = select(uploads).where(uploads.c.id == upload_id)
        with self._reading() as connection:
            row = connection.execute(query).first()
        if row is None:
            return None
        return UploadRecord(row.id, row.repository, row.algorithm, row.created_at)

    @_in_thread
    def delete_upload(self, upload_id: str) -> None:
        with self._writing(cached=False) as connection:
            connection.execute(uploads.delete().where(uploads.c.id == upload_id))

    # Manifests and tags

    @_in_thread
    def put_manifest(
        self,
        repository: str,
        manifest: NewManifest,
        tag_names: Sequence[str],
        frozen_tags: Sequence[str] = (),
        audit: AuditEvent | None = None,
    ) -> None:
        with self._writing() as connection:
            repository_id = self._ensure_repository(connection, repository)
            self._check_still_present(connection, repository_id, repository, manifest)
            self._check_frozen(
                connection, repository_id, repository, manifest, frozen_tags
            )
            manifest_id = self._insert_manifest(connection, repository_id, manifest)
            for name in tag_names:
                self._point_tag(connection, repository_id, name, manifest_id)
            if audit is not None:
                insert_audit_event(connection, audit)

    def _check_frozen(
        self,
        connection: Connection,
        repository_id: int,
        repository: str,
        manifest: NewManifest,
        frozen_tags: Sequence[str],
    ) -> None:
        if not frozen_tags:
            return
        query = (
            select(tags.c.name, manifests.c.digest)
            .join(manifests, manifests.c.id == tags.c.manifest_id)
            .where(
                tags.c.repository_id == repository_id,
                tags.c.name.in_(list(frozen_tags)),
            )
        )
        for name, digest in connection.execute(query):
            if digest != str(manifest.digest):
                raise TagImmutable(
                    f"tag {name!r} of {repository} is immutable and points at "
                    f"{digest}; push under a new tag"
                )

    def _check_still_present(
        self,
        connection: Connection,
        repository_id: int,
        repository: str,
        manifest: NewManifest,
    ) -> None:
        """The registry checked the references before; garbage collection may
        have removed one since. This transaction decides."""
        checks = (
            (manifest.required_blobs, repository_blobs, "blob"),
            (manifest.required_children, manifests, "manifest"),
        )
        for wanted, table, kind in checks:
            if not wanted:
                continue
            query = select(table.c.digest).where(
                table.c.repository_id == repository_id,
                table.c.digest.in_([str(d) for d in wanted]),
            )
            # FOR SHARE on PostgreSQL holds off a collector's delete until
            # this commits; SQLite's writers are serialised already.
            present = set(connection.scalars(query.with_for_update(read=True)))
            missing = [d for d in dict.fromkeys(wanted) if str(d) not in present]
            if missing:
                raise missing_references(repository, kind, missing)

    def _insert_manifest(
        self, connection: Connection, repository_id: int, manifest: NewManifest
    ) -> int:
        # Renew first: a manifest pushed again, as under another tag, then
        # costs one statement, and a new one two.
        renewed = self._renew_manifest(connection, repository_id, manifest.digest)
        if renewed is not None:
            return renewed

        now = _now()
        statement = self._insert(manifests).values(
            repository_id=repository_id,
            digest=str(manifest.digest),
            media_type=manifest.media_type,
            artifact_type=manifest.artifact_type,
            subject=str(manifest.subject) if manifest.subject else None,
            content=manifest.content,
            pushed_at=now,
            last_pushed_at=now,
        )
        inserted = connection.execute(
            statement.on_conflict_do_nothing().returning(manifests.c.id)
        ).scalar()
        if inserted is None:
            # A concurrent identical PUT inserted it since: same bytes.
            renewed = self._renew_manifest(connection, repository_id, manifest.digest)
            assert renewed is not None
            return renewed

        self._insert_references(connection, manifest_blobs, inserted, manifest.blobs)
        self._insert_references(
            connection, manifest_children, inserted, manifest.children
        )
        return int(inserted)

    def _renew_manifest(
        self, connection: Connection, repository_id: int, digest: Digest
    ) -> int | None:
        """Restart the garbage collector's grace period for the manifest: a
        client pushing an index again pushes (or checks) its children first.
        Its id, or None if the repository lacks it."""
        statement = (
            manifests.update()
            .where(
                manifests.c.repository_id == repository_id,
                manifests.c.digest == str(digest),
            )
            .values(last_pushed_at=_now())
            .returning(manifests.c.id)
        )
        return connection.execute(statement).scalar()

    @_in_thread
    def renew_manifest(self, repository: str, digest: Digest) -> None:
        self._stamp_manifest(repository, digest, last_pushed_at=_now())

    def _stamp_manifest(
        self, repository: str, digest: Digest, **times: datetime
    ) -> None:
        """Set time columns that no cache reads, so no reader is invalidated."""
        repository_id = (
            select(repositories.c.id)
            .where(repositories.c.name == repository)
            .scalar_subquery()
        )
        statement = (
            manifests.update()
            .where(
                manifests.c.repository_id == repository_id,
                manifests.c.digest == str(digest),
            )
            .values(**times)
        )
        with self._writing(cached=False) as connection:
            connection.execute(statement)

    def _insert_references(
        self,
        connection: Connection,
        table: Any,
        manifest_id: int,
        digests: Sequence[Digest],
    ) -> None:
        rows = [
            {"manifest_id": manifest_id, "digest": str(d)}
            for d in dict.fromkeys(digests)
        ]
        if rows:
            connection.execute(table.insert(), rows)

    def _point_tag(
        self, connection: Connection, repository_id: int, name: str, manifest_id: int
    ) -> None:
        now = _now()
        statement = self._insert(tags).values(
            repository_id=repository_id,
            name=name,
            manifest_id=manifest_id,
            updated_at=now,
        )
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=[tags.c.repository_id, tags.c.name],
                set_={"manifest_id": manifest_id, "updated_at": now},
            )
        )

    @_in_thread
    def get_manifest(
        self, repository: str, reference: str | Digest
    ) -> StoredManifest | None:
        columns = (manifests.c.digest, manifests.c.media_type, manifests.c.content)
        query = select(*columns).join(
            repositories, repositories.c.id == manifests.c.repository_id
        )
        if isinstance(reference, Digest):
            query = query.where(manifests.c.digest == str(reference))
        else:
            query = query.join(tags, tags.c.manifest_id == manifests.c.id).where(
                tags.c.name == reference
            )
        query = query.where(repositories.c.name == repository)

        with self._reading() as connection:
            row = connection.execute(query).first()
        if row is None:
            return None
        return StoredManifest(Digest.parse(row.digest), row.media_type, row.content)

    @_in_thread
    def delete_manifest(self, repository: str, digest: Digest) -> bool:
        with self._writing() as connection:
            repository_id = self._repository_id(connection, repository)
            manifest_id = connection.scalar(
                select(manifests.c.id).where(
                    manifests.c.repository_id == repository_id,
                    manifests.c.digest == str(digest),
                )
            )
            if manifest_id is None:
                return False
            connection.execute(tags.delete().where(tags.c.manifest_id == manifest_id))
            for table in (manifest_blobs, manifest_children):
                connection.execute(
                    table.delete().where(table.c.manifest_id == manifest_id)
                )
            connection.execute(manifests.delete().where(manifests.c.id == manifest_id))
            return True

    @_in_thread
    def delete_tag(self, repository: str, tag: str) -> bool:
        with self._writing() as connection:
            repository_id = self._repository_id(connection, repository)
            statement = tags.delete().where(
                tags.c.repository_id == repository_id, tags.c.name == tag
            )
            return connection.execute(statement).rowcount > 0

    @_in_thread
    def list_referrers(
        self,
        repository: str,
        subject: Digest,
        artifact_type: str | None,
        limit: int | None,
        last: str | None,
    ) -> list[Referrer]:
        columns = (
            manifests.c.digest,
            manifests.c.media_type,
            manifests.c.artifact_type,
            manifests.c.content,
        )
        query = (
            select(*columns)
            .join(repositories, repositories.c.id == manifests.c.repository_id)
            .where(
                repositories.c.name == repository,
                manifests.c.subject == str(subject),
            )
            .order_by(manifests.c.digest)
            .limit(limit)
        )
        if artifact_type is not None:
            query = query.where(manifests.c.artifact_type == artifact_type)
        if last is not None:
            query = query.where(manifests.c.digest > last)

        with self._reading() as connection:
            rows = connection.execute(query).all()
        return [
            Referrer(Digest.parse(r.digest), r.media_type, r.artifact_type, r.content)
            for r in rows
        ]

    # Listings

    @_in_thread
    def list_tags(
        self, repository: str, limit: int | None, last: str | None
    ) -> list[str]:
        name = self._ordered(tags.c.name)
        query = (
            select(tags.c.name)
            .join(repositories, repositories.c.id == tags.c.repository_id)
            .where(repositories.c.name == repository)
            .order_by(name)
            .limit(limit)
        )
        if last is not None:
            query = query.where(name > last)
        with self._reading() as connection:
            return _first_column(connection.execute(query).all())

    @_in_thread
    def list_repositories(self, limit: int | None, last: str | None) -> list[str]:
        name = self._ordered(repositories.c.name)
        has_manifest = exists().where(manifests.c.repository_id == repositories.c.id)
        query = (
            select(repositories.c.name).where(has_manifest).order_by(name).limit(limit)
        )
        if last is not None:
            query = query.where(name > last)
        with self._reading() as connection:
            return _first_column(connection.execute(query).all())

    @_in_thread
    def record_pull(self, repository: str, digest: Digest) -> None:
        # Pull times are read by lifecycle policies only.
        self._stamp_manifest(repository, digest, last_pulled_at=_now())

    # Settings, usage and whole repositories

    @_in_thread
    def tag_rule(self, repository: str) -> TagRule:
        names = [repository, namespace_of(repository)]
        query = select(tag_immutability).where(tag_immutability.c.name.in_(names))
        with self._reading() as connection:
            rows = {row.name: row for row in connection.execute(query)}
        for name in names:
            if name in rows:
                row = rows[name]
                return TagRule(bool(row.immutable), tuple(json.loads(row.exclusions)))
        return TagRule()

    @_in_thread
    def set_tag_rule(self, name: str, rule: TagRule) -> None:
        values = {
            "immutable": rule.immutable,
            "exclusions": json.dumps(list(rule.exclusions)),
            "updated_at": _now(),
        }
        statement = self._insert(tag_immutability).values(name=name, **values)
        with self._writing(cached=False) as connection:
            connection.execute(
                statement.on_conflict_do_update(
                    index_elements=[tag_immutability.c.name], set_=values
                )
            )
        self._rule_committed()

    @_in_thread
    def namespace_quota(self, namespace: str) -> int | None:
        query = select(quotas.c.limit_bytes).where(quotas.c.namespace == namespace)
        with self._reading() as connection:
            return connection.scalar(query)

    @_in_thread
    def set_quota(self, namespace: str, limit: int | None) -> None:
        with self._writing(cached=False) as connection:
            connection.execute(delete(quotas).where(quotas.c.namespace == namespace))
            if limit is not None:
                connection.execute(
                    quotas.insert().values(
                        namespace=namespace, limit_bytes=limit, updated_at=_now()
                    )
                )

    @_in_thread
    def usage(self, namespace: str) -> Usage:
        in_namespace = or_(
            repositories.c.name == namespace,
            repositories.c.name.startswith(namespace + "/", autoescape=True),
        )
        query = (
            select(
                func.coalesce(func.sum(blobs.c.size), 0),
                func.count(func.distinct(repositories.c.id)),
            )
            .select_from(repository_blobs)
            .join(blobs, blobs.c.digest == repository_blobs.c.digest)
            .join(repositories, repositories.c.id == repository_blobs.c.repository_id)
            .where(in_namespace)
        )
        with self._reading() as connection:
            total, count = connection.execute(query).one()
        return Usage(namespace, int(total), int(count))

    @_in_thread
    def repository_usage(self) -> list[Usage]:
        query = (
            select(repositories.c.name, func.coalesce(func.sum(blobs.c.size), 0))
            .select_from(repositories)
            .outerjoin(
                repository_blobs,
                repository_blobs.c.repository_id == repositories.c.id,
            )
            .outerjoin(blobs, blobs.c.digest == repository_blobs.c.digest)
            .group_by(repositories.c.name)
            .order_by(self._ordered(repositories.c.name))
        )
        with self._reading() as connection:
            return [Usage(name, int(size)) for name, size in connection.execute(query)]

    @_in_thread
    def delete_repository(self, name: str) -> list[str]:
        with self._writing() as connection:
            repository_id = self._repository_id(connection, name)
            upload_ids = list(
                connection.scalars(
                    select(uploads.c.id).where(uploads.c.repository == name)
                )
            )
            connection.execute(delete(uploads).where(uploads.c.repository == name))
            if repository_id is not None:
                # Tags, manifests, their references and links go by cascade.
                connection.execute(
                    delete(repositories).where(repositories.c.id == repository_id)
                )
        return upload_ids

    def _ordered(self, column: Any) -> Any:
        # The spec's lexical order is byte order; PostgreSQL would otherwise
        # sort by the database's locale.
        if self.engine.dialect.name == "postgresql":
            return column.collate("C")
        return column


def _first_column(rows: Sequence[Row[Any]]) -> list[Any]:
    # A third faster than `scalars()` for the 10,000 names of a large listing,
    # which a cold cache reads from the database.
    return [row[0] for row in rows]
