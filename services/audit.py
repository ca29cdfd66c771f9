"""The live audit estimate shown to ops: the error rate of every auto-accepted item of a segment, from the audits
drawn among them with known probabilities, and the annotators' error on gold items beside it. The cycle report
stores it; the console shows it.

The estimator is the one every unbiased use shares (``routing.active_inference.error_interval``): doubly robust,
with the calibrated confidence each decision routed on as the predictor of its error and each audit's correction
weighted by ``1 / (its chance of an audit)``; the interval's ends are betting bounds, valid for any number of
items and any model, at 95 % two-sided. Assumptions, as that module writes them: audits are drawn independently
with the probability the decision recorded (``routing.decide``: one rate per route batch), a person's label is the
truth (the gold correction below lifts this), and an audit whose label is not back counts as wrong for the upper
end and right for the lower one, so the interval holds however the pending audits come out (the point estimate
alone assumes that, among the audits drawn at one rate, the pending ones will be wrong as often as the returned).

The population is the automated items that could be audited. Items automated at an audit rate of 0 (a policy's
``spot_check_rate`` of 0, or a budget spent down to a ``min_review_probability`` of 0) were never open to an
audit: nothing can be said of their errors, so they are counted apart (``n_unaudited``), not estimated. A decision
without a calibrated confidence predicts no error (its audits alone speak for it)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import Engine

from routing.active_inference import ErrorInterval, error_interval
from routing.audit import correct_for_annotator_error
from store.figures import AutomatedPopulation, automated_population_columns, gold_answers, label_class_count

__all__ = ["AUDIT_CONFIDENCE", "MIN_GOLD_FOR_CORRECTION", "annotator_gold_error", "audit_estimates",
           "overall_audit_estimate"]

# Fewer gold answers than this leave the annotators' error too uncertain to correct by: it is reported only.
MIN_GOLD_FOR_CORRECTION = 30
AUDIT_CONFIDENCE = 0.95  # two-sided: each end of the interval is a bound at 0.025


def audit_estimates(engine: Engine) -> dict[str, dict[str, Any]]:
    """Per segment with automated items: the estimated error rate of all of them that could be audited (see the
    module docstring) with its interval and counts, the annotators' gold error beside it and, given enough gold
    answers, the estimate corrected for it (``routing.audit.correct_for_annotator_error``; ``corrected`` is None
    otherwise). Figures that do not exist (no label back yet) are None, never NaN: the cycle report stores them
    as JSON. Empty until some automated item was drawn for an audit."""
    populations = automated_population_columns(engine)
    if not any(p.drawn.any() for p in populations.values()):
        return {}
    gold = annotator_gold_error(engine)
    n_classes = label_class_count(engine)
    figures = {}
    for segment, population in populations.items():
        e, unaudited = _estimate(population)
        row = {"error_rate": _finite(e.error_rate), "lower": e.lower, "upper": e.upper, "n_audited": e.n_labelled,
               "n_awaiting": e.n_missing, "n_errors": e.n_errors, "n_population": e.n_population,
               "n_unaudited": unaudited, "estimator": e.estimator, "confidence": e.confidence, "reason": e.reason,
               "annotator_error": gold["error"], "n_gold": gold["n"], "corrected": None}
        if gold["n"] >= MIN_GOLD_FOR_CORRECTION and n_classes >= 2 and \
                gold["error"] < (n_classes - 1) / n_classes:
            fixed = correct_for_annotator_error(e, annotator_error=gold["error"], n_classes=n_classes)
            row["corrected"] = {"error_rate": _finite(fixed.error_rate), "lower": fixed.lower,
                                "upper": fixed.upper, "method": "rogan_gladen_uniform_confusion",
                                "n_classes": n_classes}
        figures[segment] = row
    return figures


def overall_audit_estimate(engine: Engine) -> ErrorInterval | None:
    """The same estimate over every segment at once (each item weighted by its own segment's audit chance); None
    when no automated item was ever drawn for an audit."""
    populations = list(automated_population_columns(engine).values())
    if not any(p.drawn.any() for p in populations):
        return None
    return _estimate(AutomatedPopulation(*(np.concatenate(columns) for columns in zip(*populations))))[0]


def _estimate(population: AutomatedPopulation) -> tuple[ErrorInterval, int]:
    """The estimate over the items that could be audited, and how many could not (module docstring)."""
    open_to_audit = population.inclusion_probability > 0.0
    part = AutomatedPopulation(*(column[open_to_audit] for column in population))
    estimate = error_interval(np.nan_to_num(part.confidence, nan=1.0), part.inclusion_probability, part.drawn,
                              part.wrong, labelled=part.labelled, confidence=AUDIT_CONFIDENCE)
    return estimate, int((~open_to_audit).sum())


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def annotator_gold_error(engine: Engine) -> dict[str, Any]:
    """The annotators' pooled error on gold items (known answers): {"error", "n"}; error None without gold."""
    right = [answer.right for answer in gold_answers(engine)]
    return {"error": 1.0 - float(np.mean(right)) if right else None, "n": len(right)}
