"""several annotators per task, the expert queue, agreement on resolved labels

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("review_tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("overlap", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("queue", sa.String(length=16), nullable=False, server_default="review"))
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.add_column(sa.Column("agreement", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("annotator_count", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.drop_column("annotator_count")
        batch_op.drop_column("agreement")
    with op.batch_alter_table("review_tasks", schema=None) as batch_op:
        batch_op.drop_column("queue")
        batch_op.drop_column("overlap")
