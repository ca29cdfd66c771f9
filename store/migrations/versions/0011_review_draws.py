"""review_draws: each routing decision's draw for review under the probabilistic strategy (its known probability,
drawn, sent to people), so that every review label can be weighted by the inverse of its probability

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "review_draws",
        sa.Column("decision_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("item_id", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
        sa.Column("probability", sa.Float(), nullable=False),
        sa.Column("drawn", sa.Boolean(), nullable=False),
        sa.Column("labelled", sa.Boolean(), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["decision_id"], ["routing_decisions.id"]),
        sa.ForeignKeyConstraint(["item_id"], ["items.id"]),
        sa.PrimaryKeyConstraint("decision_id"),
    )
    op.create_index(op.f("ix_review_draws_item_id"), "review_draws", ["item_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_review_draws_item_id"), table_name="review_draws")
    op.drop_table("review_draws")
