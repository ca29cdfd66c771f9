"""The model families of outputs of LLM pipelines: the verifier of generated responses and the preference model of
pairs, seen the same way by the flows. Each turns a stored payload into its model's example and a person's answer
into a two-outcome target (a response accepted; response a preferred), and every model of a family gives one
probability per item: that of the positive outcome.

A family model's prediction is scored like any model's: a response is predicted ``accept`` with P(accept) as its
confidence (the verifier puts the response forward, as the pipeline's own score does; a low one sends it to
people, never turns it into a rejection); a pair is predicted the side the model favours, with max(p, 1 - p).

Pure: payloads and labels in, arrays and fitted models out; no store, no clock, no global random state.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import log_loss

from scoring.preference import PairwiseExample, PreferenceModel
from scoring.verifier import GenerationExample, Verifier

__all__ = [
    "FAMILY_OUTCOMES",
    "MIN_PER_OUTCOME",
    "FamilyData",
    "FamilyPredictions",
    "correct_predictions",
    "family_data",
    "family_metrics",
    "family_predictions",
    "generation_example",
    "not_enough_reason",
    "pairwise_example",
    "train_family_model",
]

# Per family (``store.vocab.ModelFamily`` values): the answer that is the positive outcome, and the other one. Any
# other answer (a tie) teaches neither outcome and is left out.
FAMILY_OUTCOMES: dict[str, tuple[str, str]] = {"verifier": ("accept", "reject"), "preference": ("a", "b")}
# The fewest answers of each outcome a family model is trained on: below 20 accepted and 20 rejected responses (or
# pairs won by each side) the n-gram vocabulary (min_df=2) is a handful of words, and the retrain gate's sign test
# on a held-out set of the same size can hardly show anything.
MIN_PER_OUTCOME = 20


def _prompt_text(prompt: Any) -> str:
    """A prompt as text: a string as it is, chat messages as "role: content" paragraphs."""
    if prompt is None:
        return ""
    if isinstance(prompt, str):
        return prompt
    return "\n\n".join(f"{m.get('role', '')}: {m.get('content', '')}" for m in prompt if isinstance(m, Mapping))


def _context_text(context: Any) -> str:
    if context is None:
        return ""
    return context if isinstance(context, str) else "\n\n".join(str(document) for document in context)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def generation_example(payload: Mapping[str, Any] | None) -> GenerationExample | None:
    """What the verifier reads of a generation item's payload; None without a response to judge."""
    payload = payload or {}
    response = _text(payload.get("response"))
    if response is None:
        return None
    confidence = payload.get("confidence")
    scores = payload.get("scores")
    return GenerationExample(_prompt_text(payload.get("prompt")), response, _context_text(payload.get("context")),
                             None if confidence is None else float(confidence),
                             {str(k): float(v) for k, v in scores.items()} if isinstance(scores, Mapping) else None)


def pairwise_example(payload: Mapping[str, Any] | None) -> PairwiseExample | None:
    """What the preference model reads of a pairwise item's payload; None without both responses."""
    payload = payload or {}
    a, b = _text(payload.get("response_a")), _text(payload.get("response_b"))
    if a is None or b is None:
        return None
    return PairwiseExample(_prompt_text(payload.get("prompt")), a, b, _context_text(payload.get("context")))


_EXAMPLE = {"verifier": generation_example, "preference": pairwise_example}


def _family(family: str) -> str:
    name = str(family)
    if name not in FAMILY_OUTCOMES:
        raise ValueError(f"family must be one of {sorted(FAMILY_OUTCOMES)}, got {family!r}")
    return name


@dataclass(frozen=True)
class FamilyData:
    """A family's usable examples: their item ids and segments, the examples, and whether each had the positive
    outcome (None for items without an answer, as when scoring)."""

    item_ids: list[str]
    segments: list[str]
    examples: list[Any]
    positive: np.ndarray | None

    def __len__(self) -> int:
        return len(self.item_ids)


def family_data(family: str, item_ids: Sequence[str], payloads: Sequence[Mapping[str, Any] | None], *,
                labels: Sequence[str] | None = None, segments: Sequence[str] | None = None) -> FamilyData:
    """The items of `item_ids` a `family` model can read (a generation item without a response, a pair without
    both, is left out) and, with `labels`, only those whose answer is one of the family's outcomes (ties left
    out), each with its target."""
    name = _family(family)
    if len(payloads) != len(item_ids) or (labels is not None and len(labels) != len(item_ids)) or \
            (segments is not None and len(segments) != len(item_ids)):
        raise ValueError(f"length mismatch: {len(item_ids)} ids, {len(payloads)} payloads, "
                         f"{None if labels is None else len(labels)} labels, "
                         f"{None if segments is None else len(segments)} segments")
    positive_answer, negative_answer = FAMILY_OUTCOMES[name]
    examples = [_EXAMPLE[name](payload) for payload in payloads]
    kept = [i for i, example in enumerate(examples) if example is not None
            and (labels is None or labels[i] in (positive_answer, negative_answer))]
    return FamilyData([item_ids[i] for i in kept], ["" if segments is None else segments[i] for i in kept],
                      [examples[i] for i in kept],
                      None if labels is None else np.array([labels[i] == positive_answer for i in kept], dtype=bool))


def not_enough_reason(family: str, data: FamilyData, *, min_per_outcome: int = MIN_PER_OUTCOME) -> str | None:
    """Why `data` is too little to train a `family` model on (fewer than `min_per_outcome` of either outcome);
    None when it is enough."""
    if min_per_outcome < 1:
        raise ValueError(f"min_per_outcome must be at least 1, got {min_per_outcome!r}")
    if data.positive is None:
        raise ValueError("the data have no answers to train on")
    positive_answer, negative_answer = FAMILY_OUTCOMES[_family(family)]
    n_positive = int(data.positive.sum())
    n_negative = len(data) - n_positive
    if min(n_positive, n_negative) >= min_per_outcome:
        return None
    return (f"{n_positive} {positive_answer!r} and {n_negative} {negative_answer!r} answers; at least "
            f"{min_per_outcome} of each are needed")


def train_family_model(family: str, data: FamilyData) -> Verifier | PreferenceModel:
    """A `family` model fitted on `data` (deterministic: both fit with lbfgs)."""
    name = _family(family)
    if data.positive is None:
        raise ValueError("the data have no answers to train on")
    if name == "verifier":
        return Verifier().fit(data.examples, data.positive)
    return PreferenceModel().fit(data.examples, np.where(data.positive, "a", "b"))


def correct_predictions(p_positive: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """Whether each two-outcome prediction is right: P(positive) >= 0.5 predicts the positive outcome (a response
    accepted, side a; the side a pair's predicted label names at exactly 0.5)."""
    p, truth = np.asarray(p_positive, dtype=float), np.asarray(positive, dtype=bool)
    if p.shape != truth.shape or p.ndim != 1:
        raise ValueError(f"need two equal-length 1-D arrays, got shapes {p.shape} and {truth.shape}")
    return (p >= 0.5) == truth


def family_metrics(p_positive: np.ndarray, positive: np.ndarray) -> dict[str, float | int]:
    """Accuracy, log loss and Brier score of two-outcome predictions, with ``n`` and ``n_positive``."""
    p, truth = np.asarray(p_positive, dtype=float), np.asarray(positive, dtype=bool)
    right = correct_predictions(p, truth)
    if p.size == 0 or not np.isfinite(p).all() or ((p < 0) | (p > 1)).any():
        raise ValueError(f"need a non-empty array of probabilities in [0, 1], got {p[:5].tolist()!r}")
    return {"n": int(p.size), "n_positive": int(truth.sum()), "accuracy": float(right.mean()),
            "log_loss": float(log_loss(truth, np.clip(p, 1e-15, 1 - 1e-15), labels=[False, True])),
            "brier": float(np.mean((p - truth) ** 2))}


@dataclass(frozen=True)
class FamilyPredictions:
    """A family model's predictions as prediction rows hold them, one entry per item: the predicted label, its
    confidence, the top-1/top-2 margin and the probabilities over ``classes`` (both None for the verifier, whose
    prediction is the response put forward, not a choice between two answers)."""

    labels: list[str]
    confidence: np.ndarray
    margin: np.ndarray | None
    classes: tuple[str, ...] | None
    probs: np.ndarray | None


def family_predictions(family: str, p_positive: np.ndarray) -> FamilyPredictions:
    """A verifier's P(accept) as ``accept`` with that confidence; a preference model's P(a) as the side it
    favours (a at exactly 0.5, as the pipeline's own preference is read at ingest) with max(p, 1 - p) and the
    probabilities {a: p, b: 1 - p}."""
    name = _family(family)
    p = np.asarray(p_positive, dtype=float)
    if p.ndim != 1 or not np.isfinite(p).all() or ((p < 0) | (p > 1)).any():
        raise ValueError(f"need a 1-D array of probabilities in [0, 1], got {p[:5].tolist()!r}")
    positive_answer, negative_answer = FAMILY_OUTCOMES[name]
    if name == "verifier":
        return FamilyPredictions([positive_answer] * p.size, p, None, None, None)
    return FamilyPredictions(np.where(p >= 0.5, positive_answer, negative_answer).tolist(), np.maximum(p, 1.0 - p),
                             np.abs(2.0 * p - 1.0), (positive_answer, negative_answer), np.column_stack([p, 1.0 - p]))
