"""The certified threshold of a segment's target: Learn-then-Test (``routing.thresholds``) on the unbiased
held-out labels, its evidence stored so every decision can point at it. Routing uses it; a preview shows it."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import Engine

from routing.policy import SegmentPolicy
from routing.thresholds import guaranteed_threshold
from store.bulk import fingerprint
from store.models import utcnow
from store.repo import HeldOut, held_out_labels, labels_by_reason, save_threshold_evidence

__all__ = ["Labelled", "derived_threshold"]

# item ids, raw confidence, correctness: one segment's (or pool's) unbiased held-out labels
Labelled = HeldOut | tuple[list[str], np.ndarray, np.ndarray]


def derived_threshold(
    engine: Engine, model_version: str, segment: str, policy: SegmentPolicy, calibrator: Any | None, *,
    policy_version: str, calibration_id: int | None = None, labelled: Labelled | None = None,
    pool: str | None = None,
) -> tuple[float | None | str, int | None]:
    """The segment's guaranteed threshold when its policy sets a target (`max_auto_error`, `confidence`), and the
    id of the stored evidence behind it.

    Certified on the *raw* confidences of the unbiased held-out labels (seed, audit, gold), never on confidences
    passed through a recalibrator fitted to those same labels: a step-function calibrator of those very errors
    would make the candidate grid depend on them. Routing compares the raw confidence with the threshold, so the
    auto-accepted set is exactly the one tested. The calibrated value of the threshold is kept for display.
    Returns ("policy", None) when the segment has no target: its fixed threshold applies (no guarantee).
    """
    if not policy.has_target:
        return "policy", None
    if labelled is None:
        labelled = held_out_labels(engine, model_version, segment=segment).get(segment, HeldOut([], np.empty(0), np.empty(0)))
    ids, confidence, correct = labelled  # flows/route.py passes (ids, confidence, correct) tuples too
    assert policy.max_auto_error is not None and policy.delta is not None  # a target sets both
    result = guaranteed_threshold(confidence, correct, alpha=policy.max_auto_error, delta=policy.delta)
    shown = None
    if result.threshold is not None:
        shown = float(calibrator.predict(np.array([result.threshold]))[0]) if calibrator is not None \
            else result.threshold
    evidence = {
        "model_version": model_version, "segment": segment, "policy_version": policy_version,
        "label_fingerprint": fingerprint([ids, np.asarray(correct).tolist()]), "scale": "raw",
        "threshold": result.threshold, "calibrated_threshold": shown, "n": result.n,
        "n_accepted": result.n_accepted, "n_errors": result.n_errors,
        "coverage": result.coverage, "error_upper_bound": result.error_upper_bound, "alpha": result.alpha,
        "delta": result.delta, "tested": result.tested, "pool": pool or segment, "calibration_id": calibration_id,
        "estimator": result.estimator, "labels_by_reason": labels_by_reason(engine, ids), "created_at": utcnow(),
    }
    return result.threshold, save_threshold_evidence(engine, evidence)
