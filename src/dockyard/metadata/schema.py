"""The metadata schema, shared by SQLite and PostgreSQL through Alembic.

Relations, named as the spec names them:

- a repository links blobs (`repository_blobs`): a blob is readable through a
  repository only once pushed or mounted into it;
- a manifest belongs to one repository and references its config and layer
  blobs (`manifest_blobs`) or, for an index, its child manifests
  (`manifest_children`); it may name a `subject`;
- a tag points at one manifest of its repository;
- an upload is an open session whose bytes the blob store stages.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

metadata = MetaData()

DIGEST = String(160)

repositories = Table(
    "repositories",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

blobs = Table(
    "blobs",
    metadata,
    Column("digest", DIGEST, primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

repository_blobs = Table(
    "repository_blobs",
    metadata,
    Column(
        "repository_id",
        ForeignKey("repositories.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("digest", ForeignKey("blobs.digest"), primary_key=True),
    Column("linked_at", DateTime(timezone=True), nullable=False),
)

manifests = Table(
    "manifests",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "repository_id",
        ForeignKey("repositories.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("digest", DIGEST, nullable=False),
    Column("media_type", String(255), nullable=False),
    Column("artifact_type", String(255)),
    Column("subject", DIGEST),
    Column("content", LargeBinary, nullable=False),
    Column("pushed_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("repository_id", "digest", name="uq_manifests_repository_digest"),
    Index("ix_manifests_repository_subject", "repository_id", "subject"),
)

manifest_blobs = Table(
    "manifest_blobs",
    metadata,
    Column(
        "manifest_id", ForeignKey("manifests.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("digest", DIGEST, primary_key=True),
    Index("ix_manifest_blobs_digest", "digest"),
)

manifest_children = Table(
    "manifest_children",
    metadata,
    Column(
        "manifest_id", ForeignKey("manifests.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("digest", DIGEST, primary_key=True),
    Index("ix_manifest_children_digest", "digest"),
)

tags = Table(
    "tags",
    metadata,
    Column(
        "repository_id",
        ForeignKey("repositories.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("name", String(128), primary_key=True),
    Column(
        "manifest_id", ForeignKey("manifests.id", ondelete="CASCADE"), nullable=False
    ),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

uploads = Table(
    "uploads",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("repository", String(255), nullable=False),
    Column("algorithm", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
