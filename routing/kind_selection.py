"""Active-learning selection for the items of LLM pipelines: generated responses, preference pairs, extractions.

Each selector takes the current model's probabilities (never the model) and returns a ``routing.sampling.Selection``,
most useful first, ties broken by the explicit ``rng``:

- ``generation``: the responses whose P(people accept) from the verifier is nearest 0.5;
- ``pairwise``: the pairs whose P(a is preferred) is nearest 0.5, spread over clusters of the pairs' feature
  vectors (``routing.sampling.diverse_top``) so that a batch is not one kind of pair many times over;
- ``extraction``: the documents whose most uncertain field (P(value is right) nearest 0.5) is the most uncertain,
  since people review a document's fields together; the selection's indices are document numbers.

The uncertainty of a binary outcome is ``1 - |2p - 1|``: 1 at p = 0.5, 0 at p = 0 or 1.

``select_by_kind`` spends one review budget over a batch that mixes kinds (a segment may hold classifications and
outputs of LLM pipelines): the budget is shared out by one usefulness on the strategy's scale (a classification's
``strategy`` utility of its class probabilities; an LLM item's, of the binary outcome at its kind's uncertainty),
then each kind spends its share with its own selector above, classifications with ``routing.sampling.select_batch``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from routing.sampling import STRATEGIES, Selection, diverse_top, margin, select_batch

__all__ = [
    "CLASSIFICATION",
    "KIND_REASONS",
    "KindBatch",
    "allot_budget",
    "kind_uncertainty",
    "select_by_kind",
    "usefulness",
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
KIND_REASONS = {"generation": GENERATION_REASON, "pairwise": PAIRWISE_REASON, "extraction": EXTRACTION_REASON}
CLASSIFICATION = "classification"


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


def _floats(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    return array


@dataclass(frozen=True, eq=False)
class KindBatch:
    """What the kind selectors read of a batch of review candidates of mixed kinds.

    ``kinds`` names each candidate's kind; ``class_probs`` holds one row of class probabilities per classification
    candidate, in candidate order; ``p_outcome`` per candidate the probability of its binary outcome (P(people
    accept) for a response, P(people prefer the predicted side) for a pair; NaN for other kinds); ``pair_features``
    one order-free row per pairwise candidate, in candidate order; ``field_confidence`` P(value is right) per
    extracted field and ``field_owner`` the candidate index that field belongs to."""

    kinds: tuple[str, ...]
    class_probs: np.ndarray
    p_outcome: np.ndarray
    pair_features: np.ndarray = field(default_factory=lambda: np.empty((0, 1)))
    field_confidence: np.ndarray = field(default_factory=lambda: np.empty(0))
    field_owner: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.intp))

    def __post_init__(self) -> None:
        unknown = sorted(set(self.kinds) - {CLASSIFICATION, *KIND_REASONS})
        if unknown:
            raise ValueError(f"unknown kinds {unknown}; expected {CLASSIFICATION!r} or one of {sorted(KIND_REASONS)}")
        n = len(self.kinds)
        if _floats(self.p_outcome, "p_outcome").shape[0] != n:
            raise ValueError(f"p_outcome holds {np.shape(self.p_outcome)[0]} values for {n} candidates")
        counts = {kind: self.kinds.count(kind) for kind in (CLASSIFICATION, "pairwise")}
        if np.shape(self.class_probs)[0] != counts[CLASSIFICATION]:
            raise ValueError(f"class_probs holds {np.shape(self.class_probs)[0]} rows for {counts[CLASSIFICATION]} "
                             "classification candidates")
        if np.shape(self.pair_features)[0] != counts["pairwise"]:
            raise ValueError(f"pair_features holds {np.shape(self.pair_features)[0]} rows for "
                             f"{counts['pairwise']} pairwise candidates")
        if np.shape(self.field_confidence) != np.shape(self.field_owner):
            raise ValueError(f"field_confidence {np.shape(self.field_confidence)} and field_owner "
                             f"{np.shape(self.field_owner)} must have one entry per field")

    def rows(self, kind: str) -> np.ndarray:
        """Candidate indices of ``kind``, in order."""
        return np.flatnonzero(np.asarray(self.kinds, dtype=object) == kind)


def kind_uncertainty(batch: KindBatch) -> np.ndarray:
    """Per candidate, its kind's uncertainty in [0, 1] (``binary_uncertainty`` of ``p_outcome`` for a response or
    a pair; of its most uncertain field for an extraction); NaN for a classification."""
    out = np.full(len(batch.kinds), np.nan)
    for kind in ("generation", "pairwise"):
        rows = batch.rows(kind)
        out[rows] = binary_uncertainty(np.asarray(batch.p_outcome, dtype=float)[rows])
    rows = batch.rows("extraction")
    if rows.size:
        owners = np.asarray(batch.field_owner)
        local = np.searchsorted(rows, owners)
        if owners.size and (local.max() >= rows.size or not np.array_equal(rows[np.minimum(local, rows.size - 1)],
                                                                            owners)):
            raise ValueError("field_owner must name extraction candidates only")
        out[rows] = document_uncertainty(batch.field_confidence, local.astype(np.intp), n_documents=rows.size)
    return out


def usefulness(batch: KindBatch, *, strategy: str) -> np.ndarray:
    """Per candidate, on one scale: ``strategy``'s utility of a classification's class probabilities, and of the
    binary outcome whose ``binary_uncertainty`` is the kind's uncertainty for the others (so margin, entropy and
    least confidence all rank an LLM kind's candidates by its own uncertainty). "random" ranks by margin."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; valid strategies are {sorted(STRATEGIES)}")
    utility = STRATEGIES[strategy] or margin
    out = kind_uncertainty(batch)
    llm = np.flatnonzero(np.isfinite(out))
    if llm.size:
        closeness = out[llm] / 2.0  # the smaller probability of the binary outcome with this uncertainty
        out[llm] = utility(np.column_stack([1.0 - closeness, closeness]))
    classification = batch.rows(CLASSIFICATION)
    if classification.size:
        out[classification] = utility(batch.class_probs)
    return out


def allot_budget(useful: Any, kinds: Sequence[str], *, budget: int, rng: np.random.Generator) -> dict[str, int]:
    """How much of ``budget`` each kind spends: how many of its candidates are among the ``budget`` most useful
    of all by ``useful`` (ties broken by ``rng``). Every kind present gets an entry."""
    values = _floats(useful, "useful")
    if values.shape[0] != len(kinds) or np.isnan(values).any():
        raise ValueError(f"useful must hold one number per candidate: {values.shape[0]} for {len(kinds)}, "
                         f"{int(np.isnan(values).sum())} NaN")
    top = _most_uncertain(values, _take(budget, values.shape[0]), rng)
    names = np.asarray(kinds, dtype=object)
    return {str(kind): int((names[top] == kind).sum()) for kind in sorted(set(kinds))}


def _spend(batch: KindBatch, kind: str, take: int, strategy: str, rng: np.random.Generator) -> Selection:
    """``take`` candidates of ``kind`` by its own selector; indices are the kind's local row numbers."""
    rows = batch.rows(kind)
    if kind == CLASSIFICATION:
        return select_batch(batch.class_probs, budget=take, strategy=strategy, rng=rng)
    if kind == "generation":
        return select_responses(np.asarray(batch.p_outcome, dtype=float)[rows], budget=take, rng=rng)
    if kind == "pairwise":
        return select_pairs(np.asarray(batch.p_outcome, dtype=float)[rows], batch.pair_features, budget=take,
                            rng=rng)
    local = np.searchsorted(rows, np.asarray(batch.field_owner)).astype(np.intp)
    return select_documents(batch.field_confidence, local, budget=take, rng=rng, n_documents=rows.size)


def select_by_kind(batch: KindBatch, *, budget: int, strategy: str, rng: np.random.Generator) -> Selection:
    """Up to ``budget`` candidates of a mixed batch, most useful first: the budget is shared out over the kinds by
    ``usefulness`` (``allot_budget``), then each kind spends its share with its own selector (classification with
    ``select_batch`` and ``strategy``; a response by the verifier's, a pair by the preference's uncertainty with
    the diversity term, a document by its most uncertain field). With ``strategy="random"`` the whole batch is a
    uniform sample, whatever the kinds. Reasons are the strategy's for classifications, the kind's otherwise."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; valid strategies are {sorted(STRATEGIES)}")
    n = len(batch.kinds)
    take = _take(budget, n)
    if strategy == "random":
        picks = rng.choice(n, size=take, replace=False) if take else np.empty(0, dtype=np.intp)
        return Selection(indices=np.asarray(picks, dtype=np.intp), reasons=(strategy,) * take,
                         probabilities=np.full(take, take / n if n else 1.0))
    useful = usefulness(batch, strategy=strategy)
    present = sorted(set(batch.kinds))
    shares = ({present[0]: take} if len(present) == 1  # one kind spends it all, as its own selector would
              else allot_budget(useful, batch.kinds, budget=take, rng=rng))
    indices: list[np.ndarray] = []
    reasons: list[str] = []
    probabilities: list[np.ndarray] = []
    for kind, share in shares.items():
        if share:
            chosen = _spend(batch, kind, share, strategy, rng)
            indices.append(batch.rows(kind)[chosen.indices])
            reasons += chosen.reasons
            probabilities.append(chosen.probabilities)
    if not indices:
        return Selection(indices=np.empty(0, dtype=np.intp), reasons=(), probabilities=np.empty(0))
    merged = np.concatenate(indices)
    order = np.argsort(-useful[merged], kind="stable")
    return Selection(indices=merged[order], reasons=tuple(reasons[i] for i in order),
                     probabilities=np.concatenate(probabilities)[order])
