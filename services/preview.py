"""What a routing policy would do, read from the store: each segment's unbiased held-out labels under the most
recent model that has scored them, calibrated out of fold, and the segment's arrival rate over the last cycles,
previewed by ``routing.preview.preview_segment``. The policy editor and the What-if page both use it, so they agree.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Engine

from calibration.report import out_of_fold_confidence
from routing.policy import Policy
from routing.preview import SegmentPreview, preview_segment
from services.certify import certifying_labels
from store import calibrations, decisions, figures, registry

__all__ = [
    "ARRIVAL_CYCLES",
    "ArrivalRate",
    "PreviewInputs",
    "arrival_rate",
    "held_out_model",
    "preview_inputs",
    "preview_policy",
]

# How many of the last finished cycles the arrival rate is measured over: a day of hourly cycles would follow the
# daily rhythm of the traffic; five follow a change in it within a few hours while smoothing single bursts.
ARRIVAL_CYCLES = 5
SECONDS_PER_DAY = 86_400.0
NO_MODEL = ("no model has scored unbiased held-out labels (seed, audit or gold) of this segment yet: "
            "`sluice seed-labels` gives the first ones, `sluice cycle` adds audits and scores them")
NO_ARRIVALS = ("no arrival rate yet: it is measured between finished cycles, so it needs two; run `sluice cycle` "
               "(the hourly deployment does) again")


@dataclass(frozen=True)
class ArrivalRate:
    """Items of a segment first routed in cycles ``first_cycle`` .. ``last_cycle``, over the ``hours`` from the
    start of the cycle before them to the start of the last."""

    segment: str
    items: int
    first_cycle: int
    last_cycle: int
    hours: float

    @property
    def per_day(self) -> float:
        return self.items * 24.0 / self.hours

    @property
    def cycles(self) -> int:
        return self.last_cycle - self.first_cycle + 1


def arrival_rate(engine: Engine, segment: str, *, cycles: int = ARRIVAL_CYCLES) -> ArrivalRate | None:
    """The segment's arrivals over the last `cycles` finished cycles (``store.figures.arrivals``); None until two
    cycles have finished. A segment with nothing in the window arrives at 0 a day."""
    window = figures.arrivals(engine, cycles=cycles)
    if window is None:
        return None
    seconds = (window.until - window.since).total_seconds()
    if not seconds > 0:
        raise ValueError(f"cycles {window.first_cycle - 1} and {window.last_cycle} started at {window.since} and "
                         f"{window.until}: no time between them to measure an arrival rate over")
    return ArrivalRate(segment, window.items.get(segment, 0), window.first_cycle, window.last_cycle,
                       seconds / 3600.0)


def held_out_model(engine: Engine, segment: str | None = None) -> str | None:
    """The model whose figures a page shows: the one routing now (promoted, else the upstream passthrough) when it
    has scored unbiased held-out labels (of `segment`), else the one that scored them most recently (a model just
    promoted has scored nothing until the next score run). None when no model has."""
    scored = [row.model_version for row in figures.held_out_models(engine, segment=segment)]
    routing_now = registry.promoted_version(engine)
    if routing_now in scored:
        return routing_now
    return scored[0] if scored else None


@dataclass(frozen=True, eq=False)
class PreviewInputs:
    """What ``routing.preview.preview_segment`` needs of one segment: the raw ``confidence`` and ``correct`` of
    ``model_version`` on its unbiased held-out labels (empty when ``model_version`` is None), the same confidences
    calibrated out of fold with the method of the model's newest report (None without one), and the arrival rate
    (None until two cycles have finished). ``missing`` says what is missing and which command fills it."""

    segment: str
    model_version: str | None
    confidence: np.ndarray
    correct: np.ndarray
    calibrated: np.ndarray | None
    arrivals: ArrivalRate | None

    @property
    def arrivals_per_day(self) -> float | None:
        return None if self.arrivals is None else self.arrivals.per_day

    @property
    def missing(self) -> str | None:
        gaps = [text for gap, text in ((self.model_version is None, NO_MODEL), (self.arrivals is None, NO_ARRIVALS))
                if gap]
        return "; ".join(gaps) or None


def preview_inputs(engine: Engine, segment: str, *, cycles: int = ARRIVAL_CYCLES) -> PreviewInputs:
    """The segment's certifying labels under ``held_out_model`` (``services.certify.certifying_labels``: what route
    certifies on) and its arrival rate over the last `cycles`."""
    model_version = held_out_model(engine, segment)
    arrivals = arrival_rate(engine, segment, cycles=cycles)
    held = certifying_labels(engine, model_version, segment=segment).get(segment) if model_version else None
    if held is None or model_version is None:
        return PreviewInputs(segment, model_version, np.empty(0), np.empty(0, dtype=bool), None, arrivals)
    correct = held.correct.astype(bool)
    return PreviewInputs(segment, model_version, held.confidence, correct,
                         _calibrated(engine, model_version, segment, held.confidence, correct), arrivals)


def _calibrated(engine: Engine, model_version: str, segment: str, confidence: np.ndarray,
                correct: np.ndarray) -> np.ndarray | None:
    """Each item calibrated by a recalibrator fitted on the other folds, with the method of the newest report: the
    stored recalibrator was fitted on these very labels and would flatter them."""
    method = calibrations.latest_calibration_method(engine, model_version, segment)
    if method is None:
        return None
    rng = np.random.default_rng(zlib.crc32(f"what-if/{model_version}/{segment}".encode()))
    return out_of_fold_confidence(confidence, correct.astype(float), method=method, rng=rng)


def preview_policy(engine: Engine, policy: Policy, *, cycles: int = ARRIVAL_CYCLES) -> dict[str, SegmentPreview]:
    """Per segment (the policy's named ones and every one with items in the store), what `policy` would do there.
    Where the arrival rate is unknown, the load figures are NaN and ``reason`` says which command fills them."""
    segments = sorted(set(policy.segments) | set(decisions.segments_seen(engine)))
    return {segment: preview_from(preview_inputs(engine, segment, cycles=cycles), policy) for segment in segments}


def preview_from(inputs: PreviewInputs, policy: Policy) -> SegmentPreview:
    """``preview_segment`` of the segment's effective rules under `policy`, on `inputs`."""
    rules = policy.for_segment(inputs.segment)
    preview = preview_segment(inputs.confidence, inputs.correct, rules=rules, calibrated=inputs.calibrated,
                              arrivals_per_day=0.0 if inputs.arrivals is None else inputs.arrivals.per_day)
    if preview.reason is not None:  # too few labels: say which command brings more
        more = NO_MODEL if inputs.model_version is None else f"{preview.reason}; each `sluice cycle` adds audits"
        preview = dataclasses.replace(preview, reason=more)
    if inputs.arrivals is None:
        unknown: dict[str, Any] = dict.fromkeys(
            ("review_per_day", "reviewer_hours_per_day", "over_budget_per_day", "arrivals_per_day"), math.nan)
        preview = dataclasses.replace(preview, **unknown, reason="; ".join(filter(None, [preview.reason, NO_ARRIVALS])))
    return preview
