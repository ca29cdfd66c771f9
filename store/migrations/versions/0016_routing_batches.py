"""A decision row carries only what varies per item; what its route run held constant for a group of items (the
segment, policy and model versions, calibrator, threshold and its evidence, audit rate, cycle) moves into one
``routing_batches`` row the decisions point at. Existing decisions are grouped by those columns (each distinct
combination, with the time it was written, becomes one batch row; NULLs group together) and keep their ids, so
every row that points at a decision (review tasks, draws, guard halts, later decisions) still does. The unique key
(item, policy version, model version) becomes (item, batch): the item's state move, written in the same
transaction, is what keeps a re-run from deciding an item twice.

On SQLite the decisions table is rebuilt to drop its columns; ``store/migrations/env.py`` turns foreign keys off
for the migration and checks them all once it is done, as SQLite's documentation prescribes for a table rebuild.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 03:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

# The columns a batch holds, with the value standing for NULL when rows are matched to their batch (a hash join on
# PostgreSQL needs plain equality; no real value takes these).
BATCH_COLUMNS = {
    "segment": "''", "policy_version": "''", "model_version": "''", "calibration_id": "-1", "threshold": "-1.0",
    "evidence_id": "-1", "audit_rate": "-1.0", "cycle": "-1",
}
MOVED = (*BATCH_COLUMNS, "created_at")


def _matched(left: str, right: str) -> str:
    return " AND ".join(f"coalesce({left}.{c}, {null}) = coalesce({right}.{c}, {null})"
                        for c, null in BATCH_COLUMNS.items()) + f" AND {left}.created_at = {right}.created_at"


def upgrade() -> None:
    op.create_table(
        "routing_batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("segment", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("policy_version", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("model_version", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("calibration_id", sa.Integer(), nullable=True),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("evidence_id", sa.Integer(), nullable=True),
        sa.Column("audit_rate", sa.Float(), nullable=True),
        sa.Column("cycle", sa.Integer(), nullable=True),
        sa.Column("run_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["calibration_id"], ["calibration_reports.id"]),
        sa.ForeignKeyConstraint(["evidence_id"], ["threshold_evidence.id"]),
        sa.ForeignKeyConstraint(["policy_version"], ["policy_versions.version"]),
        sa.PrimaryKeyConstraint("id"),
    )
    moved = ", ".join(MOVED)
    op.execute(f"INSERT INTO routing_batches ({moved}) SELECT {moved} FROM routing_decisions "
               f"GROUP BY {moved} ORDER BY min(id)")
    op.add_column("routing_decisions", sa.Column("batch_id", sa.Integer(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"UPDATE routing_decisions d SET batch_id = b.id FROM routing_batches b WHERE {_matched('d', 'b')}")
    else:  # a correlated look-up through a temporary index (a segment holds one batch per route run: the time too)
        op.execute("CREATE INDEX ix_routing_batches_match ON routing_batches "
                   "(segment, model_version, policy_version, created_at)")
        op.execute("UPDATE routing_decisions SET batch_id = (SELECT b.id FROM routing_batches b WHERE "
                   "b.segment = routing_decisions.segment AND b.model_version = routing_decisions.model_version AND "
                   "b.policy_version = routing_decisions.policy_version AND "
                   f"{_matched('routing_decisions', 'b')})")
        op.execute("DROP INDEX ix_routing_batches_match")
    with op.batch_alter_table("routing_decisions", schema=None) as batch_op:
        batch_op.alter_column("batch_id", existing_type=sa.Integer(), nullable=False)
        batch_op.drop_constraint("uq_decision_item_versions", type_="unique")
        batch_op.create_unique_constraint("uq_decision_item_batch", ["item_id", "batch_id"])
        batch_op.create_foreign_key("fk_decision_batch", "routing_batches", ["batch_id"], ["id"])
        batch_op.drop_constraint("fk_decision_evidence", type_="foreignkey")
        # the unnamed foreign keys go with their columns (PostgreSQL's DROP COLUMN, SQLite's rebuild)
        for column in MOVED:
            batch_op.drop_column(column)


def downgrade() -> None:
    with op.batch_alter_table("routing_decisions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("segment", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True))
        batch_op.add_column(sa.Column("policy_version", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column("model_version", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
        batch_op.add_column(sa.Column("calibration_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("threshold", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("cycle", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("audit_rate", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("evidence_id", sa.Integer(), nullable=True))
    for column in MOVED:
        op.execute(f"UPDATE routing_decisions SET {column} = (SELECT b.{column} FROM routing_batches b "
                   "WHERE b.id = routing_decisions.batch_id)")
    with op.batch_alter_table("routing_decisions", schema=None) as batch_op:
        for column in ("segment", "policy_version", "model_version", "created_at"):
            batch_op.alter_column(column, existing_type=sa.String(), nullable=False)
        batch_op.drop_constraint("uq_decision_item_batch", type_="unique")
        batch_op.drop_constraint("fk_decision_batch", type_="foreignkey")
        batch_op.create_unique_constraint("uq_decision_item_versions", ["item_id", "policy_version", "model_version"])
        batch_op.create_foreign_key("fk_decision_evidence", "threshold_evidence", ["evidence_id"], ["id"])
        batch_op.create_foreign_key("routing_decisions_policy_version_fkey", "policy_versions", ["policy_version"],
                                    ["version"])
        batch_op.create_foreign_key("routing_decisions_calibration_id_fkey", "calibration_reports",
                                    ["calibration_id"], ["id"])
        batch_op.drop_column("batch_id")
    op.drop_table("routing_batches")
