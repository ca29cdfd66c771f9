"""Ingest flow: a producer file into the store, and ground-truth label files into the training set."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Engine

from flows.common import derive_rng, engine_for, utcnow
from store.db import refresh_statistics
from store.events import record_event
from store.ingest import bounded_lines, ingest_file
from store.labels import known_and_labelled, write_labels
from store.policies import active_policy
from store.settings import SluiceSettings, settings_or_environment
from store.vocab import LabelSource, Selection, split_for


def _progress(path: Path) -> Progress:
    return Progress(
        TextColumn(f"ingest {path.name}"), BarColumn(), TextColumn("{task.fields[records]:,} records"),
        TimeElapsedColumn(), transient=False,
    )


@task(name="ingest-file", cache_policy=NO_CACHE)
def ingest_task(path: str, settings: SluiceSettings, show_progress: bool) -> dict[str, Any]:
    engine = engine_for(settings)
    policy, _ = active_policy(engine)
    labels = frozenset(policy.labels) if policy.labels else None
    file = Path(path)
    if not show_progress:
        return ingest_file(engine, file, labels=labels).as_dict()
    with _progress(file) as progress:
        bar = progress.add_task("ingest", total=None, records=0)
        done = 0

        def advance(count: int) -> None:
            nonlocal done
            done += count
            progress.update(bar, records=done)

        return ingest_file(engine, file, labels=labels, on_progress=advance).as_dict()


@flow(name="ingest", log_prints=True)
def ingest_flow(path: str, settings: SluiceSettings | None = None, show_progress: bool = False) -> dict[str, Any]:
    """Stream one JSONL, CSV or Parquet file into the store; idempotent on item id."""
    settings = settings_or_environment(settings)
    summary = ingest_task(path, settings, show_progress)
    refresh_statistics(engine_for(settings), "items", "item_states", "quarantine")
    record_event(engine_for(settings), "ingest", summary)
    get_run_logger().info("ingest: %s", summary)
    return summary


# A label line is an id and a label: a longer one is an error naming it, never read whole
MAX_LABEL_LINE_BYTES = 65_536
# Labels are looked up and stored this many at a time: a file of millions never sits in memory at once
LABEL_CHUNK = 100_000


def iter_labels(path: Path) -> Iterator[tuple[str, str]]:
    """(id, label) pairs from a JSONL or CSV labels file, streamed; a malformed line is an error naming it."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = csv.DictReader(handle)
            number = 1
            try:
                for number, row in enumerate(rows, start=2):
                    if not row.get("id") or not row.get("label"):
                        raise ValueError(f"{path}:{number}: a label row needs `id` and `label`")
                    yield row["id"], row["label"]
            except csv.Error as error:  # a field beyond csv's limit (131,072 characters), a stray NUL
                raise ValueError(f"{path}:{number + 1}: {error}") from error
            except UnicodeDecodeError as error:
                raise ValueError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from error
        return
    with path.open("rb") as handle:
        for number, (line, whole) in enumerate(bounded_lines(handle, MAX_LABEL_LINE_BYTES), start=1):
            if not whole:
                raise ValueError(f"{path}:{number}: a label line longer than {MAX_LABEL_LINE_BYTES:,} bytes")
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                raise ValueError(f"{path}:{number}: not UTF-8 text ({error.reason} at byte {error.start})") from error
            try:
                row = json.loads(text)
            except ValueError as error:
                raise ValueError(f"{path}:{number}: not a JSON object: {error}") from error
            if not isinstance(row, dict) or row.get("id") is None or row.get("label") is None:
                raise ValueError(f"{path}:{number}: a label line needs `id` and `label`")
            yield str(row["id"]), str(row["label"])


def read_labels(path: Path) -> list[tuple[str, str]]:
    """Every (id, label) pair of a labels file (`iter_labels`), as a list."""
    return list(iter_labels(path))


def seed_labels(engine: Engine, pairs: Iterable[tuple[str, str]], *, holdout_share: float, seed: int = 0) -> dict:
    """Known labels for ingested items: a random `holdout_share` evaluates and calibrates, the rest trains.

    Streams `pairs` in chunks of LABEL_CHUNK (memory stays flat in the file's length; time is linear). Within a chunk
    the last label given for an id counts; an id labelled already (by a previous run or an earlier chunk) keeps its
    label. The held-out draw is seeded by `seed` and the chunk's ids, so a file is split the same way every run."""
    if not 0.0 <= holdout_share < 1.0:
        raise ValueError(f"holdout_share must lie in [0, 1), got {holdout_share}")
    totals = {"added": 0, "holdout": 0, "already_labelled": 0, "unknown_items": 0}
    pairs = iter(pairs)
    while chunk := list(islice(pairs, LABEL_CHUNK)):
        for key, value in _seed_chunk(engine, chunk, holdout_share=holdout_share, seed=seed).items():
            totals[key] += value
    if totals["added"]:
        refresh_statistics(engine, "labels", "item_states")
    record_event(engine, "seed_labels", totals)
    return totals


def _seed_chunk(engine: Engine, pairs: list[tuple[str, str]], *, holdout_share: float, seed: int) -> dict[str, int]:
    pairs = sorted(dict(pairs).items())
    known, labelled = known_and_labelled(engine, [p[0] for p in pairs])
    fresh = [p for p in pairs if p[0] in known and p[0] not in labelled]
    holdout = derive_rng("seed-split", seed, [p[0] for p in fresh]).random(len(fresh)) < holdout_share
    now = utcnow()
    rows: list[dict[str, Any]] = [
        {"item_id": item_id, "label": label, "split": split_for(Selection.SEED, trains=not out),
         "source": LabelSource.SEED, "selection_reason": Selection.SEED, "selection_probability": holdout_share if out else 1 - holdout_share,
         "resolution": "given", "created_at": now}
        for (item_id, label), out in zip(fresh, holdout)
    ]
    write_labels(engine, rows, by="seed-labels")
    return {"added": len(rows), "holdout": int(holdout.sum()), "already_labelled": len(labelled),
            "unknown_items": len(pairs) - len(known)}


@flow(name="seed-labels", log_prints=True)
def seed_labels_flow(path: str, holdout_share: float = 0.5, seed: int = 0,
                     settings: SluiceSettings | None = None) -> dict[str, Any]:
    """Add known labels (JSONL or CSV of id, label) for items already ingested."""
    summary = seed_labels(engine_for(settings), iter_labels(Path(path)), holdout_share=holdout_share, seed=seed)
    get_run_logger().info("seed-labels: %s", summary)
    return summary
