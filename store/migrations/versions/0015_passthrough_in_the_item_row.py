"""The upstream passthrough's prediction lives in the item row, not in a prediction row per item
(``store.predictions``): each item given ``upstream_probs`` gets the passthrough's label (where none was given:
the first label, sorted, holding their largest share) and confidence (that share, over their exact sum) in its
``upstream_prediction`` and ``upstream_confidence``, as the passthrough computed them; then the passthrough's
prediction rows are deleted. An item given a prediction and a confidence only already holds them. A confidence
an item stated beside its probabilities, which the passthrough never used, is replaced by their share; every such
stated value that differed is kept in an audit event (``passthrough_confidences``). What the
rows held beyond that (a margin, a probability spread over the other classes of an ingest chunk) is not kept:
selection reads the confidence instead.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 22:30:00
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

UPSTREAM = "upstream"
CHUNK = 5_000


def _from_probs(probs: Any) -> tuple[str, float] | None:
    """The passthrough's label and confidence from its probabilities: the first label (sorted) holding the largest
    share, and that share over their exact sum."""
    if isinstance(probs, str):
        probs = json.loads(probs)
    if not isinstance(probs, dict) or not probs:
        return None
    top = max(probs.values())
    return min(label for label, value in probs.items() if value == top), float(top) / math.fsum(probs.values())


def upgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, upstream_prediction, upstream_confidence, upstream_probs FROM items "
                                "WHERE upstream_probs IS NOT NULL")).all()
    updates, replaced = [], []
    for item_id, prediction, confidence, probs in rows:
        derived = _from_probs(probs)
        if derived is None:
            continue
        if confidence is not None and abs(confidence - derived[1]) > 1e-9:
            replaced.append({"item_id": item_id, "stated_confidence": confidence, "confidence": derived[1]})
        updates.append({"id": item_id, "prediction": prediction if prediction is not None else derived[0],
                        "confidence": derived[1]})
    for start in range(0, len(updates), CHUNK):
        bind.execute(sa.text("UPDATE items SET upstream_prediction = :prediction, upstream_confidence = :confidence "
                             "WHERE id = :id"), updates[start:start + CHUNK])
    if replaced:
        events = sa.table("audit_events", sa.column("kind", sa.String), sa.column("actor", sa.String),
                          sa.column("payload", sa.JSON), sa.column("created_at", sqlmodel.sql.sqltypes.UTCDateTime()))
        bind.execute(events.insert().values(kind="passthrough_confidences", actor="migration 0015",
                                            payload={"replaced": replaced},
                                            created_at=datetime.now(timezone.utc)))
    bind.execute(sa.text("DELETE FROM predictions WHERE model_version = :upstream"), {"upstream": UPSTREAM})


def downgrade() -> None:
    # each item past `received` that holds a passthrough prediction gets its row back (without a probability spread)
    op.get_bind().execute(sa.text(
        "INSERT INTO predictions (item_id, model_version, label, confidence, margin, probs, created_at) "
        "SELECT id, :upstream, upstream_prediction, upstream_confidence, NULL, upstream_probs, received_at FROM items "
        "WHERE upstream_prediction IS NOT NULL AND upstream_confidence IS NOT NULL AND state != 'received'"),
        {"upstream": UPSTREAM})
