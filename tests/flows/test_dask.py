"""Scale-out: a cycle whose batch tasks run on a Dask LocalCluster of 2 worker processes writes exactly what the
same cycle on the thread pool writes."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select
from store.decision_batches import full_decisions

DECISIONS = full_decisions()  # each decision with its batch's columns

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_harness")]


def _cycle(home, database_url: str | None, dataset_files, runner: str) -> dict:
    """Seed a store (under `home`, or at `database_url`), run one cycle with simulated annotators on `runner`;
    return what it wrote. The runner, the store and the home are in the settings given to every flow, not in the
    environment (which names the thread pool and another home)."""
    from flows.cycle import run_cycle
    from flows.simulate import DirectAnnotators
    from store.models import Label, ReviewTask
    from store.settings import get_settings
    from tests.flows.seeded import AS_OF, ingest_seed_and_train

    assert get_settings().task_runner == "threads"
    settings = get_settings().with_home(home).variant(database_url=database_url, task_runner=runner, dask_workers=2)
    items, labels = dataset_files
    engine, truth = ingest_seed_and_train(settings, items, labels)
    annotate = DirectAnnotators(engine, truth, sorted(set(truth.values())), 0.0, np.random.default_rng(0))
    try:
        result = run_cycle(settings=settings, annotate=annotate, push=False, as_of=AS_OF)
    finally:
        from flows.runners import close_local_cluster

        close_local_cluster()
    assert list((home / "models").glob("*")), "the models follow the settings' home"
    with engine.connect() as conn:
        decisions = conn.execute(select(DECISIONS.c.item_id, DECISIONS.c.route, DECISIONS.c.reasons)
                                 .order_by(DECISIONS.c.item_id)).all()
        tasks = conn.execute(select(ReviewTask.item_id, ReviewTask.selection_reason)
                             .order_by(ReviewTask.item_id)).all()
        labels_ = conn.execute(select(Label.item_id, Label.label, Label.split).order_by(Label.item_id)).all()
    return {"routes": result["figures"]["routes"], "decisions": decisions, "tasks": tasks, "labels": labels_}


def test_a_cycle_on_a_local_dask_cluster_writes_what_the_thread_pool_writes(sluice_home, dataset_files,
                                                                            monkeypatch, tmp_path, request):
    """Two stores seeded alike (SQLite files, or two PostgreSQL databases), one cycle each: on the thread pool and
    on a LocalCluster of 2 worker processes. Everything they write must be equal."""
    import os

    import distributed

    from tests.postgres_fixture import create_database, drop_database

    started = []
    local_cluster = distributed.LocalCluster

    def counted(*args, **kwargs):
        assert kwargs["n_workers"] == 2 and kwargs["processes"] and kwargs["host"] == "127.0.0.1"
        cluster = local_cluster(*args, **kwargs)
        started.append(len(cluster.workers))
        return cluster

    monkeypatch.setattr(distributed, "LocalCluster", counted)
    first_url, second_url = os.environ.get("SLUICE_DATABASE_URL"), None
    if first_url is not None:  # PostgreSQL: a second database beside the fixture's
        cluster = request.getfixturevalue("postgres_cluster")
        second_url = create_database(cluster, f"{first_url.rsplit('/', 1)[1]}_dask")
    try:
        threads = _cycle(tmp_path / "threads", first_url, dataset_files, "threads")
        assert not started
        dask = _cycle(tmp_path / "dask", second_url, dataset_files, "dask")
    finally:
        if second_url is not None:
            from store.db import dispose_engines

            dispose_engines()
            drop_database(cluster, second_url.rsplit("/", 1)[1])
    assert started == [2]  # one local cluster of 2 workers ran score, calibrate, route and select
    assert dask["decisions"] and dask["tasks"] and dask == threads
