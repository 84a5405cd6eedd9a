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
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
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
    Index("ix_repository_blobs_digest", "digest"),
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
    # Written at most hourly per process: policies count pulls in days.
    Column("last_pulled_at", DateTime(timezone=True)),
    # The last push of these same bytes, or HEAD asking for them: the garbage
    # collector's grace period runs from here (policies use `pushed_at`).
    Column("last_pushed_at", DateTime(timezone=True)),
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

# Accounts and permissions (see dockyard.services.auth.permissions).

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("is_admin", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # Refresh tokens issued before this are no longer honoured.
    Column("credentials_changed_at", DateTime(timezone=True), nullable=False),
)

# A namespace is owned by the user of its name or is an organisation's.
namespaces = Table(
    "namespaces",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Public (anonymous pull) or private, set on a namespace or one repository.
visibility = Table(
    "visibility",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("public", Boolean, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

teams = Table(
    "teams",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

team_members = Table(
    "team_members",
    metadata,
    Column("team_id", ForeignKey("teams.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
)

# Actions on a namespace or repository glob, for one user or one team.
grants = Table(
    "grants",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE")),
    Column("team_id", ForeignKey("teams.id", ondelete="CASCADE")),
    Column("pattern", String(255), nullable=False),
    Column("actions", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Access tokens for CI and robots; only a hash of the secret is kept.
access_tokens = Table(
    "access_tokens",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE")),
    Column("secret_hash", String(128), nullable=False),
    Column("scopes", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Column("last_used_at", DateTime(timezone=True)),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("action", String(64), nullable=False),
    Column("actor", String(255), nullable=False),
    Column("address", String(64)),
    Column("target", String(1024)),
    Column("outcome", String(16), nullable=False),
    Column("detail", Text),
    Index("ix_audit_events_occurred_at", "occurred_at"),
)

# Lifecycle, immutability and quotas (issue: lifecycle policies and GC).

# Tag immutability for a repository or a whole namespace; the repository's
# own setting wins. `exclusions` is a JSON list of tag globs left mutable.
tag_immutability = Table(
    "tag_immutability",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("immutable", Boolean, nullable=False),
    Column("exclusions", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

quotas = Table(
    "quotas",
    metadata,
    Column("namespace", String(255), primary_key=True),
    Column("limit_bytes", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# An ECR-format lifecycle policy for a repository or a glob of repositories.
lifecycle_policies = Table(
    "lifecycle_policies",
    metadata,
    Column("target", String(255), primary_key=True),
    Column("document", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# What each pull-through cache served: from the cache (hits) or fetched from
# its upstream (misses), and the upstream's last failure.
upstream_counters = Table(
    "upstream_counters",
    metadata,
    Column("upstream", String(255), primary_key=True),
    Column("hits", BigInteger, nullable=False),
    Column("misses", BigInteger, nullable=False),
    Column("failures", BigInteger, nullable=False),
    Column("last_failure", Text, nullable=True),
    Column("last_failure_at", DateTime(timezone=True), nullable=True),
)
