"""Calibration metrics: top-label, adaptive, class-wise and debiased ECE, MCE, Brier score, log-loss, and
reliability curves with Wilson intervals.

Notation used in the definitions below: n samples, bins b with n_b samples, conf_b the mean confidence and acc_b
the observed accuracy (hit rate) of bin b. Bins with ``strategy="uniform"`` are B equal-width intervals of [0, 1]
with netcal 1.4's edge rule (left-closed, last bin closed); ``"quantile"`` uses the empirical quantiles of the
confidences as edges (equal mass up to ties).
"""

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
from calibration.intervals import wilson_interval

__all__ = [
    "ReliabilityCurve",
    "adaptive_calibration_error",
    "brier_score",
    "classwise_calibration_error",
    "debiased_calibration_error",
    "expected_calibration_error",
    "maximum_calibration_error",
    "negative_log_likelihood",
    "reliability_curve",
    "reliability_curve_from_confidence",
    "top_label",
    "wilson_interval",
]


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
    return _top_label(as_probabilities(y_prob))


def _top_label(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if probs.ndim == 1:
        return np.maximum(probs, 1.0 - probs), (probs >= 0.5).astype(np.intp)
    return probs.max(axis=1), probs.argmax(axis=1)


def _binned_outcomes(y_true: Any, y_prob: Any) -> tuple[np.ndarray, np.ndarray]:
    """What the binned metrics compare: for a (n, k) input the top-label confidence against whether the top label
    is the true class; for a (n,) binary input the positive-class probability against ``y_true == 1``, as netcal
    1.4 and ``sklearn.calibration.calibration_curve`` read a 1-D input."""
    probs = as_probabilities(y_prob)
    n_classes = 2 if probs.ndim == 1 else probs.shape[1]
    labels = as_class_indices(y_true, n_samples=probs.shape[0], n_classes=n_classes)
    if probs.ndim == 1:
        return probs, labels.astype(float)
    confidence, predicted = _top_label(probs)
    return confidence, (predicted == labels).astype(float)


def reliability_curve_from_confidence(
    confidence: Any, correct: Any, *, n_bins: int = 15, strategy: str = "uniform"
) -> ReliabilityCurve:
    """Reliability curve of confidences in [0, 1] against 0/1 correctness."""
    conf, hits = as_confidence_and_correct(confidence, correct)
    return _curve(conf, hits, n_bins=check_n_bins(n_bins), strategy=strategy)


def _bin_sums(
    conf: np.ndarray, hits: np.ndarray, *, n_bins: int, strategy: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Edges, then per bin: sample count, sum of confidences and sum of hits (float64 sums)."""
    edges = bin_edges(conf, n_bins=n_bins, strategy=strategy)
    index = assign_bins(conf, edges)
    count = np.bincount(index, minlength=n_bins).astype(np.int64)
    conf_sum = np.bincount(index, weights=conf, minlength=n_bins)
    hit_sum = np.bincount(index, weights=hits, minlength=n_bins)
    return edges, count, conf_sum, hit_sum


def _curve(conf: np.ndarray, hits: np.ndarray, *, n_bins: int, strategy: str) -> ReliabilityCurve:
    """The curve of already validated arrays."""
    edges, count, conf_sum, hit_sum = _bin_sums(conf, hits, n_bins=n_bins, strategy=strategy)
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
    """Reliability curve of class probabilities against true class indices: top-label for a (n, k) input,
    positive-class for a (n,) binary input (see ``expected_calibration_error``)."""
    n_bins = check_n_bins(n_bins)
    confidence, correct = _binned_outcomes(y_true, y_prob)
    return _curve(confidence, correct, n_bins=n_bins, strategy=strategy)


def expected_calibration_error(
    y_true: Any, y_prob: Any, *, n_bins: int = 15, strategy: str = "uniform"
) -> float:
    """Expected calibration error: top-label for a (n, k) input, positive-class for a (n,) binary input.

    ECE = sum_b (n_b / n) |acc_b - conf_b| over the non-empty bins. For (n, k) probabilities the confidence is
    the top-label probability and a hit means the top label is the true class. A (n,) input is the probability
    of class 1, compared with the observed frequency of ``y_true == 1``, as netcal 1.4 and scikit-learn's
    ``calibration_curve`` read it; for top-label ECE of a binary model pass the (n, 2) matrix, or
    ``reliability_curve_from_confidence(*top_label(p))``-style confidences and hits.
    """
    n_bins = check_n_bins(n_bins)
    confidence, correct = _binned_outcomes(y_true, y_prob)
    _, count, conf_sum, hit_sum = _bin_sums(confidence, correct, n_bins=n_bins, strategy=strategy)
    return float(np.abs(hit_sum - conf_sum).sum() / count.sum())


def maximum_calibration_error(
    y_true: Any, y_prob: Any, *, n_bins: int = 15, strategy: str = "uniform"
) -> float:
    """MCE: the largest |accuracy - confidence| over non-empty bins (top-label for (n, k), positive-class for
    (n,) input, as ``expected_calibration_error``)."""
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


def adaptive_calibration_error(y_true: Any, y_prob: Any, *, n_bins: int = 15) -> float:
    """Adaptive (equal-mass) top-label ECE.

    ACE = sum_b (n_b / n) |acc_b - conf_b| with the bin edges at the empirical quantiles q_0, q_{1/B}, ..., q_1
    of the top-label confidences, so every bin holds about n / B samples and no bin is wasted on confidences
    the model never produces. Tied confidences stay in one bin (the estimate stays invariant under permuting
    the samples), so bins can be unequal when many confidences coincide. This is ``expected_calibration_error(
    ..., strategy="quantile")``; it is not Nixon et al.'s class-averaged ACE.
    """
    return expected_calibration_error(y_true, y_prob, n_bins=n_bins, strategy="quantile")


def _class_columns(y_true: Any, y_prob: Any) -> tuple[np.ndarray, np.ndarray]:
    """(n, k) probabilities and the matching (n, k) one-hot truth; a (n,) input becomes columns (1 - p, p)."""
    probs, target = _one_hot_pair(y_true, y_prob)
    if probs.ndim == 1:
        return np.column_stack([1.0 - probs, probs]), np.column_stack([1.0 - target, target])
    return probs, target


def classwise_calibration_error(
    y_true: Any, y_prob: Any, *, n_bins: int = 15, strategy: str = "uniform"
) -> float:
    """Class-wise ECE (Kull et al., 2019): the mean over classes of each class's own calibration error.

    cwECE = (1 / K) sum_k sum_b (n_kb / n) |freq_kb - conf_kb|, where for class k the probabilities p_ik
    (not only the top label) are binned, conf_kb is their mean in bin b and freq_kb the fraction of bin b
    whose true class is k. With ``strategy="quantile"`` each class gets its own equal-mass edges. A (n,)
    binary input is scored as the two columns (1 - p, p).
    """
    n_bins = check_n_bins(n_bins)
    probs, target = _class_columns(y_true, y_prob)
    per_class = []
    for k in range(probs.shape[1]):  # a loop over classes, not items
        _, count, conf_sum, hit_sum = _bin_sums(probs[:, k], target[:, k], n_bins=n_bins, strategy=strategy)
        per_class.append(np.abs(hit_sum - conf_sum).sum() / count.sum())
    return float(np.mean(per_class))


def debiased_calibration_error(
    y_true: Any, y_prob: Any, *, n_bins: int = 15, strategy: str = "quantile"
) -> float:
    """Debiased top-label l2 calibration error for small samples (Kumar, Liang and Ma, 2019).

    The plug-in sum_b (n_b / n) (acc_b - conf_b)^2 overestimates the squared calibration error, because the
    noise of acc_b alone adds about acc_b (1 - acc_b) / n_b per bin even for a calibrated model. The
    debiased estimate subtracts the unbiased estimate of that variance,

        CE^2 = sum_b (n_b / n) [(acc_b - conf_b)^2 - acc_b (1 - acc_b) / (n_b - 1)],

    bins with fewer than 2 samples contribute 0, and the result is sqrt(max(CE^2, 0)), as in the authors'
    ``calibration`` package. Equal-mass bins are the default, as in the paper. Being an l2 error it is not
    directly comparable with the l1 ECE; use it to tell "calibrated but few labels" from "miscalibrated".
    """
    n_bins = check_n_bins(n_bins)
    confidence, correct = _binned_outcomes(y_true, y_prob)
    _, count, conf_sum, hit_sum = _bin_sums(confidence, correct, n_bins=n_bins, strategy=strategy)
    usable = count >= 2
    n_b = count[usable].astype(float)
    accuracy = hit_sum[usable] / n_b
    bias = accuracy * (1.0 - accuracy) / (n_b - 1.0)
    squared = np.sum(n_b / count.sum() * ((accuracy - conf_sum[usable] / n_b) ** 2 - bias))
    return float(np.sqrt(max(squared, 0.0)))
