"""quarantine rows keyed by their content too: the same line of a file overwritten with another bad record is
another quarantined record, not a collision that loses it

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 11:30:00
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("quarantine") as batch:
        batch.add_column(sa.Column("fingerprint", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))
    table = sa.table("quarantine", sa.column("id", sa.Integer), sa.column("raw", sa.String),
                     sa.column("fingerprint", sa.String))
    conn = op.get_bind()
    rows = conn.execute(sa.select(table.c.id, table.c.raw)).all()
    for row in rows:  # what was kept of each record (its first 2,000 characters) is what it is known by
        digest = hashlib.sha256((row.raw or "").encode("utf-8", "surrogatepass")).hexdigest()
        conn.execute(table.update().where(table.c.id == row.id).values(fingerprint=digest))
    with op.batch_alter_table("quarantine") as batch:
        batch.drop_constraint("uq_quarantine_record", type_="unique")
        batch.create_unique_constraint("uq_quarantine_record_content", ["source", "record_number", "fingerprint"])


def downgrade() -> None:
    with op.batch_alter_table("quarantine") as batch:
        batch.drop_constraint("uq_quarantine_record_content", type_="unique")
        batch.create_unique_constraint("uq_quarantine_record", ["source", "record_number"])
        batch.drop_column("fingerprint")
