"""The backlog populations select runs leave (``backlog_draws``), read with what certifies them: each item's audit
draw, its held-out label if one came back, and a model's prediction on it (``routing.backlog``)."""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple, Sequence

import numpy as np
from sqlalchemy import Engine, bindparam, select

from store.bulk import LOOKUP_CHUNK, chunked
from store.models import BacklogDraw, Label, ReviewTask
from store.predictions import predictions_of
from store.vocab import Selection, Split

__all__ = ["BacklogPopulation", "backlog_population", "population_of"]


class BacklogPopulation(NamedTuple):
    """The review items one select run of a segment left waiting, in decision order: ``truth`` is the held-out
    audit label (None when none came back), ``trained`` whether the item's label joined the training split,
    ``labelled`` whether any label at all is stored for it, ``confidence`` and ``predicted`` the model's raw
    confidence and output (NaN and None without a prediction). ``picked_later`` says a later select (over the same
    decisions, before they were re-routed) sent some of them for review by its strategy: the population is then
    thinned by a model's uncertainty and certifies nothing."""

    run: str
    decision_ids: list[int]
    item_ids: list[str]
    audit_probability: np.ndarray
    audited: np.ndarray
    labelled: np.ndarray
    truth: list[str | None]
    trained: np.ndarray
    confidence: np.ndarray
    predicted: list[str | None]
    picked_later: bool


def population_of(engine: Engine, segment: str, decision_ids: Sequence[int]) -> str | None:
    """The select run that left waiting most of `decision_ids` of `segment` (the re-routed items' earlier
    decisions), or None when no select run left any of them."""
    runs: Counter[str] = Counter()
    query = select(BacklogDraw.run).where(BacklogDraw.segment == segment,
                                          BacklogDraw.decision_id.in_(bindparam("ids", expanding=True)))
    with engine.connect() as conn:
        for part in chunked(list(decision_ids), LOOKUP_CHUNK):
            runs.update(conn.execute(query, {"ids": list(part)}).scalars())
    return runs.most_common(1)[0][0] if runs else None


def backlog_population(engine: Engine, run: str, segment: str, model_version: str) -> BacklogPopulation:
    """The items select `run` left waiting in `segment`, with `model_version`'s prediction on each and their
    labels."""
    predicted = predictions_of(model_version)
    with engine.connect() as conn:
        rows = conn.execute(
            select(BacklogDraw.decision_id, BacklogDraw.item_id, BacklogDraw.audit_probability, BacklogDraw.audited,
                   predicted.c.confidence, predicted.c.label)
            .outerjoin(predicted, predicted.c.item_id == BacklogDraw.item_id)
            .where(BacklogDraw.run == run, BacklogDraw.segment == segment)
            .order_by(BacklogDraw.decision_id)
        ).all()
        ids = [r.item_id for r in rows]
        decisions = [r.decision_id for r in rows]
        truth: dict[str, str] = {}
        labelled: set[str] = set()
        trained: set[str] = set()
        label_query = select(Label.item_id, Label.label, Label.split, Label.selection_reason).where(
            Label.item_id.in_(bindparam("ids", expanding=True)))
        task_query = select(ReviewTask.decision_id).where(
            ReviewTask.decision_id.in_(bindparam("ids", expanding=True)),
            ReviewTask.selection_reason != Selection.AUDIT.value).limit(1)
        picked = any(conn.execute(task_query, {"ids": list(part)}).first() is not None
                     for part in chunked([r.decision_id for r in rows], LOOKUP_CHUNK))
        for part in chunked(ids, LOOKUP_CHUNK):
            for label in conn.execute(label_query, {"ids": list(part)}):
                labelled.add(label.item_id)
                if label.split == Split.TRAIN:
                    trained.add(label.item_id)
                elif label.selection_reason == Selection.AUDIT:
                    truth[label.item_id] = label.label
    return BacklogPopulation(
        run=run, decision_ids=decisions, item_ids=ids,
        audit_probability=np.array([r.audit_probability for r in rows], dtype=float),
        audited=np.array([bool(r.audited) for r in rows], dtype=bool),
        labelled=np.array([i in labelled for i in ids], dtype=bool),
        truth=[truth.get(i) for i in ids], trained=np.array([i in trained for i in ids], dtype=bool),
        confidence=np.array([np.nan if r.confidence is None else r.confidence for r in rows], dtype=float),
        predicted=[r.label for r in rows], picked_later=picked,
    )
