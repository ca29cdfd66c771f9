"""Active-learning query strategies over (n, k) probability matrices and the batch selector."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import entr

__all__ = [
    "STRATEGIES", "Selection", "entropy", "least_confidence", "margin", "probability_matrix", "select_batch",
]

ROW_SUM_TOLERANCE = 1e-6


@dataclass(frozen=True, eq=False)
class Selection:
    """Chosen pool indices (most useful first), why each was chosen, and its probability of being chosen."""

    indices: np.ndarray
    reasons: tuple[str, ...]
    probabilities: np.ndarray

    def __len__(self) -> int:
        return int(self.indices.shape[0])


def _as_probability_matrix(probs: Any) -> np.ndarray:
    try:
        matrix = np.asarray(probs, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"probs must be a numeric (n, k) matrix, got {probs!r}") from error
    if matrix.ndim != 2 or matrix.shape[1] < 2:
        raise ValueError(f"probs must be an (n, k) matrix with k >= 2 classes, got shape {matrix.shape}")
    bad = ~np.isfinite(matrix) | (matrix < 0.0) | (matrix > 1.0)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise ValueError(f"probs must be finite and in [0, 1]; bad rows {rows[:5].tolist()}")
    off = np.abs(matrix.sum(axis=1) - 1.0) > ROW_SUM_TOLERANCE
    if off.any():
        rows = np.flatnonzero(off)
        raise ValueError(
            f"probs rows must sum to one (tol {ROW_SUM_TOLERANCE}); rows {rows[:5].tolist()} sum to "
            f"{matrix.sum(axis=1)[rows[:5]].tolist()}"
        )
    return matrix


def least_confidence(probs: Any) -> np.ndarray:
    """1 - max class probability; higher means more uncertain."""
    return 1.0 - _as_probability_matrix(probs).max(axis=1)


def margin(probs: Any) -> np.ndarray:
    """1 - (top probability - runner-up probability); higher means more uncertain."""
    matrix = _as_probability_matrix(probs)
    top_two = -np.partition(-matrix, 1, axis=1)[:, :2]
    return 1.0 - (top_two[:, 0] - top_two[:, 1])


def entropy(probs: Any) -> np.ndarray:
    """Shannon entropy in nats (0 log 0 = 0); higher means more uncertain."""
    return entr(_as_probability_matrix(probs)).sum(axis=1)


OTHER_CLASS = "\u0000other"  # the rest of the mass of an output that names only its label and confidence


def probability_matrix(probs: Sequence[Mapping[str, float] | None], labels: Sequence[str | None],
                       confidences: Sequence[float | None]) -> np.ndarray:
    """Class probabilities of items, one row each over the union of their classes (sorted). An item without
    ``probs`` counts as two classes: its label at its confidence, and the rest."""
    if not len(probs) == len(labels) == len(confidences):
        raise ValueError(f"length mismatch: {len(probs)} probs, {len(labels)} labels, {len(confidences)} confidences")
    dicts: list[Mapping[str, float]] = []
    for d, label, confidence in zip(probs, labels, confidences):
        if d:
            dicts.append(d)
        elif confidence is None:
            raise ValueError(f"an item with neither probs nor a confidence (label {label!r}) has no probabilities")
        else:
            dicts.append({str(label): float(confidence), OTHER_CLASS: 1.0 - float(confidence)})
    classes = sorted({k for d in dicts for k in d})
    matrix = np.array([[d.get(c, 0.0) for c in classes] for d in dicts], dtype=float)
    return matrix.reshape(len(dicts), max(len(classes), 1))


STRATEGIES: dict[str, Callable[[Any], np.ndarray] | None] = {
    "margin": margin,
    "entropy": entropy,
    "least_confidence": least_confidence,
    "random": None,
    "diverse": margin,
}

# The diverse selector clusters this many times the budget of the most uncertain candidates.
DIVERSE_POOL_FACTOR = 10


def _check_budget(budget: Any) -> int:
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)):
        raise ValueError(f"budget must be an integer, got {budget!r}")
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    return int(budget)


def _selection(indices: np.ndarray, strategy: str, probability: float) -> Selection:
    return Selection(
        indices=indices.astype(np.intp),
        reasons=(strategy,) * indices.shape[0],
        probabilities=np.full(indices.shape[0], probability),
    )


def diverse_top(uncertainty: np.ndarray, features: Any, *, take: int, rng: np.random.Generator) -> np.ndarray:
    """The most uncertain item of each of ``take`` clusters of the most uncertain candidates' feature vectors,
    so that a batch is not ``take`` near-duplicates; most uncertain first."""
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    vectors = np.asarray(features, dtype=float)
    if vectors.ndim != 2 or vectors.shape[0] != uncertainty.shape[0]:
        raise ValueError(f"features must be a 2-D array with one row per item, got shape {vectors.shape}")
    order = np.lexsort((rng.random(uncertainty.shape[0]), -uncertainty))
    pool = order[: max(take * DIVERSE_POOL_FACTOR, take)]
    if pool.shape[0] <= take:
        return pool
    seed = int(rng.integers(0, 2**31 - 1))
    with warnings.catch_warnings():  # duplicate vectors give fewer distinct clusters: handled below
        warnings.simplefilter("ignore", ConvergenceWarning)
        clusters = KMeans(n_clusters=take, n_init=1, random_state=seed).fit_predict(vectors[pool])
    # pool is sorted most-uncertain first, so the first member met of each cluster is its most uncertain
    _, first = np.unique(clusters, return_index=True)
    chosen = pool[np.sort(first)]
    if chosen.shape[0] < take:  # identical vectors can leave clusters empty: fill by uncertainty
        rest = pool[~np.isin(pool, chosen)]
        chosen = np.concatenate([chosen, rest[: take - chosen.shape[0]]])
    return chosen


def select_batch(
    probs: Any, *, budget: int, strategy: str, rng: np.random.Generator, features: Any = None
) -> Selection:
    """Pick up to ``budget`` items: the most uncertain by ``strategy`` (ties broken by ``rng``), a uniform
    random sample without replacement for ``"random"``, or for ``"diverse"`` the most uncertain (by margin) of
    each cluster of the candidates' ``features`` (their probability vectors when no features are given)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; valid strategies are {sorted(STRATEGIES)}")
    budget = _check_budget(budget)
    matrix = _as_probability_matrix(probs)
    n_items = matrix.shape[0]
    take = min(budget, n_items)
    if take == 0:
        return _selection(np.empty(0, dtype=np.intp), strategy, 1.0)
    utility = STRATEGIES[strategy]
    if utility is None:
        return _selection(rng.choice(n_items, size=take, replace=False), strategy, take / n_items)
    if strategy == "diverse":
        vectors = matrix if features is None else features
        return _selection(diverse_top(utility(matrix), vectors, take=take, rng=rng), strategy, 1.0)
    tie_break = rng.random(n_items)
    order = np.lexsort((tie_break, -utility(matrix)))
    return _selection(order[:take], strategy, 1.0)
