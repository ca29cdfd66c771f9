"""What routing needs beyond a confidence: the risk flags of a batch. The certified threshold, the live guard and
the live audit estimate, which the console shows too, live in ``services`` (``services.certify``,
``services.guard``, ``services.audit``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache

import numpy as np
from sqlalchemy import Engine

from routing.policy import SegmentPolicy
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
from store.decisions import risk_inputs, RiskInputs
from store.labels import training_fingerprint, training_segments, training_texts, training_vectors
from store.passthrough import UPSTREAM_MODEL

MIN_TRAINING_TEXTS = 20
MIN_TRAINING_VECTORS = 20
# A segment holding less than this share of the training set is under-represented: its items go to people.
MIN_SEGMENT_SHARE = 0.01


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
    inputs: RiskInputs | None = None,
) -> RiskFlags:
    """Risk signals of the items: smuggled characters, mixed scripts, encoded payloads, the policy's keyword and
    metadata rules, and, for items a Sluice-trained model scored, text length far outside the training range,
    feature vectors far from the training data and segments under-represented in training.

    ``training`` holds the training labels per segment (read from the store when not given: pass it when
    calling per group of a batch). ``group_of`` maps a segment to its calibration group: a small segment that
    pools with its parent group is judged by its pool's share of the training data, not its own (with ten
    thousand segments each holds a sliver of it). ``inputs`` holds the items' inputs, aligned with `item_ids`,
    when the caller read them already (with feature vectors, for a Sluice-trained model)."""
    upstream = model_version in (None, UPSTREAM_MODEL)
    if inputs is None:
        inputs = risk_inputs(engine, item_ids, features=not upstream)
    texts, metadata, vectors, item_segments = inputs
    segments: Sequence[str] = item_segments
    batch = TextBatch.from_texts(texts)
    signals = [zero_width_or_bidi(batch), mixed_scripts(batch), encoded_payload(batch),
               *rule_hits(metadata, batch, policy.risk_rules)]
    if upstream:
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
        assert ood is not None  # no vector is usable without it
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
