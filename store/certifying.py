"""The labels that may certify a model beyond its held-out set: the audits drawn under its own decisions.

A model never trained on a label that came back after the model existed. An audit drawn from the fresh traffic a
model routed (the item's first decision, so the item is a draw of the traffic, not of a re-routed backlog) is a
uniform draw made after the model was fixed, so it may certify that model whichever split it then joined: an audit
in the train split teaches the *next* model and certifies this one. ``store.repo.held_out_labels`` holds the rest of
what may certify (seed, audit and gold labels kept out of training).
"""

from __future__ import annotations

from sqlalchemy import Engine, and_, select
from sqlmodel import col

from store.models import Item, Label, Prediction, ReviewTask, RoutingDecision
from store.repo import HeldOut, labelled_arrays
from store.vocab import Selection

__all__ = ["own_audit_labels"]


def own_audit_labels(engine: Engine, model_version: str, *, segment: str | None = None) -> dict[str, HeldOut]:
    """Per segment (or only `segment`): the raw confidence and correctness of `model_version` on the audits drawn
    under its own first decisions of items, whatever split the label joined. Outputs without a confidence are left
    out; the item ids are in order."""
    query = (
        select(Item.segment, Label.item_id, Prediction.confidence, col(Prediction.label).label("predicted"),
               col(Label.label).label("truth"))
        .distinct()
        .join(ReviewTask, and_(col(ReviewTask.item_id) == Label.item_id,
                               col(ReviewTask.selection_reason) == Selection.AUDIT.value))
        .join(RoutingDecision, col(RoutingDecision.id) == ReviewTask.decision_id)
        .join(Prediction, and_(col(Prediction.item_id) == Label.item_id,
                               col(Prediction.model_version) == model_version))
        .join(Item, col(Item.id) == Label.item_id)
        .where(
            col(Label.selection_reason) == Selection.AUDIT.value,
            col(Label.model_version) == model_version,
            col(RoutingDecision.model_version) == model_version,
            col(RoutingDecision.supersedes_id).is_(None),
            col(Prediction.confidence).is_not(None),
        )
        .order_by(Label.item_id)
    )
    if segment is not None:
        query = query.where(col(Item.segment) == segment)
    return labelled_arrays(engine, query)
