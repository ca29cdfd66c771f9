"""Tests for the what-if data function on the hand-built stores (see conftest's M1_CONFIDENCE and labels)."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import update

from calibration.recalibrators import calibrator_from_dict
from store.models import CalibrationReportRow, ModelVersion
from tests.ui.conftest import DEFAULT_HOLDOUT, DEFAULT_HOLDOUT_CORRECT, M1_CONFIDENCE, M1_DEFAULT_CALIBRATOR
from ui import data

SETTINGS = {"items_per_cycle": 50.0, "seconds_per_item": 36.0, "spot_check_rate": 0.1}


def test_empty_store_gives_no_curve(empty_engine) -> None:
    assert data.what_if_curve(empty_engine, "default", **SETTINGS) == (None, 0)


def test_segment_without_unbiased_labels_gives_no_curve(populated_engine) -> None:
    assert data.what_if_curve(populated_engine, "finance", **SETTINGS) == (None, 0)
    assert data.what_if_curve(populated_engine, "nowhere", **SETTINGS) == (None, 0)


def test_curve_of_the_promoted_model_on_unbiased_holdout_labels(populated_engine) -> None:
    curve, n = data.what_if_curve(populated_engine, "default", **SETTINGS)
    assert curve is not None and n == curve.n_items == len(DEFAULT_HOLDOUT) == 4  # d1 is train/margin
    assert np.all(np.diff(curve.automation_rate) <= 0)
    assert curve.thresholds[0] == 0.0 and curve.thresholds[-1] == 1.0
    assert curve.automation_rate[0] == 1.0
    # the stored recalibrator was fitted on these very labels: it is never applied to them. Four items are too few
    # to cross-fit one, so the raw confidences are used
    raw = np.array([M1_CONFIDENCE[item] for item in DEFAULT_HOLDOUT])
    assert not np.allclose(calibrator_from_dict(M1_DEFAULT_CALIBRATOR).predict(raw), raw)
    assert curve.expected_error[0] == pytest.approx(float(np.mean(1.0 - raw)))
    # empirical error at threshold 0: 2 wrong of 4 labelled; workload scales with the settings
    assert curve.empirical_error[0] == pytest.approx(1 - np.mean(DEFAULT_HOLDOUT_CORRECT))
    assert curve.empirical_error_lower[0] < 0.5 < curve.empirical_error_upper[0]
    assert curve.review_volume[0] == pytest.approx(50 * 0.1)
    assert curve.reviewer_hours[0] == pytest.approx(5 * 36 / 3600)
    assert curve.review_volume[-1] == pytest.approx(50.0)  # nothing reaches confidence 1.0


def test_falls_back_to_upstream_without_a_promoted_model(populated_engine) -> None:
    with populated_engine.begin() as connection:
        connection.execute(update(ModelVersion).values(status="retired"))
    assert data.what_if_curve(populated_engine, "default", **SETTINGS) == (None, 0)  # no upstream predictions


def test_raw_confidences_when_the_segment_has_no_report(populated_engine) -> None:
    with populated_engine.begin() as connection:
        connection.execute(update(CalibrationReportRow).values(segment="elsewhere"))
    curve, _ = data.what_if_curve(populated_engine, "default", **SETTINGS)
    raw = np.array([M1_CONFIDENCE[item] for item in DEFAULT_HOLDOUT])
    assert curve.expected_error[0] == pytest.approx(float(np.mean(1.0 - raw)))
