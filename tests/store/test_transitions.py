"""store.transitions: only lifecycle moves are written, a re-run is a no-op, and each move is recorded."""

from __future__ import annotations

from sqlalchemy import select

from store.models import AuditEvent, utcnow
from store.transitions import SOURCES, move_items, states_of
from store.vocab import ItemState
from tests.items import insert_items


def _items(engine, states: dict[str, str]) -> None:
    now = utcnow()
    with engine.begin() as conn:
        insert_items(conn, [{"id": i, "segment": "s", "state": s, "received_at": now,
                                                "updated_at": now} for i, s in states.items()])


def _states(engine) -> dict[str, str]:
    return states_of(engine)


def test_legal_moves_are_written_once_and_recorded(engine) -> None:
    _items(engine, {"a": "scored", "b": "scored", "c": "resolved", "d": "routed"})
    with engine.begin() as conn:
        first = move_items(conn, {"a": "routed", "b": "auto_accepted", "c": "routed", "d": "queued"}, by="test")
    assert first.moved == {"routed": 1, "auto_accepted": 1, "queued": 1} and first.unmoved == 1
    assert _states(engine) == {"a": "routed", "b": "auto_accepted", "c": "resolved", "d": "queued"}  # c refused
    with engine.begin() as conn:  # the same step again: nothing moves, nothing is written
        again = move_items(conn, {"a": "routed", "b": "auto_accepted", "c": "routed", "d": "queued"}, by="test")
    assert sum(again.moved.values()) == 0 and again.unmoved == 4
    with engine.connect() as conn:
        events = conn.execute(select(AuditEvent.actor, AuditEvent.payload).where(AuditEvent.kind == "item_states")
                              ).all()
    assert len(events) == 1 and events[0].actor == "test" and events[0].payload["unmoved"] == 1


def test_the_lifecycle_allows_the_loops_returns_and_nothing_out_of_a_terminal_state() -> None:
    assert ItemState.routed in SOURCES[ItemState.scored]  # a newer model rescores the backlog
    assert ItemState.resolved in SOURCES[ItemState.queued]  # disagreeing annotators: back to the queue
    assert all(ItemState.quarantined not in sources and ItemState.failed not in sources
               for sources in SOURCES.values())
    assert ItemState.resolved not in SOURCES[ItemState.routed] | SOURCES[ItemState.auto_accepted]
