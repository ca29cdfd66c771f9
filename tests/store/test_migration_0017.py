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
