"""netcal's binning recalibrators (BBQ, ENIR) behind Sluice's ConfidenceCalibrator contract.

This is the only module that imports netcal, and it does so when a calibrator is fitted, not at import
time: netcal needs torch (about 4 s and 0.8 GB to import). Install the extra with
``pip install -e '.[netcal]'``.

netcal's fitted models are not JSON-friendly, so ``to_dict`` stores the fitted map tabulated on a grid of
``GRID_SIZE`` confidences; ``netcal_calibrator_from_dict`` restores it (without netcal) as linear
interpolation on that grid, exact at the grid points.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from calibration.errors import CalibrationInputError
from calibration.recalibrators import ConfidenceCalibrator

__all__ = [
    "NETCAL_METHODS",
    "BBQCalibrator",
    "ENIRCalibrator",
    "NetcalCalibrator",
    "netcal_calibrator_from_dict",
]

GRID_SIZE = 2001
INSTALL_HINT = "netcal is not installed; install the extra with: pip install -e '.[netcal]'"


def _netcal_binning() -> ModuleType:
    try:
        return importlib.import_module("netcal.binning")
    except ImportError as error:
        raise ImportError(f"{INSTALL_HINT} ({error})") from error


class NetcalCalibrator(ConfidenceCalibrator):
    """A netcal binning calibrator fitted on (confidence, correct) as a binary problem: P(correct | conf)."""

    netcal_class: ClassVar[str] = ""

    def __init__(self, **options: Any) -> None:
        self.options = options

    def _fit(self, confidence: np.ndarray, correct: np.ndarray, weight: np.ndarray) -> None:
        if not np.allclose(weight, 1.0):
            raise CalibrationInputError(f"{type(self).__name__} (netcal) does not take sample weights")
        model = getattr(_netcal_binning(), self.netcal_class)(**self.options)
        model.fit(confidence, correct.astype(np.int64))
        self.model_ = model
        self.grid_ = np.linspace(0.0, 1.0, GRID_SIZE)
        self.grid_values_ = self._transform(self.grid_)

    def _predict(self, confidence: np.ndarray) -> np.ndarray:
        if not hasattr(self, "model_"):  # restored from a dict
            return np.interp(confidence, self.grid_, self.grid_values_)
        return self._transform(confidence)

    def _transform(self, confidence: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(self.model_.transform(confidence), dtype=float).reshape(-1), 0.0, 1.0)

    def _params_to_dict(self) -> dict[str, Any]:
        return {"options": dict(self.options), "grid_values": self.grid_values_.tolist()}

    def __repr__(self) -> str:
        options = ", ".join(f"{key}={value!r}" for key, value in self.options.items())
        return f"{type(self).__name__}({options})"


class BBQCalibrator(NetcalCalibrator):
    """Bayesian Binning into Quantiles (Naeini et al., 2015): an average of equal-mass histogram binnings
    over many bin counts, weighted by their Bayesian score."""

    method = "netcal_bbq"
    netcal_class = "BBQ"


class ENIRCalibrator(NetcalCalibrator):
    """Ensemble of Near-Isotonic Regressions (Naeini and Cooper, 2016): near-isotonic fits along the
    regularisation path, averaged by their Bayesian score."""

    method = "netcal_enir"
    netcal_class = "ENIR"


NETCAL_METHODS: dict[str, type[NetcalCalibrator]] = {cls.method: cls for cls in (BBQCalibrator, ENIRCalibrator)}


def netcal_calibrator_from_dict(data: dict[str, Any]) -> NetcalCalibrator:
    """Rebuild a fitted BBQ/ENIR calibrator from ``to_dict()`` output; netcal itself is not needed."""
    method = data.get("method") if isinstance(data, dict) else None
    if method not in NETCAL_METHODS:
        raise CalibrationInputError(f"unknown netcal method {method!r}; expected one of {list(NETCAL_METHODS)}")
    missing = [key for key in ("n_samples", "options", "grid_values") if key not in data]
    if missing:
        raise CalibrationInputError(f"calibrator dict for method {method!r} is missing keys {missing}")
    values = np.asarray(data["grid_values"], dtype=float)
    if values.shape != (GRID_SIZE,) or not np.all((values >= 0.0) & (values <= 1.0)):
        raise CalibrationInputError(f"'grid_values' must hold {GRID_SIZE} values in [0, 1]")
    calibrator = NETCAL_METHODS[method](**data["options"])
    calibrator.grid_, calibrator.grid_values_ = np.linspace(0.0, 1.0, GRID_SIZE), values
    calibrator.n_samples_ = int(data["n_samples"])
    return calibrator
