"""store.regression on both databases: which labelled items corrected the prediction that routed them."""

from __future__ import annotations

import pytest

from store.decision_batches import record_decisions
from store.models import Label, PolicyVersion, utcnow
from store.regression import CorrectedItem, corrected_items
from tests.items import insert_items

NOW = utcnow()


def _record(engine) -> None:
    """c1 routed 'x', labelled 'y' (train): corrected. c2 first routed 'y', re-routed 'x' under a newer model, labelled
    'y' (holdout): corrected, by its latest decision. k1 routed 'x', labelled 'x': confirmed. k2 first routed 'x',
    re-routed 'y', labelled 'y': its latest decision was right. n1 routed without a prediction: nothing to correct.
    u1 routed 'x', never labelled. s1 labelled without any decision."""
    items = [("c1", "s"), ("c2", "t"), ("k1", "s"), ("k2", "s"), ("n1", "t"), ("u1", "s"), ("s1", "s")]
    decisions = [("c1", "x", "m1"), ("c2", "y", "m1"), ("k1", "x", "m1"), ("k2", "x", "m1"), ("n1", None, "m1"),
                 ("u1", "x", "m1"), ("c2", "x", "m2"), ("k2", "y", "m2")]  # ids increase in this order
    labels = [("c1", "y", "train"), ("c2", "y", "holdout"), ("k1", "x", "train"), ("k2", "y", "train"),
              ("n1", "y", "holdout"), ("s1", "y", "train")]
    with engine.begin() as conn:
        conn.execute(PolicyVersion.__table__.insert(), [{"version": "p1", "name": "p", "document": "",
                                                         "created_at": NOW}])
        insert_items(conn, [
            {"id": i, "segment": s, "state": "resolved", "text": f"text of {i}", "received_at": NOW,
             "updated_at": NOW} for i, s in items])
        record_decisions(conn, [
            {"item_id": i, "segment": dict(items)[i], "route": "review", "predicted_label": p, "model_version": m,
             "policy_version": "p1", "reasons": [], "created_at": NOW} for i, p, m in decisions])
        conn.execute(Label.__table__.insert(), [
            {"item_id": i, "label": label, "split": split, "source": "annotation", "selection_reason": "margin",
             "created_at": NOW} for i, label, split in labels])


def test_corrected_items_are_the_labels_that_differ_from_the_latest_routing_prediction(engine) -> None:
    _record(engine)
    assert corrected_items(engine) == [
        CorrectedItem("c1", "s", "train", "y", "x", "m1", "text of c1", None),
        CorrectedItem("c2", "t", "holdout", "y", "x", "m2", "text of c2", None),
    ]
    assert [c.item_id for c in corrected_items(engine, splits=["train"])] == ["c1"]
    assert [c.item_id for c in corrected_items(engine, splits=["holdout"])] == ["c2"]


def test_corrected_items_names_a_bad_split(engine) -> None:
    with pytest.raises(ValueError, match="splits must be"):
        corrected_items(engine, splits=["test"])
    with pytest.raises(ValueError, match="splits must be"):
        corrected_items(engine, splits=[])


def test_corrected_items_of_some_kinds_carry_their_kind_and_payload(engine) -> None:
    _record(engine)
    payload = {"prompt": "q", "response": "an invented answer"}
    with engine.begin() as conn:
        insert_items(conn, [
            {"id": "g1", "segment": "s", "state": "resolved", "kind": "generation", "payload": payload,
             "received_at": NOW, "updated_at": NOW}])
        record_decisions(conn, [
            {"item_id": "g1", "segment": "s", "route": "review", "predicted_label": "accept", "model_version": "v1",
             "policy_version": "p1", "reasons": [], "created_at": NOW}])
        conn.execute(Label.__table__.insert(), [
            {"item_id": "g1", "label": "reject", "split": "train", "source": "annotation",
             "selection_reason": "margin", "created_at": NOW}])
    assert corrected_items(engine, kinds=["generation"]) == [
        CorrectedItem("g1", "s", "train", "reject", "accept", "v1", None, None, "generation", payload)]
    assert [c.item_id for c in corrected_items(engine, kinds=["classification"])] == ["c1", "c2"]
    assert [c.item_id for c in corrected_items(engine)] == ["c1", "c2", "g1"]
    with pytest.raises(ValueError, match="kinds must be"):
        corrected_items(engine, kinds=["chat"])
    with pytest.raises(ValueError, match="kinds must be"):
        corrected_items(engine, kinds=[])
