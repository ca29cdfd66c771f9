"""What routing needs beyond a confidence: guaranteed thresholds, risk flags of a batch, the live audit estimate."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from sqlalchemy import Engine, func, select

from flows.calibrate import calibration_data
from routing.audit import audit_error_by_segment
from routing.policy import SegmentPolicy
from flows.common import UPSTREAM_MODEL
from routing.signals import (
    LengthOutlier, OutOfDistribution, RiskFlags, Signal, TextBatch, under_represented_segments, combine_signals, encoded_payload, mixed_scripts, rule_hits, text_lengths,
    zero_width_or_bidi,
)
from routing.thresholds import guaranteed_threshold
from store.bulk import chunked
from store.models import Item, Label, RoutingDecision

MIN_TRAINING_TEXTS = 20
MIN_TRAINING_VECTORS = 20
# A segment holding less than this share of the training set is under-represented: its items go to people.
MIN_SEGMENT_SHARE = 0.01


def derived_threshold(
    engine: Engine, model_version: str, segment: str, policy: SegmentPolicy, calibrator: Any | None
) -> tuple[float | None | str, dict[str, Any] | None]:
    """The segment's guaranteed threshold when its policy sets a target (`max_auto_error`, `confidence`).

    Computed on the unbiased held-out labels (seed, audit, gold) with the calibrated confidences routing will
    compare against it. Returns ("policy", None) when the segment has no target: its fixed threshold applies.
    """
    if not policy.has_target:
        return "policy", None
    _, confidence, correct = calibration_data(engine, model_version).get(segment, ([], np.empty(0), np.empty(0)))
    calibrated = calibrator.predict(confidence) if calibrator is not None and confidence.size else confidence
    result = guaranteed_threshold(calibrated, correct, alpha=policy.max_auto_error, delta=policy.delta)
    evidence = {"threshold": result.threshold, "coverage": result.coverage, "n": result.n,
                "error_upper_bound": result.error_upper_bound, "alpha": result.alpha, "delta": result.delta}
    return result.threshold, evidence


@lru_cache(maxsize=8)
def _length_model(database_url: str, training_labels: int) -> LengthOutlier | None:
    from flows.common import engine_for

    with engine_for(database_url).connect() as conn:
        texts = conn.execute(
            select(Item.text).join(Label, Label.item_id == Item.id)
            .where(Label.split == "train", Item.text.is_not(None))
        ).scalars().all()
    if len(texts) < MIN_TRAINING_TEXTS:
        return None
    return LengthOutlier().fit(text_lengths(list(texts)))


@lru_cache(maxsize=8)
def _ood_model(database_url: str, training_labels: int) -> OutOfDistribution | None:
    from flows.common import engine_for

    with engine_for(database_url).connect() as conn:
        vectors = conn.execute(
            select(Item.features).join(Label, Label.item_id == Item.id)
            .where(Label.split == "train", Item.features.is_not(None))
        ).scalars().all()
    widths = {len(v) for v in vectors}
    if len(vectors) < MIN_TRAINING_VECTORS or len(widths) != 1:
        return None
    return OutOfDistribution().fit(np.asarray(vectors, dtype=float), rng=np.random.default_rng(training_labels))


def training_segments(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(
            select(Item.segment, func.count()).join(Label, Label.item_id == Item.id)
            .where(Label.split == "train").group_by(Item.segment)
        ).all())


def _training_size(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(Label).where(Label.split == "train")).scalar_one()


def batch_risk_flags(
    engine: Engine, item_ids: Sequence[str], policy: SegmentPolicy, *, model_version: str | None = None
) -> RiskFlags:
    """Risk signals of the items: smuggled characters, mixed scripts, encoded payloads, the policy's keyword and
    metadata rules, and, for items a Sluice-trained model scored, text length far outside the training range,
    feature vectors far from the training data and segments under-represented in training."""
    found: dict[str, tuple[str | None, dict | None, list | None, str]] = {}
    with engine.connect() as conn:
        for part in chunked(list(item_ids), 5_000):
            found.update((r[0], tuple(r[1:])) for r in conn.execute(
                select(Item.id, Item.text, Item.item_metadata, Item.features, Item.segment)
                .where(Item.id.in_(part))))
    texts, metadata, vectors, segments = zip(*(found.get(i, (None, None, None, "")) for i in item_ids)) \
        if item_ids else ((), (), (), ())
    batch = TextBatch.from_texts(list(texts))
    signals = [zero_width_or_bidi(batch), mixed_scripts(batch), encoded_payload(batch),
               *rule_hits(list(metadata), batch, policy.risk_rules)]
    if model_version in (None, UPSTREAM_MODEL):
        return combine_signals(signals, len(item_ids))  # an upstream model's training data is not known here
    url, training = engine.url.render_as_string(hide_password=False), _training_size(engine)
    lengths = _length_model(url, training)
    if lengths is not None:
        signals.append(lengths.predict(text_lengths(batch)))
    ood = _ood_model(url, training)
    with_vectors = np.array([v is not None and len(v) == ood.mean_.shape[0] for v in vectors], dtype=bool) \
        if ood is not None else np.zeros(len(item_ids), dtype=bool)
    if with_vectors.any():
        far = np.zeros(len(item_ids), dtype=bool)
        far[with_vectors] = ood.predict(np.asarray([v for v, w in zip(vectors, with_vectors) if w])).hits
        signals.append(Signal(far, "out_of_distribution", ood.action))
    counts = training_segments(engine)
    if counts:
        signals.append(under_represented_segments(counts, list(segments), min_share=MIN_SEGMENT_SHARE))
    return combine_signals(signals, len(item_ids))


def audit_estimates(engine: Engine) -> dict[str, dict[str, Any]]:
    """Per segment, the inverse-probability-weighted error rate of all auto-accepted items, from the audited ones."""
    latest = select(func.max(RoutingDecision.id).label("id")).group_by(RoutingDecision.item_id).subquery()
    automated = RoutingDecision.route.in_(("auto_accept", "spot_check"))
    with engine.connect() as conn:
        population = dict(conn.execute(
            select(RoutingDecision.segment, func.count()).join(latest, latest.c.id == RoutingDecision.id)
            .where(automated).group_by(RoutingDecision.segment)
        ).all())
        audited = conn.execute(
            select(RoutingDecision.segment, RoutingDecision.predicted_label, Label.label,
                   RoutingDecision.inclusion_probability)
            .join(latest, latest.c.id == RoutingDecision.id)
            .join(Label, Label.item_id == RoutingDecision.item_id)
            .where(automated, Label.selection_reason == "audit", RoutingDecision.inclusion_probability > 0)
        ).all()
    if not audited:
        return {}
    estimates = audit_error_by_segment(
        np.array([r[1] == r[2] for r in audited], dtype=float), np.array([r[3] for r in audited], dtype=float),
        [r[0] for r in audited], n_population=population,
    )
    return {
        segment: {"error_rate": e.error_rate, "lower": e.lower, "upper": e.upper, "n_audited": e.n_audited,
                  "n_population": e.n_population}
        for segment, e in estimates.items()
    }
