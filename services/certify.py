"""The certified threshold of a segment's target: Learn-then-Test (``routing.thresholds``) on the labels that may
certify the model, its evidence stored so every decision can point at it. Routing uses it; a preview shows it.

The labels that may certify a model (:func:`certifying_labels`) are the ones it could not have trained on, drawn
without regard to any model's uncertainty: its unbiased held-out labels (seed, audit and gold kept out of
training, re-scored by the model), and every audit drawn under the model's own first decisions of items
(``store.certifying``), including the audits that joined the train split: those teach the *next* model, never
the one whose decisions drew them. Every audit therefore certifies the model it was drawn under, and half of
them (``audit_train_share``) also teach its successor. Assumption: a model's labels never reach it after it was
registered; a passthrough model retrained elsewhere on Sluice's exported labels must come back under a new version.

Why review labels do not certify here. The labels of the ``active`` draw have known probabilities, but they are a
tilted sample: weighted by ``a / p_i`` (``a`` the audit rate, ``p_i`` the item's chance of a label) they stand for
the traffic, and any valid test of the weighted sum pays for the weights. The exact binomial tail of the uniform
audits becomes, at best, ``e`` times it (Bentkus' inequality for bounded terms): with no error found, 65 labels
instead of Clopper-Pearson's 45 at a 5% target and 90% confidence, and a mixture of four constant bets about 80.
The review labels that could pay that back land in the band just below the threshold (above it, every item is
drawn at the audit rate anyway), so the weighted test would certify less, not more, on the numbers measured so far
(``routing.active_inference`` holds the weighted estimators and their tests).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import Engine

from routing.policy import SegmentPolicy
from routing.thresholds import guaranteed_threshold
from store.bulk import fingerprint
from store.models import utcnow
from store.certifying import own_audit_labels
from store.labels import held_out_labels, HeldOut, labels_by_reason

__all__ = ["Labelled", "certifying_labels", "derived_threshold", "merge_labelled"]

# item ids, raw confidence, correctness: one segment's (or pool's) certifying labels
Labelled = HeldOut | tuple[list[str], np.ndarray, np.ndarray]


def merge_labelled(parts: list[Labelled]) -> HeldOut:
    """The union of label sets in item id order, an item in several parts counted once (its first part's row)."""
    rows: dict[str, tuple[float, float]] = {}
    for ids, confidence, correct in parts:
        for position, item_id in enumerate(ids):
            rows.setdefault(item_id, (float(confidence[position]), float(correct[position])))
    ids = sorted(rows)
    return HeldOut(ids, np.array([rows[i][0] for i in ids], dtype=float),
                   np.array([rows[i][1] for i in ids], dtype=float))


def certifying_labels(engine: Engine, model_version: str, *, segment: str | None = None,
                      held: dict[str, HeldOut] | None = None) -> dict[str, HeldOut]:
    """Per segment (or only `segment`): the labels that may certify `model_version` (see the module docstring):
    its held-out unbiased labels (`held`, read when not given) and the audits drawn under its own decisions."""
    if held is None:
        held = held_out_labels(engine, model_version, segment=segment)
    own = own_audit_labels(engine, model_version, segment=segment)
    return {name: merge_labelled([part for part in (held.get(name), own.get(name)) if part is not None])
            for name in sorted(set(held) | set(own))}


def derived_threshold(
    engine: Engine, model_version: str, segment: str, policy: SegmentPolicy, calibrator: Any | None, *,
    policy_version: str, calibration_id: int | None = None, labelled: Labelled | None = None,
    pool: str | None = None,
) -> tuple[float | None | str, dict[str, Any] | None]:
    """The segment's guaranteed threshold when its policy sets a target (`max_auto_error`, `confidence`), and the
    evidence behind it.

    Certified on the *raw* confidences of the labels that may certify the model (:func:`certifying_labels`; a
    route passes its segment's or pool's), never on confidences
    passed through a recalibrator fitted to those same labels: a step-function calibrator of those very errors
    would make the candidate grid depend on them. Routing compares the raw confidence with the threshold, so the
    auto-accepted set is exactly the one tested. The calibrated value of the threshold is kept for display.
    Returns the threshold and the evidence row to store with the decisions that use it
    (``store.guarantees.write_threshold_evidence``), or ("policy", None) when the segment has no target: its fixed
    threshold applies (no guarantee).
    """
    if not policy.has_target:
        return "policy", None
    if labelled is None:
        labelled = certifying_labels(engine, model_version, segment=segment).get(
            segment, HeldOut([], np.empty(0), np.empty(0)))
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
    return result.threshold, evidence
