"""What every flow shares: the engine, reproducible randomness, fingerprints, model loading, batch packing (the
shared reads and writes of the store are in `store.repo`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine

from labeling.resolve import ResolutionRule
from routing.policy import Policy
from scoring.models import ScoringModel
from scoring.registry import load_model
from store.db import get_engine
from store.models import ModelVersion
from store.repo import active_policy


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything Sluice writes is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=timezone.utc)


def engine_for(database_url: str | None = None) -> Engine:
    return get_engine(database_url)


def derive_rng(*parts: Any) -> np.random.Generator:
    """A generator seeded from `parts`, so a retried step draws exactly what the first try drew."""
    digest = hashlib.sha256(json.dumps(parts, default=str).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def fingerprint(values: Any) -> str:
    return hashlib.sha256(json.dumps(values, default=str, sort_keys=True).encode()).hexdigest()[:32]


def load_policy_file(path: Path | str) -> Policy:
    return Policy.load(Path(path))


def resolution_rules(engine: Engine) -> Callable[[str], ResolutionRule]:
    """Each segment's resolution method and agreement limit, from the active policy."""
    policy, _ = active_policy(engine)

    def rule(segment: str) -> ResolutionRule:
        rules = policy.for_segment(segment)
        return ResolutionRule(method=rules.resolution, min_agreement=rules.min_agreement,
                              audit_train_share=rules.audit_train_share)

    return rule


@lru_cache(maxsize=4)
def _load(path: str, sha256: str) -> ScoringModel:
    return load_model(Path(path), sha256=sha256)


def load_scoring_model(version: ModelVersion) -> ScoringModel:
    if not version.artifact_path or not version.sha256:
        raise ValueError(f"model {version.version} has no artifact to load")
    return _load(version.artifact_path, version.sha256)


def pack(groups: Sequence[Sequence[Any]], *, max_items: int, max_groups: int) -> list[list[Sequence[Any]]]:
    """Consecutive groups packed into batches of about `max_items` items or at most `max_groups` groups: one Prefect
    task per batch, so neither a million tiny segments nor one huge one multiplies or starves the tasks."""
    packed: list[list[Sequence[Any]]] = []
    size = 0
    for group in groups:
        if not packed or size >= max_items or len(packed[-1]) >= max_groups:
            packed.append([])
            size = 0
        packed[-1].append(group)
        size += len(group)
    return packed
