"""Scores for items whose producer already scored them: upstream prediction, confidence and probabilities.

Precedence per item: ``probs`` when given (confidence is their maximum; a missing prediction becomes their
argmax); otherwise ``prediction`` with ``confidence``. When only a prediction and a confidence are given, the
probability row is reconstructed as ``confidence`` on the predicted class and ``(1 - confidence) / (k - 1)``
on each other class: the least-informative distribution consistent with the two fields (it needs ``k >= 2``;
note that a confidence below ``1 / k`` then leaves the predicted class below the others). Anything else gets a
NaN row and ``has_upstream = False``, so the caller scores it with its own model or routes it to people.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["UPSTREAM_MODEL", "UpstreamScores", "passthrough_prediction", "prediction_columns", "probs_confidence",
           "probs_json", "upstream_scores"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
ObjectArray = npt.NDArray[np.object_]

# The model that passes the producer's own confidence through; it routes while no trained model is promoted.
UPSTREAM_MODEL = "upstream"
_MAX_SHOWN = 5  # how many offending values an error message quotes
_TIE_TOLERANCE = 1e-9  # a prediction whose probability is this close to the row maximum counts as the argmax


@dataclass(frozen=True, eq=False)
class UpstreamScores:
    """Upstream scores of a batch, one row per item; all arrays are read-only.

    ``labels``: predicted label (str) or None. ``confidence``: confidence in that label, NaN when unknown.
    ``classes``: sorted label set, the column order of ``probs``. ``probs``: (n, k), NaN rows where unknown.
    ``has_upstream``: the item has both a label and a confidence, so it needs no scoring of Sluice's own.
    """

    labels: ObjectArray
    confidence: FloatArray
    classes: npt.NDArray[np.str_]
    probs: FloatArray
    has_upstream: BoolArray


def upstream_scores(
    predictions: Sequence[str | None],
    confidences: Sequence[float | None],
    probs: Sequence[Mapping[str, float] | None],
    *,
    classes: Iterable[str] | None = None,
    sum_tolerance: float = 1e-3,
) -> UpstreamScores:
    """Turn upstream prediction/confidence/probs fields into aligned arrays (see the module docstring).

    ``classes`` adds labels the batch may not mention; the label set is the sorted union of ``classes``, the
    keys of every ``probs`` object and every prediction. A ``probs`` row must sum to 1 within
    ``sum_tolerance`` (it is then renormalised exactly); a prediction that is not the argmax of its own
    ``probs`` row is contradictory and raises.
    """
    n_items = len(predictions)
    if n_items == 0:
        raise ValueError("upstream_scores needs at least one item, got an empty batch")
    if len(confidences) != n_items or len(probs) != n_items:
        raise ValueError(
            f"predictions, confidences and probs must have one entry per item; got lengths "
            f"{n_items}, {len(confidences)}, {len(probs)}"
        )
    if not 0 <= sum_tolerance < 1:
        raise ValueError(f"sum_tolerance must be in [0, 1), got {sum_tolerance!r}")
    labels = _prepare_predictions(predictions)
    confidence_field = _prepare_confidences(confidences)
    has_probs, prob_rows = _prepare_prob_rows(probs)
    prob_rows_keys, prob_rows_values, row_of_value = _flatten_prob_rows(prob_rows, np.flatnonzero(has_probs))
    given = _prepare_given_classes(classes)
    predicted = labels[labels != None].astype(str)  # noqa: E711
    label_set = np.unique(np.concatenate([given, prob_rows_keys, predicted]))
    matrix = np.full((n_items, label_set.size), np.nan)
    matrix[has_probs] = 0.0
    matrix[row_of_value, np.searchsorted(label_set, prob_rows_keys)] = prob_rows_values
    _check_and_normalise_rows(matrix, has_probs, sum_tolerance=sum_tolerance)
    labels = _labels_from_probs(labels, matrix, has_probs, label_set)
    confidence = np.where(has_probs, np.max(matrix, axis=1, initial=-np.inf), confidence_field)
    _spread_confidence(matrix, labels, confidence, ~has_probs, label_set)
    has_upstream = (labels != None) & np.isfinite(confidence)  # noqa: E711
    return _frozen(labels, confidence, label_set, matrix, has_upstream)


def _prepare_predictions(predictions: Sequence[str | None]) -> ObjectArray:
    labels = np.empty(len(predictions), dtype=object)
    labels[:] = list(predictions)
    # None and float NaN (how pandas spells a missing value) both mean "no prediction".
    missing = np.fromiter((p is None or (isinstance(p, float) and p != p) for p in labels), bool, labels.size)
    is_text = np.fromiter((isinstance(p, str) for p in labels), bool, labels.size)
    bad = np.flatnonzero(~missing & ~is_text)
    if bad.size:
        shown = {int(i): labels[i] for i in bad[:_MAX_SHOWN]}
        raise ValueError(f"predictions must be str or None; got index -> value {shown!r}")
    labels[missing] = None
    return labels


def _prepare_confidences(confidences: Sequence[float | None]) -> FloatArray:
    try:
        values = np.array([np.nan if c is None else c for c in confidences], dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"confidences must be numbers or None: {error}") from error
    out_of_range = np.isfinite(values) & ((values < 0) | (values > 1)) | np.isinf(values)
    if out_of_range.any():
        bad = np.flatnonzero(out_of_range)[:_MAX_SHOWN]
        raise ValueError(
            f"confidences must be in [0, 1]; got index -> value "
            f"{dict(zip(bad.tolist(), values[bad].tolist(), strict=True))!r}"
        )
    return values


def _prepare_prob_rows(probs: Sequence[Mapping[str, float] | None]) -> tuple[BoolArray, list[Any]]:
    rows = list(probs)
    has_probs = np.fromiter((isinstance(row, Mapping) for row in rows), bool, len(rows))
    absent = np.fromiter(
        (row is None or (isinstance(row, float) and row != row) for row in rows), bool, len(rows)
    )
    bad = np.flatnonzero(~has_probs & ~absent)
    if bad.size:
        shown = {int(i): rows[i] for i in bad[:_MAX_SHOWN]}
        raise ValueError(
            f"probs must be a mapping label -> probability or None; got index -> value {shown!r}"
        )
    return has_probs, rows


def _flatten_prob_rows(
    rows: list[Any], prob_row_index: npt.NDArray[np.intp]
) -> tuple[npt.NDArray[np.str_], FloatArray, npt.NDArray[np.intp]]:
    mappings = [rows[i] for i in prob_row_index]
    sizes = np.fromiter(map(len, mappings), np.intp, len(mappings))
    keys = list(itertools.chain.from_iterable(mappings))
    if not all(isinstance(key, str) for key in keys):
        raise ValueError(
            f"probs keys must be str labels; got {[k for k in keys if not isinstance(k, str)][:_MAX_SHOWN]!r}"
        )
    try:
        values = np.array(list(itertools.chain.from_iterable(m.values() for m in mappings)), dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"probs values must be numbers: {error}") from error
    row_of_value = np.repeat(prob_row_index, sizes)
    invalid = ~((values >= 0) & (values <= 1))  # also catches NaN
    if invalid.any():
        bad_rows = np.unique(row_of_value[invalid])[:_MAX_SHOWN]
        raise ValueError(f"probs values must be in [0, 1] and not NaN; bad rows {bad_rows.tolist()}")
    return np.asarray(keys, dtype=str).reshape(-1), values, row_of_value


def _prepare_given_classes(classes: Iterable[str] | None) -> npt.NDArray[np.str_]:
    given = [] if classes is None else list(classes)
    if isinstance(classes, str) or not all(isinstance(label, str) for label in given):
        raise ValueError(f"classes must be an iterable of str labels, got {classes!r}")
    return np.asarray(given, dtype=str).reshape(-1)


def _check_and_normalise_rows(matrix: FloatArray, has_probs: BoolArray, *, sum_tolerance: float) -> None:
    sums = matrix[has_probs].sum(axis=1)
    off = np.abs(sums - 1.0) > sum_tolerance
    if off.any():
        bad = np.flatnonzero(has_probs)[off][:_MAX_SHOWN]
        raise ValueError(
            f"probs must sum to 1 (within {sum_tolerance}); row -> sum "
            f"{dict(zip(bad.tolist(), sums[off][:_MAX_SHOWN].tolist(), strict=True))!r}"
        )
    matrix[has_probs] /= sums[:, None]


def _labels_from_probs(
    labels: ObjectArray, matrix: FloatArray, has_probs: BoolArray, label_set: npt.NDArray[np.str_]
) -> ObjectArray:
    labels = labels.copy()
    fill = has_probs & (labels == None)  # noqa: E711
    if fill.any():
        labels[fill] = label_set[np.argmax(matrix[fill], axis=1)]
    check = np.flatnonzero(has_probs & ~fill)
    predicted_prob = matrix[check, np.searchsorted(label_set, labels[check].astype(str))]
    contradicts = predicted_prob < matrix[check].max(axis=1, initial=-np.inf) - _TIE_TOLERANCE
    if contradicts.any():
        bad = check[contradicts][:_MAX_SHOWN]
        raise ValueError(f"prediction is not the argmax of its own probs at rows {bad.tolist()}")
    return labels


def _spread_confidence(
    matrix: FloatArray,
    labels: ObjectArray,
    confidence: FloatArray,
    candidates: BoolArray,
    label_set: npt.NDArray[np.str_],
) -> None:
    k = label_set.size
    rows = np.flatnonzero(candidates & (labels != None) & np.isfinite(confidence))  # noqa: E711
    if k < 2 or rows.size == 0:
        return
    matrix[rows] = ((1.0 - confidence[rows]) / (k - 1))[:, None]
    matrix[rows, np.searchsorted(label_set, labels[rows].astype(str))] = confidence[rows]


def _frozen(
    labels: ObjectArray,
    confidence: FloatArray,
    classes: npt.NDArray[np.str_],
    probs: FloatArray,
    has: BoolArray,
) -> UpstreamScores:
    for array in (labels, confidence, classes, probs, has):
        array.setflags(write=False)
    return UpstreamScores(
        labels=labels, confidence=confidence, classes=classes, probs=probs, has_upstream=has
    )


def probs_json(classes: npt.NDArray[np.str_] | Sequence[str], probs: FloatArray) -> list[str]:
    """Each row of `probs` as the JSON text `json.dumps(dict(zip(classes, row)))` gives, built by one format
    string per row (finite probabilities; anything else goes through json.dumps)."""
    names = [str(c) for c in classes]
    if not np.isfinite(probs).all():
        return [json.dumps(dict(zip(names, row))) for row in probs.tolist()]
    template = "{" + ", ".join(json.dumps(name).replace("%", "%%") + ": %r" for name in names) + "}"
    return [template % tuple(row) for row in probs.tolist()]


def prediction_columns(item_ids: Sequence[str], classes: npt.NDArray[np.str_] | Sequence[str], probs: FloatArray,
                       *, model_version: str, now: Any) -> dict[str, list[Any]]:
    """One prediction row per item, column by column (no dict per row): top label, its probability, the
    top-1/top-2 margin and every probability (as JSON text)."""
    order = np.argsort(-probs, axis=1)
    index = np.arange(len(probs))
    top = probs[index, order[:, 0]]
    second = probs[index, order[:, 1]] if probs.shape[1] > 1 else np.zeros(len(probs))
    n = len(item_ids)
    return {"item_id": list(item_ids), "model_version": [model_version] * n,
            "label": np.asarray(classes).astype(str)[order[:, 0]].tolist(), "confidence": top.tolist(),
            "margin": (top - second).tolist(), "probs": probs_json(classes, probs), "created_at": [now] * n}


def probs_confidence(probs: Mapping[str, float]) -> float:
    """The largest share of `probs`: its maximum over its exact sum (``math.fsum``), so the value does not depend
    on the order the probabilities came in."""
    return float(max(probs.values())) / math.fsum(probs.values())


def passthrough_prediction(prediction: str | None, confidence: float | None,
                           probs: Mapping[str, float] | None) -> tuple[str, float] | None:
    """The upstream passthrough's prediction of one item, (label, confidence), as ingest writes it into the item
    row (``store.predictions``), with ``upstream_scores``' precedence: with ``probs``, the given prediction or else
    the first label (in sorted order) holding their largest share, at that share (`probs_confidence`); without,
    the given pair. None when the item carries no complete upstream score. The record was checked at ingest
    (`store.ingest`: sums, ranges, the prediction the argmax of its probs). A confidence stated beside ``probs``
    is not the passthrough's: theirs is (as ``upstream_scores`` has it)."""
    if isinstance(probs, Mapping) and probs:
        top = max(probs.values())
        if prediction is None:
            prediction = min(label for label, value in probs.items() if value == top)
        confidence = probs_confidence(probs)
    if prediction is None or confidence is None or confidence != confidence:
        return None
    return prediction, float(confidence)
