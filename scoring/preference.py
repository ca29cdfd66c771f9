"""The preference model for pairwise items: P(people prefer response a to response b), learnt from their answers.

Features of a pair are differences: the verifier's dense features (``scoring.verifier.verifier_features``: support
in the context and the prompt, form, made-up numbers) of (prompt, a, context) minus those of (prompt, b, context),
and the TF-IDF word n-grams of a minus those of b. A logistic regression without intercept over the differences,
fitted on every answered pair in both orders (a pair with answer "a" and its swap with answer "b"), so the model is
symmetric by construction: swapping a and b negates every feature, and P(b over a) = 1 - P(a over b) exactly.

Ties are left out of training (``n_ties_`` counts them): a tie says neither response is better, which a two-outcome
model cannot learn from without a third outcome; counting it as half a win each way would only pull every
prediction towards 0.5. A tie still costs a label, and the benchmarks count it.

Deterministic: the solver (lbfgs) uses no randomness. Pure: no store, no network, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix, hstack, vstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from scoring.verifier import GenerationExample, verifier_features

__all__ = ["PREFERENCE_LABELS", "PairwiseExample", "PreferenceModel", "pair_description", "pair_differences"]

PREFERENCE_LABELS = ("a", "b", "tie")


@dataclass(frozen=True)
class PairwiseExample:
    """What the preference model reads of one pairwise item."""

    prompt: str
    response_a: str
    response_b: str
    context: str = ""

    def swapped(self) -> PairwiseExample:
        return PairwiseExample(self.prompt, self.response_b, self.response_a, self.context)


def _sides(examples: Sequence[PairwiseExample]) -> tuple[np.ndarray, np.ndarray]:
    """The verifier's dense features of each side, (n, d) each."""
    side_a = verifier_features([GenerationExample(e.prompt, e.response_a, e.context) for e in examples])
    side_b = verifier_features([GenerationExample(e.prompt, e.response_b, e.context) for e in examples])
    return side_a, side_b


def pair_differences(examples: Sequence[PairwiseExample]) -> np.ndarray:
    """Dense features of a minus those of b, one row per pair (antisymmetric: a swap negates the row)."""
    side_a, side_b = _sides(examples)
    return side_a - side_b


def pair_description(examples: Sequence[PairwiseExample]) -> np.ndarray:
    """An order-free description of each pair, for diversity: the mean of the two sides' dense features and the
    absolute difference (a pair and its swap give the same row)."""
    side_a, side_b = _sides(examples)
    return np.hstack([(side_a + side_b) / 2.0, np.abs(side_a - side_b)])


def _targets(labels: Sequence[str] | np.ndarray, n_examples: int) -> np.ndarray:
    values = np.asarray(labels, dtype=object)
    if values.shape != (n_examples,):
        raise ValueError(f"length mismatch: {n_examples} pairs but {values.shape[0]} answers")
    unknown = sorted({str(v) for v in values} - set(PREFERENCE_LABELS))
    if unknown:
        raise ValueError(f"answers must be one of {PREFERENCE_LABELS}, got {unknown[:5]}")
    return values


class PreferenceModel:
    """P(a is preferred): ``fit(examples, labels)`` with labels "a", "b" or "tie", then ``predict_proba``."""

    def __init__(self, *, C: float = 1.0, ngrams: bool = True, max_ngram_features: int = 20_000) -> None:
        self.C = C
        self.ngrams = ngrams
        self.max_ngram_features = max_ngram_features

    def fit(self, examples: Sequence[PairwiseExample], labels: Sequence[str] | np.ndarray) -> PreferenceModel:
        answers = _targets(labels, len(examples))
        decided = np.flatnonzero(answers != "tie")
        self.n_ties_ = int(len(examples) - decided.shape[0])
        kept = [examples[i] for i in decided]
        a_won = answers[decided] == "a"
        if a_won.all() or not a_won.any():
            raise ValueError(f"the answers must include pairs won by a and pairs won by b to learn from; got "
                             f"{int(a_won.sum())} won by a, {int((~a_won).sum())} by b, {self.n_ties_} ties")
        dense = pair_differences(kept)
        # no centring: the mean of the rows in both orders is zero, and a shift would break the antisymmetry
        self.scaler_ = StandardScaler(with_mean=False).fit(np.vstack([dense, -dense]))
        if self.ngrams:
            self.vectorizer_ = TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=self.max_ngram_features,
                                               sublinear_tf=True).fit(
                [e.response_a for e in kept] + [e.response_b for e in kept])
        forward = self._matrix(kept, dense)
        self.model_ = LogisticRegression(C=self.C, fit_intercept=False, max_iter=2000).fit(
            vstack([forward, -forward]).tocsr(), np.concatenate([a_won, ~a_won]))
        return self

    def _matrix(self, examples: Sequence[PairwiseExample], dense: np.ndarray | None = None) -> Any:
        if dense is None:
            dense = pair_differences(examples)
        parts = [csr_matrix(self.scaler_.transform(dense))]
        if self.ngrams:
            parts.append(self.vectorizer_.transform([e.response_a for e in examples])
                         - self.vectorizer_.transform([e.response_b for e in examples]))
        return hstack(parts).tocsr()

    def predict_proba(self, examples: Sequence[PairwiseExample]) -> np.ndarray:
        """P(a is preferred to b) per pair."""
        if not hasattr(self, "model_"):
            raise ValueError("this PreferenceModel is not fitted yet: call fit(examples, labels) first")
        if not examples:
            return np.empty(0)
        column = list(self.model_.classes_).index(True)
        return self.model_.predict_proba(self._matrix(examples))[:, column]
