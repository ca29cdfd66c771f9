"""Sluice's own verifier for generated responses: the probability that people accept a response, learnt from their
verdicts, from what the prompt, the response and the documents the pipeline used say about each other (plus the
pipeline's own scores when it sends them). It is the score that routes a `generation` item when the pipeline
sends none it can trust; like every score it is calibrated on human verdicts before a threshold is certified.

Features (one row per item, all cheap and language-agnostic):
- support: the share of the response's content words found in the context, and in the prompt; the longest run
  of the response's words found verbatim in the context, relative to its length;
- form: response length (log words), the ratio of response to prompt length, digits the context does not hold
  (numbers a response made up are a common failure);
- the upstream `confidence` and `scores` (missing ones as 0.5 with a flag), and TF-IDF word n-grams of the
  response (phrasings such as refusals or hedges that people reject).

A logistic regression over them, class-weighted. Nothing here reads a clock or global random state.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

__all__ = ["GenerationExample", "Verifier", "verifier_features"]

_WORD = re.compile(r"\w+", re.UNICODE)
_STOP = frozenset("a an the of to in on for and or but is are was were be been it its this that with as at by from "
                  "what which who how why when where do does did not no yes you your i we they he she".split())


@dataclass(frozen=True)
class GenerationExample:
    """What the verifier reads of one generation item."""

    prompt: str
    response: str
    context: str = ""
    confidence: float | None = None
    scores: Mapping[str, float] | None = None


def _content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


def _longest_shared_run(response: list[str], context: set[tuple[str, ...]], *, n: int = 4) -> float:
    """The share of the response's words covered by n-grams that also appear in the context."""
    if len(response) < n:
        return 0.0
    covered = np.zeros(len(response), dtype=bool)
    for start in range(len(response) - n + 1):
        if tuple(response[start:start + n]) in context:
            covered[start:start + n] = True
    return float(covered.mean())


def _numbers(text: str) -> set[str]:
    return set(re.findall(r"\d+(?:[.,]\d+)?", text))


def verifier_features(examples: Sequence[GenerationExample], *, score_names: Sequence[str] = ()) -> np.ndarray:
    """The dense feature rows of `examples` (see the module docstring), one per example."""
    rows = []
    for example in examples:
        response, prompt, context = (_content_words(example.response), _content_words(example.prompt),
                                     _content_words(example.context))
        words = _WORD.findall(example.response.lower())
        context_words = _WORD.findall(example.context.lower())
        grams = {tuple(context_words[i:i + 4]) for i in range(max(len(context_words) - 3, 0))}
        unique = set(response)
        in_context = len(unique & set(context)) / len(unique) if unique else 0.0
        in_prompt = len(unique & set(prompt)) / len(unique) if unique else 0.0
        made_up = len(_numbers(example.response) - _numbers(example.context) - _numbers(example.prompt))
        row = [in_context, in_prompt, _longest_shared_run(words, grams), math.log1p(len(words)),
               math.log1p(len(words)) - math.log1p(len(_WORD.findall(example.prompt))), float(made_up > 0),
               float(bool(example.context.strip()))]
        confidence = example.confidence
        row += [0.5 if confidence is None else float(confidence), float(confidence is None)]
        for name in score_names:
            value = (example.scores or {}).get(name)
            row += [0.0 if value is None else float(value), float(value is None)]
        rows.append(row)
    return np.asarray(rows, dtype=float).reshape(len(examples), -1)


class Verifier:
    """P(people accept the response): ``fit(examples, accepted)`` then ``predict_proba(examples)``."""

    def __init__(self, *, C: float = 1.0, max_ngram_features: int = 20_000) -> None:
        self.C = C
        self.max_ngram_features = max_ngram_features

    def fit(self, examples: Sequence[GenerationExample], accepted: Sequence[bool] | np.ndarray) -> Verifier:
        y = np.asarray(accepted, dtype=bool)
        if y.shape != (len(examples),):
            raise ValueError(f"length mismatch: {len(examples)} examples but {y.shape[0]} verdicts")
        if y.all() or not y.any():
            raise ValueError("the verdicts must include both accepted and rejected responses to learn from")
        self.score_names_ = tuple(sorted({n for e in examples for n in (e.scores or {})}))
        self.scaler_ = StandardScaler().fit(verifier_features(examples, score_names=self.score_names_))
        self.ngrams_ = TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=self.max_ngram_features,
                                       sublinear_tf=True).fit([e.response for e in examples])
        self.model_ = LogisticRegression(C=self.C, class_weight="balanced", max_iter=2000).fit(
            self._matrix(examples), y)
        return self

    def _matrix(self, examples: Sequence[GenerationExample]) -> Any:
        dense = self.scaler_.transform(verifier_features(examples, score_names=self.score_names_))
        return hstack([csr_matrix(dense), self.ngrams_.transform([e.response for e in examples])]).tocsr()

    def predict_proba(self, examples: Sequence[GenerationExample]) -> np.ndarray:
        """P(accepted) per example."""
        if not hasattr(self, "model_"):
            raise ValueError("this Verifier is not fitted yet: call fit(examples, accepted) first")
        if not examples:
            return np.empty(0)
        column = list(self.model_.classes_).index(True)
        return self.model_.predict_proba(self._matrix(examples))[:, column]
