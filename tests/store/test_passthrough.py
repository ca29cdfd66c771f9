"""store.passthrough, the scores a producer sent with its items: upstream probabilities, confidences, both,
neither and contradictions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store.passthrough import UpstreamScores, upstream_scores


def test_probs_only():
    scores = upstream_scores(
        [None, None], [None, None], [{"a": 0.2, "b": 0.8}, {"a": 0.6, "b": 0.3, "c": 0.1}]
    )
    assert isinstance(scores, UpstreamScores)
    assert scores.classes.tolist() == ["a", "b", "c"]
    np.testing.assert_allclose(scores.probs, [[0.2, 0.8, 0.0], [0.6, 0.3, 0.1]])
    assert scores.labels.tolist() == ["b", "a"]  # argmax fills a missing prediction
    np.testing.assert_allclose(scores.confidence, [0.8, 0.6])
    assert scores.has_upstream.tolist() == [True, True]


def test_confidence_only_spreads_the_rest():
    scores = upstream_scores(["b", "a"], [0.7, 0.4], [None, None], classes=["a", "b", "c"])
    # (1 - 0.7) / 2 = 0.15 on each other class; (1 - 0.4) / 2 = 0.3
    np.testing.assert_allclose(scores.probs, [[0.15, 0.7, 0.15], [0.4, 0.3, 0.3]])
    np.testing.assert_allclose(scores.confidence, [0.7, 0.4])
    assert scores.labels.tolist() == ["b", "a"]
    assert scores.has_upstream.all()


def test_nothing_upstream():
    scores = upstream_scores([None, None], [None, float("nan")], [None, None], classes=["x", "y"])
    assert scores.labels.tolist() == [None, None]
    assert np.isnan(scores.confidence).all() and np.isnan(scores.probs).all()
    assert scores.probs.shape == (2, 2)
    assert not scores.has_upstream.any()


def test_mixed_batch():
    scores = upstream_scores(
        ["spam", None, "ham", None, "ham"],
        [None, None, 0.9, 0.8, None],
        [{"spam": 0.7, "ham": 0.3}, None, None, None, None],
    )
    assert scores.classes.tolist() == ["ham", "spam"]  # predictions join the label set
    assert scores.labels.tolist() == ["spam", None, "ham", None, "ham"]
    np.testing.assert_allclose(scores.confidence, [0.7, np.nan, 0.9, 0.8, np.nan])
    np.testing.assert_allclose(scores.probs[[0, 2]], [[0.3, 0.7], [0.9, 0.1]])
    assert np.isnan(scores.probs[[1, 3, 4]]).all()  # confidence without a label, a label without a confidence
    assert scores.has_upstream.tolist() == [True, False, True, False, False]


def test_probs_take_precedence_over_confidence_and_are_renormalised():
    scores = upstream_scores(["a"], [0.99], [{"a": 0.3334, "b": 0.3333, "c": 0.3333}])
    np.testing.assert_allclose(scores.probs.sum(axis=1), 1.0)
    assert scores.confidence[0] == pytest.approx(0.3334)


def test_single_class_cannot_spread():
    scores = upstream_scores(["a"], [0.9], [None])
    assert scores.classes.tolist() == ["a"]
    assert np.isnan(scores.probs).all()
    assert scores.has_upstream.tolist() == [True]  # label and confidence are known even without a row


def test_tie_counts_as_argmax():
    scores = upstream_scores(["b"], [None], [{"a": 0.5, "b": 0.5}])
    assert scores.labels.tolist() == ["b"] and scores.confidence[0] == 0.5


def test_result_is_read_only():
    scores = upstream_scores(["a"], [0.9], [None], classes=["a", "b"])
    with pytest.raises(ValueError):
        scores.probs[0, 0] = 0.0


@pytest.mark.parametrize(
    ("predictions", "confidences", "probs", "message"),
    [
        ([], [], [], "empty batch"),
        (["a"], [0.5, 0.5], [None], "lengths 1, 2, 1"),
        (["a"], [1.5], [None], r"in \[0, 1\]; got index -> value \{0: 1.5\}"),
        (["a"], [None], [{"a": 0.5, "b": 0.2}], r"sum to 1.*\{0: 0.7"),
        (["a"], [None], [{"a": float("nan"), "b": 1.0}], "not NaN; bad rows"),
        (["a"], [None], [{"a": 1.2, "b": -0.2}], r"bad rows \[0\]"),
        (
            ["a", "b"],
            [None, None],
            [None, {"a": 0.9, "b": 0.1}],
            r"not the argmax of its own probs at rows \[1\]",
        ),
        ([3], [0.5], [None], "predictions must be str or None"),
        (["a"], [None], [[0.5, 0.5]], "probs must be a mapping"),
        (["a"], [None], [{1: 1.0}], "probs keys must be str"),
    ],
)
def test_errors(predictions, confidences, probs, message):
    with pytest.raises(ValueError, match=message):
        upstream_scores(predictions, confidences, probs)


def test_bad_classes_argument():
    with pytest.raises(ValueError, match="classes must be an iterable of str"):
        upstream_scores(["a"], [0.5], [None], classes="ab")


_label = st.sampled_from(["a", "b", "c", "d"])
_row = st.one_of(
    st.tuples(st.none(), st.none(), st.none()),
    st.tuples(_label, st.floats(0, 1), st.none()),
    st.tuples(st.none(), st.none(), st.dictionaries(_label, st.floats(0.01, 1), min_size=1)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_row, min_size=1, max_size=20))
def test_properties(rows):
    predictions = [r[0] for r in rows]
    confidences = [r[1] for r in rows]
    probs = [None if r[2] is None else {k: v / sum(r[2].values()) for k, v in r[2].items()} for r in rows]
    scores = upstream_scores(predictions, confidences, probs, classes=["a", "b"])
    finite_rows = np.isfinite(scores.probs).all(axis=1)
    np.testing.assert_allclose(scores.probs[finite_rows].sum(axis=1), 1.0)
    assert (np.isnan(scores.probs[~finite_rows])).all()
    assert list(scores.classes) == sorted(scores.classes)
    for i, row in enumerate(rows):
        if row[2] is not None:
            assert scores.confidence[i] == pytest.approx(max(probs[i].values()))
        elif row[0] is not None:
            assert scores.confidence[i] == row[1]
        else:
            assert math.isnan(scores.confidence[i])
    assert scores.has_upstream.tolist() == [r[0] is not None or r[2] is not None for r in rows]
