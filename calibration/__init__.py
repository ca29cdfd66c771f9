"""Pure calibration: metrics, reliability curves, recalibrators, the validation gate, reports and drift.

Importing the package loads numpy, scipy and scikit-learn only: matplotlib is imported by
``ReliabilityDisplay.plot`` and netcal by ``calibration.netcal_adapter``, each when first used.
"""

from __future__ import annotations

from calibration.display import ReliabilityDisplay
from calibration.drift import (
    DEFAULT_MAX_PSI,
    DriftResult,
    confidence_drift,
    ks_statistic,
    population_stability_index,
)
from calibration.errors import CalibrationInputError, NotFittedError
from calibration.metrics import (
    ReliabilityCurve,
    adaptive_calibration_error,
    brier_score,
    classwise_calibration_error,
    debiased_calibration_error,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
    reliability_curve,
    reliability_curve_from_confidence,
    top_label,
    wilson_interval,
)
from calibration.recalibrators import (
    CALIBRATOR_METHODS,
    BetaCalibrator,
    ConfidenceCalibrator,
    HistogramBinningCalibrator,
    IdentityCalibrator,
    IsotonicCalibrator,
    OneVsRestCalibrator,
    PlattCalibrator,
    TemperatureScaling,
    calibrator_from_dict,
)
from calibration.report import (
    CalibrationReport,
    GateResult,
    bootstrap_ece_interval,
    calibration_gate,
    fit_and_select,
    is_stale,
)

__all__ = [
    "CALIBRATOR_METHODS",
    "DEFAULT_MAX_PSI",
    "BetaCalibrator",
    "CalibrationInputError",
    "CalibrationReport",
    "ConfidenceCalibrator",
    "DriftResult",
    "GateResult",
    "HistogramBinningCalibrator",
    "IdentityCalibrator",
    "IsotonicCalibrator",
    "NotFittedError",
    "OneVsRestCalibrator",
    "PlattCalibrator",
    "ReliabilityCurve",
    "ReliabilityDisplay",
    "TemperatureScaling",
    "adaptive_calibration_error",
    "bootstrap_ece_interval",
    "brier_score",
    "calibration_gate",
    "calibrator_from_dict",
    "classwise_calibration_error",
    "confidence_drift",
    "debiased_calibration_error",
    "expected_calibration_error",
    "fit_and_select",
    "is_stale",
    "ks_statistic",
    "maximum_calibration_error",
    "negative_log_likelihood",
    "population_stability_index",
    "reliability_curve",
    "reliability_curve_from_confidence",
    "top_label",
    "wilson_interval",
]
