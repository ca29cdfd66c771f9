"""Labels as the loop reads them: the held-out labels that calibrate and certify, the labels of each
kind behind a certification, and the training set's labels, texts and vectors."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, NamedTuple, cast

import numpy as np
from sqlalchemy import Engine, bindparam, func, select

from store.bulk import LOOKUP_CHUNK, chunked, existing_keys, insert_ignore
from store.models import Item, ItemState, Label
from store.predictions import predictions_of
from store.transitions import move_items
from store.vocab import UNBIASED_SELECTIONS, ItemKind, Split

__all__ = [
    "held_out_labels", "HeldOut", "known_and_labelled", "labelled_arrays", "labelled_items", "LabelledItem",
    "labels_by_reason", "selection_probabilities", "training_fingerprint", "training_segments",
    "training_texts", "training_vectors", "unlabelled_inputs", "write_labels",
]


class HeldOut(NamedTuple):
    """One model's outputs on a segment's unbiased held-out labels, in item id order."""

    item_ids: list[str]
    confidence: np.ndarray
    correct: np.ndarray  # 0/1; an output without a predicted label is never right (fail closed)


def held_out_labels(engine: Engine, model_version: str, *, segment: str | None = None) -> dict[str, HeldOut]:
    """Per segment (or only `segment`): the raw confidence and correctness of `model_version` on the labels that
    may calibrate and certify it: held out, and chosen without regard to any model's uncertainty
    (`store.vocab.UNBIASED_SELECTIONS`). Outputs without a confidence are left out."""
    predicted = predictions_of(model_version)
    query = (
        select(Item.segment, Label.item_id, predicted.c.confidence, predicted.c.label.label("predicted"),
               Label.label.label("truth"))
        .join(predicted, predicted.c.item_id == Label.item_id)
        .join(Item, Item.id == Label.item_id)
        .where(
            Label.split == Split.HOLDOUT,
            Label.selection_reason.in_(sorted(UNBIASED_SELECTIONS)),
            predicted.c.confidence.is_not(None),
        )
        .order_by(Label.item_id)
    )
    if segment is not None:
        query = query.where(Item.segment == segment)
    return labelled_arrays(engine, query)


def labelled_arrays(engine: Engine, query: Any) -> dict[str, HeldOut]:
    """Per segment, the :class:`HeldOut` arrays of `query`'s rows (``segment``, ``item_id``, ``confidence``,
    ``predicted``, ``truth``), in the query's order."""
    grouped: dict[str, list[Any]] = {}
    with engine.connect() as conn:
        for row in conn.execute(query):
            grouped.setdefault(row.segment, []).append(row)
    return {
        name: HeldOut(
            [r.item_id for r in rows],
            np.array([r.confidence for r in rows], dtype=float),
            np.array([r.predicted is not None and r.predicted == r.truth for r in rows], dtype=float),
        )
        for name, rows in grouped.items()
    }


def training_fingerprint(engine: Engine) -> str:
    """A fingerprint of the training set's content: the ids of its label rows (labels and items are immutable, so
    the same ids are the same examples). Caches of models fitted on the training set are keyed by it."""
    digest = hashlib.sha256()
    with engine.connect() as conn:
        for (label_id,) in conn.execute(select(Label.id).where(Label.split == Split.TRAIN).order_by(Label.id)):
            digest.update(cast(int, label_id).to_bytes(8, "little"))
    return digest.hexdigest()[:32]


def unlabelled_inputs(engine: Engine, kind: str, *, limit: int) -> list[Any]:
    """The texts (`kind` "text") or feature vectors of up to `limit` classification items without a label, in item
    id order."""
    column = Item.text if kind == "text" else Item.features
    query = (select(column).where(column.is_not(None), Item.kind == ItemKind.CLASSIFICATION,
                                  Item.id.not_in(select(Label.item_id)))
             .order_by(Item.id).limit(limit))
    with engine.connect() as conn:
        return list(conn.execute(query).scalars().all())


def labels_by_reason(engine: Engine, item_ids: Sequence[str]) -> dict[str, int]:
    """How many of the labels of `item_ids` were drawn for each reason (seed, audit, gold, ...)."""
    counts: dict[str, int] = {}
    query = (select(Label.selection_reason, func.count()).where(Label.item_id.in_(bindparam("ids", expanding=True)))
             .group_by(Label.selection_reason))
    with engine.connect() as conn:
        for part in chunked(list(item_ids), LOOKUP_CHUNK):
            for reason, count in conn.execute(query, {"ids": list(part)}):
                counts[reason] = counts.get(reason, 0) + int(count)
    return dict(sorted(counts.items()))


def training_texts(engine: Engine) -> list[str]:
    """The texts of the items in the training set (items without text left out)."""
    query = (select(Item.text).join(Label, Label.item_id == Item.id)
             .where(Label.split == Split.TRAIN, Item.text.is_not(None)))
    with engine.connect() as conn:
        return cast(list[str], list(conn.execute(query).scalars().all()))


def training_vectors(engine: Engine) -> list[list[float]]:
    """The feature vectors of the items in the training set (items without one left out)."""
    query = (select(Item.features).join(Label, Label.item_id == Item.id)
             .where(Label.split == Split.TRAIN, Item.features.is_not(None)))
    with engine.connect() as conn:
        return cast(list[list[float]], list(conn.execute(query).scalars().all()))


def training_segments(engine: Engine) -> dict[str, int]:
    """Per segment with any: the labels in the training set."""
    query = (select(Item.segment, func.count().label("n")).join(Label, Label.item_id == Item.id)
             .where(Label.split == Split.TRAIN).group_by(Item.segment))
    with engine.connect() as conn:
        return {row.segment: row.n for row in conn.execute(query)}


def selection_probabilities(engine: Engine, item_ids: list[str]) -> dict[str, float | None]:
    """The probability with which each labelled item of `item_ids` was drawn for its label (None when unknown)."""
    query = (select(Label.item_id, Label.selection_probability)
             .where(Label.item_id.in_(bindparam("ids", expanding=True))))
    found: dict[str, float | None] = {}
    with engine.connect() as conn:
        for part in chunked(item_ids, 5_000):
            found.update((r.item_id, r.selection_probability) for r in conn.execute(query, {"ids": list(part)}))
    return found


class LabelledItem(NamedTuple):
    """A labelled item's inputs (text, features; the payload of an output of an LLM pipeline) and its label."""

    item_id: str
    label: str
    text: str | None
    features: list[float] | None
    payload: dict[str, Any] | None = None


def labelled_items(engine: Engine, *, split: str, reasons: frozenset[str] | None = None,
                   kind: str = ItemKind.CLASSIFICATION) -> list[LabelledItem]:
    """The labelled items of `kind` in `split` (chosen for one of `reasons` only, when given), in item id order:
    a classifier learns from classifications only, never from the verdicts on generated responses."""
    query = (
        select(Label.item_id, Label.label, Item.text, Item.features, Item.payload)
        .join(Item, Item.id == Label.item_id)
        .where(Label.split == split, Item.kind == kind)
        .order_by(Label.item_id)
    )
    if reasons is not None:
        query = query.where(Label.selection_reason.in_(sorted(reasons)))
    with engine.connect() as conn:
        return [LabelledItem(r.item_id, r.label, r.text, r.features, r.payload) for r in conn.execute(query)]


def known_and_labelled(engine: Engine, item_ids: Sequence[str]) -> tuple[set[str], set[str]]:
    """Of `item_ids`: those stored as items, and those that have a label already."""
    with engine.connect() as conn:
        return (set(existing_keys(conn, Item.__table__.c.id, list(item_ids))),
                set(existing_keys(conn, Label.__table__.c.item_id, list(item_ids))))


def write_labels(engine: Engine, rows: list[dict[str, Any]], *, by: str) -> None:
    """Store label rows (a label already stored for an item is kept) and move their items to ``resolved``
    (``store.transitions``, recorded as made `by`), in one transaction."""
    with engine.begin() as conn:
        insert_ignore(conn, Label.__table__, rows)
        move_items(conn, dict.fromkeys((r["item_id"] for r in rows), ItemState.resolved), by=by)
