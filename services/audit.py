"""The live audit estimate: the inverse-probability-weighted error rate of auto-accepted items, from the audited
ones, and the annotators' error on gold items beside it. The cycle report stores it; the console shows it."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import Engine

from routing.audit import AuditEstimate, audit_error_by_segment, audit_error_estimate, correct_for_annotator_error
from store.figures import AuditedItem, audited_automation, automated_population, gold_answers, label_class_count

__all__ = ["MIN_GOLD_FOR_CORRECTION", "annotator_gold_error", "audit_estimates", "overall_audit_estimate"]

# Fewer gold answers than this leave the annotators' error too uncertain to correct by: it is reported only.
MIN_GOLD_FOR_CORRECTION = 30


def audit_estimates(engine: Engine) -> dict[str, dict[str, Any]]:
    """Per segment, the inverse-probability-weighted error rate of all auto-accepted items, from the audited ones,
    with the annotators' gold error beside it and, given enough gold answers, the estimate corrected for it
    (``routing.audit.correct_for_annotator_error``; ``corrected`` is None otherwise)."""
    population, audited = _audits(engine)
    if not audited:
        return {}
    estimates = audit_error_by_segment(
        np.array([not r.wrong for r in audited], dtype=float),
        np.array([r.inclusion_probability for r in audited], dtype=float),
        [r.segment for r in audited], n_population=population,
    )
    gold = annotator_gold_error(engine)
    n_classes = label_class_count(engine)
    figures = {}
    for segment, e in estimates.items():
        row = {"error_rate": e.error_rate, "lower": e.lower, "upper": e.upper, "n_audited": e.n_audited,
               "n_population": e.n_population, "annotator_error": gold["error"], "n_gold": gold["n"],
               "corrected": None}
        if gold["n"] >= MIN_GOLD_FOR_CORRECTION and n_classes >= 2 and \
                gold["error"] < (n_classes - 1) / n_classes:
            fixed = correct_for_annotator_error(e, annotator_error=gold["error"], n_classes=n_classes)
            row["corrected"] = {"error_rate": fixed.error_rate, "lower": fixed.lower, "upper": fixed.upper,
                                "method": "rogan_gladen_uniform_confusion", "n_classes": n_classes}
        figures[segment] = row
    return figures


def overall_audit_estimate(engine: Engine) -> AuditEstimate | None:
    """The same weighted estimate over every segment at once: the error rate among all auto-accepted items (the
    audits of each segment weighted by their own inclusion probabilities); None without audits."""
    population, audited = _audits(engine)
    if not audited:
        return None
    return audit_error_estimate(np.array([not r.wrong for r in audited], dtype=float),
                                np.array([r.inclusion_probability for r in audited], dtype=float),
                                n_population=sum(population.values()))


def _audits(engine: Engine) -> tuple[dict[str, int], list[AuditedItem]]:
    """The automated population per segment and the audits that can stand for it: an audit without a known,
    non-zero inclusion probability has no weight, so it is left out."""
    audited = [r for r in audited_automation(engine) if (r.inclusion_probability or 0.0) > 0.0]
    return automated_population(engine), audited


def annotator_gold_error(engine: Engine) -> dict[str, Any]:
    """The annotators' pooled error on gold items (known answers): {"error", "n"}; error None without gold."""
    right = [answer.right for answer in gold_answers(engine)]
    return {"error": 1.0 - float(np.mean(right)) if right else None, "n": len(right)}
