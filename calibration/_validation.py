"""Input checks shared by the calibration modules: every bad array raises naming the problem and values."""

from __future__ import annotations

from typing import Any

import numpy as np

from calibration.errors import CalibrationInputError

ROW_SUM_TOLERANCE = 1e-6


def _preview(values: np.ndarray, limit: int = 5) -> str:
    flat = np.asarray(values).ravel()
    shown = ", ".join(repr(v) for v in flat[:limit].tolist())
    return f"[{shown}{', ...' if flat.size > limit else ''}]"


def _as_array(values: Any, *, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.size == 0:
        raise CalibrationInputError(f"{name} is empty (shape {array.shape}); at least one sample is needed")
    return array


def _in_unit_interval(array: np.ndarray) -> bool:
    """One cheap check for the common case: min and max propagate NaN, so NaN fails both comparisons."""
    return bool(array.min() >= 0.0 and array.max() <= 1.0)


def as_float_array(values: Any, *, name: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as error:
        raise CalibrationInputError(f"{name} must be numeric, got {values!r}") from error
    if array.size == 0:
        raise CalibrationInputError(f"{name} is empty (shape {array.shape}); at least one sample is needed")
    bad = ~np.isfinite(array)
    if bad.any():
        raise CalibrationInputError(
            f"{name} contains {int(bad.sum())} NaN/inf value(s) at positions {_preview(np.flatnonzero(bad))}"
        )
    return array


def _as_unit_floats(values: Any, *, name: str) -> np.ndarray:
    """Float array with every value finite and in [0, 1]; the slow per-value diagnosis runs only on failure."""
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as error:
        raise CalibrationInputError(f"{name} must be numeric, got {values!r}") from error
    if array.size and _in_unit_interval(array):
        return array
    return check_unit_interval(as_float_array(array, name=name), name=name)


def check_unit_interval(array: np.ndarray, *, name: str) -> np.ndarray:
    outside = (array < 0.0) | (array > 1.0)
    if outside.any():
        raise CalibrationInputError(
            f"{name} must lie in [0, 1]; {int(outside.sum())} value(s) outside, "
            f"e.g. {_preview(array[outside])}"
        )
    return array


def as_probabilities(y_prob: Any, *, name: str = "y_prob") -> np.ndarray:
    """A (n,) positive-class probability vector or a (n, k) matrix whose rows sum to one."""
    array = _as_unit_floats(y_prob, name=name)
    if array.ndim not in (1, 2):
        raise CalibrationInputError(f"{name} must be 1-D (n,) or 2-D (n, k), got shape {array.shape}")
    if array.ndim == 2:
        if array.shape[1] < 2:
            raise CalibrationInputError(f"{name} needs at least 2 class columns, got shape {array.shape}")
        deviation = np.abs(array.sum(axis=1) - 1.0)
        off = deviation > ROW_SUM_TOLERANCE
        if off.any():
            raise CalibrationInputError(
                f"{name} rows must sum to one (tol {ROW_SUM_TOLERANCE}); {int(off.sum())} row(s) do not, "
                f"rows {_preview(np.flatnonzero(off))} sum to {_preview(array.sum(axis=1)[off])}"
            )
    return array


def as_class_indices(y_true: Any, *, n_samples: int, n_classes: int, name: str = "y_true") -> np.ndarray:
    """Integer class indices in [0, n_classes), one per sample."""
    raw = _as_array(y_true, name=name)
    if raw.dtype.kind in "iub" and raw.ndim == 1 and raw.shape[0] == n_samples:
        if raw.min() >= 0 and raw.max() < n_classes:  # integer input: a range check is the whole check
            return raw.astype(np.intp, copy=False)
    array = as_float_array(raw, name=name)
    if array.ndim != 1:
        raise CalibrationInputError(f"{name} must be 1-D class indices, got shape {array.shape}")
    check_same_length(array, n_samples, name=name)
    not_index = (array != np.round(array)) | (array < 0) | (array >= n_classes)
    if not_index.any():
        raise CalibrationInputError(
            f"{name} must hold integer class indices in [0, {n_classes}); "
            f"bad values {_preview(array[not_index])}"
        )
    return array.astype(np.intp)


def check_same_length(array: np.ndarray, n_samples: int, *, name: str) -> None:
    if array.shape[0] != n_samples:
        raise CalibrationInputError(
            f"length mismatch: {name} has {array.shape[0]} rows, expected {n_samples}"
        )


def as_confidence(confidence: Any, *, name: str = "confidence") -> np.ndarray:
    """A 1-D array of confidences in [0, 1]."""
    array = _as_unit_floats(confidence, name=name)
    if array.ndim != 1:
        raise CalibrationInputError(f"{name} must be 1-D, got shape {array.shape}")
    return array


def as_correct(correct: Any, *, n_samples: int, name: str = "correct") -> np.ndarray:
    """A 1-D 0/1 correctness indicator, one per confidence."""
    raw = _as_array(correct, name=name)
    if raw.dtype == bool and raw.ndim == 1 and raw.shape[0] == n_samples:
        return raw.astype(float)
    array = as_float_array(raw, name=name)
    if array.ndim != 1:
        raise CalibrationInputError(f"{name} must be 1-D, got shape {array.shape}")
    check_same_length(array, n_samples, name=name)
    if _in_unit_interval(array) and not np.any(array - np.floor(array)):  # fast path: only 0s and 1s
        return array
    not_binary = (array != 0.0) & (array != 1.0)
    if not_binary.any():
        raise CalibrationInputError(f"{name} must be 0 or 1; bad values {_preview(array[not_binary])}")
    return array


def as_confidence_and_correct(confidence: Any, correct: Any) -> tuple[np.ndarray, np.ndarray]:
    conf = as_confidence(confidence)
    return conf, as_correct(correct, n_samples=conf.shape[0])


def as_sample_weight(sample_weight: Any, *, n_samples: int) -> np.ndarray:
    """Positive finite weights of shape (n,), scaled to mean 1 (ones when None)."""
    if sample_weight is None:
        return np.ones(n_samples)
    try:
        weight = np.asarray(sample_weight, dtype=float)
    except (TypeError, ValueError) as error:
        raise CalibrationInputError(f"sample_weight must be numeric, got {sample_weight!r}") from error
    if weight.shape != (n_samples,):
        raise CalibrationInputError(f"length mismatch: sample_weight has shape {weight.shape}, expected ({n_samples},)")
    bad = ~(np.isfinite(weight) & (weight > 0))
    if bad.any():
        raise CalibrationInputError(
            f"sample_weight must be finite and > 0; {int(bad.sum())} bad values, e.g. {weight[bad][:5].tolist()}")
    return weight / weight.mean() if n_samples else weight


def check_n_bins(n_bins: Any) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise CalibrationInputError(f"n_bins must be a positive integer, got {n_bins!r}")
    return int(n_bins)
