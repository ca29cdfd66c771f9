"""Retrain flow: a candidate from the training set, judged on the fixed held-out set, promoted if not worse."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine

from flows.common import engine_for, holds_store_lock, load_scoring_model, utcnow
from scoring.models import ScoringModel, evaluate, paired_comparison, train_model
from scoring.registry import save_model
from store.bulk import fingerprint
from store.repo import (
    labelled_items,
    model_for_data,
    promote_model,
    promoted_model,
    record_event,
    register_model,
    reject_model,
)
from store.settings import SluiceSettings, settings_or_environment
from store.vocab import EVALUATION_SELECTIONS, ModelStatus, Split


def labelled_inputs(engine: Engine, *, split: str, reasons: frozenset[str] | None = None) -> tuple[str, list, list]:
    """(kind, inputs, labels) of the labelled items of a split, in item id order."""
    rows = labelled_items(engine, split=split, reasons=reasons)
    kind = "text" if sum(r.text is not None for r in rows) >= sum(r.features is not None for r in rows) else "features"
    usable = [r for r in rows if getattr(r, kind) is not None]
    return kind, [getattr(r, kind) for r in usable], [r.label for r in usable]


def _as_inputs(kind: str, inputs: list) -> Any:
    return np.asarray(inputs, dtype=float) if kind == "features" else inputs


@task(name="train-candidate", cache_policy=NO_CACHE)
def train_candidate(kind: str, inputs: list, labels: list, seed: int) -> ScoringModel:
    return train_model(_as_inputs(kind, inputs), labels, kind=kind, seed=seed)


def _register(engine: Engine, models_dir: Path, model: ScoringModel, metrics: dict, train_size: int,
              data_hash: str, parent: str | None) -> str:
    saved = save_model(model, models_dir)
    register_model(engine, {
        "version": saved.version, "kind": model.kind, "artifact_path": str(saved.path), "sha256": saved.sha256,
        "classes": [str(c) for c in model.classes_], "metrics": metrics, "train_size": train_size,
        "status": ModelStatus.CANDIDATE, "data_hash": data_hash, "parent_version": parent, "created_at": utcnow(),
    })
    return saved.version


@flow(name="retrain", log_prints=True)
@holds_store_lock
def retrain_flow(seed: int = 0, alpha: float = 0.05, settings: SluiceSettings | None = None) -> dict[str, Any]:
    """Train on the current training set; promote unless the held-out set shows the candidate is worse than the
    incumbent (a one-sided paired sign test at level `alpha`: see `scoring.models.paired_comparison`). The
    candidate's artifact goes to the settings' models folder."""
    logger = get_run_logger()
    settings = settings_or_environment(settings)
    engine = engine_for(settings)
    kind, inputs, labels = labelled_inputs(engine, split=Split.TRAIN)
    if len(set(labels)) < 2:
        return {"status": "skipped", "reason": f"training set has {len(labels)} labels and {len(set(labels))} class(es)"}
    data_hash = fingerprint([kind, labels, seed, len(inputs)])
    seen = model_for_data(engine, data_hash)
    incumbent = promoted_model(engine)
    if seen is not None:
        return {"status": "unchanged", "version": seen, "promoted": incumbent.version if incumbent else None}
    eval_kind, eval_inputs, eval_labels = labelled_inputs(engine, split=Split.HOLDOUT, reasons=EVALUATION_SELECTIONS)
    candidate = train_candidate(kind, inputs, labels, seed)
    evaluation = _as_inputs(eval_kind, eval_inputs)
    metrics = evaluate(candidate, evaluation, eval_labels) if eval_labels else None
    incumbent_metrics, comparison = None, None
    if incumbent is not None and eval_labels:
        incumbent_model = load_scoring_model(incumbent)
        incumbent_metrics = evaluate(incumbent_model, evaluation, eval_labels)
        truth = np.asarray(eval_labels).astype(str)
        comparison = paired_comparison(candidate.predict(evaluation) == truth,
                                       incumbent_model.predict(evaluation) == truth, alpha=alpha)
    version = _register(engine, settings.models_dir, candidate, metrics or {}, len(labels), data_hash,
                        incumbent.version if incumbent else None)
    promoted = incumbent is None or (comparison is not None and not comparison["worse"])
    if promoted:
        promote_model(engine, version)
    else:
        reject_model(engine, version)
    summary = {"status": "promoted" if promoted else "rejected", "version": version, "metrics": metrics,
               "incumbent": incumbent.version if incumbent else None, "incumbent_metrics": incumbent_metrics,
               "comparison": comparison, "train_size": len(labels)}
    record_event(engine, "retrain", summary)
    logger.info("retrain: %s", {k: summary[k] for k in ("status", "version", "train_size")})
    return summary
