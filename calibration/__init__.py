"""Pure calibration: metrics, reliability curves, recalibrators, the validation gate and reports."""

from __future__ import annotations

from calibration.errors import CalibrationInputError, NotFittedError
from calibration.metrics import (
    ReliabilityCurve,
    brier_score,
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
    ConfidenceCalibrator,
    HistogramBinningCalibrator,
    IdentityCalibrator,
    IsotonicCalibrator,
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
    "CalibrationInputError",
    "CalibrationReport",
    "ConfidenceCalibrator",
    "GateResult",
    "HistogramBinningCalibrator",
    "IdentityCalibrator",
    "IsotonicCalibrator",
    "NotFittedError",
    "PlattCalibrator",
    "ReliabilityCurve",
    "TemperatureScaling",
    "bootstrap_ece_interval",
    "brier_score",
    "calibration_gate",
    "calibrator_from_dict",
    "expected_calibration_error",
    "fit_and_select",
    "is_stale",
    "maximum_calibration_error",
    "negative_log_likelihood",
    "reliability_curve",
    "reliability_curve_from_confidence",
    "top_label",
    "wilson_interval",
]
