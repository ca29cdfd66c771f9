"""The diversity-aware selector: a batch spread over clusters of near-duplicates, most uncertain first."""

from __future__ import annotations

import numpy as np

from routing.sampling import select_batch


def near_duplicates(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Three tight clusters of ten feature vectors; cluster 0 holds the most uncertain items by far (all of them
    fall inside the pool of 10 x budget candidates that the selector clusters)."""
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    cluster = np.repeat([0, 1, 2], 10)
    features = centres[cluster] + rng.normal(0, 0.05, (30, 2))
    top = np.where(cluster == 0, 0.51, np.where(cluster == 1, 0.7, 0.75)) + rng.uniform(0, 0.01, 30)
    probs = np.column_stack([top, 1 - top])
    return probs, features, cluster


def test_margin_takes_near_duplicates_and_diverse_spreads():
    rng = np.random.default_rng(0)
    probs, features, cluster = near_duplicates(rng)
    by_margin = select_batch(probs, budget=3, strategy="margin", rng=np.random.default_rng(1))
    assert set(cluster[by_margin.indices]) == {0}
    diverse = select_batch(probs, budget=3, strategy="diverse", rng=np.random.default_rng(1), features=features)
    assert sorted(cluster[diverse.indices]) == [0, 1, 2]
    most_uncertain = int(np.argmin(np.abs(probs[:, 0] - probs[:, 1])))
    assert diverse.indices[0] == most_uncertain
    assert diverse.reasons == ("diverse",) * 3 and np.all(diverse.probabilities == 1.0)


def test_diverse_without_features_clusters_the_probability_vectors():
    probs, _, _ = near_duplicates(np.random.default_rng(2))
    chosen = select_batch(probs, budget=5, strategy="diverse", rng=np.random.default_rng(3))
    assert len(set(chosen.indices.tolist())) == 5
