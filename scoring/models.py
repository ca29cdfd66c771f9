"""Sluice's own scoring models: scikit-learn pipelines for text and feature vectors, training and evaluation.

A ``ScoringModel`` wraps a fitted pipeline with its input kind and its class labels (always strings), so that
probability columns have one documented order everywhere: ``model.classes_``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, log_loss
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import StandardScaler

__all__ = [
    "MODEL_KINDS",
    "ModelKind",
    "ScoringModel",
    "build_feature_pipeline",
    "build_text_pipeline",
    "evaluate",
    "is_not_worse",
    "paired_comparison",
    "train_model",
]

ModelKind = Literal["text", "features"]
MODEL_KINDS: tuple[str, ...] = ("text", "features")

FloatArray = npt.NDArray[np.float64]
StrArray = npt.NDArray[np.str_]

_MAX_SHOWN = 5  # how many offending values an error message quotes


def build_text_pipeline(*, seed: int = 0, c: float = 10.0, max_features: int = 200_000) -> Pipeline:
    """Word 1-2-gram and char_wb 3-5-gram TF-IDF, concatenated, into multinomial logistic regression.

    ``c`` is LogisticRegression's inverse regularisation strength ``C``; ``seed`` is its ``random_state``
    (lbfgs is deterministic, so the seed is recorded rather than consumed). Input: a 1-D sequence of str.
    """
    _check_positive("c", c)
    features = FeatureUnion(
        [
            (
                "word",
                TfidfVectorizer(
                    analyzer="word",
                    ngram_range=(1, 2),
                    sublinear_tf=True,
                    min_df=1,
                    max_features=max_features,
                ),
            ),
            (
                "char",
                TfidfVectorizer(
                    analyzer="char_wb",
                    ngram_range=(3, 5),
                    sublinear_tf=True,
                    min_df=1,
                    max_features=max_features,
                ),
            ),
        ]
    )
    classifier = LogisticRegression(C=c, max_iter=1000, random_state=seed)
    return Pipeline([("features", features), ("classifier", classifier)])


def build_feature_pipeline(*, seed: int = 0, c: float = 1.0) -> Pipeline:
    """StandardScaler into logistic regression, for 2-D float feature vectors."""
    _check_positive("c", c)
    classifier = LogisticRegression(C=c, max_iter=1000, random_state=seed)
    return Pipeline([("scaler", StandardScaler()), ("classifier", classifier)])


@dataclass(frozen=True, eq=False)
class ScoringModel:
    """A fitted pipeline, the kind of input it takes, and its class labels (probability column order)."""

    kind: ModelKind
    classes_: StrArray
    pipeline: Pipeline
    _column_of_class: npt.NDArray[np.intp] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"kind must be one of {MODEL_KINDS}, got {self.kind!r}")
        classes = np.asarray(self.classes_).astype(str)
        if classes.ndim != 1 or classes.size < 2 or np.unique(classes).size != classes.size:
            raise ValueError(f"classes_ must be 2 or more distinct labels, got {classes.tolist()!r}")
        fitted = np.asarray(getattr(self.pipeline, "classes_", [])).astype(str)
        if not np.array_equal(np.sort(fitted), np.sort(classes)):
            raise ValueError(
                f"classes_ {classes.tolist()!r} differ from the pipeline's fitted classes {fitted.tolist()!r}"
            )
        classes.setflags(write=False)
        order = np.argsort(fitted)
        column_of_class = order[np.searchsorted(fitted, classes, sorter=order)]
        object.__setattr__(self, "classes_", classes)
        object.__setattr__(self, "_column_of_class", column_of_class)

    def __getstate__(self) -> dict[str, Any]:
        # Only the three fields are pickled; the derived column map is rebuilt on load, so that a saved,
        # loaded and re-saved model pickles to the same bytes (and so the same registry version).
        return {"kind": self.kind, "classes_": self.classes_, "pipeline": self.pipeline}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name in ("kind", "classes_", "pipeline"):
            object.__setattr__(self, name, state[name])
        self.__post_init__()

    def predict_proba(self, inputs: Any) -> FloatArray:
        """Class probabilities, shape (n, k), columns in ``classes_`` order; rows sum to 1."""
        prepared = _prepare_inputs(inputs, kind=self.kind)
        proba = np.asarray(self.pipeline.predict_proba(prepared), dtype=np.float64)
        return proba[:, self._column_of_class]

    def predict(self, inputs: Any) -> StrArray:
        """The most probable label of each input (the argmax of ``predict_proba``; ties go to the first)."""
        return self.classes_[np.argmax(self.predict_proba(inputs), axis=1)]


def train_model(inputs: Any, labels: Sequence[Any], *, kind: ModelKind, seed: int = 0) -> ScoringModel:
    """Fit the pipeline for ``kind`` on ``inputs`` and ``labels`` (labels are compared as strings)."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"kind must be one of {MODEL_KINDS}, got {kind!r}")
    prepared = _prepare_inputs(inputs, kind=kind)
    label_array = _prepare_labels(labels, n_expected=len(prepared))
    distinct = np.unique(label_array)
    if distinct.size < 2:
        raise ValueError(f"training needs at least 2 distinct labels, got {distinct.tolist()!r}")
    builder = build_text_pipeline if kind == "text" else build_feature_pipeline
    pipeline = builder(seed=seed).fit(prepared, label_array)
    return ScoringModel(kind=kind, classes_=np.asarray(pipeline.classes_).astype(str), pipeline=pipeline)


def evaluate(model: ScoringModel, inputs: Any, labels: Sequence[Any]) -> dict[str, float | int]:
    """Accuracy, macro F1 and log loss of ``model`` on labelled inputs.

    Labels the model has never seen count as wrong: they lower accuracy, enter macro F1 (averaged over the
    labels present in the truth or the predictions) as classes with F1 0, and enter log loss with probability
    0 (clipped to machine epsilon, about 36 nats each). Keys: ``n``,
    ``accuracy``, ``macro_f1``, ``log_loss``, ``n_unseen_label``.
    """
    proba = model.predict_proba(inputs)
    truth = _prepare_labels(labels, n_expected=proba.shape[0])
    predicted = model.classes_[np.argmax(proba, axis=1)]
    all_labels = np.union1d(model.classes_, truth)
    extended = np.zeros((proba.shape[0], all_labels.size), dtype=np.float64)
    extended[:, np.searchsorted(all_labels, model.classes_)] = proba
    return {
        "n": int(truth.size),
        "accuracy": float(np.mean(predicted == truth)),
        "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
        "log_loss": float(log_loss(truth, extended, labels=all_labels)),
        "n_unseen_label": int(np.count_nonzero(~np.isin(truth, model.classes_))),
    }


def is_not_worse(
    candidate_metrics: Mapping[str, Any],
    incumbent_metrics: Mapping[str, Any] | None,
    *,
    tolerance: float = 0.0,
) -> bool:
    """True when the candidate's accuracy is at least the incumbent's minus ``tolerance``.

    ``incumbent_metrics=None`` means there is no incumbent, so the candidate is promoted. Both metric sets
    must come from the same evaluation data (re-evaluate the incumbent; do not reuse its promotion-time
    figures).
    """
    if not np.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    candidate_accuracy = _accuracy_of(candidate_metrics, role="candidate")
    if incumbent_metrics is None:
        return True
    return candidate_accuracy >= _accuracy_of(incumbent_metrics, role="incumbent") - tolerance


def paired_comparison(
    candidate_correct: Sequence[bool] | np.ndarray, incumbent_correct: Sequence[bool] | np.ndarray, *,
    alpha: float = 0.05
) -> dict[str, Any]:
    """Is the candidate significantly worse than the incumbent on the same labelled items?

    An exact one-sided sign test (McNemar's exact test) on the items the two models disagree about: under "no
    worse", an item only one model gets right is the incumbent's with probability at most 1/2. A small fixed
    evaluation set cannot tell models apart by a point or two of accuracy, and demanding "at least as accurate"
    on it freezes a model that happened to score high there; only evidence that the candidate is worse should
    keep it out. Returns ``worse`` (True when the p-value is below ``alpha``), the p-value and the two counts.
    """
    from scipy.stats import binomtest

    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    candidate = np.asarray(candidate_correct, dtype=bool)
    incumbent = np.asarray(incumbent_correct, dtype=bool)
    if candidate.shape != incumbent.shape or candidate.ndim != 1:
        raise ValueError(f"need two equal-length 1-D sequences, got shapes {candidate.shape} and {incumbent.shape}")
    only_incumbent = int(np.sum(incumbent & ~candidate))
    only_candidate = int(np.sum(candidate & ~incumbent))
    discordant = only_incumbent + only_candidate
    p_value = 1.0 if discordant == 0 else float(
        binomtest(only_incumbent, discordant, 0.5, alternative="greater").pvalue)
    return {"worse": p_value < alpha, "p_value": p_value, "only_candidate_right": only_candidate,
            "only_incumbent_right": only_incumbent, "n": int(candidate.size)}


def _accuracy_of(metrics: Mapping[str, Any], *, role: str) -> float:
    if "accuracy" not in metrics:
        raise ValueError(f"{role} metrics have no 'accuracy' key; keys are {sorted(metrics)!r}")
    accuracy = float(metrics["accuracy"])
    if not 0.0 <= accuracy <= 1.0:  # also rejects NaN
        raise ValueError(f"{role} accuracy must be in [0, 1], got {metrics['accuracy']!r}")
    return accuracy


def _prepare_inputs(inputs: Any, *, kind: str) -> Any:
    if kind == "text":
        return _prepare_texts(inputs)
    return _prepare_features(inputs)


def _prepare_texts(inputs: Any) -> npt.NDArray[np.object_]:
    if isinstance(inputs, (str, bytes)):
        raise ValueError("text inputs must be a 1-D sequence of str, got a single string")
    texts = np.asarray(inputs, dtype=object)
    if texts.ndim != 1 or texts.size == 0:
        raise ValueError(f"text inputs must be a non-empty 1-D sequence of str, got shape {texts.shape}")
    is_text = np.fromiter((isinstance(text, str) for text in texts), dtype=bool, count=texts.size)
    if not is_text.all():
        bad = np.flatnonzero(~is_text)[:_MAX_SHOWN]
        shown = {int(i): texts[i] for i in bad}
        raise ValueError(f"text inputs must all be str; non-str at index -> value {shown!r}")
    return texts


def _prepare_features(inputs: Any) -> FloatArray:
    try:
        features = np.asarray(inputs, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"feature inputs must be a rectangular 2-D array of numbers: {error}") from error
    if features.ndim != 2 or features.shape[0] == 0 or features.shape[1] == 0:
        raise ValueError(f"feature inputs must be a non-empty 2-D array, got shape {features.shape}")
    finite_rows = np.isfinite(features).all(axis=1)
    if not finite_rows.all():
        bad = np.flatnonzero(~finite_rows)[:_MAX_SHOWN]
        raise ValueError(f"feature inputs must be finite; rows with NaN or inf: {bad.tolist()}")
    return features


def _prepare_labels(labels: Sequence[Any], *, n_expected: int) -> StrArray:
    raw = np.asarray(labels, dtype=object)
    if raw.ndim != 1:
        raise ValueError(f"labels must be a 1-D sequence, got shape {raw.shape}")
    if raw.size != n_expected:
        raise ValueError(f"got {n_expected} inputs but {raw.size} labels; they must match one to one")
    missing = np.fromiter((label is None or label != label for label in raw), dtype=bool, count=raw.size)
    if missing.any():
        bad = np.flatnonzero(missing)[:_MAX_SHOWN]
        raise ValueError(f"labels must not be None or NaN; missing at indices {bad.tolist()}")
    return raw.astype(str)


def _check_positive(name: str, value: float) -> None:
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
