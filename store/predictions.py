"""Where a model version's predictions live, behind one read: a trained model's in the ``predictions`` table, the
upstream passthrough's in the item row itself.

An item that carries its producer's scores is born scored: ingest writes the passthrough's label and confidence
into the item's ``upstream_prediction`` and ``upstream_confidence`` (derived from ``upstream_probs`` when only those
were given, which stay as they came), and no prediction row. ``upstream_probs`` holds the producer's probabilities
when it gave them; an item with a label and a confidence only has none (the least-informative spread over the other
classes would order items exactly as their confidence does, so selection reads the confidence instead).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Subquery, and_, literal, select

from store.models import Item, Prediction
from store.passthrough import UPSTREAM_MODEL

__all__ = ["predictions_of", "upstream_predicted"]


def upstream_predicted() -> ColumnElement[bool]:
    """True for an item whose upstream passthrough prediction is in its row (a label and a confidence)."""
    return and_(Item.upstream_prediction.is_not(None), Item.upstream_confidence.is_not(None))


def predictions_of(model_version: str) -> Subquery:
    """The predictions of `model_version`, one row per item it predicted (``item_id``, ``model_version``, ``label``,
    ``confidence``, ``probs``, ``created_at``): for the upstream passthrough from the items (``created_at`` is when
    the item was received), for any other model from the ``predictions`` table. Join it like the table (``.c.item_id``, ``.c.confidence``, ...)."""
    columns: list[Any]
    if model_version == UPSTREAM_MODEL:
        columns = [Item.id.label("item_id"), literal(UPSTREAM_MODEL).label("model_version"),
                   Item.upstream_prediction.label("label"), Item.upstream_confidence.label("confidence"),
                   Item.upstream_probs.label("probs"), Item.received_at.label("created_at")]
        return select(*columns).where(upstream_predicted()).subquery(f"predictions_{UPSTREAM_MODEL}")
    columns = [Prediction.item_id, Prediction.model_version, Prediction.label, Prediction.confidence,
               Prediction.probs, Prediction.created_at]
    return select(*columns).where(Prediction.model_version == model_version).subquery("predictions_of_model")
