"""Calibration metrics: top-label ECE/MCE, Brier score, log-loss, reliability curves with Wilson intervals."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from calibration._binning import assign_bins, bin_edges
from calibration._validation import (
    as_class_indices,
    as_confidence_and_correct,
    as_probabilities,
    check_n_bins,
)
from calibration.errors import CalibrationInputError

__all__ = [
    "ReliabilityCurve",
    "brier_score",
    "expected_calibration_error",
    "maximum_calibration_error",
    "negative_log_likelihood",
    "reliability_curve",
    "reliability_curve_from_confidence",
    "top_label",
    "wilson_interval",
]

WILSON_Z_95 = 1.959963984540054  # scipy.stats.norm.ppf(0.975)
LOG_CLIP = 1e-15  # as sklearn.metrics.log_loss: a confident miss costs ~34.5 nats, not infinity


@dataclass(frozen=True, eq=False)
class ReliabilityCurve:
    """Per-bin mean confidence against observed accuracy; empty bins hold NaN and are flagged in ``empty``."""

    bin_edges: np.ndarray
    mean_confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray
    empty: np.ndarray
    wilson_low: np.ndarray
    wilson_high: np.ndarray

    @property
    def n_samples(self) -> int:
        return int(self.count.sum())

    @property
    def expected_calibration_error(self) -> float:
        filled = ~self.empty
        gaps = np.abs(self.accuracy[filled] - self.mean_confidence[filled])
        return float(np.sum(self.count[filled] * gaps) / self.n_samples)

    @property
    def maximum_calibration_error(self) -> float:
        filled = ~self.empty
        return float(np.max(np.abs(self.accuracy[filled] - self.mean_confidence[filled])))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict; NaN becomes None."""
        return {
            "bin_edges": _floats_to_json(self.bin_edges),
            "mean_confidence": _floats_to_json(self.mean_confidence),
            "accuracy": _floats_to_json(self.accuracy),
            "count": [int(c) for c in self.count.tolist()],
            "empty": [bool(e) for e in self.empty.tolist()],
            "wilson_low": _floats_to_json(self.wilson_low),
            "wilson_high": _floats_to_json(self.wilson_high),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReliabilityCurve:
        expected = {"bin_edges", "mean_confidence", "accuracy", "count", "empty", "wilson_low", "wilson_high"}
        if set(data) != expected:
            raise CalibrationInputError(
                f"ReliabilityCurve dict needs keys {sorted(expected)}, got {sorted(data)}"
            )
        return cls(
            bin_edges=_floats_from_json(data["bin_edges"]),
            mean_confidence=_floats_from_json(data["mean_confidence"]),
            accuracy=_floats_from_json(data["accuracy"]),
            count=np.asarray(data["count"], dtype=np.int64),
            empty=np.asarray(data["empty"], dtype=bool),
            wilson_low=_floats_from_json(data["wilson_low"]),
            wilson_high=_floats_from_json(data["wilson_high"]),
        )


def _floats_to_json(values: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in values.tolist()]


def _floats_from_json(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def top_label(y_prob: Any) -> tuple[np.ndarray, np.ndarray]:
    """Confidence and index of the predicted class; a (n,) input is the binary positive-class probability."""
    probs = as_probabilities(y_prob)
    if probs.ndim == 1:
        return np.maximum(probs, 1.0 - probs), (probs >= 0.5).astype(np.intp)
    return probs.max(axis=1), probs.argmax(axis=1)


def _top_label_correctness(y_true: Any, y_prob: Any) -> tuple[np.ndarray, np.ndarray]:
    probs = as_probabilities(y_prob)
    n_classes = 2 if probs.ndim == 1 else probs.shape[1]
    labels = as_class_indices(y_true, n_samples=probs.shape[0], n_classes=n_classes)
    confidence, predicted = top_label(probs)
    return confidence, (predicted == labels).astype(float)


def wilson_interval(
    successes: np.ndarray, count: np.ndarray, *, z: float = WILSON_Z_95
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion; NaN where count is zero."""
    n = np.where(count > 0, count, np.nan).astype(float)
    phat = successes / n
    denominator = 1.0 + z**2 / n
    centre = (phat + z**2 / (2.0 * n)) / denominator
    half = z / denominator * np.sqrt(phat * (1.0 - phat) / n + z**2 / (4.0 * n**2))
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def reliability_curve_from_confidence(
    confidence: Any, correct: Any, *, n_bins: int = 15, strategy: str = "uniform"
) -> ReliabilityCurve:
    """Reliability curve of confidences in [0, 1] against 0/1 correctness."""
    conf, hits = as_confidence_and_correct(confidence, correct)
    n_bins = check_n_bins(n_bins)
    edges = bin_edges(conf, n_bins=n_bins, strategy=strategy)
    index = assign_bins(conf, edges)
    count = np.bincount(index, minlength=n_bins).astype(np.int64)
    conf_sum = np.bincount(index, weights=conf, minlength=n_bins)
    hit_sum = np.bincount(index, weights=hits, minlength=n_bins)
    empty = count == 0
    safe = np.where(empty, np.nan, count)
    low, high = wilson_interval(hit_sum, count)
    return ReliabilityCurve(
        bin_edges=edges,
        mean_confidence=conf_sum / safe,
        accuracy=hit_sum / safe,
        count=count,
        empty=empty,
        wilson_low=low,
        wilson_high=high,
    )


def reliability_curve(
    y_true: Any, y_prob: Any, *, n_bins: int = 15, strategy: str = "uniform"
) -> ReliabilityCurve:
    """Top-label reliability curve of class probabilities against true class indices."""
    confidence, correct = _top_label_correctness(y_true, y_prob)
    return reliability_curve_from_confidence(confidence, correct, n_bins=n_bins, strategy=strategy)


def expected_calibration_error(
    y_true: Any, y_prob: Any, *, n_bins: int = 15, strategy: str = "uniform"
) -> float:
    """Top-label ECE: bin-count-weighted mean |accuracy - confidence| over non-empty bins."""
    return reliability_curve(y_true, y_prob, n_bins=n_bins, strategy=strategy).expected_calibration_error


def maximum_calibration_error(
    y_true: Any, y_prob: Any, *, n_bins: int = 15, strategy: str = "uniform"
) -> float:
    """Top-label MCE: the largest |accuracy - confidence| over non-empty bins."""
    return reliability_curve(y_true, y_prob, n_bins=n_bins, strategy=strategy).maximum_calibration_error


def _one_hot_pair(y_true: Any, y_prob: Any) -> tuple[np.ndarray, np.ndarray]:
    probs = as_probabilities(y_prob)
    n_classes = 2 if probs.ndim == 1 else probs.shape[1]
    labels = as_class_indices(y_true, n_samples=probs.shape[0], n_classes=n_classes)
    if probs.ndim == 1:
        return probs, labels.astype(float)
    return probs, np.eye(n_classes)[labels]


def brier_score(y_true: Any, y_prob: Any) -> float:
    """Mean squared error against the one-hot truth, summed over classes (a (n,) input scores the
    positive class only, as ``sklearn.metrics.brier_score_loss`` does for binary problems)."""
    probs, target = _one_hot_pair(y_true, y_prob)
    squared = (probs - target) ** 2
    return float(np.mean(squared if squared.ndim == 1 else squared.sum(axis=1)))


def negative_log_likelihood(y_true: Any, y_prob: Any) -> float:
    """Mean negative log-probability of the true class, probabilities clipped to [1e-15, 1 - 1e-15]."""
    probs, target = _one_hot_pair(y_true, y_prob)
    clipped = np.clip(probs, LOG_CLIP, 1.0 - LOG_CLIP)
    if probs.ndim == 1:
        return float(-np.mean(target * np.log(clipped) + (1.0 - target) * np.log1p(-clipped)))
    return float(-np.mean(np.log(np.sum(clipped * target, axis=1))))
