"""lifecycle immutability quotas

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 15:40:22.336113
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lifecycle_policies",
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("target"),
    )
    op.create_table(
        "quotas",
        sa.Column("namespace", sa.String(length=255), nullable=False),
        sa.Column("limit_bytes", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("namespace"),
    )
    op.create_table(
        "tag_immutability",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("immutable", sa.Boolean(), nullable=False),
        sa.Column("exclusions", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("manifests", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("last_pulled_at", sa.DateTime(timezone=True), nullable=True)
        )

    with op.batch_alter_table("repository_blobs", schema=None) as batch_op:
        batch_op.create_index("ix_repository_blobs_digest", ["digest"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("repository_blobs", schema=None) as batch_op:
        batch_op.drop_index("ix_repository_blobs_digest")

    with op.batch_alter_table("manifests", schema=None) as batch_op:
        batch_op.drop_column("last_pulled_at")

    op.drop_table("tag_immutability")
    op.drop_table("quotas")
    op.drop_table("lifecycle_policies")
