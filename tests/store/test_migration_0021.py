"""Migration 0021 points each item's state row at its newest routing decision and drops the decisions' unique key
(item, batch) and route index, which only served the way from an item to its decisions; a downgrade puts both back
and takes the pointer away."""

from __future__ import annotations

from datetime import datetime, timezone

from alembic import command
from sqlalchemy import inspect, text

from store import db
from store.models import PolicyVersion
from tests.items import insert_items

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)
# (decision id, item, route, batch): a is decided twice (by two route runs), c never
DECISIONS = [(1, "a", "review", 1), (2, "b", "auto_accept", 1), (3, "a", "escalate", 2)]


def _store_at_0020(url: str) -> None:
    config = db._alembic_config(url)
    command.upgrade(config, "0020")
    engine = db.get_engine(url, migrate_first=False)
    with engine.begin() as conn:
        conn.execute(PolicyVersion.__table__.insert(), [{"version": "p1", "name": "p", "document": "",
                                                         "author": "ops", "created_at": NOW}])
        insert_items(conn, [{"id": i, "segment": "s", "state": "routed", "received_at": NOW} for i in "abc"])
        for batch_id in (1, 2):
            conn.execute(text("INSERT INTO routing_batches (id, segment, policy_version, model_version, created_at) "
                              "VALUES (:id, 's', 'p1', 'm', :now)"), {"id": batch_id, "now": NOW})
        for decision_id, item_id, route, batch_id in DECISIONS:
            conn.execute(text("INSERT INTO routing_decisions (id, item_id, batch_id, route, reasons) "
                              "VALUES (:id, :item, :batch, :route, '[]')"),
                         {"id": decision_id, "item": item_id, "batch": batch_id, "route": route})
    engine.dispose()


def _decision_keys(engine) -> tuple[set, set]:
    inspector = inspect(engine)
    return ({tuple(u["column_names"]) for u in inspector.get_unique_constraints("routing_decisions")},
            {tuple(i["column_names"]) for i in inspector.get_indexes("routing_decisions")})


def test_each_state_row_points_at_its_items_newest_decision_and_the_decisions_lose_their_keys(database_url) -> None:
    _store_at_0020(database_url)
    engine = db.get_engine(database_url)  # migrates to the head
    with engine.connect() as conn:
        pointers = dict(conn.execute(text("SELECT item_id, decision_id FROM item_states")).all())
        kept = conn.execute(text("SELECT count(*) FROM routing_decisions")).scalar_one()
    assert pointers == {"a": 3, "b": 2, "c": None}
    assert kept == 3
    assert _decision_keys(engine) == (set(), set())


def test_a_downgrade_restores_the_keys_and_takes_the_pointer_away(database_url) -> None:
    _store_at_0020(database_url)
    config = db._alembic_config(database_url)
    command.upgrade(config, "0021")
    command.downgrade(config, "0020")
    engine = db.get_engine(database_url, migrate_first=False)
    assert _decision_keys(engine) == ({("item_id", "batch_id")}, {("route",)} if engine.dialect.name == "sqlite"
                                      else {("route",), ("item_id", "batch_id")})
    assert "decision_id" not in {c["name"] for c in inspect(engine).get_columns("item_states")}
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            ddl = conn.execute(text("SELECT sql FROM sqlite_master WHERE name = 'item_states'")).scalar_one()
        assert "WITHOUT ROWID" in ddl.upper()
