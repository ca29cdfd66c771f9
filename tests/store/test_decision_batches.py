"""store.decision_batches: a batch row per run of shared constants, decisions read back whole, and a batch cut down
to the items that moved (what route writes when a re-run finds some items already routed)."""

from __future__ import annotations

import json

from sqlalchemy import func, select

from store.decision_batches import DecisionBatch, full_decisions, record_decisions, write_decisions
from store.models import PolicyVersion, RoutingBatch, utcnow
from tests.items import insert_items

NOW = utcnow()


def _store(engine, ids) -> None:
    with engine.begin() as conn:
        conn.execute(PolicyVersion.__table__.insert(), [{"version": "p1", "name": "p", "document": "",
                                                         "author": "ops", "created_at": NOW}])
        insert_items(conn, [{"id": i, "segment": "s", "state": "routed", "received_at": NOW,
                                                "updated_at": NOW} for i in ids])


def test_a_batch_cut_to_the_items_that_moved_keeps_their_columns_aligned() -> None:
    batch = DecisionBatch({"segment": "s"}, {"item_id": ["a", "b", "c"], "route": ["review", "auto_accept", "review"],
                                             "raw_confidence": [0.1, 0.9, 0.3]})
    assert batch.only({"a", "b", "c"}) is batch
    cut = batch.only({"c", "a"})
    assert dict(cut.columns) == {"item_id": ["a", "c"], "route": ["review", "review"], "raw_confidence": [0.1, 0.3]}
    assert len(batch.only(set())) == 0 and cut.constants == batch.constants


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
