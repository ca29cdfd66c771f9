"""A store brought to a pending review outbox through real flow runs, shared by the flow tests."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

# The moment the seeded select dates its tasks: a fixed one, so a test that selects again in the same budget window
# does so whatever the wall clock (an hour boundary between two selects would open a fresh window).
AS_OF = datetime(2026, 6, 1, 10, 30, tzinfo=timezone.utc)


def seed_and_route(items: Path, labels: Path, *, policy_yaml: str | None = None, seed_count: int = 200):
    """Ingest, seed `seed_count` labels (half held out), train, score, calibrate, route and select cycle 1,
    each as a real flow run; returns (engine, truth)."""
    from flows.calibrate import calibrate_flow
    from flows.common import engine_for
    from flows.ingest import ingest_flow, read_labels, seed_labels
    from flows.retrain import retrain_flow
    from flows.route import route_flow
    from flows.score import score_flow
    from flows.select import select_flow
    from routing.policy import Policy
    from store.repo import save_policy

    engine = engine_for(None)
    if policy_yaml is not None:
        save_policy(engine, Policy.from_yaml(policy_yaml))
    ingest_flow(str(items))
    truth = dict(read_labels(labels))
    seed_labels(engine, list(truth.items())[:seed_count], holdout_share=0.5)
    retrain_flow()
    score_flow()
    calibrate_flow()
    route_flow(cycle=1)
    select_flow(cycle=1, as_of=AS_OF)
    return engine, truth


def ingest_seed_and_train(settings, items: Path, labels: Path, *, seed_count: int = 200):
    """Ingest `items` under `settings`, seed the first `seed_count` labels (half held out) and train the first
    model; returns (engine, every true label by item id)."""
    from flows.common import engine_for
    from flows.ingest import ingest_flow, read_labels, seed_labels
    from flows.retrain import retrain_flow

    engine = engine_for(settings)
    ingest_flow(str(items), settings=settings)
    truth = dict(read_labels(labels))
    seed_labels(engine, list(truth.items())[:seed_count], holdout_share=0.5)
    retrain_flow(settings=settings)
    return engine, truth
