"""Retrain flow: a candidate from the training set, judged on the fixed held-out set and on the regression set of
corrected items, promoted if neither shows it worse than the promoted model.

The regression set (``store.regression.corrected_items``) holds every labelled item whose human label corrected
the prediction that routed it, from both splits: a correction in the training split is a fixed failure the
candidate was trained on (getting it wrong is forgetting it), a held-out one (an audit) a known failure neither
model trained on. Per segment with at least ``regression_min_items`` of them, a candidate that gets fewer right
than the promoted model by more than ``floor(regression_tolerance * n)`` items is not promoted. The counts are
net: training-split corrections newer than the promoted model are ones it never learnt, which favours the
candidate; that never refuses a candidate unfairly, and each segment's counts are recorded for review.

Each model family of outputs of LLM pipelines (``store.vocab.ModelFamily``) goes through the same steps on the
answers of its own item kind: a verifier on the accept/reject verdicts on generated responses, a preference model on
the answers to pairs (ties left out), each trained once the training split holds ``family_min_per_outcome`` answers
of each outcome (``scoring.families.MIN_PER_OUTCOME``, 20, by default), judged by the same sign test on the
held-out answers of its kind and on the regression set of its kind's corrected items, and promoted or rejected
beside the classifier, never in place of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine

from flows.common import engine_for, holds_store_lock, load_family_model, load_scoring_model, utcnow
from scoring.families import (
    FAMILY_OUTCOMES,
    MIN_PER_OUTCOME,
    FamilyData,
    correct_predictions,
    family_data,
    family_metrics,
    not_enough_reason,
    train_family_model,
)
from scoring.models import ModelKind, ScoringModel, evaluate, paired_comparison, train_model
from scoring.preference import PreferenceModel
from scoring.registry import save_model
from scoring.verifier import Verifier
from store.bulk import fingerprint
from store.regression import corrected_items
from store.events import record_event
from store.labels import labelled_items
from store.registry import (
    model_for_data, model_row, promote_model, promoted_family_model, promoted_model, register_model,
    reject_model,
)
from store.settings import SluiceSettings, settings_or_environment
from store.vocab import EVALUATION_SELECTIONS, FAMILY_ITEM_KIND, ItemKind, ModelFamily, ModelStatus, Split

FamilyModel = Verifier | PreferenceModel


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
    return train_model(_as_inputs(kind, inputs), labels, kind=cast(ModelKind, kind), seed=seed)


class GateSettings(NamedTuple):
    """The promotion gate's parameters, the same for every model family."""

    alpha: float
    tolerance: float
    min_items: int


def _register(engine: Engine, models_dir: Path, model: ScoringModel | FamilyModel, *, kind: str,
              classes: Sequence[str] | np.ndarray, metrics: dict, train_size: int, data_hash: str,
              parent: str | None) -> str:
    saved = save_model(model, models_dir)
    register_model(engine, {
        "version": saved.version, "kind": kind, "artifact_path": saved.path.name, "sha256": saved.sha256,
        "classes": [str(c) for c in classes], "metrics": metrics, "train_size": train_size,
        "status": ModelStatus.CANDIDATE, "data_hash": data_hash, "parent_version": parent, "created_at": utcnow(),
    })
    return saved.version


def settle_candidate(engine: Engine, settings: SluiceSettings, candidate: ScoringModel | FamilyModel,
                     judged: dict[str, Any], *, kind: str, classes: Sequence[str] | np.ndarray,
                     train_size: int, data_hash: str,
                     incumbent: str | None) -> dict[str, Any]:
    """Register the judged candidate with its metrics and the gate's figures, promote or reject it, and record the
    ``retrain`` audit event; the summary."""
    gate = {k: v for k, v in judged.items() if k not in ("metrics", "incumbent_metrics", "comparison")}
    version = _register(engine, settings.models_dir, candidate, kind=kind, classes=classes,
                        metrics={**(judged["metrics"] or {}), **gate}, train_size=train_size, data_hash=data_hash,
                        parent=incumbent)
    (reject_model if judged["gate_reasons"] else promote_model)(engine, version)
    summary = {"status": "rejected" if judged["gate_reasons"] else "promoted", "version": version, **judged,
               "incumbent": incumbent, "train_size": train_size}
    record_event(engine, "retrain", summary)
    return summary


class SegmentRegression(NamedTuple):
    """How the candidate and the promoted model do on one segment's corrected items.

    ``allowed_loss`` is how many fewer the candidate may get right (the tolerance); a segment with fewer than the
    minimum items is reported but not ``judged``; ``regressed`` says the candidate lost more than allowed."""

    segment: str
    n: int
    candidate_right: int
    incumbent_right: int
    allowed_loss: int
    judged: bool
    regressed: bool


def regression_verdicts(segments: Sequence[str], candidate_correct: Sequence[bool] | np.ndarray,
                        incumbent_correct: Sequence[bool] | np.ndarray, *, tolerance: float,
                        min_items: int) -> list[SegmentRegression]:
    """Per segment, in name order: does the candidate get more than ``floor(tolerance * n)`` fewer of the segment's
    `n` corrected items right than the promoted model? Only segments with at least `min_items` are judged."""
    if not 0.0 <= tolerance < 1.0:  # also rejects NaN
        raise ValueError(f"tolerance must lie in [0, 1), got {tolerance!r}")
    if min_items < 1:
        raise ValueError(f"min_items must be at least 1, got {min_items!r}")
    names = np.asarray(segments, dtype=str)
    candidate, incumbent = np.asarray(candidate_correct, dtype=bool), np.asarray(incumbent_correct, dtype=bool)
    if {names.ndim, candidate.ndim, incumbent.ndim} != {1} or len({names.size, candidate.size, incumbent.size}) > 1:
        raise ValueError(f"need three equal-length 1-D sequences, got shapes {names.shape}, {candidate.shape} "
                         f"and {incumbent.shape}")
    found, index = np.unique(names, return_inverse=True)
    n = np.bincount(index, minlength=found.size)
    candidate_right = np.bincount(index, weights=candidate, minlength=found.size).astype(int)
    incumbent_right = np.bincount(index, weights=incumbent, minlength=found.size).astype(int)
    allowed = np.floor(tolerance * n + 1e-9).astype(int)  # 0.29 * 100 is 28.999...; it allows 29
    judged = n >= min_items
    regressed = judged & (candidate_right < incumbent_right - allowed)
    return [SegmentRegression(str(name), int(count), int(c), int(i), int(a), bool(j), bool(r))
            for name, count, c, i, a, j, r in zip(found, n, candidate_right, incumbent_right, allowed, judged, regressed)]


def check_regression_set(engine: Engine, kind: str, candidate: ScoringModel, incumbent: ScoringModel, *,
                         tolerance: float, min_items: int) -> list[SegmentRegression]:
    """Both models on the corrected items that have the training set's kind of input (text or features)."""
    corrected = [c for c in corrected_items(engine, kinds=[ItemKind.CLASSIFICATION]) if getattr(c, kind) is not None]
    if not corrected:
        return []
    inputs = _as_inputs(kind, [getattr(c, kind) for c in corrected])
    truth = np.asarray([c.label for c in corrected]).astype(str)
    return regression_verdicts([c.segment for c in corrected], candidate.predict(inputs) == truth,
                               incumbent.predict(inputs) == truth, tolerance=tolerance, min_items=min_items)


def gate_reasons(comparison: dict[str, Any] | None, regression: list[SegmentRegression], *,
                 alpha: float) -> list[str]:
    """Why a candidate with a promoted model to beat is kept out; empty when it may be promoted."""
    if comparison is None:
        reasons = ["no held-out evaluation labels to compare the candidate with the promoted model on"]
    elif comparison["worse"]:
        reasons = [f"held-out labels: worse than the promoted model (sign test p = {comparison['p_value']:.3g} "
                   f"< {alpha})"]
    else:
        reasons = []
    return reasons + [
        f"regression set of segment {s.segment!r}: {s.candidate_right} of {s.n} corrected items right, the "
        f"promoted model {s.incumbent_right} (at most {s.allowed_loss} fewer allowed)"
        for s in regression if s.regressed
    ]


def _held_out(engine: Engine, candidate: ScoringModel, incumbent: ScoringModel | None,
              alpha: float) -> tuple[dict | None, dict | None, dict | None]:
    """(candidate metrics, incumbent metrics, paired comparison) on the held-out evaluation labels."""
    eval_kind, eval_inputs, eval_labels = labelled_inputs(engine, split=Split.HOLDOUT, reasons=EVALUATION_SELECTIONS)
    if not eval_labels:
        return None, None, None
    evaluation = _as_inputs(eval_kind, eval_inputs)
    metrics = evaluate(candidate, evaluation, eval_labels)
    if incumbent is None:
        return metrics, None, None
    truth = np.asarray(eval_labels).astype(str)
    comparison = paired_comparison(candidate.predict(evaluation) == truth, incumbent.predict(evaluation) == truth,
                                   alpha=alpha)
    return metrics, evaluate(incumbent, evaluation, eval_labels), comparison


def judge_candidate(engine: Engine, kind: str, candidate: ScoringModel, incumbent: ScoringModel | None, *,
                    alpha: float, tolerance: float, min_items: int) -> dict[str, Any]:
    """The gate's figures and its reasons to keep the candidate out (none without a promoted model to beat)."""
    metrics, incumbent_metrics, comparison = _held_out(engine, candidate, incumbent, alpha)
    regression = None if incumbent is None else check_regression_set(
        engine, kind, candidate, incumbent, tolerance=tolerance, min_items=min_items)
    return {"metrics": metrics, "incumbent_metrics": incumbent_metrics, "comparison": comparison,
            "regression": None if regression is None else [s._asdict() for s in regression],
            "regression_tolerance": tolerance, "regression_min_items": min_items,
            "gate_reasons": [] if regression is None else gate_reasons(comparison, regression, alpha=alpha)}


def resume_candidate(engine: Engine, version: str, incumbent: str | None) -> dict[str, Any] | None:
    """A candidate registered but never promoted or rejected (its run died in between) is settled by the verdict
    it was registered with; None when `version` was settled already."""
    row = model_row(engine, version)
    if row is None or row.status != ModelStatus.CANDIDATE:
        return None
    reasons = (row.metrics or {}).get("gate_reasons")
    if reasons is None:
        reasons = ["registered without the gate's verdict: judged again by the next training set"]
    (reject_model if reasons else promote_model)(engine, version)
    summary = {"status": "rejected" if reasons else "promoted", "version": version, "resumed": True,
               "gate_reasons": reasons, "incumbent": incumbent}
    record_event(engine, "retrain", summary)
    return summary


def retrain_classifier(engine: Engine, settings: SluiceSettings, *, seed: int, gate: GateSettings) -> dict[str, Any]:
    """Train, judge and promote or reject a classifier on the classification labels of the training split."""
    kind, inputs, labels = labelled_inputs(engine, split=Split.TRAIN)
    if len(set(labels)) < 2:
        return {"status": "skipped", "reason": f"training set has {len(labels)} labels and {len(set(labels))} class(es)"}
    data_hash = fingerprint([kind, labels, seed, len(inputs)])
    seen = model_for_data(engine, data_hash)
    incumbent = promoted_model(engine)
    if seen is not None:
        return resume_candidate(engine, seen, incumbent.version if incumbent else None) or {
            "status": "unchanged", "version": seen, "promoted": incumbent.version if incumbent else None}
    candidate = train_candidate(kind, inputs, labels, seed)
    judged = judge_candidate(engine, kind, candidate, load_scoring_model(incumbent, settings) if incumbent else None,
                             alpha=gate.alpha, tolerance=gate.tolerance, min_items=gate.min_items)
    return settle_candidate(engine, settings, candidate, judged, kind=candidate.kind, classes=candidate.classes_,
                            train_size=len(labels), data_hash=data_hash,
                            incumbent=incumbent.version if incumbent else None)


# --- the model families of outputs of LLM pipelines ---------------------------------------------------------------

def family_inputs(engine: Engine, family: ModelFamily, *, split: str,
                  reasons: frozenset[str] | None = None) -> FamilyData:
    """The answered items of the family's kind in `split` that its model can learn from, in item id order."""
    rows = labelled_items(engine, split=split, reasons=reasons, kind=FAMILY_ITEM_KIND[family])
    return family_data(family, [r.item_id for r in rows], [r.payload for r in rows], labels=[r.label for r in rows])


@task(name="train-family-candidate", cache_policy=NO_CACHE)
def train_family_candidate(family: ModelFamily, data: FamilyData) -> FamilyModel:
    return train_family_model(family, data)


def family_regression(engine: Engine, family: ModelFamily, candidate: FamilyModel, incumbent: FamilyModel, *,
                      gate: GateSettings) -> list[SegmentRegression]:
    """Both models on the corrected items of the family's kind (a tie corrects no side: left out)."""
    corrected = corrected_items(engine, kinds=[FAMILY_ITEM_KIND[family]])
    data = family_data(family, [c.item_id for c in corrected], [c.payload for c in corrected],
                       labels=[c.label for c in corrected], segments=[c.segment for c in corrected])
    if not len(data):
        return []
    assert data.positive is not None  # corrected items are answered
    candidate_correct = correct_predictions(candidate.predict_proba(data.examples), data.positive)
    incumbent_correct = correct_predictions(incumbent.predict_proba(data.examples), data.positive)
    return regression_verdicts(data.segments, candidate_correct, incumbent_correct, tolerance=gate.tolerance,
                               min_items=gate.min_items)


def judge_family_candidate(engine: Engine, family: ModelFamily, candidate: FamilyModel,
                           incumbent: FamilyModel | None, *, gate: GateSettings) -> dict[str, Any]:
    """The classifier's gate for a family model: its held-out answers (seed and gold) and its regression set."""
    held = family_inputs(engine, family, split=Split.HOLDOUT, reasons=EVALUATION_SELECTIONS)
    metrics = incumbent_metrics = comparison = None
    if len(held):
        assert held.positive is not None  # held-out items are answered
        p_candidate = candidate.predict_proba(held.examples)
        metrics = family_metrics(p_candidate, held.positive)
        if incumbent is not None:
            p_incumbent = incumbent.predict_proba(held.examples)
            incumbent_metrics = family_metrics(p_incumbent, held.positive)
            comparison = paired_comparison(correct_predictions(p_candidate, held.positive),
                                           correct_predictions(p_incumbent, held.positive), alpha=gate.alpha)
    regression = None if incumbent is None else family_regression(engine, family, candidate, incumbent, gate=gate)
    return {"family": family.value, "metrics": metrics, "incumbent_metrics": incumbent_metrics,
            "comparison": comparison, "regression": None if regression is None else [s._asdict() for s in regression],
            "regression_tolerance": gate.tolerance, "regression_min_items": gate.min_items,
            "gate_reasons": [] if regression is None else gate_reasons(comparison, regression, alpha=gate.alpha)}


def retrain_family(engine: Engine, settings: SluiceSettings, family: ModelFamily, *, gate: GateSettings,
                   min_per_outcome: int) -> dict[str, Any]:
    """Train, judge and promote or reject a model of `family` on the answers of its kind in the training split,
    once there are `min_per_outcome` of each outcome."""
    data = family_inputs(engine, family, split=Split.TRAIN)
    too_few = not_enough_reason(family, data, min_per_outcome=min_per_outcome)
    if too_few is not None:
        return {"family": family.value, "status": "skipped", "reason": too_few}
    assert data.positive is not None  # answers read with their labels
    data_hash = fingerprint([family.value, data.item_ids, data.positive.tolist()])
    seen = model_for_data(engine, data_hash)
    incumbent = promoted_family_model(engine, family)
    if seen is not None:
        resumed = resume_candidate(engine, seen, incumbent.version if incumbent else None)
        return {"family": family.value, **resumed} if resumed else {
            "family": family.value, "status": "unchanged", "version": seen,
            "promoted": incumbent.version if incumbent else None}
    candidate = train_family_candidate(family, data)
    judged = judge_family_candidate(engine, family, candidate, load_family_model(incumbent, settings) if incumbent else None,
                                    gate=gate)
    return settle_candidate(engine, settings, candidate, judged, kind=family.value, classes=FAMILY_OUTCOMES[family],
                            train_size=len(data), data_hash=data_hash,
                            incumbent=incumbent.version if incumbent else None)


@flow(name="retrain", log_prints=True)
@holds_store_lock
def retrain_flow(seed: int = 0, alpha: float = 0.05, regression_tolerance: float = 0.05,
                 regression_min_items: int = 5, family_min_per_outcome: int = MIN_PER_OUTCOME,
                 settings: SluiceSettings | None = None) -> dict[str, Any]:
    """Train on the current training set; promote unless the held-out set shows the candidate is worse than the
    incumbent (a one-sided paired sign test at level `alpha`: see `scoring.models.paired_comparison`) or a
    segment's regression set shows it forgot corrected items (see the module docstring). The candidate's
    artifact goes to the settings' models folder; the gate's figures and reasons go into its metrics and the
    ``retrain`` audit event. The classifier's summary is the result; ``families`` holds the verifier's and the
    preference model's, each retrained the same way on its own kind's answers."""
    logger = get_run_logger()
    settings = settings_or_environment(settings)
    engine = engine_for(settings)
    gate = GateSettings(alpha, regression_tolerance, regression_min_items)
    summary = retrain_classifier(engine, settings, seed=seed, gate=gate)
    families = {family.value: retrain_family(engine, settings, family, gate=gate,
                                             min_per_outcome=family_min_per_outcome) for family in ModelFamily}
    logger.info("retrain: %s", {k: summary.get(k) for k in ("status", "version", "train_size", "gate_reasons")})
    for name, result in families.items():
        logger.info("retrain %s: %s", name, {k: result.get(k) for k in ("status", "version", "train_size",
                                                                         "gate_reasons", "reason")})
    return {**summary, "families": families}
