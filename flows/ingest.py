"""Ingest flow: a producer file into the store, and ground-truth label files into the training set."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Engine

from flows.common import derive_rng, engine_for, utcnow
from store.bulk import existing_keys, insert_ignore
from store.db import refresh_statistics
from store.ingest import ingest_file
from store.models import Item, ItemState, Label
from store.repo import active_policy, record_event
from store.settings import SluiceSettings, settings_or_environment
from store.transitions import move_items
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
    refresh_statistics(engine_for(settings), "items", "quarantine")
    record_event(engine_for(settings), "ingest", summary)
    get_run_logger().info("ingest: %s", summary)
    return summary


def read_labels(path: Path) -> list[tuple[str, str]]:
    """(id, label) pairs from a JSONL or CSV labels file; a malformed line is an error naming it."""
    pairs: list[tuple[str, str]] = []
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            for number, row in enumerate(csv.DictReader(handle), start=2):
                if not row.get("id") or not row.get("label"):
                    raise ValueError(f"{path}:{number}: a label row needs `id` and `label`")
                pairs.append((row["id"], row["label"]))
        return pairs
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            if not isinstance(row, dict) or row.get("id") is None or row.get("label") is None:
                raise ValueError(f"{path}:{number}: a label line needs `id` and `label`")
            pairs.append((str(row["id"]), str(row["label"])))
    return pairs


def seed_labels(engine: Engine, pairs: list[tuple[str, str]], *, holdout_share: float, seed: int = 0) -> dict:
    """Known labels for ingested items: a random `holdout_share` evaluates and calibrates, the rest trains."""
    if not 0.0 <= holdout_share < 1.0:
        raise ValueError(f"holdout_share must lie in [0, 1), got {holdout_share}")
    pairs = sorted(dict(pairs).items())
    with engine.connect() as conn:
        known = existing_keys(conn, Item.__table__.c.id, [p[0] for p in pairs])
        labelled = existing_keys(conn, Label.__table__.c.item_id, [p[0] for p in pairs])
    fresh = [p for p in pairs if p[0] in known and p[0] not in labelled]
    holdout = derive_rng("seed-split", seed, [p[0] for p in fresh]).random(len(fresh)) < holdout_share
    now = utcnow()
    rows = [
        {"item_id": item_id, "label": label, "split": split_for(Selection.SEED, trains=not out),
         "source": LabelSource.SEED, "selection_reason": Selection.SEED, "selection_probability": holdout_share if out else 1 - holdout_share,
         "resolution": "given", "created_at": now}
        for (item_id, label), out in zip(fresh, holdout)
    ]
    with engine.begin() as conn:
        insert_ignore(conn, Label.__table__, rows)
        move_items(conn, dict.fromkeys((r["item_id"] for r in rows), ItemState.resolved), by="seed-labels")
    if rows:
        refresh_statistics(engine, "labels", "items")
    summary = {"added": len(rows), "holdout": int(holdout.sum()), "already_labelled": len(labelled),
               "unknown_items": len(pairs) - len(known)}
    record_event(engine, "seed_labels", summary)
    return summary


@flow(name="seed-labels", log_prints=True)
def seed_labels_flow(path: str, holdout_share: float = 0.5, seed: int = 0,
                     settings: SluiceSettings | None = None) -> dict[str, Any]:
    """Add known labels (JSONL or CSV of id, label) for items already ingested."""
    summary = seed_labels(engine_for(settings), read_labels(Path(path)), holdout_share=holdout_share, seed=seed)
    get_run_logger().info("seed-labels: %s", summary)
    return summary
