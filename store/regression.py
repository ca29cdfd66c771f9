"""The regression suite: labelled items whose human label corrected the prediction that routed them.

An item is *corrected* when people labelled it and their label differs from the ``predicted_label`` of its latest
routing decision (the model that routed it to them, or auto-accepted it before an audit). A decision without a
predicted label corrects nothing. A labelled item is resolved and is not routed again, so its latest decision is
the one in force when it was labelled. The retrain gate checks every candidate on these items, per segment, so
that a model which forgets a fixed failure is not promoted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from sqlalchemy import Engine, select

from store.models import Item, ItemStateRow, Label, RoutingBatch, RoutingDecision
from store.vocab import ItemKind, Split

__all__ = ["CorrectedItem", "corrected_items"]


class CorrectedItem(NamedTuple):
    """A corrected item: its inputs (the payload of an output of an LLM pipeline), the label people gave and the
    prediction it corrected."""

    item_id: str
    segment: str
    split: str
    label: str
    predicted_label: str
    routing_model: str
    text: str | None
    features: list[float] | None
    kind: str = ItemKind.CLASSIFICATION
    payload: dict[str, Any] | None = None


def corrected_items(engine: Engine, *, splits: Iterable[str] = (Split.TRAIN, Split.HOLDOUT),
                    kinds: Iterable[str] | None = None) -> list[CorrectedItem]:
    """The corrected items whose label is in one of `splits` (both by default), of one of `kinds` of item only when
    given (a model is judged on the items it scores: a verifier on generated responses), in item id order."""
    wanted = sorted({str(split) for split in splits})
    unknown = set(wanted) - {s.value for s in Split}
    if not wanted or unknown:
        raise ValueError(f"splits must be a non-empty selection of {[s.value for s in Split]}, got {wanted!r}")
    of_kinds = None if kinds is None else sorted({str(kind) for kind in kinds})
    if of_kinds is not None and (not of_kinds or set(of_kinds) - {k.value for k in ItemKind}):
        raise ValueError(f"kinds must be a non-empty selection of {[k.value for k in ItemKind]}, got {of_kinds!r}")
    query = (
        select(Label.item_id, Item.segment, Label.split, Label.label, RoutingDecision.predicted_label,
               RoutingBatch.model_version, Item.text, Item.features, Item.kind, Item.payload)
        .join(ItemStateRow, ItemStateRow.item_id == Label.item_id)
        .join(RoutingDecision, RoutingDecision.id == ItemStateRow.decision_id)  # the item's latest decision
        .join(RoutingBatch, RoutingBatch.id == RoutingDecision.batch_id)
        .join(Item, Item.id == Label.item_id)
        .where(Label.split.in_(wanted), RoutingDecision.predicted_label.is_not(None),
               RoutingDecision.predicted_label != Label.label)
        .order_by(Label.item_id)
    )
    if of_kinds is not None:
        query = query.where(Item.kind.in_(of_kinds))
    with engine.connect() as conn:
        return [CorrectedItem(*row) for row in conn.execute(query)]
