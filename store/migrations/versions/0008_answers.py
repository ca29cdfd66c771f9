"""answers beyond a label: the correction, issue categories and severity of a generated response, the side chosen
between two responses, the corrected fields of an extraction; kept on each annotation and on the resolved label

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 10:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("annotations") as batch:
        batch.add_column(sa.Column("answer", sa.JSON(), nullable=True))
    with op.batch_alter_table("labels") as batch:
        batch.add_column(sa.Column("answer", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("labels") as batch:
        batch.drop_column("answer")
    with op.batch_alter_table("annotations") as batch:
        batch.drop_column("answer")
