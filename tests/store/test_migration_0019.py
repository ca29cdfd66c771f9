"""Migration 0019 upgrades a store whose items carried their lifecycle state in their own row: each item's state,
segment and time of its last move become its ``item_states`` row, the item row loses the two columns and nothing
else in it changes, what points at items still does, and a downgrade puts the states back."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

from store import db

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)
# id, segment, state, text, minutes after NOW of its last move
ITEMS = [("a", "s1", "received", "x", 0), ("b", "s1", "scored", "y", 1), ("c", "s2", "routed", None, 2),
         ("d", "s2", "resolved", "w", 3), ("e", "s3", "auto_accepted", "v", 4)]


def _store_at_0018(url: str) -> None:
    command.upgrade(db._alembic_config(url), "0018")
    engine = create_engine(url)
    with engine.begin() as conn:
        for item_id, segment, state, body, minutes in ITEMS:
            conn.execute(text("INSERT INTO items (id, segment, text, state, kind, received_at, updated_at) "
                              "VALUES (:id, :segment, :text, :state, 'classification', :now, :moved)"),
                         {"id": item_id, "segment": segment, "text": body, "state": state, "now": NOW,
                          "moved": NOW + timedelta(minutes=minutes)})
        conn.execute(text("INSERT INTO labels (item_id, label, split, source, selection_reason, created_at) "
                          "VALUES ('d', 'l', 'holdout', 'seed', 'seed', :now)"), {"now": NOW})
    engine.dispose()


def _moved_at(value) -> datetime:
    """A stored time as an aware datetime (SQLite hands back naive text or datetimes)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def test_each_item_keeps_its_state_in_a_row_of_its_own(database_url) -> None:
    _store_at_0018(database_url)
    engine = db.get_engine(database_url)  # migrates to the head
    with engine.connect() as conn:
        states = {row.item_id: (row.segment, row.state, _moved_at(row.updated_at)) for row in conn.execute(
            text("SELECT item_id, segment, state, updated_at FROM item_states"))}
        items = dict(conn.execute(text("SELECT id, text FROM items")).all())
        labels = conn.execute(text("SELECT count(*) FROM labels WHERE item_id = 'd'")).scalar_one()
    assert states == {i: (segment, state, NOW + timedelta(minutes=m)) for i, segment, state, _, m in ITEMS}
    assert items == {i: body for i, _, _, body, _ in ITEMS}
    assert labels == 1  # the rebuilt items table keeps what points at it
    inspector = inspect(engine)
    assert {c["name"] for c in inspector.get_columns("items")}.isdisjoint({"state", "updated_at"})
    assert {tuple(i["column_names"]) for i in inspector.get_indexes("item_states")} == {
        ("state", "segment", "item_id", "decision_id")}  # 0019's (state, segment), widened by 0022
    assert "ix_items_state_segment" not in {i["name"] for i in inspector.get_indexes("items")}


def test_every_item_written_gets_its_state_row_and_a_state_row_for_no_item_is_refused(database_url) -> None:
    """The database writes each new item's state row in the item's own statement: scored when the row holds its
    upstream prediction, else received, moved when it was received; a second write of the item (skipped by the
    conflict) leaves it be. An item with a state row can neither go nor change its key, nor a state row point
    elsewhere (SQLite's foreign key, or on PostgreSQL 0018's triggers); SQLite also refuses a state row for no
    item. (At 0019: from 0020 on, SQLite's state rows are written by the code that writes items.)"""
    command.upgrade(db._alembic_config(database_url), "0019")
    engine = db.get_engine(database_url, migrate_first=False)
    insert = ("INSERT INTO items (id, segment, kind, upstream_prediction, upstream_confidence, received_at) "
              "VALUES (:id, 's', 'classification', :label, :confidence, :now) ON CONFLICT DO NOTHING")
    rows = [{"id": "a", "label": None, "confidence": None, "now": NOW},
            {"id": "b", "label": "x", "confidence": 0.9, "now": NOW},
            {"id": "c", "label": "x", "confidence": None, "now": NOW},
            {"id": "d", "label": "y", "confidence": 0.8, "now": NOW}]
    with engine.begin() as conn:
        conn.execute(text(insert), rows)
        conn.execute(text("UPDATE item_states SET state = 'routed' WHERE item_id = 'b'"))
        conn.execute(text(insert), [{**rows[1], "now": NOW + timedelta(days=1)}])
        states = {row.item_id: (row.segment, row.state, _moved_at(row.updated_at)) for row in conn.execute(
            text("SELECT item_id, segment, state, updated_at FROM item_states"))}
    assert states == {"a": ("s", "received", NOW), "b": ("s", "routed", NOW), "c": ("s", "received", NOW),
                      "d": ("s", "scored", NOW)}
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM item_states WHERE item_id IN ('b', 'c', 'd')"))
    refused = ["DELETE FROM items WHERE id = 'a'", "UPDATE items SET id = 'z' WHERE id = 'a'",
               "UPDATE item_states SET item_id = 'missing' WHERE item_id = 'a'"]
    if engine.dialect.name == "sqlite":  # PostgreSQL leaves the insert unchecked: every state row is born from its item
        refused.append("INSERT INTO item_states (item_id, state, segment, updated_at) "
                       "VALUES ('missing', 'received', 's', :now)")
    for statement in refused:
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(statement), {"now": NOW})
    with engine.connect() as conn:
        assert conn.execute(text("SELECT item_id FROM item_states")).scalars().all() == ["a"]
        assert conn.execute(text("SELECT count(*) FROM items")).scalar_one() == 4


def test_a_downgrade_puts_the_states_back(database_url) -> None:
    _store_at_0018(database_url)
    config = db._alembic_config(database_url)
    command.upgrade(config, "0019")
    command.downgrade(config, "0018")
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            items = {row.id: (row.segment, row.state, _moved_at(row.updated_at)) for row in conn.execute(
                text("SELECT id, segment, state, updated_at FROM items"))}
        assert items == {i: (segment, state, NOW + timedelta(minutes=m)) for i, segment, state, _, m in ITEMS}
        inspector = inspect(engine)
        assert "item_states" not in inspector.get_table_names()
        assert {tuple(i["column_names"]) for i in inspector.get_indexes("items")} >= {("state", "segment")}
    finally:
        engine.dispose()
