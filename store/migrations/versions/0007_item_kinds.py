"""items of LLM pipelines: each item's kind (classification, generation, pairwise, extraction) and the payload of
the kinds that are not a classification

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 09:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False,
                                   server_default="classification"))
        batch.add_column(sa.Column("payload", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.drop_column("payload")
        batch.drop_column("kind")
