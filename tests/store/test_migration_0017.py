"""Migration 0017 upgrades a store whose items carried their file's path in every row: each distinct path becomes
one ``item_sources`` row, every item points at its own, an item without a path keeps none, nothing else in the
item changes, and a downgrade puts the paths back."""

from __future__ import annotations

from datetime import datetime, timezone

from alembic import command
from sqlalchemy import create_engine, text

from store import db

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)
# id, source path, text
ITEMS = [("a", "/data/one.jsonl", "x"), ("b", "/data/one.jsonl", "y"), ("c", "/data/two.csv", "z"), ("d", None, "w")]


def _store_at_0016(url: str) -> None:
    command.upgrade(db._alembic_config(url), "0016")
    engine = create_engine(url)
    with engine.begin() as conn:
        for item_id, source, body in ITEMS:
            conn.execute(text("INSERT INTO items (id, segment, text, state, source, kind, received_at, updated_at) "
                              "VALUES (:id, 's', :text, 'received', :source, 'classification', :now, :now)"),
                         {"id": item_id, "text": body, "source": source, "now": NOW})
        conn.execute(text("INSERT INTO labels (item_id, label, split, source, selection_reason, created_at) "
                          "VALUES ('a', 'l', 'holdout', 'seed', 'seed', :now)"), {"now": NOW})
    engine.dispose()


def test_each_path_is_stored_once_and_every_item_points_at_its_own(database_url) -> None:
    _store_at_0016(database_url)
    engine = db.get_engine(database_url)  # migrates to the head
    with engine.connect() as conn:
        sources = dict(conn.execute(text("SELECT path, id FROM item_sources")).all())
        items = {row.id: (row.source_id, row.text) for row in conn.execute(text(
            "SELECT id, source_id, text FROM items"))}
        labels = conn.execute(text("SELECT count(*) FROM labels WHERE item_id = 'a'")).scalar_one()
    assert set(sources) == {"/data/one.jsonl", "/data/two.csv"}
    assert items == {"a": (sources["/data/one.jsonl"], "x"), "b": (sources["/data/one.jsonl"], "y"),
                     "c": (sources["/data/two.csv"], "z"), "d": (None, "w")}
    assert labels == 1  # the rebuilt table keeps what points at it


def test_a_downgrade_puts_the_paths_back(database_url) -> None:
    _store_at_0016(database_url)
    config = db._alembic_config(database_url)
    command.upgrade(config, "0017")
    command.downgrade(config, "0016")
    engine = create_engine(database_url)
    with engine.connect() as conn:
        items = dict(conn.execute(text("SELECT id, source FROM items")).all())
    engine.dispose()
    assert items == {item_id: source for item_id, source, _ in ITEMS}


def test_a_store_with_broken_foreign_keys_is_left_as_it_was(sqlite_url) -> None:
    """SQLite migrates with foreign keys off, in one transaction that checks them all before it commits: a row
    pointing at nothing (written by a tool with foreign keys off) refuses the upgrade with the rows named, and
    the store stays at its old revision, whole."""
    import pytest

    _store_at_0016(sqlite_url)
    engine = create_engine(sqlite_url)
    with engine.begin() as conn:  # a plain connection: SQLite's foreign keys are off unless asked for
        conn.execute(text("INSERT INTO labels (item_id, label, split, source, selection_reason, created_at) "
                          "VALUES ('gone', 'l', 'holdout', 'seed', 'seed', :now)"), {"now": NOW})
    with pytest.raises(RuntimeError, match="not migrated: 1 rows .*labels"):
        command.upgrade(db._alembic_config(sqlite_url), "head")
    with engine.connect() as conn:
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        columns = {row[1] for row in conn.execute(text("PRAGMA table_info(items)"))}
        tables = set(conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'")).scalars())
    engine.dispose()
    assert revision == "0016" and "source" in columns and "source_id" not in columns
    assert "item_sources" not in tables
