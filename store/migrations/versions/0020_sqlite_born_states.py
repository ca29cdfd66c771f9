"""On SQLite, ingest writes each new item's state row with one statement per chunk instead of a trigger per row.

Migration 0019 had the database write every new item's state row with a trigger on ``items``. PostgreSQL runs it
once per statement (over the statement's rows), SQLite once per row, and SQLite's per-row trigger cost as much as
the items' insert itself: 200,000 items in raw ``sqlite3`` took 1.08 s to insert without state rows, 2.05 s with
the trigger and 1.41 s with one ``INSERT ... SELECT`` of the new rows after each chunk (medians of 5). So on SQLite
the trigger goes and the code that writes items gives them their state rows in the same transaction
(``store.transitions.born_states``, which ingest and the test helpers use; the born state's rule is the
trigger's). PostgreSQL keeps its trigger: nothing changes there.

What SQLite no longer does: give a state row to an item that a tool inserts into the store with plain SQL. Such an
item is not routed until something gives it one; Sluice writes items only through ingest.

The downgrade creates the trigger again (0019's `_born_ddl`).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 16:50:00
"""

from __future__ import annotations

from alembic import op

from store.db import revision_module

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS sluice_item_born")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for statement in revision_module("0019_item_states.py")._born_ddl("sqlite", None):
        op.execute(statement)
