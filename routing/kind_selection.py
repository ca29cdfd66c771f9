"""Active-learning selection for the items of LLM pipelines: generated responses, preference pairs, extractions.

Each selector takes the current model's probabilities (never the model) and returns a ``routing.sampling.Selection``,
most useful first, ties broken by the explicit ``rng``:

- ``generation``: the responses whose P(people accept) from the verifier is nearest 0.5;
- ``pairwise``: the pairs whose P(a is preferred) is nearest 0.5, spread over clusters of the pairs' feature
  vectors (``routing.sampling.diverse_top``) so that a batch is not one kind of pair many times over;
- ``extraction``: the documents whose most uncertain field (P(value is right) nearest 0.5) is the most uncertain,
  since people review a document's fields together; the selection's indices are document numbers.

The uncertainty of a binary outcome is ``1 - |2p - 1|``: 1 at p = 0.5, 0 at p = 0 or 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from routing.sampling import Selection, diverse_top

__all__ = [
    "GENERATION_REASON",
    "EXTRACTION_REASON",
    "PAIRWISE_REASON",
    "binary_uncertainty",
    "document_uncertainty",
    "select_documents",
    "select_pairs",
    "select_responses",
]

GENERATION_REASON = "verifier_uncertainty"
PAIRWISE_REASON = "preference_uncertainty"
EXTRACTION_REASON = "field_uncertainty"


def binary_uncertainty(probability: Any) -> np.ndarray:
    """``1 - |2p - 1|`` per item for P(outcome) ``p`` in [0, 1]; higher means more uncertain."""
    try:
        values = np.asarray(probability, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"probabilities must be numeric, got {probability!r}") from error
    if values.ndim != 1:
        raise ValueError(f"probabilities must be 1-D, got shape {values.shape}")
    bad = ~((values >= 0.0) & (values <= 1.0))  # NaN fails both comparisons
    if bad.any():
        raise ValueError(f"probabilities must be finite and in [0, 1]; {int(bad.sum())} bad values, "
                         f"e.g. {values[bad][:5].tolist()}")
    return 1.0 - np.abs(2.0 * values - 1.0)


def _take(budget: Any, n_items: int) -> int:
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 0:
        raise ValueError(f"budget must be an integer >= 0, got {budget!r}")
    return min(int(budget), n_items)


def _most_uncertain(uncertainty: np.ndarray, take: int, rng: np.random.Generator) -> np.ndarray:
    order = np.lexsort((rng.random(uncertainty.shape[0]), -uncertainty))
    return order[:take]


def _selection(indices: np.ndarray, reason: str) -> Selection:
    return Selection(indices=indices.astype(np.intp), reasons=(reason,) * indices.shape[0],
                     probabilities=np.ones(indices.shape[0]))


def select_responses(p_accept: Any, *, budget: int, rng: np.random.Generator) -> Selection:
    """Up to ``budget`` generated responses whose verifier P(accept) is nearest 0.5, most uncertain first."""
    uncertainty = binary_uncertainty(p_accept)
    take = _take(budget, uncertainty.shape[0])
    return _selection(_most_uncertain(uncertainty, take, rng), GENERATION_REASON)


def select_pairs(p_a_preferred: Any, pair_features: Any, *, budget: int, rng: np.random.Generator,
                 diverse: bool = True) -> Selection:
    """Up to ``budget`` pairs whose P(a is preferred) is nearest 0.5; with ``diverse`` (the default), the most
    uncertain pair of each of ``budget`` clusters of the most uncertain candidates' ``pair_features`` (one row per
    pair; use an order-free description so that a pair and its swap are the same point)."""
    uncertainty = binary_uncertainty(p_a_preferred)
    take = _take(budget, uncertainty.shape[0])
    if take == 0:
        return _selection(np.empty(0, dtype=np.intp), PAIRWISE_REASON)
    if not diverse:
        return _selection(_most_uncertain(uncertainty, take, rng), PAIRWISE_REASON)
    return _selection(diverse_top(uncertainty, pair_features, take=take, rng=rng), PAIRWISE_REASON)


def document_uncertainty(p_field_right: Any, document: Any, *, n_documents: int | None = None) -> np.ndarray:
    """Per document, the uncertainty of its most uncertain field: ``p_field_right`` holds P(the extracted value
    is right) per field and ``document`` the document number (0 .. n_documents - 1) of each field. A document
    without fields scores 0 (nothing to review)."""
    uncertainty = binary_uncertainty(p_field_right)
    owners = np.asarray(document)
    if owners.shape != uncertainty.shape or (owners.size and owners.dtype.kind not in "iu"):
        raise ValueError(f"document must hold one integer document number per field: got shape {owners.shape} "
                         f"and dtype {owners.dtype} for {uncertainty.shape[0]} fields")
    if owners.size and owners.min() < 0:
        raise ValueError(f"document numbers must be >= 0, got {owners.min()}")
    count = int(owners.max()) + 1 if owners.size else 0
    if n_documents is not None:
        if n_documents < count:
            raise ValueError(f"n_documents={n_documents} but a field names document {count - 1}")
        count = n_documents
    per_document = np.zeros(count)
    np.maximum.at(per_document, owners.astype(np.intp), uncertainty)
    return per_document


def select_documents(p_field_right: Any, document: Any, *, budget: int, rng: np.random.Generator,
                     n_documents: int | None = None) -> Selection:
    """Up to ``budget`` document numbers, those whose most uncertain field is the most uncertain first
    (see ``document_uncertainty``)."""
    per_document = document_uncertainty(p_field_right, document, n_documents=n_documents)
    take = _take(budget, per_document.shape[0])
    return _selection(_most_uncertain(per_document, take, rng), EXTRACTION_REASON)
