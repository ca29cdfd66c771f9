"""Reads of what the outputs of LLM pipelines carry, for the step that chooses which of them people review."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
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

    def positions(self, decision_ids: Sequence[int]) -> list[int | None]:
        """Each of `decision_ids`' position in the columns, None for one not among them (a binary search in the
        sorted ids: a batch's candidates are looked up segment by segment without a map built for each)."""
        ids = np.asarray(self.decision_ids, dtype=np.int64)
        wanted = np.asarray(decision_ids, dtype=np.int64)
        at = np.minimum(np.searchsorted(ids, wanted), max(ids.shape[0] - 1, 0))
        found = (ids[at] == wanted) if ids.shape[0] else np.zeros(wanted.shape[0], dtype=bool)
        return [int(a) if f else None for a, f in zip(at.tolist(), found.tolist())]


def llm_candidates(engine: Engine, decision_ids: Sequence[int]) -> LlmCandidates:
    """Of the routing decisions `decision_ids`, those of generation, pairwise and extraction items, with the item's
    kind and payload and the decision's calibrated confidence (its raw one where no calibration applied), in
    decision id order (which `positions` relies on); a classification item's decision is left out, so a backlog
    without LLM outputs reads no payload. One query per 5,000 ids."""
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
