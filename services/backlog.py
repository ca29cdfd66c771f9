"""The backlog a better model may settle: certify, per segment and model, the items a select run left waiting, on
the uniform sample its audits drew from them (``routing.backlog``), with the evidence row routing stores beside the
decisions. Routing uses it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Engine

from routing.backlog import ESTIMATOR, certify_backlog, certifying_sample
from routing.draws import AUDIT_SALT, decision_uniform
from routing.policy import SegmentPolicy
from store.backlog import BacklogPopulation, backlog_population, population_of
from store.bulk import fingerprint
from store.models import utcnow
from store.labels import labels_by_reason

__all__ = ["BacklogCertificate", "backlog_certificate"]

@dataclass(frozen=True)
class BacklogCertificate:
    """What routing needs of a backlog: the certified threshold on the model's raw confidence (None: every waiting
    item goes back to review) and the evidence row behind it (None when nothing was tested), and the earlier
    decisions of the population it covers."""

    threshold: float | None
    evidence: dict[str, Any] | None
    decision_ids: frozenset[int]


def _sample(population: BacklogPopulation) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(the items that stay in the population, its uniform sample, the sample's errors (a label not back counts as
    one), the unlabelled items). A sampled item whose label trains leaves the population: the fixed draw that sent
    it to training does not look at errors, so what is left of the sample stays uniform."""
    uniforms = decision_uniform(population.decision_ids, salt=AUDIT_SALT)
    drawn = certifying_sample(uniforms, population.audit_probability)
    stays = ~(drawn & population.trained)
    sampled = drawn & stays
    wrong = np.array([t is None or p is None or t != p for t, p in zip(population.truth, population.predicted)])
    return stays, sampled, sampled & wrong, ~population.audited & ~population.labelled


def backlog_certificate(engine: Engine, segment: str, model_version: str, policy: SegmentPolicy,
                        earlier_decisions: list[int], *, policy_version: str) -> BacklogCertificate:
    """Certify the backlog that `earlier_decisions` (the rerouted items' previous decisions) belong to, under
    `model_version`, for the segment's target, with the evidence row (estimator ``backlog_sample``) for routing to
    store with the decisions that use it."""
    if not policy.has_target:  # no target, no guarantee to certify
        return BacklogCertificate(None, None, frozenset())
    run = population_of(engine, segment, earlier_decisions)
    if run is None:  # no select run left these items waiting
        return BacklogCertificate(None, None, frozenset())
    population = backlog_population(engine, run, segment, model_version)
    members = frozenset(population.decision_ids)
    if population.picked_later:  # thinned by a model's uncertainty since: certifies nothing
        return BacklogCertificate(None, None, members)
    stays, sampled, wrong, unlabelled = _sample(population)
    scored = np.isfinite(population.confidence)
    if not scored[unlabelled].all():  # a waiting item the model has not scored cannot be placed
        return BacklogCertificate(None, None, members)
    # an audited item whose label is not back has no score under this model: it counts at every candidate (a
    # sampled one as an error), which only makes each test harder to pass
    confidence = np.where(scored, population.confidence, 1.0)
    assert policy.max_auto_error is not None and policy.delta is not None  # a target sets both
    result = certify_backlog(confidence[stays], sampled[stays], wrong[stays], unlabelled[stays],
                             alpha=policy.max_auto_error, delta=policy.delta)
    sample_ids = [i for i, s in zip(population.item_ids, sampled.tolist()) if s]
    evidence = {
        "model_version": model_version, "segment": segment, "policy_version": policy_version,
        "label_fingerprint": fingerprint(["backlog", run, sample_ids, wrong[sampled].tolist()]), "scale": "raw",
        "threshold": result.threshold, "calibrated_threshold": None, "n": result.n,
        "n_accepted": result.n_accepted, "n_errors": result.n_errors, "coverage": result.coverage,
        "error_upper_bound": result.error_upper_bound, "alpha": result.alpha, "delta": result.delta,
        "tested": result.tested, "pool": f"backlog {run}", "calibration_id": None, "estimator": ESTIMATOR,
        "labels_by_reason": labels_by_reason(engine, sample_ids), "created_at": utcnow(),
    }
    return BacklogCertificate(result.threshold, evidence, members)
