"""Migration 0018: on PostgreSQL a decision's item and batch and an item's source are checked by triggers once per
statement instead of by foreign keys once per row. Whatever checks them, both databases refuse the same writes: a
row pointing at nothing (the whole statement, not just that row), a change of a referenced key, the deletion of a
referenced row. A downgrade restores the foreign keys."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

from store import db
from store.bulk import COPY_MIN_ROWS, insert_ignore_columns
from store.models import Prediction
from store.policies import active_policy

NOW = datetime(2026, 12, 6, tzinfo=timezone.utc)
CHECKED = {("routing_decisions", "item_id", "items"), ("routing_decisions", "batch_id", "routing_batches"),
           ("items", "source_id", "item_sources"), ("predictions", "item_id", "items")}


def _item(conn, item_id: str, source_id: int | None = None) -> None:
    conn.execute(text("INSERT INTO items (id, segment, kind, source_id, received_at) "
                      "VALUES (:id, 's', 'classification', :source, :now)"),
                 {"id": item_id, "source": source_id, "now": NOW})
    # without the state row the database gives it (migration 0019): only 0018's references point at it here
    conn.execute(text("DELETE FROM item_states WHERE item_id = :id"), {"id": item_id})


def _prediction(conn, item_id: str) -> None:
    conn.execute(text("INSERT INTO predictions (item_id, model_version, label, confidence, created_at) "
                      "VALUES (:id, 'm', 'x', 0.9, :now)"), {"id": item_id, "now": NOW})


def _decisions(conn, rows: list[tuple[str, int]]) -> None:
    """One multi-row INSERT (one statement) of (item id, batch id) decisions."""
    values = ", ".join(f"(:i{n}, :b{n}, 'auto_accept', '[]')" for n in range(len(rows)))
    params = {k: v for n, (item, batch) in enumerate(rows) for k, v in ((f"i{n}", item), (f"b{n}", batch))}
    conn.execute(text(f"INSERT INTO routing_decisions (item_id, batch_id, route, reasons) VALUES {values} "
                      "ON CONFLICT DO NOTHING"), params)


@pytest.fixture
def store(engine):
    """A migrated store with one source, three items from it, one batch, a decision for item a and a prediction for
    item c."""
    _, version = active_policy(engine)
    with engine.begin() as conn:
        source = conn.execute(text("INSERT INTO item_sources (path, fingerprint, created_at) "
                                   "VALUES ('/f.jsonl', 'f', :now) RETURNING id"), {"now": NOW}).scalar_one()
        _item(conn, "a", source)
        _item(conn, "b", source)
        _item(conn, "c", source)
        _prediction(conn, "c")
        batch = conn.execute(text("INSERT INTO routing_batches (segment, policy_version, model_version, created_at) "
                                  "VALUES ('s', :v, 'm', :now) RETURNING id"), {"v": version, "now": NOW}).scalar_one()
        _decisions(conn, [("a", batch)])
    return engine, source, batch


def _count(engine, table: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()


def test_a_statement_with_one_row_pointing_at_nothing_is_refused_whole(store) -> None:
    engine, source, batch = store
    for rows in ([("b", batch), ("missing", batch)], [("b", batch), ("b", batch + 99)]):
        with pytest.raises(IntegrityError), engine.begin() as conn:
            _decisions(conn, rows)
        assert _count(engine, "routing_decisions") == 1
    with pytest.raises(IntegrityError), engine.begin() as conn:
        _item(conn, "e", source + 99)
    with pytest.raises(IntegrityError), engine.begin() as conn:
        _prediction(conn, "missing")
    assert (_count(engine, "items"), _count(engine, "predictions")) == (3, 1)
    with engine.begin() as conn:  # rows pointing at rows and a NULL pass (a decision has no key to conflict on
        _decisions(conn, [("b", batch)])  # since 0021)
        _item(conn, "d", None)
        _prediction(conn, "b")
    assert (_count(engine, "routing_decisions"), _count(engine, "items"), _count(engine, "predictions")) == (2, 4, 2)


def test_a_referenced_row_can_be_neither_deleted_nor_rekeyed_nor_repointed(store) -> None:
    engine, source, batch = store
    for statement in ("DELETE FROM items WHERE id = 'a'", "DELETE FROM items WHERE id = 'c'",
                      "UPDATE items SET id = 'z' WHERE id = 'a'", f"DELETE FROM routing_batches WHERE id = {batch}",
                      f"DELETE FROM item_sources WHERE id = {source}",
                      f"UPDATE items SET source_id = {source + 99} WHERE id = 'b'",
                      "UPDATE routing_decisions SET item_id = 'missing'", "UPDATE predictions SET item_id = 'missing'"):
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(statement))
    with engine.begin() as conn:  # an item nothing points at may go; a state move touches no reference
        conn.execute(text("UPDATE item_states SET state = 'routed'"))
        conn.execute(text("DELETE FROM items WHERE id = 'b'"))
    assert _count(engine, "items") == 2


def test_what_the_foreign_keys_allowed_still_goes_through(store) -> None:
    engine, source, batch = store
    with engine.begin() as conn:
        other = conn.execute(text("INSERT INTO routing_batches (segment, policy_version, model_version, created_at) "
                                  "SELECT 's', policy_version, 'm2', created_at FROM routing_batches "
                                  "RETURNING id")).scalar_one()
        conn.execute(text(f"UPDATE routing_decisions SET batch_id = {other}"))  # to another row that exists
        conn.execute(text("UPDATE items SET source_id = NULL WHERE id = 'b'"))
        conn.execute(text("UPDATE items SET id = 'b2' WHERE id = 'b'"))  # nothing points at b
        conn.execute(text("UPDATE items SET id = id"))  # every key there again at the end of the statement
        conn.execute(text(f"DELETE FROM routing_batches WHERE id = {batch}"))  # nothing points at it any more
    with engine.connect() as conn:
        assert conn.execute(text("SELECT item_id, batch_id FROM routing_decisions")).all() == [("a", other)]


@pytest.mark.parametrize("rows", [10, COPY_MIN_ROWS])
def test_the_bulk_insert_paths_are_checked(store, rows: int) -> None:
    """Below COPY_MIN_ROWS PostgreSQL gets one statement per row, from it a COPY and one INSERT ... SELECT: an
    orphan among them refuses the whole write either way."""
    engine, _, _ = store
    columns = {"item_id": ["c"] * (rows - 1) + ["missing"], "model_version": [f"m{k}" for k in range(rows)],
               "label": ["x"] * rows, "confidence": [0.9] * rows, "created_at": [NOW] * rows}
    # the bulk path writes through the driver's cursor: the driver's own IntegrityError
    with pytest.raises(engine.dialect.loaded_dbapi.IntegrityError), engine.begin() as conn:
        insert_ignore_columns(conn, Prediction.__table__, columns)
    assert _count(engine, "predictions") == 1


def test_postgresql_refusals_name_the_foreign_key_allow_a_key_back_and_guard_truncate(store) -> None:
    engine, _, batch = store
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no TRUNCATE, and its foreign keys' errors carry no diagnostics")
    with pytest.raises(IntegrityError) as refused, engine.begin() as conn:
        _decisions(conn, [("missing", batch)])
    assert refused.value.orig.diag.constraint_name == "routing_decisions_item_id_fkey"
    assert "missing" in str(refused.value)
    with engine.begin() as conn:  # NO ACTION: a referenced key deleted and written again in one statement
        conn.execute(text("WITH gone AS (DELETE FROM items WHERE id = 'a' RETURNING *) "
                          "INSERT INTO items SELECT * FROM gone"))
    for table in ("item_sources", "routing_batches", "items"):
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {table} CASCADE"))
    with engine.begin() as conn:  # emptied first, the referenced table may go
        conn.execute(text("DELETE FROM predictions"))
        conn.execute(text("DELETE FROM routing_decisions"))
        conn.execute(text("TRUNCATE routing_batches"))
    assert _count(engine, "routing_batches") == 0


def _foreign_keys(engine) -> set[tuple[str, str, str]]:
    inspector = inspect(engine)
    return {(table, fk["constrained_columns"][0], fk["referred_table"])
            for table in ("routing_decisions", "items", "predictions") for fk in inspector.get_foreign_keys(table)}


def test_postgresql_checks_the_four_with_triggers_and_a_downgrade_restores_the_foreign_keys(store) -> None:
    engine, _, _ = store
    if engine.dialect.name != "postgresql":
        assert CHECKED <= _foreign_keys(engine)  # SQLite keeps its foreign keys: nothing to migrate
        return
    assert not CHECKED & _foreign_keys(engine)
    url = engine.url.render_as_string(hide_password=False)
    config = db._alembic_config(url)
    command.downgrade(config, "0017")
    plain = create_engine(url)
    try:
        assert CHECKED <= _foreign_keys(plain)
        with plain.connect() as conn:
            triggers = conn.execute(text("SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'sluice_ref_%'")
                                    ).scalar_one()
        assert triggers == 0
        assert (_count(plain, "routing_decisions"), _count(plain, "items"), _count(plain, "predictions")) == (1, 3, 1)
        command.upgrade(config, "head")
        assert not CHECKED & _foreign_keys(plain)
    finally:
        plain.dispose()
