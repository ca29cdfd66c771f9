"""Tests for scoring.models: training, probabilities in class order, evaluation and the promotion rule."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.pipeline import Pipeline

from scoring.models import (
    ScoringModel,
    build_feature_pipeline,
    build_text_pipeline,
    evaluate,
    is_not_worse,
    train_model,
)


def test_text_pipeline_shape():
    pipeline = build_text_pipeline(seed=3)
    assert isinstance(pipeline, Pipeline)
    word, char = (step for _, step in pipeline.named_steps["features"].transformer_list)
    assert (word.analyzer, word.ngram_range, word.sublinear_tf, word.max_features) == (
        "word",
        (1, 2),
        True,
        200_000,
    )
    assert (char.analyzer, char.ngram_range, char.sublinear_tf) == ("char_wb", (3, 5), True)
    classifier = pipeline.named_steps["classifier"]
    assert (classifier.C, classifier.max_iter, classifier.random_state) == (10.0, 1000, 3)


def test_text_model_beats_chance(text_model, text_data):
    metrics = evaluate(text_model, text_data["test_texts"], text_data["test_labels"])
    assert metrics["n"] == 90
    assert metrics["accuracy"] > 0.9  # chance is 1/3
    assert 0 < metrics["macro_f1"] <= 1 and np.isfinite(metrics["log_loss"])
    assert metrics["n_unseen_label"] == 0


def test_probabilities_in_class_order(text_model, text_data):
    assert text_model.classes_.tolist() == ["finance", "sport", "weather"]
    proba = text_model.predict_proba(["the striker scored a penalty", "forecaster warned of heavy snow"])
    assert proba.shape == (2, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert text_model.classes_[np.argmax(proba, axis=1)].tolist() == ["sport", "weather"]


def test_predict_is_argmax(text_model, text_data):
    proba = text_model.predict_proba(text_data["test_texts"])
    predicted = text_model.predict(text_data["test_texts"])
    np.testing.assert_array_equal(predicted, text_model.classes_[np.argmax(proba, axis=1)])
    np.testing.assert_array_equal(
        predicted, text_model.pipeline.predict(np.asarray(text_data["test_texts"], object))
    )


def test_classes_order_is_honoured_when_not_sorted(text_model, text_data):
    reordered = ScoringModel(
        kind="text", classes_=np.array(["weather", "finance", "sport"]), pipeline=text_model.pipeline
    )
    texts = text_data["test_texts"][:5]
    np.testing.assert_allclose(reordered.predict_proba(texts), text_model.predict_proba(texts)[:, [2, 0, 1]])
    np.testing.assert_array_equal(reordered.predict(texts), text_model.predict(texts))


def test_model_is_frozen(text_model):
    with pytest.raises(AttributeError):
        text_model.kind = "features"
    with pytest.raises(ValueError):
        text_model.classes_[0] = "x"


def test_labels_are_strings():
    rng = np.random.default_rng(0)
    features = np.vstack([rng.normal(0, 1, (40, 3)), rng.normal(4, 1, (40, 3))])
    model = train_model(features, [0] * 40 + [1] * 40, kind="features", seed=0)
    assert model.classes_.tolist() == ["0", "1"]
    assert evaluate(model, features, np.array([0] * 40 + [1] * 40))["accuracy"] > 0.95


def test_feature_model():
    rng = np.random.default_rng(7)
    centres = np.array([[0, 0, 0, 0], [5, 0, 0, 0], [0, 5, 0, 0]])
    labels = np.repeat(np.array(["a", "b", "c"]), 50)
    features = centres[np.repeat(np.arange(3), 50)] + rng.normal(0, 1, (150, 4))
    model = train_model(features.tolist(), labels, kind="features", seed=0)
    assert model.kind == "features"
    assert isinstance(build_feature_pipeline(seed=0).named_steps["classifier"].C, float)
    proba = model.predict_proba(features)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert evaluate(model, features, labels)["accuracy"] > 0.9


@pytest.mark.parametrize(
    ("inputs", "labels", "message"),
    [
        (["a a", "b b"], ["x", "x"], "at least 2 distinct labels"),
        ([], [], "non-empty"),
        (["a a", "b b"], ["x"], "2 inputs but 1 labels"),
        (["a a", None], ["x", "y"], "non-str at index"),
        ("just one string", ["x"], "single string"),
        (["a a", "b b"], ["x", None], "None or NaN"),
    ],
)
def test_train_text_errors(inputs, labels, message):
    with pytest.raises(ValueError, match=message):
        train_model(inputs, labels, kind="text")


def test_train_feature_errors():
    with pytest.raises(ValueError, match=r"rows with NaN or inf: \[1\]"):
        train_model([[0.0, 1.0], [np.nan, 1.0]], ["a", "b"], kind="features")
    with pytest.raises(ValueError, match="2-D"):
        train_model([1.0, 2.0], ["a", "b"], kind="features")
    with pytest.raises(ValueError, match="rectangular"):
        train_model([[1.0, 2.0], [1.0]], ["a", "b"], kind="features")
    with pytest.raises(ValueError, match="kind must be one of"):
        train_model([[1.0], [2.0]], ["a", "b"], kind="image")
    with pytest.raises(ValueError, match="c must be"):
        build_text_pipeline(c=0.0)


def test_evaluate_counts_unseen_labels_as_wrong(text_model):
    texts = ["the striker scored a penalty", "the investor bought bonds", "a volcano erupted"]
    metrics = evaluate(text_model, texts, ["sport", "finance", "geology"])
    assert metrics["n_unseen_label"] == 1
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    assert (
        metrics["log_loss"] > np.log(1 / np.finfo(np.float64).eps) / 3
    )  # the unseen item alone costs ~36 nats
    predicted = text_model.predict(texts)
    assert predicted[:2].tolist() == ["sport", "finance"]
    # the classes in truth or predictions enter macro F1; the unseen "geology" enters with F1 0
    per_class = {"sport": 1.0, "finance": 1.0, "geology": 0.0}
    per_class[str(predicted[2])] = 2 / 3  # one right, one wrong prediction of it: precision 1/2, recall 1
    assert metrics["macro_f1"] == pytest.approx(np.mean(list(per_class.values())))


def test_evaluate_length_mismatch(text_model):
    with pytest.raises(ValueError, match="2 inputs but 1 labels"):
        evaluate(text_model, ["a b", "c d"], ["sport"])


@pytest.mark.parametrize(
    ("candidate", "incumbent", "tolerance", "expected"),
    [
        (0.90, None, 0.0, True),
        (0.90, 0.90, 0.0, True),
        (0.89, 0.90, 0.0, False),
        (0.89, 0.90, 0.02, True),
        (0.87, 0.90, 0.02, False),
        (0.95, 0.90, 0.0, True),
    ],
)
def test_is_not_worse(candidate, incumbent, tolerance, expected):
    incumbent_metrics = None if incumbent is None else {"accuracy": incumbent, "n": 100}
    assert is_not_worse({"accuracy": candidate}, incumbent_metrics, tolerance=tolerance) is expected


def test_is_not_worse_rejects_bad_metrics():
    with pytest.raises(ValueError, match="no 'accuracy' key"):
        is_not_worse({"accuracy": 0.9}, {"macro_f1": 0.9})
    with pytest.raises(ValueError, match="candidate accuracy"):
        is_not_worse({"accuracy": float("nan")}, None)
    with pytest.raises(ValueError, match="tolerance"):
        is_not_worse({"accuracy": 0.9}, {"accuracy": 0.9}, tolerance=-0.1)


def test_paired_comparison_needs_evidence_to_call_a_candidate_worse():
    from scoring.models import paired_comparison

    # two points lower on 60 items (2 discordant the incumbent's way) is no evidence
    incumbent = np.array([True] * 56 + [False] * 4)
    candidate = incumbent.copy()
    candidate[:2] = False
    result = paired_comparison(candidate, incumbent)
    assert not result["worse"] and result["only_incumbent_right"] == 2 and result["only_candidate_right"] == 0
    assert result["p_value"] == pytest.approx(0.25)
    # twelve items lost and none gained is: 0.5 ** 12 < 0.05
    worse = incumbent.copy()
    worse[:12] = False
    result = paired_comparison(worse, incumbent)
    assert result["worse"] and result["p_value"] == pytest.approx(0.5**12)
    # a better candidate and an identical one are never worse
    assert not paired_comparison(np.ones(60, bool), incumbent)["worse"]
    assert paired_comparison(incumbent, incumbent)["p_value"] == 1.0


def test_paired_comparison_rejects_bad_input():
    from scoring.models import paired_comparison

    with pytest.raises(ValueError, match="equal-length"):
        paired_comparison([True, False], [True])
    with pytest.raises(ValueError, match="alpha"):
        paired_comparison([True], [True], alpha=0.0)
