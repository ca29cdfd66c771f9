"""store.decision_batches: a batch row per run of shared constants, decisions read back whole, each item's state row
pointing at its newest decision, and route's decisions settled with their items' moves (a decision whose item did
not move is not kept)."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from store.decision_batches import (
    ITEM_FIELDS, DecisionBatch, full_decisions, record_decisions, settle_decisions, write_decisions,
)
from store.models import AuditEvent, ItemStateRow, PolicyVersion, RoutingBatch, RoutingDecision, utcnow
from tests.items import insert_items

NOW = utcnow()


def _store(engine, ids) -> None:
    with engine.begin() as conn:
        conn.execute(PolicyVersion.__table__.insert(), [{"version": "p1", "name": "p", "document": "",
                                                         "author": "ops", "created_at": NOW}])
        insert_items(conn, [{"id": i, "segment": "s", "state": "routed", "received_at": NOW,
                                                "updated_at": NOW} for i in ids])


STATE_AFTER = {"auto_accept": "auto_accepted", "review": "routed"}


def _pointers(engine) -> dict[str, tuple[str, str | None]]:
    """Each item's state and the route of the decision its state row points at."""
    with engine.connect() as conn:
        return {row.item_id: (row.state, row.route) for row in conn.execute(
            select(ItemStateRow.item_id, ItemStateRow.state, RoutingDecision.route)
            .outerjoin(RoutingDecision, RoutingDecision.id == ItemStateRow.decision_id))}


def test_settled_decisions_move_their_items_and_a_decision_whose_item_did_not_move_goes(engine) -> None:
    """One statement moves each scored item into the state its route leads to and points its state row at the
    decision; the decision of an item no longer scored is deleted in the same transaction, and a batch run again
    keeps nothing (no decision, no batch row, no audit event)."""
    with engine.begin() as conn:
        conn.execute(PolicyVersion.__table__.insert(), [{"version": "p1", "name": "p", "document": "",
                                                         "author": "ops", "created_at": NOW}])
        insert_items(conn, [{"id": i, "segment": "s", "state": state, "received_at": NOW}
                            for i, state in (("a", "scored"), ("b", "scored"), ("c", "routed"))])
    columns = {name: [None] * 3 for name in ITEM_FIELDS}
    columns.update(item_id=["a", "b", "c"], route=["auto_accept", "review", "review"], reasons=["[]"] * 3)
    batch = DecisionBatch({"segment": "s", "policy_version": "p1", "model_version": "m"}, columns)
    with engine.begin() as conn:
        assert settle_decisions(conn, [batch], STATE_AFTER, by="test") == {"auto_accept": 1, "review": 1}
    assert _pointers(engine) == {"a": ("auto_accepted", "auto_accept"), "b": ("routed", "review"),
                                 "c": ("routed", None)}
    with engine.begin() as conn:  # the same batch again: every item has moved on
        assert settle_decisions(conn, [batch], STATE_AFTER, by="test") == {}
    with engine.connect() as conn:
        decided = conn.execute(select(RoutingDecision.item_id).order_by(RoutingDecision.item_id)).scalars().all()
        batches = conn.execute(select(func.count()).select_from(RoutingBatch)).scalar_one()
        events = conn.execute(select(AuditEvent.payload).where(AuditEvent.kind == "item_states")).scalars().all()
    assert decided == ["a", "b"] and batches == 1
    assert events == [{"moved": {"auto_accepted": 1, "routed": 1}, "unmoved": 1,
                       "requested": {"auto_accepted": 1, "routed": 2}}]


def test_written_decisions_point_their_items_at_the_newest_without_moving_them(engine) -> None:
    _store(engine, "ab")
    with engine.begin() as conn:
        record_decisions(conn, [{"item_id": i, "segment": "s", "route": route, "policy_version": "p1",
                                 "model_version": "m", "created_at": NOW}
                                for i, route in (("a", "review"), ("a", "escalate"), ("b", "spot_check"))])
    assert _pointers(engine) == {"a": ("routed", "escalate"), "b": ("routed", "spot_check")}


def test_runs_of_shared_constants_share_a_batch_row_and_read_back_whole(engine) -> None:
    _store(engine, "abcd")
    rows = [{"item_id": i, "segment": "s", "route": "review", "policy_version": "p1", "model_version": m,
             "cycle": 1, "reasons": ["r"], "raw_confidence": c, "created_at": NOW}
            for i, m, c in (("a", "m1", 0.1), ("b", "m1", 0.2), ("c", "m2", 0.3), ("d", "m1", 0.4))]
    with engine.begin() as conn:
        assert record_decisions(conn, rows) == 4
        assert write_decisions(conn, [DecisionBatch({"segment": "s"}, {"item_id": []})]) == 0  # empty: no row
    decisions = full_decisions()
    with engine.connect() as conn:
        read = conn.execute(select(decisions).order_by(decisions.c.id)).all()
        batches = conn.execute(select(func.count()).select_from(RoutingBatch)).scalar_one()
    assert batches == 3  # a and b share theirs; c's model differs; d comes after c, in a run of its own
    assert [(r.item_id, r.model_version, r.raw_confidence, r.cycle) for r in read] == [
        ("a", "m1", 0.1, 1), ("b", "m1", 0.2, 1), ("c", "m2", 0.3, 1), ("d", "m1", 0.4, 1)]
    assert all((r.reasons if isinstance(r.reasons, list) else json.loads(r.reasons)) == ["r"] for r in read)
    assert read[0].batch_id == read[1].batch_id != read[3].batch_id
