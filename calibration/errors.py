"""Exceptions raised by the calibration package.

ValueError
 └── CalibrationInputError    bad arrays: empty, NaN, out of range, wrong shape, length mismatch
ValueError, AttributeError
 └── NotFittedError           a recalibrator used before ``fit``
"""

from __future__ import annotations

__all__ = ["CalibrationInputError", "NotFittedError"]


class CalibrationInputError(ValueError):
    """An input array breaks the contract (empty, NaN, out of [0, 1], wrong shape or length)."""


class NotFittedError(ValueError, AttributeError):
    """A recalibrator's ``predict`` or ``to_dict`` was called before ``fit``."""
