"""What every flow shares: the engine, the active policy and model, reproducible randomness, audit events."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, insert, select, update
from sqlmodel import Session

from labeling.resolve import ResolutionRule
from routing.policy import Policy
from scoring.models import ScoringModel
from scoring.registry import load_model
from store.bulk import insert_ignore
from store.db import get_engine
from store.models import AuditEvent, ModelVersion, PolicyVersion, Watermark
from store.settings import PROJECT_ROOT

DEFAULT_POLICY_PATH = PROJECT_ROOT / "policies" / "default.yaml"
UPSTREAM_MODEL = "upstream"


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


def record_event(engine: Engine, kind: str, payload: dict[str, Any], *, actor: str = "system") -> None:
    with engine.begin() as conn:
        conn.execute(insert(AuditEvent).values(kind=kind, actor=actor, payload=payload, created_at=utcnow()))


def save_policy(
    engine: Engine, policy: Policy, *, author: str = "system", comment: str = "", activate: bool = True
) -> str:
    """Store `policy` as an immutable version (its content hash) and make it the active one."""
    version = policy.content_hash()
    with engine.begin() as conn:
        insert_ignore(conn, PolicyVersion.__table__, [{
            "version": version, "name": policy.name, "document": policy.to_yaml(), "author": author,
            "comment": comment, "active": False, "created_at": utcnow(),
        }])
        if activate:
            conn.execute(update(PolicyVersion).values(active=False).where(PolicyVersion.version != version))
            conn.execute(update(PolicyVersion).values(active=True).where(PolicyVersion.version == version))
    record_event(engine, "policy_saved", {"version": version, "activate": activate, "comment": comment}, actor=author)
    return version


def load_policy_file(path: Path | str) -> Policy:
    return Policy.load(Path(path))


def active_policy(engine: Engine) -> tuple[Policy, str]:
    """The active policy and its version; the embedded default is saved and activated on first use."""
    with Session(engine) as session:
        row = session.exec(
            select(PolicyVersion).where(PolicyVersion.active).order_by(PolicyVersion.created_at.desc())
        ).scalars().first()
    if row is None:
        policy = load_policy_file(DEFAULT_POLICY_PATH)
        return policy, save_policy(engine, policy, comment="embedded default policy")
    return Policy.from_yaml(row.document), row.version


def resolution_rules(engine: Engine) -> Callable[[str], ResolutionRule]:
    """Each segment's resolution method and agreement limit, from the active policy."""
    policy, _ = active_policy(engine)

    def rule(segment: str) -> ResolutionRule:
        rules = policy.for_segment(segment)
        return ResolutionRule(method=rules.resolution, min_agreement=rules.min_agreement,
                              audit_train_share=rules.audit_train_share)

    return rule


def promoted_model(engine: Engine) -> ModelVersion | None:
    with Session(engine) as session:
        return session.exec(
            select(ModelVersion).where(ModelVersion.status == "promoted").order_by(ModelVersion.promoted_at.desc())
        ).scalars().first()


@lru_cache(maxsize=4)
def _load(path: str, sha256: str) -> ScoringModel:
    return load_model(Path(path), sha256=sha256)


def load_scoring_model(version: ModelVersion) -> ScoringModel:
    if not version.artifact_path or not version.sha256:
        raise ValueError(f"model {version.version} has no artifact to load")
    return _load(version.artifact_path, version.sha256)


def get_watermark(engine: Engine, name: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(Watermark.value).where(Watermark.name == name)).scalar()


def set_watermark(engine: Engine, name: str, value: str) -> None:
    with engine.begin() as conn:
        if conn.execute(select(Watermark.name).where(Watermark.name == name)).first() is None:
            conn.execute(insert(Watermark).values(name=name, value=value, updated_at=utcnow()))
        else:
            conn.execute(update(Watermark).where(Watermark.name == name).values(value=value, updated_at=utcnow()))


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
