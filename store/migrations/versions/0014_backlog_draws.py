"""backlog_draws: the review items a select run left waiting (its strategy did not pick them), each with the audit
rate it was drawn at, whether the audit took it and whether that audit is held out whatever the policy's training
share (a run of re-routed items only): the population and uniform sample that certify a backlog
(``routing.backlog``)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 16:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "backlog_draws",
        sa.Column("decision_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("item_id", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
        sa.Column("segment", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("run", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("audit_probability", sa.Float(), nullable=False),
        sa.Column("audited", sa.Boolean(), nullable=False),
        sa.Column("audit_held_out", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("cycle", sa.Integer(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["decision_id"], ["routing_decisions.id"]),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"]),
        sa.PrimaryKeyConstraint("decision_id"),
    )
    op.create_index(op.f("ix_backlog_draws_run"), "backlog_draws", ["run", "segment"])


def downgrade() -> None:
    op.drop_index(op.f("ix_backlog_draws_run"), table_name="backlog_draws")
    op.drop_table("backlog_draws")
