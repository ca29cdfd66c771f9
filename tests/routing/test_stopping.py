"""routing.stopping: the cycle report's pooled ECE and the flywheel's stopping signal, as pure figures."""

from __future__ import annotations

import pytest

from routing.stopping import gain_per_100_labels, model_agreement, pooled_ece


def test_pooled_ece_weights_each_segment_by_its_samples() -> None:
    assert pooled_ece([(100, 0.02), (300, 0.06)]) == pytest.approx(0.05)
    assert pooled_ece([]) is None and pooled_ece([(0, 0.3)]) is None
    with pytest.raises(ValueError, match=">= 0"):
        pooled_ece([(-1, 0.1)])


def test_gain_per_100_labels_needs_both_accuracies_and_new_labels() -> None:
    assert gain_per_100_labels(0.80, 0.84, 200) == pytest.approx(0.02)
    assert gain_per_100_labels(None, 0.84, 200) is None and gain_per_100_labels(0.8, None, 200) is None
    assert gain_per_100_labels(0.80, 0.84, 0) is None


def test_model_agreement_is_the_share_of_equal_predictions() -> None:
    assert model_agreement(["a", "b", "c", "d"], ["a", "b", "x", "d"]) == 0.75
    assert model_agreement([], []) is None
    with pytest.raises(ValueError, match="length mismatch"):
        model_agreement(["a"], ["a", "b"])
