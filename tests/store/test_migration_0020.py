"""Each new item gets its state row in the transaction that writes it (``store.transitions.born_states``): on SQLite
written by one statement after the items' insert (migration 0020 dropped 0019's per-row trigger), on PostgreSQL by
0019's trigger over the statement's rows. The rule is the same on both: scored when the row holds its upstream
prediction, else received, moved when received; an item the insert skipped keeps the state row it has."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from store import db
from store.models import Item
from store.transitions import born_states

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)
ROWS = [{"id": "a", "upstream_prediction": None, "upstream_confidence": None},
        {"id": "b", "upstream_prediction": "x", "upstream_confidence": 0.9},
        {"id": "c", "upstream_prediction": "x", "upstream_confidence": None},
        {"id": "d", "upstream_prediction": "y", "upstream_confidence": 0.8}]


def _write(conn, rows, received_at) -> None:
    """Insert item rows as ingest does: skipping an id stored earlier."""
    statement = sqlite_insert(Item) if conn.dialect.name == "sqlite" else postgresql_insert(Item)
    with born_states(conn):
        conn.execute(statement.on_conflict_do_nothing(),
                     [{**row, "segment": "s", "kind": "classification", "received_at": received_at} for row in rows])


def _states(conn) -> dict[str, tuple[str, str, datetime]]:
    def aware(value) -> datetime:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return {row.item_id: (row.segment, row.state, aware(row.updated_at)) for row in conn.execute(
        text("SELECT item_id, segment, state, updated_at FROM item_states"))}


def test_every_item_written_gets_its_born_state_and_a_stored_item_keeps_its_own(database_url) -> None:
    engine = db.get_engine(database_url)
    with engine.begin() as conn:
        _write(conn, ROWS[:2], NOW)
        conn.execute(text("UPDATE item_states SET state = 'routed' WHERE item_id = 'b'"))
        _write(conn, ROWS, NOW + timedelta(days=1))  # a and b are skipped by the conflict
        states = _states(conn)
    later = NOW + timedelta(days=1)
    assert states == {"a": ("s", "received", NOW), "b": ("s", "routed", NOW), "c": ("s", "received", later),
                      "d": ("s", "scored", later)}


def test_a_rolled_back_write_leaves_neither_item_nor_state(database_url) -> None:
    engine = db.get_engine(database_url)
    with pytest.raises(RuntimeError), engine.begin() as conn:
        _write(conn, ROWS, NOW)
        raise RuntimeError("the chunk fails after its insert")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM items")).scalar_one() == 0
        assert _states(conn) == {}


def _triggers(conn) -> set[str]:
    if conn.dialect.name == "sqlite":
        return set(conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'trigger' "
                                     "AND tbl_name = 'items'")).scalars())
    return set(conn.execute(text("SELECT tgname FROM pg_trigger WHERE tgrelid = 'items'::regclass "
                                 "AND NOT tgisinternal")).scalars())


def test_sqlite_loses_the_per_row_trigger_and_a_downgrade_brings_it_back(database_url) -> None:
    """PostgreSQL keeps its statement trigger at the head; SQLite's goes, and comes back at 0019, where an item
    written with plain SQL gets its state row again."""
    engine = db.get_engine(database_url)
    with engine.connect() as conn:
        at_head = _triggers(conn)
    assert ("sluice_item_born" in at_head) == (engine.dialect.name == "postgresql")
    engine.dispose()
    command.downgrade(db._alembic_config(database_url), "0019")
    engine = db.get_engine(database_url, migrate_first=False)
    with engine.begin() as conn:
        assert "sluice_item_born" in _triggers(conn)
        conn.execute(text("INSERT INTO items (id, segment, kind, upstream_prediction, upstream_confidence, "
                          "received_at) VALUES ('e', 's', 'classification', 'x', 0.7, :now)"), {"now": NOW})
        assert _states(conn) == {"e": ("s", "scored", NOW)}
