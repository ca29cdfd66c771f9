"""Cycle flow: one turn of the flywheel, score → calibrate → route → select → push → pull → retrain."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any

import numpy as np
from prefect import flow, get_run_logger
from sqlalchemy import Engine

from flows.calibrate import calibrate_flow
from flows.common import engine_for, holds_store_lock, load_scoring_model
from flows.labelstudio import pull_flow, push_flow
from flows.retrain import retrain_flow
from flows.route import route_flow
from flows.score import score_flow
from flows.select import select_flow
from labeling.quality import agreement_report
from routing.stopping import gain_per_100_labels, model_agreement, pooled_ece
from services.audit import audit_estimates
from store import figures as store_figures
from store.budget import cycle_split
from store.models import ModelVersion
from store.calibrations import latest_ece
from store.labels import unlabelled_inputs
from store.policies import active_policy
from store.registry import promoted_model
from store.vocab import Route
from store.settings import SluiceSettings, settings_or_environment

Annotate = Callable[[int], dict[str, Any]]


def start_cycle(engine: Engine) -> int:
    model = promoted_model(engine)
    return store_figures.open_cycle(engine, model.version if model else None)


def cycle_figures(engine: Engine, cycle: int, routing_model: str | None) -> dict[str, Any]:
    """Routing mix, review load and labels gained; ECE of the model that routed, held-out accuracy of the one
    promoted at the end of the cycle; human labels spent in the cycle and in all."""
    counts = store_figures.cycle_counts(engine, cycle)
    routes = store_figures.cycle_route_counts(engine, cycle)
    model = promoted_model(engine)
    routed = sum(routes.values())
    automated = routes.get(Route.AUTO_ACCEPT, 0) + routes.get(Route.SPOT_CHECK, 0)
    return {
        "routed": routed, "routes": routes, "automation_rate": automated / routed if routed else None,
        "review_tasks": counts.review_tasks, "labels_gained": counts.labels_gained,
        "labels_total": counts.labels_total, "labels_train": counts.labels_train, "auto_accepted": automated,
        "labels_spent": store_figures.human_labels(engine, since=counts.started_at),
        "labels_asked": labels_asked_in(engine, cycle),
        "certification": store_figures.cycle_certifications(engine, cycle),
        "labels_spent_total": store_figures.human_labels(engine),
        "model_version": model.version if model else None,
        "holdout_accuracy": (model.metrics or {}).get("accuracy") if model else None,
        "routing_model_version": routing_model,
        "ece": pooled_ece(latest_ece(engine, routing_model).values()) if routing_model else None,
    }


def labels_asked_in(engine: Engine, cycle: int) -> dict[str, int]:
    """What the cycle's tasks asked people for, over every segment, by what the labels paid for (the budget covers
    all of it: audits, escalations, reviews, gold and overlap extras)."""
    totals: dict[str, int] = {}
    for split in cycle_split(engine, cycle).values():
        for key, value in split.items():
            totals[key] = totals.get(key, 0) + value
    return totals


# Agreement on 500 items has a standard error under 0.008 near 0.97; a larger sample only costs two
# models' predictions over it every cycle.
STOPPING_SAMPLE = 500


def stopping_signal(engine: Engine, cycle: int, previous: ModelVersion | None,
                    settings: SluiceSettings | None = None) -> dict[str, Any]:
    """Is the flywheel still paying? Held-out accuracy gained per 100 new labels since the last cycle, and the
    share of unlabelled items on which the new model agrees with the one it replaced (near 1: little changes)."""
    current = promoted_model(engine)
    before = store_figures.cycle_report_figures(engine, cycle - 1)
    labels_now = store_figures.label_count(engine)
    signal: dict[str, Any] = {"gain_per_100_labels": None, "model_agreement": None}
    accuracy = (current.metrics or {}).get("accuracy") if current else None
    if before:
        signal["gain_per_100_labels"] = gain_per_100_labels(before.get("holdout_accuracy"), accuracy,
                                                            labels_now - (before.get("labels_total") or 0))
    if previous is not None and current is not None and previous.version != current.version \
            and previous.kind == current.kind:
        sample = unlabelled_inputs(engine, current.kind, limit=STOPPING_SAMPLE)
        if sample:
            inputs = np.asarray(sample, dtype=float) if current.kind == "features" else sample
            old = load_scoring_model(previous, settings).predict(inputs)
            new = load_scoring_model(current, settings).predict(inputs)
            signal["model_agreement"] = model_agreement(old, new)
    elif previous is not None and current is not None:
        signal["model_agreement"] = 1.0
    return signal


@holds_store_lock
def run_cycle(
    *, strategy: str = "margin", settings: SluiceSettings | None = None, annotate: Annotate | None = None,
    push: bool = True, as_of: datetime | None = None, retrain: bool = True,
) -> dict[str, Any]:
    """One full cycle, every step on `settings` (the environment's when None). `annotate(cycle)` stands in for
    people between push and pull, and `as_of` for the clock that dates review tasks and picks their budget
    window (simulations only). ``retrain=False`` leaves the model as it is (retraining on a schedule of its own,
    as a deployment may: the next cycle routes with the same model)."""
    settings = settings_or_environment(settings)
    engine = engine_for(settings)
    cycle = start_cycle(engine)
    routing_model = promoted_model(engine)
    steps: dict[str, Any] = {"score": score_flow(settings=settings)}
    steps["calibrate"] = calibrate_flow(settings=settings)
    steps["route"] = route_flow(cycle=cycle, settings=settings, as_of=as_of)
    steps["select"] = select_flow(strategy=strategy, cycle=cycle, settings=settings, as_of=as_of)
    if push:
        steps["push"] = push_flow(settings=settings)
    if annotate is not None:
        steps["annotate"] = annotate(cycle)
    if push:
        steps["pull"] = pull_flow(cycle=cycle, settings=settings)
    steps["retrain"] = retrain_flow(settings=settings) if retrain else {"status": "skipped"}
    figures = cycle_figures(engine, cycle, routing_model.version if routing_model else None)
    figures.update(stopping_signal(engine, cycle, routing_model, settings))
    figures["audit"] = audit_estimates(engine)
    policy, _ = active_policy(engine)
    figures["target_error"] = policy.defaults.max_auto_error
    figures["halted_segments"] = steps["route"].get("halted_segments", [])
    report = agreement_report(engine)
    figures["agreement"] = {name: [asdict(r) for r in report[name]]
                            for name in ("segments", "pairs", "severity", "position")}
    store_figures.finish_cycle(engine, cycle, figures)
    return {"cycle": cycle, "figures": figures, "steps": steps}


@flow(name="cycle", log_prints=True)
@holds_store_lock
def cycle_flow(strategy: str = "margin", settings: SluiceSettings | None = None) -> dict[str, Any]:
    """One turn of the flywheel against Label Studio: whatever annotators finished since the last pull comes in.
    A deployment run gives no settings: the worker's environment says where the store and Label Studio are."""
    result = run_cycle(strategy=strategy, settings=settings)
    get_run_logger().info("cycle %d: %s", result["cycle"], result["figures"])
    return result
