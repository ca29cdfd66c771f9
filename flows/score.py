"""Score flow: predictions for new items, for the review backlog after a promotion, and for held-out labels."""

from __future__ import annotations

from typing import Any

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine, and_, exists, or_, select, update

from flows.common import UPSTREAM_MODEL, engine_for, load_scoring_model, promoted_model, utcnow
from scoring.passthrough import upstream_scores
from store.bulk import chunked, insert_ignore
from store.models import Item, ItemState, Label, ModelVersion, Prediction

DEFAULT_BATCH_SIZE = 5_000
RESCORED_STATES = (ItemState.received.value, ItemState.routed.value)


def prediction_rows(item_ids: list[str], classes: np.ndarray, probs: np.ndarray, model_version: str) -> list[dict]:
    """One prediction row per item: top label, its probability, the top-1/top-2 margin and all probabilities."""
    order = np.argsort(-probs, axis=1)
    top = probs[np.arange(len(probs)), order[:, 0]]
    second = probs[np.arange(len(probs)), order[:, 1]] if probs.shape[1] > 1 else np.zeros(len(probs))
    labels = classes[order[:, 0]]
    names = [str(c) for c in classes]
    now = utcnow()
    return [
        {
            "item_id": item_id, "model_version": model_version, "label": str(label), "confidence": float(conf),
            "margin": float(conf - sec), "probs": dict(zip(names, row.tolist())), "created_at": now,
        }
        for item_id, label, conf, sec, row in zip(item_ids, labels, top, second, probs)
    ]


def _write_predictions(engine: Engine, rows: list[dict]) -> None:
    with engine.begin() as conn:
        insert_ignore(conn, Prediction.__table__, rows)
        ids = [r["item_id"] for r in rows]
        for part in chunked(ids, 5_000):
            conn.execute(
                update(Item)
                .where(Item.id.in_(part), Item.state.in_(RESCORED_STATES))
                .values(state=ItemState.scored.value, updated_at=utcnow())
            )


@task(name="score-batch", cache_policy=NO_CACHE)
def score_model_batch(item_ids: list[str], version: ModelVersion, database_url: str | None) -> int:
    engine = engine_for(database_url)
    model = load_scoring_model(version)
    column = Item.text if model.kind == "text" else Item.features
    with engine.connect() as conn:
        found = dict(conn.execute(select(Item.id, column).where(Item.id.in_(item_ids))).all())
    usable = [i for i in item_ids if found.get(i) is not None]
    if not usable:
        return 0
    inputs = [found[i] for i in usable]
    probs = model.predict_proba(np.asarray(inputs, dtype=float) if model.kind == "features" else inputs)
    _write_predictions(engine, prediction_rows(usable, model.classes_, probs, version.version))
    return len(usable)


@task(name="passthrough-batch", cache_policy=NO_CACHE)
def score_upstream_batch(item_ids: list[str], database_url: str | None) -> int:
    engine = engine_for(database_url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(Item.id, Item.upstream_prediction, Item.upstream_confidence, Item.upstream_probs)
            .where(Item.id.in_(item_ids))
        ).all()
    scores = upstream_scores([r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows])
    complete = scores.has_upstream & np.isfinite(scores.probs).all(axis=1)
    keep = np.flatnonzero(complete)
    written = [] if keep.size == 0 else prediction_rows(
        [rows[i][0] for i in keep], scores.classes, scores.probs[keep], UPSTREAM_MODEL)
    # a prediction and confidence with no probabilities to go with them (a single known class): keep the pair
    now = utcnow()
    written += [
        {"item_id": rows[i][0], "model_version": UPSTREAM_MODEL, "label": str(scores.labels[i]),
         "confidence": float(scores.confidence[i]), "margin": None, "probs": None, "created_at": now}
        for i in np.flatnonzero(scores.has_upstream & ~complete)
    ]
    if written:
        _write_predictions(engine, written)
    return len(written)


def _has_upstream():
    return or_(Item.upstream_confidence.is_not(None), Item.upstream_probs.is_not(None))


def items_to_score(engine: Engine, model_version: str | None) -> tuple[list[str], list[str]]:
    """(ids for the promoted model, ids for the upstream passthrough) that still lack a prediction."""
    def lacks(version: str):
        return ~exists().where(and_(Prediction.item_id == Item.id, Prediction.model_version == version))

    with engine.connect() as conn:
        upstream = conn.execute(
            select(Item.id).where(Item.state.in_(RESCORED_STATES), _has_upstream(), lacks(UPSTREAM_MODEL))
        ).scalars().all()
        if model_version is None:
            return [], list(upstream)
        holdout = exists().where(and_(Label.item_id == Item.id, Label.split == "holdout"))
        model = conn.execute(
            select(Item.id).where(
                or_(and_(Item.state.in_(RESCORED_STATES), ~_has_upstream()), holdout), lacks(model_version)
            )
        ).scalars().all()
    return list(model), list(upstream)


@flow(name="score", log_prints=True)
def score_flow(batch_size: int = DEFAULT_BATCH_SIZE, database_url: str | None = None) -> dict[str, Any]:
    """Score every item that lacks a prediction from the promoted model (or carries upstream scores)."""
    logger = get_run_logger()
    engine = engine_for(database_url)
    version = promoted_model(engine)
    model_ids, upstream_ids = items_to_score(engine, version.version if version else None)
    futures = [score_upstream_batch.submit(list(part), database_url) for part in chunked(upstream_ids, batch_size)]
    if version is not None:
        futures += [
            score_model_batch.submit(list(part), version, database_url) for part in chunked(model_ids, batch_size)
        ]
    scored = sum(f.result() for f in futures)
    summary = {
        "model_version": version.version if version else None,
        "scored": scored,
        "upstream": len(upstream_ids),
        "waiting_for_a_model": 0 if version else _count_waiting(engine),
    }
    logger.info("score: %s", summary)
    return summary


def _count_waiting(engine: Engine) -> int:
    from sqlalchemy import func

    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(Item).where(Item.state == ItemState.received.value, ~_has_upstream())
        ).scalar_one()
