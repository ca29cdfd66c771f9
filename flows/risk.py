"""What routing needs beyond a confidence: risk flags of a batch and the live guard. The certified threshold and
the live audit estimate, which the console shows too, live in ``services`` (``services.certify``,
``services.audit``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from sqlalchemy import Engine

from flows.common import utcnow
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
from store.figures import audited_automation
from store.repo import (
    UPSTREAM_MODEL,
    HaltRecord,
    ItemInputs,
    item_inputs,
    record_event,
    save_guard_halts,
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
