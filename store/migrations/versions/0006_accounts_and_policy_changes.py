"""console accounts with roles, and policy changes (proposed, approved, applied, rolled back)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "accounts",
        sa.Column("username", text(length=256), nullable=False),
        sa.Column("role", text(length=16), nullable=False),
        sa.Column("password_hash", text(length=512), nullable=True),
        sa.Column("display_name", text(length=256), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("username"),
    )
    op.create_table(
        "policy_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", text(length=16), nullable=False),
        sa.Column("version", text(length=64), sa.ForeignKey("policy_versions.version"), nullable=False),
        sa.Column("base_version", text(length=64), nullable=True),
        sa.Column("author", text(length=256), nullable=False),
        sa.Column("comment", text(), nullable=False),
        sa.Column("status", text(length=16), nullable=False),
        sa.Column("approval_segments", sa.JSON(), nullable=False),
        sa.Column("approver", text(length=256), nullable=True),
        sa.Column("decision_comment", text(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("decided_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_policy_changes_status", "policy_changes", ["status"])


def downgrade() -> None:
    op.drop_index("ix_policy_changes_status", table_name="policy_changes")
    op.drop_table("policy_changes")
    op.drop_table("accounts")
