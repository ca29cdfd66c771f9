"""Tests for calibration.report: method selection, honest out-of-fold reports, the gate and staleness."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calibration import (
    CalibrationReport,
    GateResult,
    IdentityCalibrator,
    bootstrap_ece_interval,
    calibration_gate,
    fit_and_select,
    is_stale,
    reliability_curve_from_confidence,
)


def _data(n: int, *, power: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.5, 1.0, n)
    return confidence, (rng.random(n) < confidence**power).astype(float)


def test_miscalibrated_data_selects_a_recalibrator_and_reports_out_of_fold() -> None:
    confidence, correct = _data(2000, power=4.0)
    calibrator, report = fit_and_select(confidence, correct, rng=np.random.default_rng(0))
    assert report.method != "identity" and calibrator.method == report.method
    assert report.n == 2000 and report.n_folds == 5
    cv = dict(report.cv_ece)
    assert set(cv) == {"identity", "platt", "isotonic", "histogram"}
    assert report.ece == pytest.approx(cv[report.method])
    assert report.ece == pytest.approx(min(cv.values()))
    assert report.ece_low <= report.ece_high and report.ece < cv["identity"]
    assert report.curve.n_samples == 2000
    # the report is on out-of-fold confidences, so it is not the in-sample ECE of the refitted winner
    in_sample = reliability_curve_from_confidence(
        calibrator.predict(confidence), correct
    ).expected_calibration_error
    assert report.ece != pytest.approx(in_sample, abs=1e-12)


def test_ties_go_to_the_simpler_method() -> None:
    # all predictions correct with confidence 1: every method is perfect, identity listed first wins
    calibrator, report = fit_and_select(np.ones(50), np.ones(50), rng=np.random.default_rng(0))
    assert report.method == "identity" and isinstance(calibrator, IdentityCalibrator)
    assert report.ece == 0.0


def test_same_rng_seed_same_report() -> None:
    confidence, correct = _data(300, power=2.0)
    first = fit_and_select(confidence, correct, rng=np.random.default_rng(7))[1]
    second = fit_and_select(confidence, correct, rng=np.random.default_rng(7))[1]
    assert first.to_dict() == second.to_dict()


@pytest.mark.parametrize("n", [1, 2, 3])
def test_tiny_samples_fall_back_to_identity_and_say_so(n: int) -> None:
    calibrator, report = fit_and_select(np.full(n, 0.8), np.ones(n), rng=np.random.default_rng(0))
    assert report.method == "identity" and report.n_folds == 0 and report.n == n
    assert report.notes and "identity" in report.notes[0]
    assert isinstance(calibrator, IdentityCalibrator)


def test_small_samples_use_fewer_folds() -> None:
    confidence, correct = _data(6, power=1.0)
    _, report = fit_and_select(confidence, correct, rng=np.random.default_rng(0))
    assert report.n_folds == 3 and report.notes == ("fewer_folds_than_requested",)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40), seed=st.integers(0, 2**32 - 1))
def test_never_crashes_on_small_n(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    confidence = rng.random(n)
    correct = rng.integers(0, 2, n)
    _, report = fit_and_select(confidence, correct, rng=rng, n_bootstrap=20)
    assert 0.0 <= report.ece_low <= report.ece_high <= 1.0 and 0.0 <= report.ece <= 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"methods": ("platt", "magic")}, "methods"),
        ({"methods": ()}, "methods"),
        ({"n_folds": 1}, "n_folds"),
        ({"n_bootstrap": 0}, "n_bootstrap"),
        ({"n_bins": 0}, "n_bins"),
    ],
)
def test_bad_options(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fit_and_select([0.6, 0.7, 0.8, 0.9], [1, 1, 0, 1], rng=np.random.default_rng(0), **kwargs)


def test_empty_and_bad_input_raise() -> None:
    with pytest.raises(ValueError, match="empty"):
        fit_and_select([], [], rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="length mismatch"):
        fit_and_select([0.5, 0.6], [1], rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="NaN"):
        fit_and_select([0.5, np.nan], [1, 0], rng=np.random.default_rng(0))


def test_bootstrap_interval_covers_point_estimate_on_large_sample() -> None:
    confidence, correct = _data(3000, power=2.0)
    ece = reliability_curve_from_confidence(confidence, correct).expected_calibration_error
    low, high = bootstrap_ece_interval(confidence, correct, rng=np.random.default_rng(1), n_bootstrap=300)
    assert low <= ece <= high and high - low < 0.05


def test_bootstrap_is_chunk_independent(monkeypatch: pytest.MonkeyPatch) -> None:
    import calibration.report as report_module

    confidence, correct = _data(50, power=2.0)
    whole = bootstrap_ece_interval(confidence, correct, rng=np.random.default_rng(3), n_bootstrap=40)
    monkeypatch.setattr(report_module, "BOOTSTRAP_CHUNK_CELLS", 50 * 7)
    chunked = bootstrap_ece_interval(confidence, correct, rng=np.random.default_rng(3), n_bootstrap=40)
    assert whole == pytest.approx(chunked)


def test_report_round_trip() -> None:
    confidence, correct = _data(100, power=3.0)
    _, report = fit_and_select(confidence, correct, rng=np.random.default_rng(0), n_bootstrap=50)
    data = json.loads(json.dumps(report.to_dict()))
    back = CalibrationReport.from_dict(data)
    assert back.to_dict() == report.to_dict()
    with pytest.raises(ValueError, match="missing keys"):
        CalibrationReport.from_dict({"method": "platt"})


def _report(*, n: int, ece_high: float) -> CalibrationReport:
    curve = reliability_curve_from_confidence(np.full(n, 0.9), np.ones(n))
    return CalibrationReport(
        method="identity", n=n, ece=0.1, ece_low=0.0, ece_high=ece_high, mce=0.1, brier=0.01, curve=curve
    )


def test_gate_passes_large_well_calibrated_segment() -> None:
    assert calibration_gate(_report(n=500, ece_high=0.04), min_samples=50, max_ece=0.05) == GateResult(
        True, ()
    )


def test_gate_refuses_small_segment() -> None:
    result = calibration_gate(_report(n=10, ece_high=0.01), min_samples=50, max_ece=0.05)
    assert not result.passed and result.reasons == ("calibration_too_few_samples",)


def test_gate_refuses_miscalibrated_segment_on_interval_upper_end() -> None:
    result = calibration_gate(_report(n=500, ece_high=0.06), min_samples=50, max_ece=0.05)
    assert not result.passed and result.reasons == ("calibration_ece_above_limit",)
    both = calibration_gate(_report(n=5, ece_high=0.5), min_samples=50, max_ece=0.05)
    assert both.reasons == ("calibration_too_few_samples", "calibration_ece_above_limit")


def test_gate_refuses_real_miscalibrated_data() -> None:
    confidence, correct = _data(400, power=1.0)
    _, honest = fit_and_select(confidence, correct, rng=np.random.default_rng(0), methods=("identity",))
    overconfident = np.full(400, 0.99)
    _, bad = fit_and_select(overconfident, correct, rng=np.random.default_rng(0), methods=("identity",))
    assert calibration_gate(bad, min_samples=50, max_ece=0.1).reasons == ("calibration_ece_above_limit",)
    assert honest.ece_high < bad.ece_low


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"min_samples": 0, "max_ece": 0.1}, "min_samples"), ({"min_samples": 5, "max_ece": 2}, "max_ece")],
)
def test_gate_bad_limits(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        calibration_gate(_report(n=5, ece_high=0.01), **kwargs)


def test_is_stale() -> None:
    assert not is_stale(3600, max_age_seconds=7200)
    assert not is_stale(7200, max_age_seconds=7200)
    assert is_stale(7201, max_age_seconds=7200)
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="report_age_seconds"):
            is_stale(bad, max_age_seconds=10)
    with pytest.raises(ValueError, match="max_age_seconds"):
        is_stale(1, max_age_seconds=-5)


def test_out_of_fold_confidence_never_uses_an_items_own_label() -> None:
    from calibration.report import out_of_fold_confidence

    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1.0, 400)
    correct = (rng.random(400) < confidence**2).astype(float)
    first = out_of_fold_confidence(confidence, correct, method="isotonic", rng=np.random.default_rng(1))
    flipped = correct.copy()
    flipped[7] = 1.0 - flipped[7]
    second = out_of_fold_confidence(confidence, flipped, method="isotonic", rng=np.random.default_rng(1))
    assert first[7] == second[7]  # item 7's own label moved nothing of its own value
    assert not np.array_equal(first, second)  # but it did move the items of other folds
    # in-sample isotonic fits its labels: its ECE on them is lower than the honest out-of-fold one
    from calibration.recalibrators import IsotonicCalibrator
    from calibration.metrics import reliability_curve_from_confidence

    in_sample = IsotonicCalibrator().fit(confidence, correct).predict(confidence)
    ece = lambda values: reliability_curve_from_confidence(values, correct).expected_calibration_error  # noqa: E731
    assert ece(in_sample) < ece(first)
    np.testing.assert_array_equal(out_of_fold_confidence(confidence, correct, method="identity",
                                                         rng=np.random.default_rng(1)), confidence)


def test_fit_and_select_weights_each_label_by_its_inclusion_probability() -> None:
    from calibration.report import fit_and_select

    rng = np.random.default_rng(5)
    # at confidence 0.9, seed labels (drawn 1 in 2) are right 90% of the time, audits (1 in 20) only 50%
    confidence = np.full(400, 0.9) + rng.uniform(-0.01, 0.01, 400)
    audit = np.arange(400) % 2 == 0
    correct = np.where(audit, rng.random(400) < 0.5, rng.random(400) < 0.9).astype(float)
    weight = np.where(audit, 20.0, 2.0)
    unweighted, _ = fit_and_select(confidence, correct, rng=np.random.default_rng(0), methods=("histogram",))
    calibrator, _ = fit_and_select(confidence, correct, rng=np.random.default_rng(0), methods=("histogram",),
                                   sample_weight=weight)
    observed = {flag: correct[audit == flag].mean() for flag in (True, False)}
    expected = (20 * observed[True] + 2 * observed[False]) / 22  # each audit stands for 10x the items
    assert calibrator.predict(np.array([0.9]))[0] == pytest.approx(expected, abs=1e-9)
    assert unweighted.predict(np.array([0.9]))[0] == pytest.approx(correct.mean(), abs=1e-9)
