"""Migration 0015 upgrades a store whose passthrough predictions were rows of their own: every item gains the
passthrough's label and confidence in its row and reads back the same prediction through ``store.predictions``
(routing, certification, calibration) as it had as a row; a stated confidence the passthrough never used is kept
in an audit event."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from alembic import command
from sqlalchemy import create_engine, text

from store import db
from store.labels import held_out_labels
from store.predictions import predictions_of
from store.registry import predicted_model_versions

NOW = datetime(2026, 12, 1, tzinfo=timezone.utc)

# (id, state, upstream prediction, confidence, probs, its passthrough row (label, confidence) or None)
ITEMS = [
    ("pair", "routed", "a", 0.8, None, ("a", 0.8)),  # a prediction and a confidence
    ("probs", "scored", None, None, {"a": 0.3, "b": 0.7}, ("b", 0.7)),  # probabilities only, passed through
    ("late", "received", None, None, {"x": 0.6, "y": 0.4}, None),  # left received by an earlier release
    ("mixed", "routed", "a", 0.9, {"a": 0.55, "b": 0.45}, ("a", 0.55)),  # the probabilities' share, as routed
    ("none", "received", None, None, None, None),  # no upstream score: nothing to do
]


def _store_at_0014(url: str) -> None:
    command.upgrade(db._alembic_config(url), "0014")
    engine = create_engine(url)
    with engine.begin() as conn:
        for item_id, state, prediction, confidence, probs, row in ITEMS:
            conn.execute(text(
                "INSERT INTO items (id, segment, text, upstream_prediction, upstream_confidence, upstream_probs, "
                "state, kind, received_at, updated_at) VALUES (:id, 's', 't', :p, :c, :probs, :state, "
                "'classification', :now, :now)"),
                {"id": item_id, "p": prediction, "c": confidence, "probs": None if probs is None else json.dumps(probs),
                 "state": state, "now": NOW})
            if row is not None:
                conn.execute(text(
                    "INSERT INTO predictions (item_id, model_version, label, confidence, margin, probs, created_at) "
                    "VALUES (:id, 'upstream', :label, :confidence, NULL, '{}', :now)"),
                    {"id": item_id, "label": row[0], "confidence": row[1], "now": NOW})
        conn.execute(text("INSERT INTO predictions (item_id, model_version, label, confidence, created_at) "
                          "VALUES ('pair', 'm1', 'b', 0.6, :now)"), {"now": NOW})
        conn.execute(text(
            "INSERT INTO labels (item_id, label, split, source, selection_reason, created_at) "
            "VALUES ('probs', 'b', 'holdout', 'seed', 'seed', :now)"), {"now": NOW})
    engine.dispose()


def test_passthrough_rows_move_into_their_items_with_nothing_given_overwritten(database_url) -> None:
    _store_at_0014(database_url)
    engine = db.get_engine(database_url)  # migrates to the head
    with engine.connect() as conn:
        items = {r.id: (r.upstream_prediction, r.upstream_confidence, r.upstream_probs) for r in conn.execute(text(
            "SELECT id, upstream_prediction, upstream_confidence, upstream_probs FROM items"))}
        rows = conn.execute(text("SELECT item_id, model_version FROM predictions ORDER BY item_id")).all()
    assert [tuple(r) for r in rows] == [("pair", "m1")]  # the trained model's row stays; the passthrough's are gone
    assert items["pair"][:2] == ("a", 0.8) and items["probs"][:2] == ("b", 0.7)
    assert items["late"][:2] == ("x", 0.6)  # derived from its probabilities
    assert items["mixed"][:2] == ("a", 0.55)  # routed on its probabilities' share: so it stays
    with engine.connect() as conn:
        replaced = conn.execute(text("SELECT payload FROM audit_events WHERE kind = 'passthrough_confidences'")).all()
    payload = replaced[0][0] if isinstance(replaced[0][0], dict) else json.loads(replaced[0][0])
    assert len(replaced) == 1 and payload["replaced"] == [
        {"item_id": "mixed", "stated_confidence": 0.9, "confidence": 0.55}]  # the stated value is kept
    assert items["none"][:2] == (None, None)
    probs = items["probs"][2]
    assert (json.loads(probs) if isinstance(probs, str) else probs) == {"a": 0.3, "b": 0.7}
    with engine.connect() as conn:
        passthrough = {r.item_id: (r.label, r.confidence) for r in conn.execute(
            predictions_of("upstream").select())}
    assert passthrough == {"pair": ("a", 0.8), "probs": ("b", 0.7), "late": ("x", 0.6), "mixed": ("a", 0.55)}
    held = held_out_labels(engine, "upstream")["s"]
    assert held.item_ids == ["probs"] and held.confidence.tolist() == [0.7] and held.correct.tolist() == [1]
    assert predicted_model_versions(engine) == {"m1", "upstream"}
