"""Drop ix_predictions_item_id and ix_routing_decisions_item_id: the unique constraints on (item_id, model_version)
and (item_id, policy_version, model_version) lead with item_id and serve every lookup by item, so each insert
maintained two indexes for the work of one

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 14:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch_op:
        batch_op.drop_index("ix_predictions_item_id")
    with op.batch_alter_table("routing_decisions") as batch_op:
        batch_op.drop_index("ix_routing_decisions_item_id")


def downgrade() -> None:
    with op.batch_alter_table("routing_decisions") as batch_op:
        batch_op.create_index("ix_routing_decisions_item_id", ["item_id"], unique=False)
    with op.batch_alter_table("predictions") as batch_op:
        batch_op.create_index("ix_predictions_item_id", ["item_id"], unique=False)
