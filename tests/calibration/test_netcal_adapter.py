"""Tests for calibration.netcal_adapter that need no netcal: lazy import, the install hint, restoring a dict."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from calibration import CalibrationInputError
from calibration.netcal_adapter import GRID_SIZE, BBQCalibrator, ENIRCalibrator, netcal_calibrator_from_dict


def _tabulated(method: str) -> dict:
    grid = np.linspace(0.0, 1.0, GRID_SIZE)
    return {"method": method, "n_samples": 10, "options": {}, "grid_values": (grid**2).tolist()}


@pytest.mark.parametrize("cls", [BBQCalibrator, ENIRCalibrator])
def test_restored_calibrator_interpolates_its_grid_without_netcal(cls: type) -> None:
    restored = netcal_calibrator_from_dict(_tabulated(cls.method))
    assert type(restored) is cls and restored.n_samples_ == 10
    np.testing.assert_allclose(restored.predict([0.0, 0.5, 1.0]), [0.0, 0.25, 1.0])


def test_from_dict_rejects_bad_dicts() -> None:
    with pytest.raises(CalibrationInputError, match="unknown netcal method"):
        netcal_calibrator_from_dict({"method": "platt"})
    with pytest.raises(CalibrationInputError, match="missing keys"):
        netcal_calibrator_from_dict({"method": "netcal_bbq", "n_samples": 3})
    with pytest.raises(CalibrationInputError, match="grid_values"):
        netcal_calibrator_from_dict({**_tabulated("netcal_bbq"), "grid_values": [0.5, 2.0]})


@pytest.mark.skipif(importlib.util.find_spec("netcal") is not None, reason="netcal is installed")
def test_fitting_without_netcal_names_the_extra() -> None:
    with pytest.raises(ImportError, match=r"\[netcal\]"):
        BBQCalibrator().fit([0.6, 0.9], [1, 0])
