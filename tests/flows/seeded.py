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
    from store.policies import save_policy

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


def seed_then_loop(settings, items: Path, labels: Path, work: Path, *, seed_count: int = 200, cycles: int = 3,
                   batch_size: int = 150, strategy: str = "margin"):
    """Ingest only the first `seed_count` items, seed their labels (half held out) and train, then run `cycles`
    cycles of the loop with direct (simulated, never wrong) annotators, each ingesting the next `batch_size` items
    just before it starts, as production traffic arrives; returns the engine."""
    import numpy as np

    from flows.common import engine_for
    from flows.ingest import ingest_flow, read_labels, seed_labels
    from flows.retrain import retrain_flow
    from flows.simulate import DirectAnnotators, read_records, run_loop, write_jsonl

    records, truth = read_records(items), dict(read_labels(labels))
    engine = engine_for(settings)
    ingest_flow(str(write_jsonl(work / "seed.jsonl", records[:seed_count])), settings=settings)
    seed_labels(engine, [(r["id"], truth[r["id"]]) for r in records[:seed_count]], holdout_share=0.5)
    retrain_flow(settings=settings)
    annotate = DirectAnnotators(engine, truth, sorted(set(truth.values())), 0.0, np.random.default_rng(1))
    run_loop(engine=engine, settings=settings, stream=records[seed_count:], cycles=cycles, batch_size=batch_size,
             strategy=strategy, annotate=annotate, push=False, truth=truth, work=work, accuracy=lambda: None)
    return engine
