"""What routing needs beyond a confidence: guaranteed thresholds, risk flags of a batch, the live audit estimate."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from sqlalchemy import Engine

from flows.calibrate import Labelled
from flows.common import fingerprint, utcnow
from routing.audit import audit_error_by_segment, correct_for_annotator_error
from routing.guard import live_error_guard
from routing.policy import Policy, SegmentPolicy
from routing.signals import (
    LengthOutlier,
    OutOfDistribution,
    RiskFlags,
    Signal,
    TextBatch,
    combine_signals,
    encoded_payload,
    mixed_scripts,
    rule_hits,
    text_lengths,
    under_represented_segments,
    zero_width_or_bidi,
)
from routing.thresholds import guaranteed_threshold
from store.figures import (
    audited_automation,
    automated_population,
    gold_answers,
    label_class_count,
)
from store.repo import (
    UPSTREAM_MODEL,
    HaltRecord,
    HeldOut,
    ItemInputs,
    held_out_labels,
    item_inputs,
    record_event,
    save_guard_halts,
    save_threshold_evidence,
    training_fingerprint,
    training_segments,
    training_texts,
    training_vectors,
)
from store.repo import guard_halts as repo_guard_halts

MIN_TRAINING_TEXTS = 20
MIN_TRAINING_VECTORS = 20
# A segment holding less than this share of the training set is under-represented: its items go to people.
MIN_SEGMENT_SHARE = 0.01


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
        "created_at": utcnow(),
    }
    return result.threshold, save_threshold_evidence(engine, evidence)


def guard_halts(engine: Engine) -> dict[str, list[HaltRecord]]:
    """Per segment, its halts in order (oldest first)."""
    halts: dict[str, list[HaltRecord]] = {}
    for row in reversed(repo_guard_halts(engine)):
        halts.setdefault(row.segment, []).append(row)
    return halts


def check_live_guards(engine: Engine, policy: Policy) -> dict[str, dict[str, Any]]:
    """Run every target segment's live guard (``routing.guard``) on the audits since its last halt; record a new
    halt (row and audit event) when the evidence says the segment's live error exceeds its target.

    Returns, per segment with audits or halts, the guard's figures and ``halted_model``: the model version whose
    automation is halted (None when none is). A halt binds the model it was found under; a newer model starts a
    fresh test, on its own audits."""
    halts = guard_halts(engine)
    by_segment: dict[str, list[Any]] = {}
    for row in audited_automation(engine):
        by_segment.setdefault(row.segment, []).append(row)
    states: dict[str, dict[str, Any]] = {}
    new_halts = []
    for segment in sorted(set(by_segment) | set(halts)):
        rules = policy.for_segment(segment)
        previous = halts.get(segment, [])
        since = previous[-1].last_decision_id if previous else -1
        audits = [r for r in by_segment.get(segment, []) if r.decision_id > since]
        state: dict[str, Any] = {"halted_model": previous[-1].model_version if previous else None,
                                 "halts": len(previous)}
        if rules.has_target:
            result = live_error_guard([r.wrong for r in audits], alpha=rules.max_auto_error, delta=rules.delta)
            state.update(result.to_dict())
            if result.halted:
                at = audits[result.halted_at]
                state["halted_model"] = at.model_version
                state["halts"] += 1
                new_halts.append({"segment": segment, "model_version": at.model_version,
                                  "last_decision_id": at.decision_id,
                                  "e_value": result.e_value, "n_audited": result.n_audited,
                                  "n_errors": result.n_errors, "alpha": result.alpha, "delta": result.delta,
                                  "created_at": utcnow()})
        states[segment] = state
    if new_halts:
        save_guard_halts(engine, new_halts)
        for halt in new_halts:
            record_event(engine, "live_guard_halt", {
                **{k: v for k, v in halt.items() if k != "created_at"},
                "reason": f"{halt['n_errors']} of {halt['n_audited']} audited auto-accepted items wrong: the "
                          f"e-value {halt['e_value']:.1f} reached 1/delta = {1 / halt['delta']:.0f}, so the live "
                          f"error exceeds the target {halt['alpha']} (anytime-valid test, level {halt['delta']})"})
    return states


@lru_cache(maxsize=8)
def _length_model(database_url: str, training_set: str) -> LengthOutlier | None:
    from store.db import get_engine

    texts = training_texts(get_engine(database_url))
    if len(texts) < MIN_TRAINING_TEXTS:
        return None
    return LengthOutlier().fit(text_lengths(list(texts)))


@lru_cache(maxsize=8)
def _ood_model(database_url: str, training_set: str) -> OutOfDistribution | None:
    from store.db import get_engine

    vectors = training_vectors(get_engine(database_url))
    widths = {len(v) for v in vectors}
    if len(vectors) < MIN_TRAINING_VECTORS or len(widths) != 1:
        return None
    return OutOfDistribution().fit(np.asarray(vectors, dtype=float),
                                  rng=np.random.default_rng(int(training_set[:8], 16)))


def batch_risk_flags(
    engine: Engine, item_ids: Sequence[str], policy: SegmentPolicy, *, model_version: str | None = None,
    training: Mapping[str, int] | None = None, group_of: Callable[[str], str] | None = None,
) -> RiskFlags:
    """Risk signals of the items: smuggled characters, mixed scripts, encoded payloads, the policy's keyword and
    metadata rules, and, for items a Sluice-trained model scored, text length far outside the training range,
    feature vectors far from the training data and segments under-represented in training.

    ``training`` holds the training labels per segment (read from the store when not given: pass it when
    calling per group of a batch). ``group_of`` maps a segment to its calibration group: a small segment that
    pools with its parent group is judged by its pool's share of the training data, not its own (with ten
    thousand segments each holds a sliver of it)."""
    found = item_inputs(engine, list(item_ids))
    missing = ItemInputs(None, None, None, "")
    inputs = [found.get(i, missing) for i in item_ids]
    texts = [r.text for r in inputs]
    metadata = [r.metadata for r in inputs]
    vectors = [r.features for r in inputs]
    segments: Sequence[str] = [r.segment for r in inputs]
    batch = TextBatch.from_texts(list(texts))
    signals = [zero_width_or_bidi(batch), mixed_scripts(batch), encoded_payload(batch),
               *rule_hits(list(metadata), batch, policy.risk_rules)]
    if model_version in (None, UPSTREAM_MODEL):
        return combine_signals(signals, len(item_ids))  # an upstream model's training data is not known here
    counts = dict(training_segments(engine) if training is None else training)
    # the fitted signals are cached per store and training-set content (never by a count, which a changed set
    # of the same size would share)
    url, training_set = engine.url.render_as_string(hide_password=False), training_fingerprint(engine)
    lengths = _length_model(url, training_set)
    if lengths is not None:
        signals.append(lengths.predict(text_lengths(batch)))
    ood = _ood_model(url, training_set)
    with_vectors = np.array([v is not None and len(v) == ood.mean_.shape[0] for v in vectors], dtype=bool) \
        if ood is not None else np.zeros(len(item_ids), dtype=bool)
    if with_vectors.any():
        far = np.zeros(len(item_ids), dtype=bool)
        far[with_vectors] = ood.predict(np.asarray([v for v, w in zip(vectors, with_vectors) if w])).hits
        signals.append(Signal(far, "out_of_distribution", ood.action))
    if counts:
        if group_of is not None:
            pooled: dict[str, int] = {}
            for segment, count in counts.items():
                pooled[group_of(segment)] = pooled.get(group_of(segment), 0) + count
            counts, segments = pooled, tuple(group_of(s) for s in segments)
        signals.append(under_represented_segments(counts, list(segments), min_share=MIN_SEGMENT_SHARE))
    return combine_signals(signals, len(item_ids))


def audit_estimates(engine: Engine) -> dict[str, dict[str, Any]]:
    """Per segment, the inverse-probability-weighted error rate of all auto-accepted items, from the audited ones,
    with the annotators' gold error beside it and, given enough gold answers, the estimate corrected for it
    (``routing.audit.correct_for_annotator_error``; ``corrected`` is None otherwise)."""
    population = automated_population(engine)
    audited = [r for r in audited_automation(engine) if (r.inclusion_probability or 0.0) > 0.0]
    if not audited:
        return {}
    estimates = audit_error_by_segment(
        np.array([not r.wrong for r in audited], dtype=float),
        np.array([r.inclusion_probability for r in audited], dtype=float),
        [r.segment for r in audited], n_population=population,
    )
    gold = annotator_gold_error(engine)
    n_classes = label_class_count(engine)
    figures = {}
    for segment, e in estimates.items():
        row = {"error_rate": e.error_rate, "lower": e.lower, "upper": e.upper, "n_audited": e.n_audited,
               "n_population": e.n_population, "annotator_error": gold["error"], "n_gold": gold["n"],
               "corrected": None}
        if gold["n"] >= MIN_GOLD_FOR_CORRECTION and n_classes >= 2 and \
                gold["error"] < (n_classes - 1) / n_classes:
            fixed = correct_for_annotator_error(e, annotator_error=gold["error"], n_classes=n_classes)
            row["corrected"] = {"error_rate": fixed.error_rate, "lower": fixed.lower, "upper": fixed.upper,
                                "method": "rogan_gladen_uniform_confusion", "n_classes": n_classes}
        figures[segment] = row
    return figures


# Fewer gold answers than this leave the annotators' error too uncertain to correct by: it is reported only.
MIN_GOLD_FOR_CORRECTION = 30


def annotator_gold_error(engine: Engine) -> dict[str, Any]:
    """The annotators' pooled error on gold items (known answers): {"error", "n"}; error None without gold."""
    right = [answer.right for answer in gold_answers(engine)]
    return {"error": 1.0 - float(np.mean(right)) if right else None, "n": len(right)}
