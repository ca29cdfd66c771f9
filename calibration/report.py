"""Choosing a recalibrator by cross-validated ECE, the honest calibration report, and the calibration gate."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from calibration._binning import assign_bins, bin_edges
from calibration._validation import as_confidence_and_correct, as_sample_weight, check_n_bins
from calibration.errors import CalibrationInputError
from calibration.metrics import ReliabilityCurve, reliability_curve_from_confidence
from calibration.recalibrators import (
    CALIBRATOR_METHODS,
    ConfidenceCalibrator,
    HistogramBinningCalibrator,
    IdentityCalibrator,
)

__all__ = [
    "CalibrationReport",
    "GateResult",
    "bootstrap_ece_interval",
    "calibration_gate",
    "fit_and_select",
    "is_stale",
    "out_of_fold_confidence",
]

DEFAULT_METHODS = ("identity", "platt", "isotonic", "histogram")
TIE_TOLERANCE = 1e-12
MIN_CROSS_FIT = 20
CONFIDENCE_LEVEL = 0.95
BOOTSTRAP_CHUNK_CELLS = 4_000_000  # resamples x items drawn at once: bounds memory to ~32 MB per chunk
NOTE_TOO_FEW_FOR_CV = "too_few_samples_for_cross_validation_identity_used"
NOTE_FEWER_FOLDS = "fewer_folds_than_requested"
REASON_TOO_FEW_SAMPLES = "calibration_too_few_samples"
REASON_ECE_ABOVE_LIMIT = "calibration_ece_above_limit"


@dataclass(frozen=True, eq=False)
class CalibrationReport:
    """Held-out calibration quality of the chosen recalibrator; ``ece_low``/``ece_high`` is a 95% bootstrap
    percentile interval. ``cv_ece`` is each candidate's out-of-fold ECE, ``notes`` records any fallback."""

    method: str
    n: int
    ece: float
    ece_low: float
    ece_high: float
    mce: float
    brier: float
    curve: ReliabilityCurve
    n_folds: int = 0
    cv_ece: tuple[tuple[str, float], ...] = ()
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "n": self.n,
            "ece": self.ece,
            "ece_low": self.ece_low,
            "ece_high": self.ece_high,
            "mce": self.mce,
            "brier": self.brier,
            "curve": self.curve.to_dict(),
            "n_folds": self.n_folds,
            "cv_ece": [[name, value] for name, value in self.cv_ece],
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CalibrationReport:
        required = ("method", "n", "ece", "ece_low", "ece_high", "mce", "brier", "curve")
        missing = [key for key in required if key not in data]
        if missing:
            raise CalibrationInputError(f"CalibrationReport dict is missing keys {missing}")
        return cls(
            method=str(data["method"]),
            n=int(data["n"]),
            **{key: float(data[key]) for key in ("ece", "ece_low", "ece_high", "mce", "brier")},
            curve=ReliabilityCurve.from_dict(data["curve"]),
            n_folds=int(data.get("n_folds", 0)),
            cv_ece=tuple((str(name), float(value)) for name, value in data.get("cv_ece", [])),
            notes=tuple(str(note) for note in data.get("notes", [])),
        )


@dataclass(frozen=True)
class GateResult:
    """Whether a segment's calibration may be trusted, with machine-readable reasons when it may not."""

    passed: bool
    reasons: tuple[str, ...]


def _make_calibrator(method: str, *, n_bins: int) -> ConfidenceCalibrator:
    if method == HistogramBinningCalibrator.method:
        return HistogramBinningCalibrator(n_bins=n_bins)
    return CALIBRATOR_METHODS[method]()


def _check_methods(methods: Sequence[str]) -> tuple[str, ...]:
    methods = tuple(methods)
    unknown = [m for m in methods if m not in CALIBRATOR_METHODS]
    if not methods or unknown:
        raise CalibrationInputError(
            f"methods must be a non-empty selection of {list(CALIBRATOR_METHODS)}, got {list(methods)}"
        )
    return methods


def _check_positive_int(value: Any, *, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise CalibrationInputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _fold_ids(n: int, n_folds: int, rng: np.random.Generator) -> np.ndarray:
    fold_of = np.empty(n, dtype=np.intp)
    fold_of[rng.permutation(n)] = np.arange(n) % n_folds
    return fold_of


def _out_of_fold(
    method: str,
    confidence: np.ndarray,
    correct: np.ndarray,
    fold_of: np.ndarray,
    *,
    n_folds: int,
    n_bins: int,
    weight: np.ndarray | None = None,
) -> np.ndarray:
    calibrated = np.empty_like(confidence)
    for fold in range(n_folds):
        held_out = fold_of == fold
        model = _make_calibrator(method, n_bins=n_bins).fit(
            confidence[~held_out], correct[~held_out], None if weight is None else weight[~held_out])
        calibrated[held_out] = model.predict(confidence[held_out])
    return calibrated


def _ece(confidence: np.ndarray, correct: np.ndarray, *, n_bins: int) -> float:
    return reliability_curve_from_confidence(confidence, correct, n_bins=n_bins).expected_calibration_error


def bootstrap_ece_interval(
    confidence: Any, correct: Any, *, rng: np.random.Generator, n_bootstrap: int = 200, n_bins: int = 15
) -> tuple[float, float]:
    """95% percentile interval of the uniform-bin ECE over ``n_bootstrap`` resamples of the items."""
    conf, hits = as_confidence_and_correct(confidence, correct)
    n_bootstrap = _check_positive_int(n_bootstrap, name="n_bootstrap", minimum=1)
    n_bins = check_n_bins(n_bins)
    bins = assign_bins(conf, bin_edges(conf, n_bins=n_bins, strategy="uniform"))
    n = conf.shape[0]
    chunk = max(1, BOOTSTRAP_CHUNK_CELLS // n)
    eces = np.concatenate(
        [
            _resampled_eces(
                bins, conf, hits, rng.integers(0, n, size=(min(chunk, n_bootstrap - start), n)), n_bins
            )
            for start in range(0, n_bootstrap, chunk)
        ]
    )
    tail = (1.0 - CONFIDENCE_LEVEL) / 2.0 * 100.0
    low, high = np.percentile(eces, [tail, 100.0 - tail])
    return float(low), float(high)


def _resampled_eces(
    bins: np.ndarray, confidence: np.ndarray, correct: np.ndarray, draws: np.ndarray, n_bins: int
) -> np.ndarray:
    """ECE of each row of ``draws`` (item indices), all rows at once via one offset bincount."""
    n_rows, n = draws.shape
    cell = (np.arange(n_rows)[:, None] * n_bins + bins[draws]).ravel()
    size = n_rows * n_bins
    conf_sum = np.bincount(cell, weights=confidence[draws].ravel(), minlength=size).reshape(n_rows, n_bins)
    hit_sum = np.bincount(cell, weights=correct[draws].ravel(), minlength=size).reshape(n_rows, n_bins)
    return np.abs(hit_sum - conf_sum).sum(axis=1) / n


def _select(cv_ece: Sequence[tuple[str, float]]) -> str:
    best = min(value for _, value in cv_ece)
    return next(name for name, value in cv_ece if value <= best + TIE_TOLERANCE)


def _report(
    method: str,
    oof: np.ndarray,
    correct: np.ndarray,
    *,
    rng: np.random.Generator,
    n_bootstrap: int,
    n_bins: int,
    n_folds: int,
    cv_ece: tuple[tuple[str, float], ...],
    notes: tuple[str, ...],
) -> CalibrationReport:
    curve = reliability_curve_from_confidence(oof, correct, n_bins=n_bins)
    low, high = bootstrap_ece_interval(oof, correct, rng=rng, n_bootstrap=n_bootstrap, n_bins=n_bins)
    return CalibrationReport(
        method=method,
        n=int(oof.shape[0]),
        ece=curve.expected_calibration_error,
        ece_low=low,
        ece_high=high,
        mce=curve.maximum_calibration_error,
        brier=float(np.mean((oof - correct) ** 2)),
        curve=curve,
        n_folds=n_folds,
        cv_ece=cv_ece,
        notes=notes,
    )


def fit_and_select(
    confidence: Any,
    correct: Any,
    *,
    rng: np.random.Generator,
    methods: Sequence[str] = DEFAULT_METHODS,
    n_folds: int = 5,
    n_bootstrap: int = 200,
    n_bins: int = 15,
    sample_weight: Any = None,
) -> tuple[ConfidenceCalibrator, CalibrationReport]:
    """Pick the recalibrator with the lowest out-of-fold ECE (ties go to the earlier, simpler method),
    refit it on all data, and report ECE, its bootstrap interval and the reliability curve computed on the
    winner's out-of-fold confidences, so the report is honest about unseen data.

    With fewer than 4 samples no cross-validation is possible: the identity is used and the report says so.
    ``sample_weight`` (e.g. 1 / inclusion probability per label) weights every fit, so the calibrator stands for
    the population the labels were drawn from; the ECE figures stay those of the labels as drawn.
    """
    conf, hits = as_confidence_and_correct(confidence, correct)
    weight = None if sample_weight is None else as_sample_weight(sample_weight, n_samples=conf.shape[0])
    methods = _check_methods(methods)
    n_folds = _check_positive_int(n_folds, name="n_folds", minimum=2)
    n_bootstrap = _check_positive_int(n_bootstrap, name="n_bootstrap", minimum=1)
    n_bins = check_n_bins(n_bins)
    usable_folds = min(n_folds, conf.shape[0] // 2)
    report_on = partial(_report, rng=rng, n_bootstrap=n_bootstrap, n_bins=n_bins)
    if usable_folds < 2:
        report = report_on("identity", conf, hits, n_folds=0, cv_ece=(), notes=(NOTE_TOO_FEW_FOR_CV,))
        return IdentityCalibrator().fit(conf, hits), report
    fold_of = _fold_ids(conf.shape[0], usable_folds, rng)
    oof = {m: _out_of_fold(m, conf, hits, fold_of, n_folds=usable_folds, n_bins=n_bins, weight=weight)
           for m in methods}
    cv_ece = tuple((m, _ece(oof[m], hits, n_bins=n_bins)) for m in methods)
    winner = _select(cv_ece)
    notes = (NOTE_FEWER_FOLDS,) if usable_folds < n_folds else ()
    report = report_on(winner, oof[winner], hits, n_folds=usable_folds, cv_ece=cv_ece, notes=notes)
    return _make_calibrator(winner, n_bins=n_bins).fit(conf, hits, weight), report


def out_of_fold_confidence(
    confidence: Any, correct: Any, *, method: str, rng: np.random.Generator, n_folds: int = 5, n_bins: int = 15
) -> np.ndarray:
    """Cross-fitted calibrated confidences: each item's value comes from a ``method`` calibrator fitted on the
    other folds, never on its own label, so errors read off them (a what-if's empirical error above a threshold)
    are not flattered by a calibrator that has seen them. With fewer than ``MIN_CROSS_FIT`` items a fit on the
    other folds is noise: the raw confidences are returned (they too never saw the labels)."""
    conf, hits = as_confidence_and_correct(confidence, correct)
    (method,) = _check_methods((method,))
    usable_folds = min(_check_positive_int(n_folds, name="n_folds", minimum=2), conf.shape[0] // 2)
    if usable_folds < 2 or method == "identity" or conf.shape[0] < MIN_CROSS_FIT:
        return conf.copy()
    fold_of = _fold_ids(conf.shape[0], usable_folds, rng)
    return _out_of_fold(method, conf, hits, fold_of, n_folds=usable_folds, n_bins=check_n_bins(n_bins))


def calibration_gate(report: CalibrationReport, *, min_samples: int, max_ece: float) -> GateResult:
    """Pass only with at least ``min_samples`` labelled items and an ECE interval upper end <= ``max_ece``."""
    min_samples = _check_positive_int(min_samples, name="min_samples", minimum=1)
    if not (isinstance(max_ece, (int, float)) and 0.0 <= max_ece <= 1.0):
        raise CalibrationInputError(f"max_ece must be a number in [0, 1], got {max_ece!r}")
    reasons = []
    if report.n < min_samples:
        reasons.append(REASON_TOO_FEW_SAMPLES)
    if not report.ece_high <= max_ece:  # a NaN upper bound fails too
        reasons.append(REASON_ECE_ABOVE_LIMIT)
    return GateResult(passed=not reasons, reasons=tuple(reasons))


def is_stale(report_age_seconds: float, *, max_age_seconds: float) -> bool:
    """Whether a report of the given age (measured by the caller) is too old to trust."""
    for name, value in (("report_age_seconds", report_age_seconds), ("max_age_seconds", max_age_seconds)):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < 0
        ):
            raise CalibrationInputError(f"{name} must be a finite number >= 0, got {value!r}")
    return report_age_seconds > max_age_seconds
