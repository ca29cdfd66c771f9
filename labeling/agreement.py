"""Agreement between annotators and label resolution: kappas, Krippendorff's alpha, majority vote, Dawid-Skene,
and the position bias of pairwise answers.

Annotations come as a matrix `answers` of shape (n_items, n_annotators) holding class indices, with -1 where
an annotator did not label an item. For an ordered answer (a severity 0-5) the class index is the value, so
Krippendorff's alpha can weigh a disagreement by how far apart the two answers lie (``metric="ordinal"`` or
``"interval"``). Pure numpy and scipy: no database, no network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from calibration.intervals import clopper_pearson

MISSING = -1
AlphaMetric = Literal["nominal", "ordinal", "interval"]
ALPHA_METRICS: tuple[str, ...] = ("nominal", "ordinal", "interval")

__all__ = [
    "ALPHA_METRICS", "MISSING", "AlphaMetric", "DawidSkeneResult", "PositionBias", "cohen_kappa", "dawid_skene",
    "fleiss_kappa", "krippendorff_alpha", "majority_vote", "position_bias",
]


def _check(answers: np.ndarray, n_classes: int) -> np.ndarray:
    answers = np.asarray(answers)
    if answers.ndim != 2:
        raise ValueError(f"answers must be a 2-D (items, annotators) array, got shape {answers.shape}")
    if answers.size == 0:
        raise ValueError("answers is empty")
    if not np.issubdtype(answers.dtype, np.integer):
        raise ValueError(f"answers must hold integer class indices, got dtype {answers.dtype}")
    bad = (answers != MISSING) & ((answers < 0) | (answers >= n_classes))
    if bad.any():
        raise ValueError(f"class indices must lie in [0, {n_classes}) or be {MISSING}; got {answers[bad][:5]}")
    return answers


def _counts(answers: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_items, n_classes) how many annotators chose each class for each item."""
    n_items = answers.shape[0]
    rows = np.repeat(np.arange(n_items), answers.shape[1])
    flat = answers.ravel()
    keep = flat != MISSING
    return np.bincount(rows[keep] * n_classes + flat[keep], minlength=n_items * n_classes).reshape(n_items, n_classes)


def cohen_kappa(a: np.ndarray, b: np.ndarray, *, n_classes: int) -> float:
    """Cohen's kappa of two annotators over the items both labelled: (p_o - p_e) / (1 - p_e)."""
    answers = _check(np.column_stack([a, b]), n_classes)
    both = (answers != MISSING).all(axis=1)
    if not both.any():
        raise ValueError("the two annotators labelled no item in common")
    a, b = answers[both, 0], answers[both, 1]
    observed = float(np.mean(a == b))
    expected = float(np.dot(np.bincount(a, minlength=n_classes), np.bincount(b, minlength=n_classes))) / a.size**2
    return 1.0 if expected == 1.0 else (observed - expected) / (1.0 - expected)


def fleiss_kappa(answers: np.ndarray, *, n_classes: int) -> float:
    """Fleiss' kappa over items with the same number (≥ 2) of ratings each (Fleiss 1971)."""
    counts = _counts(_check(answers, n_classes), n_classes)
    raters = counts.sum(axis=1)
    if raters.min() < 2 or raters.min() != raters.max():
        raise ValueError("Fleiss' kappa needs every item rated by the same number (>= 2) of annotators")
    n = raters[0]
    agreement = ((counts * (counts - 1)).sum(axis=1) / (n * (n - 1))).mean()
    shares = counts.sum(axis=0) / counts.sum()
    chance = float(np.sum(shares**2))
    return 1.0 if chance == 1.0 else float((agreement - chance) / (1.0 - chance))


def krippendorff_alpha(answers: np.ndarray, *, n_classes: int, metric: AlphaMetric = "nominal") -> float:
    """Krippendorff's alpha, any number of annotators, missing answers allowed (Krippendorff 2011).

    alpha = 1 - D_o / D_e, from the coincidence matrix of the items with at least two answers: D_o weighs each
    pair of answers within an item, D_e each pair across items, by the squared distance of `metric`:

    - ``nominal``: 1 for different classes (unordered categories);
    - ``ordinal``: the squared difference of the two classes' mid-ranks among all pairable answers, so a 1-vs-2
      disagreement costs little where many answers lie between (ordered categories such as a severity 0-5);
    - ``interval``: the squared difference of the class indices (equal steps between adjacent values).

    Perfect agreement is 1, chance agreement 0. When every pairable answer is one class, no disagreement is
    possible and alpha is 1.
    """
    if metric not in ALPHA_METRICS:
        raise ValueError(f"metric must be one of {ALPHA_METRICS}, got {metric!r}")
    coincidence = _coincidence(_check(answers, n_classes), n_classes)
    n_c = coincidence.sum(axis=1)
    total = n_c.sum()
    distance = _squared_distance(n_c, metric)
    observed = float(np.sum(coincidence * distance))
    expected = float(n_c @ distance @ n_c) / (total - 1)
    return 1.0 if expected == 0 else 1.0 - observed / expected


def _coincidence(answers: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) coincidences of values within the items that have two or more answers."""
    counts = _counts(answers, n_classes).astype(float)
    m = counts.sum(axis=1)
    pairable = m >= 2
    if not pairable.any():
        raise ValueError("Krippendorff's alpha needs at least one item with two or more answers")
    counts, m = counts[pairable], m[pairable]
    within = (counts.T / (m - 1)) @ counts  # sum over items of n_uc n_uk / (m_u - 1)
    within[np.diag_indices(n_classes)] -= (counts / (m - 1)[:, None]).sum(axis=0)
    return within


def _squared_distance(n_c: np.ndarray, metric: str) -> np.ndarray:
    """delta^2 between every two classes; the ordinal one depends on how many pairable values each class has."""
    classes = np.arange(n_c.size, dtype=float)
    if metric == "nominal":
        return 1.0 - np.eye(n_c.size)
    if metric == "interval":
        return (classes[:, None] - classes[None, :]) ** 2
    mid_rank = np.cumsum(n_c) - n_c / 2.0  # (sum_{g=c}^{k} n_g - (n_c + n_k)/2) is the difference of these
    return (mid_rank[:, None] - mid_rank[None, :]) ** 2


def majority_vote(answers: np.ndarray, *, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(label index or -1 for unlabelled items, share of answers that agree with it); ties go to the lower index."""
    counts = _counts(_check(answers, n_classes), n_classes)
    total = counts.sum(axis=1)
    labels = np.where(total > 0, counts.argmax(axis=1), MISSING)
    agreement = np.where(total > 0, counts.max(axis=1) / np.maximum(total, 1), np.nan)
    return labels, agreement


@dataclass(frozen=True, eq=False)
class DawidSkeneResult:
    """Posterior class probabilities per item, each annotator's confusion matrix, class priors."""

    posteriors: np.ndarray  # (n_items, n_classes)
    confusion: np.ndarray  # (n_annotators, n_classes, n_classes): P(answer = l | true = k)
    priors: np.ndarray  # (n_classes,)
    iterations: int

    @property
    def labels(self) -> np.ndarray:
        return self.posteriors.argmax(axis=1)


def dawid_skene(
    answers: np.ndarray, *, n_classes: int, max_iter: int = 100, tol: float = 1e-6, smoothing: float = 0.01
) -> DawidSkeneResult:
    """Dawid & Skene (1979): EM over per-annotator confusion matrices, started from majority-vote shares."""
    answers = _check(answers, n_classes)
    n_items, n_annotators = answers.shape
    onehot = np.zeros((n_items, n_annotators, n_classes))
    seen = answers != MISSING
    onehot[seen, answers[seen]] = 1.0
    counts = onehot.sum(axis=1)
    posteriors = (counts + smoothing) / (counts + smoothing).sum(axis=1, keepdims=True)
    for iteration in range(1, max_iter + 1):
        priors = posteriors.mean(axis=0)
        confusion = np.einsum("ik,ijl->jkl", posteriors, onehot) + smoothing
        confusion /= confusion.sum(axis=2, keepdims=True)
        log_like = np.log(priors)[None, :] + np.einsum("ijl,jkl->ik", onehot, np.log(confusion))
        log_like -= log_like.max(axis=1, keepdims=True)
        updated = np.exp(log_like)
        updated /= updated.sum(axis=1, keepdims=True)
        change = float(np.abs(updated - posteriors).max())
        posteriors = updated
        if change < tol:
            break
    return DawidSkeneResult(posteriors=posteriors, confusion=confusion, priors=priors, iterations=iteration)


@dataclass(frozen=True)
class PositionBias:
    """How often people chose the response shown on the left, among pairwise answers that chose a side.

    ``left_share`` is n_left / n; ``ci_low``/``ci_high`` the exact (Clopper-Pearson) interval at ``confidence``;
    ``p_value`` the exact two-sided binomial test of a fair 0.5. With responses put on the left by a fair coin,
    a share away from 0.5 is bias in the answers, not in the data."""

    n: int
    n_left: int
    left_share: float
    ci_low: float
    ci_high: float
    p_value: float
    confidence: float


def position_bias(left_chosen: np.ndarray, *, confidence: float = 0.95) -> PositionBias:
    """The share of answers that chose the left response, with its exact interval and a test against 0.5.

    `left_chosen` holds one entry per answer that preferred a side (ties left out beforehand): True or 1 when
    the left response was chosen, False or 0 when the right one was."""
    from scipy.stats import binomtest

    if not 0.0 < confidence < 1.0:  # also rejects NaN
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    chosen = np.asarray(left_chosen)
    if chosen.ndim != 1 or chosen.size == 0:
        raise ValueError(f"left_chosen must be a non-empty 1-D array, got shape {chosen.shape}")
    if chosen.dtype != bool:
        if not np.issubdtype(chosen.dtype, np.number) or not np.isin(chosen, (0, 1)).all():
            bad = chosen[~np.isin(chosen, (0, 1))][:5] if np.issubdtype(chosen.dtype, np.number) else chosen[:5]
            raise ValueError(f"left_chosen must hold booleans or 0/1 (ties excluded), got {bad.tolist()!r}")
        chosen = chosen.astype(bool)
    n, n_left = int(chosen.size), int(chosen.sum())
    ci_low, ci_high = (float(end) for end in clopper_pearson(n_left, n, confidence=confidence))
    p_value = float(binomtest(n_left, n, 0.5, alternative="two-sided").pvalue)
    return PositionBias(n=n, n_left=n_left, left_share=n_left / n, ci_low=ci_low, ci_high=ci_high,
                        p_value=p_value, confidence=confidence)
