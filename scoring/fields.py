"""The field checker for extraction items: P(people keep an extracted value), per field, learnt from their
corrections, from the extractor's own confidence and from where and how the value sits in the document.

Features (one row per field, cheap and language-agnostic):
- the extractor's confidence as log-odds (clipped), and the field's name (one column per name seen in ``fit``);
- whether the value appears verbatim in the document, in its first line, how often, and where it first does
  (relative position; 1 when absent);
- the value's shape (digits folded, so "£12.5m" is "£0.0m"): how many distinct values of that shape the document
  holds, and whether the value is the first of them (extractors that pick a later mention are a common failure).

A logistic regression over them. Pure: no store, no network, no clock; deterministic (lbfgs).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

__all__ = ["ExtractedField", "FieldChecker", "field_features"]

_DIGITS = re.compile(r"\d+")
_CLIP = 1e-4


@dataclass(frozen=True)
class ExtractedField:
    """One extracted field of a document, as the checker reads it."""

    text: str
    name: str
    value: str
    confidence: float


def _shape_counts(text: str, value: str) -> tuple[float, float]:
    """(distinct values of the value's shape in the text, whether the value is the first of them)."""
    shape = _DIGITS.sub("0", value)
    if not _DIGITS.search(value) or not shape.strip():
        return 0.0, 0.0
    pattern = re.escape(shape).replace("0", r"\d+")
    found = list(dict.fromkeys(re.findall(pattern, text)))
    return math.log1p(len(found)), float(bool(found) and found[0] == value)


def field_features(fields: Sequence[ExtractedField]) -> np.ndarray:
    """The name-free dense features of each field (see the module docstring), one row per field."""
    rows = []
    for field in fields:
        confidence = min(max(float(field.confidence), _CLIP), 1.0 - _CLIP)
        value, text = str(field.value).strip(), field.text
        first_line = text.strip().split("\n", 1)[0]
        position = text.find(value) if value else -1
        distinct, is_first = _shape_counts(text, value)
        rows.append([math.log(confidence / (1.0 - confidence)), float(position >= 0), float(value in first_line),
                     math.log1p(text.count(value)) if value else 0.0,
                     position / max(len(text), 1) if position >= 0 else 1.0, distinct, is_first])
    return np.asarray(rows, dtype=float).reshape(len(fields), 7)


class FieldChecker:
    """P(people keep the value): ``fit(fields, kept)`` then ``predict_proba(fields)``."""

    def __init__(self, *, C: float = 1.0) -> None:
        self.C = C

    def fit(self, fields: Sequence[ExtractedField], kept: Sequence[bool] | np.ndarray) -> FieldChecker:
        y = np.asarray(kept, dtype=bool)
        if y.shape != (len(fields),):
            raise ValueError(f"length mismatch: {len(fields)} fields but {y.shape[0]} answers")
        if y.all() or not y.any():
            raise ValueError("the answers must include kept and corrected values to learn from")
        self.names_ = tuple(sorted({f.name for f in fields}))
        self.scaler_ = StandardScaler().fit(field_features(fields))
        self.model_ = LogisticRegression(C=self.C, max_iter=2000).fit(self._matrix(fields), y)
        return self

    def _matrix(self, fields: Sequence[ExtractedField]) -> np.ndarray:
        names = np.array([[f.name == name for name in self.names_] for f in fields], dtype=float)
        return np.hstack([self.scaler_.transform(field_features(fields)), names.reshape(len(fields), -1)])

    def predict_proba(self, fields: Sequence[ExtractedField]) -> np.ndarray:
        """P(the value is kept) per field."""
        if not hasattr(self, "model_"):
            raise ValueError("this FieldChecker is not fitted yet: call fit(fields, kept) first")
        if not fields:
            return np.empty(0)
        column = list(self.model_.classes_).index(True)
        return self.model_.predict_proba(self._matrix(fields))[:, column]
