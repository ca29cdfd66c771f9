"""How far annotators agree, per segment and per pair, from the answers in the store.

Only the review round counts: an expert's answer to an escalated item settles it and is not a peer rating.
Each annotator's latest answer per item is used; skipped (cancelled) answers are not ratings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple
from itertools import combinations

import numpy as np
from sqlalchemy import Engine

from labeling.agreement import MISSING, PositionBias, cohen_kappa, fleiss_kappa, krippendorff_alpha, position_bias
from store.annotations import review_round_answers

__all__ = [
    "PairAgreement",
    "SegmentAgreement",
    "SegmentPositionBias",
    "SeverityAgreement",
    "agreement_report",
    "position_biases",
    "review_answer_details",
    "review_answers",
    "severity_agreement",
]


@dataclass(frozen=True)
class SegmentAgreement:
    """Agreement among the annotators of one segment, over its items with two or more answers.

    Fleiss' kappa needs the same number of ratings per item, so it uses the items with the most common count
    (``fleiss_items`` of them); Krippendorff's alpha uses them all. ``observed`` is the mean share of an item's
    answers that agree with its most frequent one."""

    segment: str
    items: int
    answers: int
    observed: float
    fleiss_kappa: float | None
    fleiss_items: int
    krippendorff_alpha: float | None


@dataclass(frozen=True)
class PairAgreement:
    """Cohen's kappa of two annotators over the items both answered."""

    annotator_a: str
    annotator_b: str
    items: int
    observed: float
    cohen_kappa: float


class ReviewAnswer(NamedTuple):
    segment: str
    item_id: str
    annotator: str
    label: str


def review_answers(engine: Engine) -> list[ReviewAnswer]:
    """Each annotator's latest review-round answer per item."""
    return [ReviewAnswer(*row) for row in review_round_answers(engine)]


@dataclass(frozen=True)
class SeverityAgreement:
    """Krippendorff's alpha for ordinal data over the severities (0-5) annotators gave one segment's generated
    responses, over its items with two or more severities."""

    segment: str
    items: int
    answers: int
    krippendorff_alpha: float | None


@dataclass(frozen=True)
class SegmentPositionBias:
    """How often one segment's pairwise answers chose the response shown on the left (ties left out): the side
    is a fair coin per task, so a share away from 0.5 is bias in the answers (`labeling.agreement.position_bias`)."""

    segment: str
    bias: PositionBias


class AnswerDetail(NamedTuple):
    segment: str
    item_id: str
    annotator: str
    answer: dict


def review_answer_details(engine: Engine) -> list[AnswerDetail]:
    """Each annotator's latest review-round answer beyond its label (an LLM kind's), per item."""
    return [AnswerDetail(*row) for row in review_round_answers(engine, details=True)]


def severity_agreement(details: list[AnswerDetail]) -> list[SeverityAgreement]:
    """Per segment with any, the ordinal Krippendorff's alpha of the severities given (None below two items)."""
    rated = [d for d in details if isinstance(d.answer.get("severity"), int)]
    out = []
    for segment in sorted({d.segment for d in rated}):
        mine = [d for d in rated if d.segment == segment]
        counts: dict[str, int] = {}
        for d in mine:
            counts[d.item_id] = counts.get(d.item_id, 0) + 1
        multi = [d for d in mine if counts[d.item_id] >= 2]
        items = sorted({d.item_id for d in multi})
        people = sorted({d.annotator for d in multi})
        matrix = np.full((len(items), len(people)), MISSING, dtype=np.int64)
        row_of, col_of = {v: i for i, v in enumerate(items)}, {v: i for i, v in enumerate(people)}
        for d in multi:
            matrix[row_of[d.item_id], col_of[d.annotator]] = int(d.answer["severity"])
        alpha = float(krippendorff_alpha(matrix, n_classes=6, metric="ordinal")) if len(items) >= 2 else None
        out.append(SeverityAgreement(segment=segment, items=len(items), answers=len(multi), krippendorff_alpha=alpha))
    return out


def position_biases(details: list[AnswerDetail]) -> list[SegmentPositionBias]:
    """Per segment with pairwise answers that chose a side, the share that chose the left one."""
    sided = [d for d in details if d.answer.get("side") in ("left", "right")]
    out = []
    for segment in sorted({d.segment for d in sided}):
        out.append(SegmentPositionBias(segment, position_bias(
            np.array([d.answer["side"] == "left" for d in sided if d.segment == segment]))))
    return out


def agreement_report(engine: Engine) -> dict[str, list]:
    """{"segments": [SegmentAgreement], "pairs": [PairAgreement], "severity": [SeverityAgreement], "position":
    [SegmentPositionBias]} over the store's answers (the first three over multiply-answered items)."""
    details = review_answer_details(engine)
    report = _label_agreement(engine)
    report["severity"] = severity_agreement(details)
    report["position"] = position_biases(details)
    return report


def _label_agreement(engine: Engine) -> dict[str, list]:
    answers = review_answers(engine)
    counts: dict[str, int] = {}
    for _, item_id, _, _ in answers:
        counts[item_id] = counts.get(item_id, 0) + 1
    multi = [a for a in answers if counts[a.item_id] >= 2]
    classes = sorted({a.label for a in multi})
    class_of = {c: i for i, c in enumerate(classes)}
    segments = []
    for segment in sorted({a.segment for a in multi}):
        segments.append(_segment_agreement(segment, [a for a in multi if a.segment == segment], class_of))
    pairs = []
    by_annotator: dict[str, dict[str, int]] = {}
    for _, item_id, annotator, label in multi:
        by_annotator.setdefault(annotator, {})[item_id] = class_of[label]
    for a, b in combinations(sorted(by_annotator), 2):
        shared = sorted(set(by_annotator[a]) & set(by_annotator[b]))
        if not shared:
            continue
        x = np.array([by_annotator[a][i] for i in shared])
        y = np.array([by_annotator[b][i] for i in shared])
        pairs.append(PairAgreement(annotator_a=a, annotator_b=b, items=len(shared), observed=float(np.mean(x == y)),
                                   cohen_kappa=float(cohen_kappa(x, y, n_classes=max(len(classes), 2)))))
    return {"segments": segments, "pairs": pairs}


def _segment_agreement(segment: str, answers: list[ReviewAnswer], class_of: dict[str, int]) -> SegmentAgreement:
    items = sorted({a.item_id for a in answers})
    people = sorted({a.annotator for a in answers})
    row_of = {v: i for i, v in enumerate(items)}
    col_of = {v: i for i, v in enumerate(people)}
    n_classes = max(len(class_of), 2)
    matrix = np.full((len(items), len(people)), MISSING, dtype=np.int64)
    for _, item_id, annotator, label in answers:
        matrix[row_of[item_id], col_of[annotator]] = class_of[label]
    per_item = (matrix != MISSING).sum(axis=1)
    counts = np.stack([(matrix == k).sum(axis=1) for k in range(n_classes)], axis=1)
    observed = float(np.mean(counts.max(axis=1) / per_item))
    modal = int(np.bincount(per_item).argmax())
    same = matrix[per_item == modal]
    # Fleiss' kappa wants an (items, raters) matrix without gaps: pack each item's answers to the left
    packed = np.sort(np.where(same == MISSING, np.iinfo(np.int64).max, same), axis=1)[:, :modal]
    fleiss = float(fleiss_kappa(packed, n_classes=n_classes)) if len(packed) >= 2 else None
    alpha = float(krippendorff_alpha(matrix, n_classes=n_classes)) if len(items) >= 2 else None
    return SegmentAgreement(segment=segment, items=len(items), answers=int(per_item.sum()), observed=observed,
                            fleiss_kappa=fleiss, fleiss_items=int(len(packed)), krippendorff_alpha=alpha)
