"""The file an item came from is stored once, in ``item_sources``, and each item points at it (``source_id``)
instead of carrying the path in its own row. Every distinct path the items hold becomes one source row; an item
without a path keeps none. On SQLite the items table is rebuilt to take the column's foreign key
(``store/migrations/env.py`` turns foreign keys off for it and checks them all after).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 04:15:00
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "item_sources",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("path", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("fingerprint", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("fingerprint", name="uq_item_source_fingerprint"),
    )
    bind = op.get_bind()
    found = bind.execute(sa.text("SELECT source, min(received_at) FROM items WHERE source IS NOT NULL "
                                 "GROUP BY source ORDER BY min(received_at), source")).all()
    if found:
        bind.execute(sa.text("INSERT INTO item_sources (path, fingerprint, created_at) VALUES (:p, :f, :at)"),
                     [{"p": path, "f": hashlib.sha256(path.encode("utf-8")).hexdigest(), "at": at}
                      for path, at in found])
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_item_source", "item_sources", ["source_id"], ["id"])
    if bind.dialect.name == "postgresql":
        op.execute("UPDATE items i SET source_id = s.id FROM item_sources s WHERE s.path = i.source")
    else:
        op.execute("CREATE INDEX ix_item_sources_path ON item_sources (path)")
        op.execute("UPDATE items SET source_id = (SELECT s.id FROM item_sources s WHERE s.path = items.source) "
                   "WHERE source IS NOT NULL")
        op.execute("DROP INDEX ix_item_sources_path")
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_column("source")


def downgrade() -> None:
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.execute("UPDATE items SET source = (SELECT s.path FROM item_sources s WHERE s.id = items.source_id) "
               "WHERE source_id IS NOT NULL")
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_constraint("fk_item_source", type_="foreignkey")
        batch_op.drop_column("source_id")
    op.drop_table("item_sources")
