"""Reads of what the outputs of LLM pipelines carry, for the step that chooses which of them people review."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import Engine, bindparam, select

from store.bulk import LOOKUP_CHUNK, chunked
from store.models import Item, RoutingDecision
from store.vocab import ItemKind

__all__ = ["LLM_KINDS", "LlmCandidates", "llm_candidates"]

LLM_KINDS = tuple(kind for kind in ItemKind if kind != ItemKind.CLASSIFICATION)


class LlmCandidates(NamedTuple):
    """Columns of the review candidates that are outputs of LLM pipelines, one entry per routing decision: the
    item's kind and payload, and the confidence that decision routed on after calibration."""

    decision_ids: list[int]
    kinds: list[str]
    payloads: list[dict[str, Any] | None]
    calibrated_confidences: list[float | None]

    def by_decision(self) -> dict[int, int]:
        """Each decision id's position in the columns."""
        return {decision_id: position for position, decision_id in enumerate(self.decision_ids)}


def llm_candidates(engine: Engine, decision_ids: Sequence[int]) -> LlmCandidates:
    """Of the routing decisions `decision_ids`, those of generation, pairwise and extraction items, with the item's
    kind and payload and the decision's calibrated confidence (its raw one where no calibration applied), in
    decision id order; a classification item's decision is left out, so a backlog without LLM outputs reads no
    payload. One query per 5,000 ids."""
    query = (
        select(RoutingDecision.id, Item.kind, Item.payload, RoutingDecision.calibrated_confidence)
        .join(Item, Item.id == RoutingDecision.item_id)
        .where(RoutingDecision.id.in_(bindparam("ids", expanding=True)), Item.kind.in_(LLM_KINDS))
    )
    with engine.connect() as conn:
        rows = sorted((tuple(row) for part in chunked(sorted(set(decision_ids)), LOOKUP_CHUNK)
                       for row in conn.execute(query, {"ids": list(part)})), key=lambda row: row[0])
    if not rows:
        return LlmCandidates([], [], [], [])
    ids, kinds, payloads, confidences = (list(column) for column in zip(*rows))
    return LlmCandidates(ids, [str(k) for k in kinds], payloads, confidences)
