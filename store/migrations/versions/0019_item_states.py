"""An item's lifecycle state moves out of its row into a narrow ``item_states`` row (item id, state, segment, when
it last moved), so a step that moves items rewrites a few bytes per item, not the item's row with its text.

Until now route and score moved an item by rewriting its whole row (SQLite and PostgreSQL both write a row anew
on any change), so the move's cost grew with the text: with 2 KB texts the move took 1.62 s for 100,000 items
against 0.59 s for the narrow row (``bench/bench_write_floor.py --words 300``, raw ``sqlite3``). Each item's
state row is copied from its item row, the (state, segment) index moves with it, and the item row loses its
``state`` and ``updated_at`` (the time of its last move, now the state row's). Nothing else changes: an item's
other columns are written once, at ingest.

The database writes each new item's state row itself, in the statement that writes the item (a trigger,
`_born_ddl`): born scored when the item row holds its upstream prediction, else received.

On SQLite the state table has no rowid (its key is the item id) and the items table is rebuilt without the two
columns (``store/migrations/env.py`` turns foreign keys off for it and checks them all after). On PostgreSQL the
state row's reference to its item is kept by 0018's triggers (``REFERENCES`` below; the schema check in
``tests/store/test_db.py`` reads it): an item a state row points at can be neither deleted nor rekeyed, nor a state
row repointed; only the insert is left unchecked there, since the database writes every state row from its item.
The downgrade puts each state back into its item row.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 13:10:00
"""

from __future__ import annotations

from types import ModuleType

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

from store.db import revision_module

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

# (table, column, referenced table, referenced column, the trigger's constraint name), as in 0018
REFERENCES = (("item_states", "item_id", "items", "id", "item_states_item_id_fkey"),)


def _statement_checked() -> ModuleType:
    """Migration 0018's module, for its trigger builder."""
    return revision_module("0018_statement_checked_references.py")


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    op.create_table(
        "item_states",
        sa.Column("item_id", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("segment", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        *([] if postgres else [sa.ForeignKeyConstraint(["item_id"], ["items.id"])]),
        sa.PrimaryKeyConstraint("item_id"),
        sqlite_with_rowid=False,
    )
    op.execute("INSERT INTO item_states (item_id, state, segment, updated_at) "
               "SELECT id, state, segment, updated_at FROM items ORDER BY id")
    op.create_index("ix_item_states_state_segment", "item_states", ["state", "segment"])
    schema = bind.execute(sa.text("SELECT current_schema()")).scalar_one() if postgres else None
    if postgres:
        builder = _statement_checked()
        for table, column, parent, key, name in REFERENCES:
            # every state row is born from its item in the item's own statement (`_born_ddl`): checking its insert
            # could never refuse one Sluice writes, and it cost 0.8-1.7 s of a 200,000-item ingest (the items'
            # insert took 6.4 s with it, 4.8-5.6 s without, in two pairs of runs); the rest of the reference is kept
            for statement in builder._trigger_ddl(schema, table, column, parent, key, name, check_insert=False):
                op.execute(statement)
    op.drop_index("ix_items_state_segment", table_name="items")
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_column("state")
        batch_op.drop_column("updated_at")
    for statement in _born_ddl(bind.dialect.name, schema):  # after the rebuild, which would drop it
        op.execute(statement)


# An item is born scored when its row holds its upstream passthrough prediction (``store.predictions``'s
# ``upstream_predicted``, which ingest fills in), else received; the time of its birth is when it was received.
_BORN_STATE = ("CASE WHEN {row}.upstream_prediction IS NOT NULL AND {row}.upstream_confidence IS NOT NULL "
               "THEN 'scored' ELSE 'received' END")


def _born_ddl(dialect: str, schema: str | None) -> list[str]:
    """The trigger that gives every item its state row as the item is written, in the same statement: made in the
    database from the item row, nothing sent twice, and no item ever without one (an INSERT of items written
    anywhere, a test's too). SQLite runs it per row (inside its virtual machine); PostgreSQL once per statement over
    the rows it wrote (its transition table), which took the 200,000 state rows of an ingest from 3.3 s sent by
    COPY to what the insert alone costs. A table rebuild on SQLite (a batch migration) drops it: create it again."""
    if dialect == "postgresql":
        return [f"""CREATE FUNCTION sluice_item_born() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO "{schema}"."item_states" (item_id, state, segment, updated_at)
    SELECT n.id, {_BORN_STATE.format(row="n")}, n.segment, n.received_at FROM inserted n
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$""",
                "CREATE TRIGGER sluice_item_born AFTER INSERT ON items REFERENCING NEW TABLE AS inserted "
                "FOR EACH STATEMENT EXECUTE FUNCTION sluice_item_born()"]
    return [f"""CREATE TRIGGER sluice_item_born AFTER INSERT ON items FOR EACH ROW BEGIN
    INSERT OR IGNORE INTO item_states (item_id, state, segment, updated_at)
    VALUES (NEW.id, {_BORN_STATE.format(row="NEW")}, NEW.segment, NEW.received_at);
END"""]


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS sluice_item_born ON items")
        op.execute("DROP FUNCTION IF EXISTS sluice_item_born()")
    else:
        op.execute("DROP TRIGGER IF EXISTS sluice_item_born")
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
        batch_op.add_column(sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.execute("UPDATE items SET state = (SELECT s.state FROM item_states s WHERE s.item_id = items.id), "
               "updated_at = (SELECT s.updated_at FROM item_states s WHERE s.item_id = items.id)")
    # an item without a state row (none is written so) falls back to where every item starts
    op.execute("UPDATE items SET state = 'received' WHERE state IS NULL")
    op.execute("UPDATE items SET updated_at = received_at WHERE updated_at IS NULL")
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.alter_column("state", existing_type=sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False)
        batch_op.alter_column("updated_at", existing_type=sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False)
    op.create_index("ix_items_state_segment", "items", ["state", "segment"])
    if op.get_bind().dialect.name == "postgresql":
        builder = _statement_checked()
        for table, column, parent, _, _ in REFERENCES:
            for statement in builder._drop_ddl(table, column, parent):
                op.execute(statement)
    op.drop_index("ix_item_states_state_segment", table_name="item_states")
    op.drop_table("item_states")
