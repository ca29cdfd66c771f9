"""Agreement between annotators and label resolution: kappas, Krippendorff's alpha, majority vote, Dawid-Skene.

Annotations come as a matrix `answers` of shape (n_items, n_annotators) holding class indices, with -1 where
an annotator did not label an item. Pure numpy: no database, no network.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MISSING = -1

__all__ = [
    "MISSING", "DawidSkeneResult", "cohen_kappa", "dawid_skene", "fleiss_kappa", "krippendorff_alpha",
    "majority_vote",
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


def krippendorff_alpha(answers: np.ndarray, *, n_classes: int) -> float:
    """Krippendorff's alpha for nominal data, any number of annotators, missing answers allowed.

    alpha = 1 - D_o / D_e from the coincidence matrix of items with at least two answers.
    """
    counts = _counts(_check(answers, n_classes), n_classes).astype(float)
    m = counts.sum(axis=1)
    pairable = m >= 2
    if not pairable.any():
        raise ValueError("Krippendorff's alpha needs at least one item with two or more answers")
    counts, m = counts[pairable], m[pairable]
    coincidence = (counts[:, :, None] * counts[:, None, :]) / (m - 1)[:, None, None]
    coincidence[:, np.arange(n_classes), np.arange(n_classes)] -= counts / (m - 1)[:, None]
    o = coincidence.sum(axis=0)
    n_c = o.sum(axis=1)
    total = n_c.sum()
    observed = o.sum() - np.trace(o)
    expected = (total**2 - np.sum(n_c**2)) / (total - 1)
    return 1.0 if expected == 0 else float(1.0 - observed / expected)


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
