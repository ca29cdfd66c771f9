"""Fixed random draws per routing decision: one uniform number per decision and purpose, ever.

A decision is drawn for audit, shown blind, overlapped or sent to training by comparing its number with a policy
share. The number depends only on the decision's id and the purpose's salt, so a retried task draws the same, and
draws of different purposes are independent of each other.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "AUDIT_SALT", "AUDIT_TRAIN_SALT", "BLIND_SALT", "OVERLAP_SALT", "REVIEW_CAP_SALT", "REVIEW_SALT", "SIDE_SALT",
    "a_on_left", "decision_uniform",
    "drawn",
]

AUDIT_SALT, BLIND_SALT, OVERLAP_SALT = 0x5A17_A0D1_7D2A_0001, 0xB11D_5EED_0000_0002, 0x0E1A_9000_0000_0003
AUDIT_TRAIN_SALT = 0x7EAC_0000_0000_0004
SIDE_SALT = 0x51DE_0000_0000_0005  # which side of a pairwise task shows response a
# the probabilistic review draw (routing.probabilistic_review), and which drawn items a binding review cap keeps
REVIEW_SALT, REVIEW_CAP_SALT = 0x4E71_E000_0000_0006, 0xCA90_0000_0000_0007


def decision_uniform(decision_ids: Sequence[int], *, salt: int = AUDIT_SALT) -> np.ndarray:
    """A uniform number in [0, 1) per routing decision, fixed by its id and `salt`. Vectorised splitmix64 over the
    ids (no generator per item)."""
    with np.errstate(over="ignore"):
        x = np.asarray(decision_ids, dtype=np.uint64) + np.uint64(salt)
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) * 2.0**-53


def drawn(decision_ids: Sequence[int], share: float | np.ndarray, *, salt: int) -> np.ndarray:
    """Which decisions a policy `share` (one, or one per decision) selects for the purpose of `salt`: a boolean
    mask, all False for a share of 0 and the same on every retry."""
    ids = list(decision_ids)
    shares = np.asarray(share, dtype=float)
    if not ids or np.all(shares <= 0.0):
        return np.zeros(len(ids), dtype=bool)
    return decision_uniform(ids, salt=salt) < shares


def a_on_left(decision_ids: Sequence[int]) -> np.ndarray:
    """For pairwise tasks: whether response a is shown on the left, a fair coin per decision, the same on every
    retry, so position bias can be measured (and is balanced over many tasks)."""
    return decision_uniform(decision_ids, salt=SIDE_SALT) < 0.5
