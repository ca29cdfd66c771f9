"""scoring.families: payloads and answers into the verifier's and the preference model's examples and targets, and
their probabilities into prediction rows."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scoring.families import (
    correct_predictions,
    family_data,
    family_metrics,
    family_predictions,
    generation_example,
    not_enough_reason,
    pairwise_example,
    train_family_model,
)
from scoring.preference import PairwiseExample, PreferenceModel
from scoring.verifier import GenerationExample, Verifier


def test_a_generation_payload_becomes_the_verifiers_example() -> None:
    chat = [{"role": "system", "content": "Quote the timetable."}, {"role": "user", "content": "Last ferry?"}]
    example = generation_example({"prompt": chat, "response": "22:40", "context": ["Sunday: 22:40.", "Monday: 23:00."],
                                  "confidence": 0.8, "scores": {"judge": 4}})
    assert example == GenerationExample("system: Quote the timetable.\n\nuser: Last ferry?", "22:40",
                                        "Sunday: 22:40.\n\nMonday: 23:00.", 0.8, {"judge": 4.0})
    assert generation_example({"prompt": "q", "response": "r"}) == GenerationExample("q", "r", "", None, None)
    assert generation_example({"prompt": "q", "response": "  "}) is None
    assert generation_example({"prompt": "q"}) is None and generation_example(None) is None


def test_a_pairwise_payload_becomes_the_preference_models_example() -> None:
    assert pairwise_example({"prompt": "q", "response_a": "x", "response_b": "y", "context": "doc"}) == \
        PairwiseExample("q", "x", "y", "doc")
    assert pairwise_example({"prompt": "q", "response_a": "x"}) is None


def test_family_data_keeps_what_the_model_can_read_and_answers_of_its_two_outcomes() -> None:
    payloads = [{"prompt": "q", "response_a": "x", "response_b": "y"}, {"prompt": "q", "response_a": "x"},
                {"prompt": "q", "response_a": "u", "response_b": "v"}, {"prompt": "q", "response_a": "s",
                                                                        "response_b": "t"}]
    data = family_data("preference", ["p1", "p2", "p3", "p4"], payloads, labels=["b", "a", "tie", "a"],
                       segments=["s", "s", "s", "t"])
    assert data.item_ids == ["p1", "p4"] and data.segments == ["s", "t"] and data.positive.tolist() == [False, True]
    unlabelled = family_data("verifier", ["g1", "g2"], [{"response": "r"}, {"prompt": "q"}])
    assert unlabelled.item_ids == ["g1"] and unlabelled.positive is None
    with pytest.raises(ValueError, match="family must be one of"):
        family_data("judge", [], [])
    with pytest.raises(ValueError, match="length mismatch"):
        family_data("verifier", ["g1"], [{"response": "r"}], labels=[])


def test_a_family_model_needs_enough_answers_of_each_outcome() -> None:
    data = family_data("verifier", [f"g{k}" for k in range(25)], [{"response": "r"}] * 25,
                       labels=["accept"] * 20 + ["reject"] * 5)
    assert not_enough_reason("verifier", data) == "20 'accept' and 5 'reject' answers; at least 20 of each are needed"
    assert not_enough_reason("verifier", data, min_per_outcome=5) is None
    with pytest.raises(ValueError, match="min_per_outcome must be at least 1"):
        not_enough_reason("verifier", data, min_per_outcome=0)


def test_predictions_of_each_family_as_prediction_rows_hold_them() -> None:
    verifier = family_predictions("verifier", np.array([0.9, 0.2]))
    assert verifier.labels == ["accept", "accept"] and verifier.confidence.tolist() == [0.9, 0.2]
    assert verifier.probs is None and verifier.margin is None and verifier.classes is None
    pairs = family_predictions("preference", np.array([0.9, 0.25, 0.5]))
    assert pairs.labels == ["a", "b", "a"] and pairs.classes == ("a", "b")
    np.testing.assert_allclose(pairs.confidence, [0.9, 0.75, 0.5])
    np.testing.assert_allclose(pairs.margin, [0.8, 0.5, 0.0])
    np.testing.assert_allclose(pairs.probs, [[0.9, 0.1], [0.25, 0.75], [0.5, 0.5]])
    with pytest.raises(ValueError, match="probabilities in"):
        family_predictions("verifier", np.array([0.5, np.nan]))


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=50))
def test_a_pair_is_predicted_the_side_its_probability_favours(p_a) -> None:
    p = np.array(p_a)
    predicted = family_predictions("preference", p)
    assert (predicted.confidence >= 0.5).all() and (predicted.confidence <= 1.0).all()
    np.testing.assert_allclose(predicted.probs.sum(axis=1), 1.0)
    chosen = np.where(np.array(predicted.labels) == "a", predicted.probs[:, 0], predicted.probs[:, 1])
    np.testing.assert_allclose(chosen, predicted.confidence)
    assert (correct_predictions(p, np.array(predicted.labels) == "a")).all()


def test_family_metrics_by_hand() -> None:
    p, truth = np.array([0.9, 0.2, 0.5, 0.4]), np.array([True, False, False, True])
    assert correct_predictions(p, truth).tolist() == [True, True, False, False]
    metrics = family_metrics(p, truth)
    assert metrics["n"] == 4 and metrics["n_positive"] == 2 and metrics["accuracy"] == 0.5
    assert metrics["brier"] == pytest.approx((0.01 + 0.04 + 0.25 + 0.36) / 4)
    assert metrics["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.5, 0.4])))
    with pytest.raises(ValueError, match="non-empty"):
        family_metrics(np.array([]), np.array([], dtype=bool))


def test_each_family_trains_its_own_model() -> None:
    quoted = "The central bank raised interest rates by 25 basis points on Tuesday."
    context = "On Tuesday the central bank raised interest rates by 25 basis points, citing inflation."
    invented = ["The bank cut rates by 75 points after a strike.", "Shares fell by 40 percent in 1999 overnight."]
    payloads = [{"prompt": "What did the bank do?", "response": quoted if k % 2 else invented[k % 4 // 2],
                 "context": context} for k in range(40)]
    labels = ["accept" if k % 2 else "reject" for k in range(40)]
    verifier = train_family_model("verifier", family_data("verifier", [str(k) for k in range(40)], payloads,
                                                          labels=labels))
    assert isinstance(verifier, Verifier)
    p = verifier.predict_proba([generation_example(payloads[1]), generation_example(payloads[0])])
    assert p[0] > 0.5 > p[1]
    pairs = [{"prompt": "What did the bank do?", "response_a": quoted if k % 2 else invented[k % 4 // 2],
              "response_b": invented[k % 4 // 2] if k % 2 else quoted, "context": context} for k in range(40)]
    preference = train_family_model("preference", family_data("preference", [str(k) for k in range(40)], pairs,
                                                               labels=["a" if k % 2 else "b" for k in range(40)]))
    assert isinstance(preference, PreferenceModel)
    assert preference.predict_proba([pairwise_example(pairs[1])])[0] > 0.5
    with pytest.raises(ValueError, match="no answers"):
        train_family_model("verifier", family_data("verifier", ["g"], [{"response": "r"}]))
