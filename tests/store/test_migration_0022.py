"""Migration 0022 puts each state row's item id and decision pointer into the (state, segment) index, so route's read
of a segment's scored items finds all it reads of a state row in the index; a downgrade puts the narrow index
back. Nothing is rewritten: every state row comes through."""

from __future__ import annotations

from datetime import datetime, timezone

from alembic import command
from sqlalchemy import inspect, text

from store import db
from store.models import PolicyVersion
from tests.items import insert_items

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)
INDEX = "ix_item_states_state_segment"


def _store_at_0021(url: str) -> None:
    command.upgrade(db._alembic_config(url), "0021")
    engine = db.get_engine(url, migrate_first=False)
    with engine.begin() as conn:
        conn.execute(PolicyVersion.__table__.insert(), [{"version": "p1", "name": "p", "document": "",
                                                         "author": "ops", "created_at": NOW}])
        insert_items(conn, [{"id": i, "segment": "s", "state": state, "received_at": NOW}
                            for i, state in (("a", "routed"), ("b", "scored"), ("c", "scored"))])
        conn.execute(text("INSERT INTO routing_batches (id, segment, policy_version, model_version, created_at) "
                          "VALUES (1, 's', 'p1', 'm', :now)"), {"now": NOW})
        conn.execute(text("INSERT INTO routing_decisions (id, item_id, batch_id, route, reasons) "
                          "VALUES (7, 'a', 1, 'review', '[]')"))
        conn.execute(text("UPDATE item_states SET decision_id = 7 WHERE item_id = 'a'"))
    engine.dispose()


def _index_columns(engine) -> list[str]:
    return next(i["column_names"] for i in inspect(engine).get_indexes("item_states") if i["name"] == INDEX)


def _states(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(
            "SELECT item_id, state, segment, decision_id FROM item_states ORDER BY item_id"))]


def test_the_state_index_holds_the_item_and_its_decision_and_every_row_comes_through(database_url) -> None:
    _store_at_0021(database_url)
    before = _states(db.get_engine(database_url, migrate_first=False))
    db.dispose_engines()
    engine = db.get_engine(database_url)  # migrates to the head
    assert _index_columns(engine) == ["state", "segment", "item_id", "decision_id"]
    assert _states(engine) == before == [("a", "routed", "s", 7), ("b", "scored", "s", None),
                                         ("c", "scored", "s", None)]


def test_sqlite_reads_a_segments_scored_state_rows_from_the_index_alone(sqlite_url) -> None:
    engine = db.get_engine(sqlite_url)
    with engine.connect() as conn:
        plan = " ".join(str(row[-1]) for row in conn.execute(text(
            "EXPLAIN QUERY PLAN SELECT item_id, decision_id FROM item_states "
            "WHERE state = 'scored' AND segment IN ('s', 't') ORDER BY segment, item_id")))
    assert f"COVERING INDEX {INDEX}" in plan and "TEMP B-TREE" not in plan


def test_a_downgrade_puts_the_narrow_index_back(database_url) -> None:
    _store_at_0021(database_url)
    config = db._alembic_config(database_url)
    command.upgrade(config, "0022")
    command.downgrade(config, "0021")
    engine = db.get_engine(database_url, migrate_first=False)
    assert _index_columns(engine) == ["state", "segment"]
    assert len(_states(engine)) == 3
