"""The labels that may certify a model beyond its held-out set: the audits drawn under its own decisions.

A model never trained on a label that came back after the model existed. An audit drawn from the fresh traffic a
model routed (the item's first decision, so the item is a draw of the traffic, not of a re-routed backlog) is a
uniform draw made after the model was fixed, so it may certify that model whichever split it then joined: an audit
in the train split teaches the *next* model and certifies this one. ``store.labels.held_out_labels`` holds the rest of
what may certify (seed, audit and gold labels kept out of training).
"""

from __future__ import annotations

from sqlalchemy import Engine, and_, select

from store.models import Item, Label, ReviewTask, RoutingBatch, RoutingDecision
from store.predictions import predictions_of
from store.labels import HeldOut, labelled_arrays
from store.vocab import Selection

__all__ = ["own_audit_labels"]


def own_audit_labels(engine: Engine, model_version: str, *, segment: str | None = None) -> dict[str, HeldOut]:
    """Per segment (or only `segment`): the raw confidence and correctness of `model_version` on the audits drawn
    under its own first decisions of items, whatever split the label joined. Outputs without a confidence are left
    out; the item ids are in order."""
    predicted = predictions_of(model_version)
    query = (
        select(Item.segment, Label.item_id, predicted.c.confidence, predicted.c.label.label("predicted"),
               Label.label.label("truth"))
        .distinct()
        .join(ReviewTask, and_(ReviewTask.item_id == Label.item_id,
                               ReviewTask.selection_reason == Selection.AUDIT.value))
        .join(RoutingDecision, RoutingDecision.id == ReviewTask.decision_id)
        .join(RoutingBatch, RoutingBatch.id == RoutingDecision.batch_id)
        .join(predicted, predicted.c.item_id == Label.item_id)
        .join(Item, Item.id == Label.item_id)
        .where(
            Label.selection_reason == Selection.AUDIT.value,
            Label.model_version == model_version,
            RoutingBatch.model_version == model_version,
            RoutingDecision.supersedes_id.is_(None),
            predicted.c.confidence.is_not(None),
        )
        .order_by(Label.item_id)
    )
    if segment is not None:
        query = query.where(Item.segment == segment)
    return labelled_arrays(engine, query)
