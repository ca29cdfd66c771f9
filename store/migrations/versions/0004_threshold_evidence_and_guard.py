"""the evidence behind each derived threshold, the live guard's halts, each run's audit share

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 06:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "threshold_evidence",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("segment", sa.String(length=128), nullable=False),
        sa.Column("policy_version", sa.String(length=64), nullable=False),
        sa.Column("label_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("scale", sa.String(length=16), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=True),
        sa.Column("calibrated_threshold", sa.Float(), nullable=True),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.Column("n_accepted", sa.Integer(), nullable=False),
        sa.Column("n_errors", sa.Integer(), nullable=False),
        sa.Column("coverage", sa.Float(), nullable=False),
        sa.Column("error_upper_bound", sa.Float(), nullable=True),
        sa.Column("alpha", sa.Float(), nullable=False),
        sa.Column("delta", sa.Float(), nullable=False),
        sa.Column("tested", sa.Integer(), nullable=False),
        sa.Column("pool", sa.String(length=128), nullable=False),
        sa.Column("calibration_id", sa.Integer(), sa.ForeignKey("calibration_reports.id"), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("model_version", "segment", "policy_version", "label_fingerprint",
                            name="uq_evidence_model_segment_policy_labels"),
    )
    op.create_index("ix_threshold_evidence_segment", "threshold_evidence", ["segment"])
    op.create_table(
        "guard_halts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("segment", sa.String(length=128), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("last_decision_id", sa.Integer(), nullable=False),
        sa.Column("e_value", sa.Float(), nullable=False),
        sa.Column("n_audited", sa.Integer(), nullable=False),
        sa.Column("n_errors", sa.Integer(), nullable=False),
        sa.Column("alpha", sa.Float(), nullable=False),
        sa.Column("delta", sa.Float(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("segment", "model_version", name="uq_guard_halt_segment_model"),
    )
    op.create_index("ix_guard_halts_segment", "guard_halts", ["segment"])
    with op.batch_alter_table("routing_decisions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("audit_rate", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("evidence_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_decision_evidence", "threshold_evidence", ["evidence_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("routing_decisions", schema=None) as batch_op:
        batch_op.drop_constraint("fk_decision_evidence", type_="foreignkey")
        batch_op.drop_column("evidence_id")
        batch_op.drop_column("audit_rate")
    op.drop_index("ix_guard_halts_segment", table_name="guard_halts")
    op.drop_table("guard_halts")
    op.drop_index("ix_threshold_evidence_segment", table_name="threshold_evidence")
    op.drop_table("threshold_evidence")
