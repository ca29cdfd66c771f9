"""Reads for training data out: the resolved human answers on the items of an LLM pipeline's kind, with everything
their provenance names (the route, why and with what probability the item was chosen, who answered and how far
they agreed, the policy and model versions). The export commands (`labeling.export`) turn them into records."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Engine, select

from store.models import Item, Label, ReviewTask, RoutingDecision, as_utc

__all__ = ["AnsweredItem", "answered_items"]

PAGE = 2_000


class AnsweredItem(NamedTuple):
    item_id: str
    segment: str
    text: str | None
    payload: dict[str, Any]
    label_id: int
    label: str
    answer: dict[str, Any] | None
    split: str
    source: str
    resolution: str | None
    agreement: float | None
    annotators: list[str]
    selection_reason: str
    selection_probability: float | None
    model_version: str | None
    policy_version: str | None
    route: str | None
    cycle: int | None
    answered_at: datetime


def answered_items(engine: Engine, kind: str, *, since: datetime | None = None) -> Iterator[AnsweredItem]:
    """Every item of `kind` with a resolved label (changed at or after `since` when given), in label order, read
    a page at a time."""
    query = (
        select(Item.id, Item.segment, Item.text, Item.payload, Label.id.label("label_id"), Label.label, Label.answer,
               Label.split, Label.source, Label.resolution, Label.agreement, Label.annotator,
               Label.selection_reason, Label.selection_probability, Label.model_version, Label.policy_version,
               Label.cycle, Label.created_at, RoutingDecision.route)
        .join(Label, Label.item_id == Item.id)
        .outerjoin(ReviewTask, ReviewTask.item_id == Item.id)
        .outerjoin(RoutingDecision, RoutingDecision.id == ReviewTask.decision_id)
        .where(Item.kind == kind)
    )
    if since is not None:
        query = query.where(Label.created_at >= since)
    last = 0
    while True:
        with engine.connect() as conn:
            rows = conn.execute(query.where(Label.id > last).order_by(Label.id).limit(PAGE)).all()
        for row in rows:
            yield AnsweredItem(
                item_id=row.id, segment=row.segment, text=row.text, payload=row.payload or {},
                label_id=row.label_id, label=row.label, answer=row.answer, split=row.split, source=row.source,
                resolution=row.resolution, agreement=row.agreement,
                annotators=[a for a in (row.annotator or "").split(",") if a], selection_reason=row.selection_reason,
                selection_probability=row.selection_probability, model_version=row.model_version,
                policy_version=row.policy_version, route=row.route, cycle=row.cycle,
                answered_at=as_utc(row.created_at))
        if len(rows) < PAGE:
            return
        last = rows[-1].label_id
