"""Score flow: predictions for new items, for the review backlog after a promotion, and for held-out labels.

An item that carries its producer's score passes it through (``upstream``). The promoted classifier scores the
other classification items; an output of an LLM pipeline that came without a score of its own is scored by the
promoted model of its kind's family (``store.vocab.ModelFamily``): a generated response by the verifier, a pair by
the preference model. After a promotion, the new model scores the unresolved items it routes again."""

from __future__ import annotations

import multiprocessing
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine

from flows.common import (
    Payload,
    engine_for,
    holds_store_lock,
    artifact_file,
    load_family_model,
    load_scoring_model,
    settled,
    takes_payloads,
    utcnow,
)
from flows.runners import BATCH_RUNNER
from scoring.families import FamilyPredictions, family_data, family_predictions
from store.bulk import chunked
from store.db import refresh_statistics
from store.models import ModelVersion
from store.passthrough import prediction_columns, probs_json
from store.registry import promoted_family_model, promoted_model
from store.scoring import (
    family_items_to_score, item_inputs_of, item_payloads, items_to_score, pass_through, unscored_without_upstream,
    write_predictions,
)
from store.settings import SluiceSettings, settings_or_environment
from store.vocab import ModelFamily

DEFAULT_BATCH_SIZE = 5_000
MODEL_BATCHES_IN_FLIGHT = 3
UPSTREAM_BATCH_SIZE = 50_000  # passthrough costs microseconds per item: coarser batches, fewer task runs


def _write_prediction_columns(
    engine: Engine, item_ids: list[str], classes: np.ndarray, probs: np.ndarray, model_version: str
) -> None:
    """One prediction per item of `model_version` (``store.passthrough.prediction_columns``), written with the
    items' move to `scored` in one transaction."""
    write_predictions(engine, prediction_columns(item_ids, classes, probs, model_version=model_version, now=utcnow()))


@task(name="score-batch", cache_policy=NO_CACHE)
@takes_payloads
def score_model_batch(item_ids: list[str], version: ModelVersion, settings: SluiceSettings) -> int:
    engine = engine_for(settings)
    model = load_scoring_model(version, settings)
    usable, inputs = item_inputs_of(engine, item_ids, model.kind)
    if not usable:
        return 0
    probs = model.predict_proba(np.asarray(inputs, dtype=float) if model.kind == "features" else inputs)
    _write_prediction_columns(engine, usable, model.classes_, probs, version.version)
    return len(usable)


def _predict_in_worker(path: str, sha256: str | None, kind: str, inputs: list[Any]) -> np.ndarray:
    """Runs in a worker process: the artifact is loaded (hash-checked) once per process, then cached."""
    from flows.common import _load

    model = _load(path, sha256)
    return model.predict_proba(np.asarray(inputs, dtype=float) if kind == "features" else inputs)


@task(name="score-batches-in-processes", cache_policy=NO_CACHE)
@takes_payloads
def score_model_batches_in_processes(
    item_ids: list[str], version: ModelVersion, settings: SluiceSettings, batch_size: int, workers: int
) -> int:
    """Score batches in `workers` processes (TF-IDF holds the GIL, threads would take turns); this process
    reads the inputs and writes the predictions while the workers compute."""
    engine = engine_for(settings)
    path = str(artifact_file(version, settings))
    classes = load_scoring_model(version, settings).classes_
    scored = 0
    context = multiprocessing.get_context("spawn")  # no fork of a process that runs Prefect's threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending = []
        for part in chunked(item_ids, batch_size):
            usable, inputs = item_inputs_of(engine, list(part), version.kind)
            if usable:
                pending.append((usable, pool.submit(_predict_in_worker, path, version.sha256,
                                                    version.kind, inputs)))
        for usable, future in pending:
            _write_prediction_columns(engine, usable, classes, future.result(), version.version)
            scored += len(usable)
    return scored


@task(name="passthrough-batch", cache_policy=NO_CACHE)
@takes_payloads
def score_upstream_batch(item_ids: list[str], settings: SluiceSettings) -> int:
    return pass_through(engine_for(settings), item_ids)


def _write_family_predictions(engine: Engine, item_ids: list[str], predicted: FamilyPredictions,
                              model_version: str) -> None:
    n = len(item_ids)
    columns = {
        "item_id": item_ids, "model_version": [model_version] * n, "label": predicted.labels,
        "confidence": predicted.confidence.tolist(),
        "margin": [None] * n if predicted.margin is None else predicted.margin.tolist(),
        "probs": [None] * n if predicted.probs is None else probs_json(np.asarray(predicted.classes), predicted.probs),
        "created_at": [utcnow()] * n,
    }
    write_predictions(engine, columns)


@task(name="score-family-batch", cache_policy=NO_CACHE)
@takes_payloads
def score_family_batch(item_ids: list[str], version: ModelVersion, settings: SluiceSettings) -> int:
    """Score a batch of outputs of LLM pipelines with the verifier or preference model of `version`; an item its
    model cannot read (no response) is left unscored."""
    engine = engine_for(settings)
    model = load_family_model(version, settings)
    found = item_payloads(engine, item_ids)
    ids = [i for i in item_ids if i in found]
    data = family_data(version.kind, ids, [found[i] for i in ids])
    if not len(data):
        return 0
    predicted = family_predictions(version.kind, model.predict_proba(data.examples))
    _write_family_predictions(engine, data.item_ids, predicted, version.version)
    return len(data)


def submit_family_batches(engine: Engine, settings: SluiceSettings, batch_size: int) -> tuple[list, dict[str, Any]]:
    """Submit the score batches of every family with a promoted model; (futures, per family its version and how
    many items it was given)."""
    futures, given = [], {}
    for family in ModelFamily:
        version = promoted_family_model(engine, family)
        if version is None:
            continue
        ids = family_items_to_score(engine, family, version.version)
        futures += [score_family_batch.submit(Payload(list(part)), version, settings)
                    for part in chunked(ids, batch_size)]
        given[family.value] = {"model_version": version.version, "items": len(ids)}
    return futures, given


@flow(name="score", log_prints=True, task_runner=BATCH_RUNNER)
@holds_store_lock
def score_flow(
    batch_size: int = DEFAULT_BATCH_SIZE, settings: SluiceSettings | None = None, *, workers: int = 1
) -> dict[str, Any]:
    """Score every item that lacks a prediction from the promoted model (or carries upstream scores).

    `workers` > 1 runs the model's batches in that many processes; 1 runs them as Prefect tasks in threads.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    logger = get_run_logger()
    settings = settings_or_environment(settings)
    engine = engine_for(settings)
    version = promoted_model(engine)
    model_ids, upstream_ids = items_to_score(engine, version.version if version else None)
    with settled() as futures:
        # Payload(): Prefect would otherwise walk every id of every batch looking for futures (seconds per million)
        futures += [score_upstream_batch.submit(Payload(list(part)), settings)
                    for part in chunked(upstream_ids, max(batch_size, UPSTREAM_BATCH_SIZE))]
        family_futures, families = submit_family_batches(engine, settings, batch_size)
        futures += family_futures
        if version is not None and workers > 1 and model_ids:
            futures.append(score_model_batches_in_processes.submit(Payload(model_ids), version, settings,
                                                                   batch_size, workers))
        waiting = list(futures)  # not yet counted
        scored, in_flight = _model_batches(futures, model_ids, version, settings, batch_size) \
            if version is not None and workers == 1 else (0, [])
        scored += sum(f.result() for f in waiting + in_flight)
    if scored:
        refresh_statistics(engine, "item_states", "predictions")
    summary = {"model_version": version.version if version else None, "scored": scored, "upstream": len(upstream_ids),
               "waiting_for_a_model": 0 if version else unscored_without_upstream(engine), "families": families}
    logger.info("score: %s", summary)
    return summary


def _model_batches(futures: list, model_ids: list[str], version: ModelVersion, settings: SluiceSettings,
                   batch_size: int) -> tuple[int, list]:
    """Submit the model's batches with a bounded window in flight: model scoring holds the GIL, so hundreds of
    concurrent batch threads only take turns, and hold pooled connections long enough to exhaust the pool.
    Returns (items scored by the batches already waited for, the futures still in flight)."""
    scored, in_flight = 0, deque[Any]()
    for part in chunked(model_ids, batch_size):
        if len(in_flight) >= MODEL_BATCHES_IN_FLIGHT:
            scored += in_flight.popleft().result()
        future = score_model_batch.submit(Payload(list(part)), version, settings)
        futures.append(future)
        in_flight.append(future)
    return scored, list(in_flight)
