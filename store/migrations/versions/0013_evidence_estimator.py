"""threshold_evidence.estimator and labels_by_reason: each certification says which test stood behind it and how
many labels of each kind (seed, audit, gold) it used; rows written before say clopper_pearson, as they were

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 14:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("threshold_evidence") as batch_op:
        batch_op.add_column(sa.Column("estimator", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False,
                                      server_default="clopper_pearson"))
        batch_op.add_column(sa.Column("labels_by_reason", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("threshold_evidence") as batch_op:
        batch_op.drop_column("labels_by_reason")
        batch_op.drop_column("estimator")
