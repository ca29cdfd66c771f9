"""Is the flywheel still paying? Pure figures of the stopping signal and of the cycle's calibration.

Arrays and numbers in, numbers out; the cycle flow reads them from the store and writes them to the cycle report.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["gain_per_100_labels", "model_agreement", "pooled_ece"]


def pooled_ece(reports: Iterable[tuple[int, float]]) -> float | None:
    """ECE over segments, each segment's (n, ece) weighted by its sample count; None without samples."""
    pairs = [(int(n), float(ece)) for n, ece in reports]
    if any(n < 0 for n, _ in pairs):
        raise ValueError(f"sample counts must be >= 0, got {[n for n, _ in pairs]}")
    total = sum(n for n, _ in pairs)
    return sum(n * ece for n, ece in pairs) / total if total else None


def gain_per_100_labels(accuracy_before: float | None, accuracy_now: float | None, new_labels: int) -> float | None:
    """Held-out accuracy gained per 100 labels added since the previous cycle; None when either accuracy is
    unknown or no label was added."""
    if accuracy_before is None or accuracy_now is None or new_labels <= 0:
        return None
    return 100.0 * (accuracy_now - accuracy_before) / new_labels


def model_agreement(old_predictions: Any, new_predictions: Any) -> float | None:
    """Share of items on which two models predict the same label (near 1: retraining changes little)."""
    old, new = np.asarray(old_predictions), np.asarray(new_predictions)
    if old.shape != new.shape:
        raise ValueError(f"length mismatch: {old.shape} and {new.shape}")
    return float(np.mean(old == new)) if old.size else None
