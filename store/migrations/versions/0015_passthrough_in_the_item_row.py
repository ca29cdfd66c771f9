"""The upstream passthrough's prediction lives in the item row, not in a prediction row per item
(``store.predictions``): fill each item's ``upstream_prediction`` and ``upstream_confidence`` where they are empty
(from its passthrough prediction row, or from its ``upstream_probs`` for an item an earlier release left
``received``), then delete the passthrough's prediction rows. Nothing an item was given is overwritten: the rows
only held what the item's own columns give (their probability spread over the other classes of an ingest chunk
is not kept; selection reads the confidence instead).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 22:30:00
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

UPSTREAM = "upstream"
CHUNK = 5_000


def _from_probs(probs: Any) -> tuple[str, float] | None:
    """The passthrough's label and confidence from its probabilities as that release made them: the first label
    (sorted) holding the largest share, and that share."""
    if isinstance(probs, str):
        probs = json.loads(probs)
    if not isinstance(probs, dict) or not probs:
        return None
    top = max(probs.values())
    return min(label for label, value in probs.items() if value == top), float(top) / float(sum(probs.values()))


def upgrade() -> None:
    bind = op.get_bind()
    for column, source in (("upstream_prediction", "label"), ("upstream_confidence", "confidence")):
        bind.execute(sa.text(
            f"UPDATE items SET {column} = (SELECT p.{source} FROM predictions p WHERE p.item_id = items.id "
            f"AND p.model_version = :upstream) WHERE {column} IS NULL AND EXISTS (SELECT 1 FROM predictions p "
            f"WHERE p.item_id = items.id AND p.model_version = :upstream)"), {"upstream": UPSTREAM})
    # an item given probabilities only that never passed through (left `received` by an earlier release)
    rows = bind.execute(sa.text(
        "SELECT id, upstream_prediction, upstream_confidence, upstream_probs FROM items WHERE upstream_probs IS NOT "
        "NULL AND (upstream_prediction IS NULL OR upstream_confidence IS NULL)")).all()
    updates = []
    for item_id, prediction, confidence, probs in rows:
        derived = _from_probs(probs)
        if derived is not None:
            updates.append({"id": item_id, "prediction": prediction if prediction is not None else derived[0],
                            "confidence": confidence if confidence is not None else derived[1]})
    for start in range(0, len(updates), CHUNK):
        bind.execute(sa.text("UPDATE items SET upstream_prediction = :prediction, upstream_confidence = :confidence "
                             "WHERE id = :id"), updates[start:start + CHUNK])
    bind.execute(sa.text("DELETE FROM predictions WHERE model_version = :upstream"), {"upstream": UPSTREAM})


def downgrade() -> None:
    # each item past `received` that holds a passthrough prediction gets its row back (without a probability spread)
    op.get_bind().execute(sa.text(
        "INSERT INTO predictions (item_id, model_version, label, confidence, margin, probs, created_at) "
        "SELECT id, :upstream, upstream_prediction, upstream_confidence, NULL, upstream_probs, received_at FROM items "
        "WHERE upstream_prediction IS NOT NULL AND upstream_confidence IS NOT NULL AND state != 'received'"),
        {"upstream": UPSTREAM})
