"""Tests for calibration.display: a real PNG is drawn headless, and matplotlib loads only when drawing."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from calibration import ReliabilityDisplay, reliability_curve_from_confidence

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_save_writes_a_png_with_the_curve(tmp_path) -> None:
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.4, 1.0, 500)
    curve = reliability_curve_from_confidence(confidence, (rng.random(500) < confidence).astype(float))
    display = ReliabilityDisplay(curve, title="model-1 / news").plot()
    assert "ECE" in display.ax_.get_title() and "n=500" in display.ax_.get_title()
    path = display.save(tmp_path / "nested" / "diagram.png")
    assert path.read_bytes()[:8] == PNG_SIGNATURE and path.stat().st_size > 1_000


def test_curve_with_empty_bins_draws() -> None:
    curve = reliability_curve_from_confidence([0.95, 0.95, 0.2], [1, 0, 1], n_bins=10)
    ReliabilityDisplay(curve).plot()


def test_importing_calibration_loads_neither_matplotlib_nor_netcal() -> None:
    code = "import sys, calibration; print('matplotlib' in sys.modules, 'netcal' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_bins_of_perfect_accuracy_draw_despite_rounding(tmp_path) -> None:
    import numpy as np

    from calibration.display import ReliabilityDisplay
    from calibration.metrics import reliability_curve_from_confidence

    confidence = np.full(37, 0.97)
    curve = reliability_curve_from_confidence(confidence, np.ones(37))
    assert ReliabilityDisplay(curve).save(tmp_path / "perfect.png").stat().st_size > 0
