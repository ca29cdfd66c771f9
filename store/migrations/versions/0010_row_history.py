"""row_history: every earlier version of an annotation or a label (the old row, when and why it was replaced), so
their history is append-only while their tables hold the current answer and label

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 12:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "row_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("table_name", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("row_key", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
        sa.Column("old", sa.JSON(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("replaced_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_row_history_key", "row_history", ["table_name", "row_key"])


def downgrade() -> None:
    op.drop_index("ix_row_history_key", table_name="row_history")
    op.drop_table("row_history")
