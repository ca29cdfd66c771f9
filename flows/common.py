"""What every flow shares: the engine, reproducible randomness, model loading, batch packing (the shared reads and
writes of the store are in `store/` by aggregate: `store.policies`, `store.registry`, `store.labels`,
`store.decisions`, ...; content fingerprints in `store.bulk`)."""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence, Sized
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, overload

import numpy as np
from sqlalchemy import Engine

from labeling.resolve import ResolutionRule
from routing.policy import Policy
from scoring.models import ScoringModel
from scoring.preference import PreferenceModel
from scoring.registry import load_model, load_preference_model, load_verifier
from scoring.verifier import Verifier
from store.db import get_engine, pool_size_for
from store.lock import LockStatus, StoreLockTimeout, hold_store_lock, lock_name
from store.models import ModelVersion
from store.policies import active_policy
from store.registry import ModelArtifact
from store.settings import SluiceSettings, settings_or_environment
from store.vocab import ModelFamily


class StepFailed(RuntimeError):
    """A step could not do its work (a service down after its client's retries with back-off): raised so that its
    flow run ends Failed with this reason, never as a green run with an ERROR line. What it could not do stays
    where it was (the outbox pending, the watermark unmoved) for the next run."""


# One lock per store (`store.lock`: a flock beside a SQLite file, a PostgreSQL advisory lock), released by the
# operating system or the database when its holder dies: two cycles, or a cycle and a step, never run on the same
# store at once, whichever worker or process starts them, and a crash never leaves it taken. Steps a cycle runs
# re-enter its lock.
_held_locks: ContextVar[frozenset[str]] = ContextVar("sluice_store_locks", default=frozenset())


def store_lock_name(database_url: str) -> str:
    """The lock's name for a store (a fingerprint of its URL, password left out)."""
    return lock_name(database_url)


def _running_flow() -> tuple[str, str | None]:
    """The name and run id of the Prefect flow this runs in; the command line's when outside any."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None or context.flow is None:
        return " ".join([Path(sys.argv[0]).name, *sys.argv[1:2]]) if sys.argv else "python", None
    return context.flow.name, str(context.flow_run.id)


@contextmanager
def store_lock(settings: SluiceSettings | None = None, *, timeout: float | None = None) -> Iterator[None]:
    """Hold the lock of the settings' store while the body runs (re-entrant within a flow and the steps it calls).
    Waits up to `timeout` seconds (the settings' `store_lock_timeout` by default), then raises `StepFailed`."""
    settings = settings_or_environment(settings)
    url = settings.resolved_database_url
    name = store_lock_name(url)
    held = _held_locks.get()
    if name in held:
        yield
        return
    wait = settings.store_lock_timeout if timeout is None else timeout
    flow, run_id = _running_flow()

    def waiting(status: LockStatus) -> None:
        logging.getLogger("sluice.lock").warning("%s waits for the store lock, %s", flow, status.describe())

    token = _held_locks.set(held | {name})
    try:
        with hold_store_lock(url, flow=flow, flow_run_id=run_id, timeout=wait, on_wait=waiting):
            yield
    except StoreLockTimeout as error:
        raise StepFailed(f"{error}; nothing was done (one cycle or step runs on a store at a time). A holder that "
                         "dies frees the lock by itself; `sluice status` shows who holds it") from error
    finally:
        _held_locks.reset(token)


@contextmanager
def settled() -> Iterator[list[Any]]:
    """A list to put a flow's submitted task futures in; on the way out, however the block is left (a batch that
    failed, an interrupt), every one of them is waited for, so no batch task still writes the store after its flow
    has given the store lock back."""
    from prefect.futures import wait

    submitted: list[Any] = []
    try:
        yield submitted
    finally:
        if submitted:
            wait(submitted)


P = ParamSpec("P")
R = TypeVar("R")


def holds_store_lock(fn: Callable[P, R]) -> Callable[P, R]:
    """Run a flow function under `store_lock` of its `settings` argument (put it beneath `@flow`)."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def locked(*args: P.args, **kwargs: P.kwargs) -> R:
        with store_lock(signature.bind_partial(*args, **kwargs).arguments.get("settings")):
            return fn(*args, **kwargs)

    return locked


class Payload:
    """A large task argument handed over untouched: Prefect does not walk it looking for futures (seconds per
    million ids), and Dask does not read it as part of a task graph (where every tuple is a task, so Prefect's
    `quote`, a tuple, arrives mangled). The task unwraps it through `takes_payloads`."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __reduce__(self) -> tuple[type[Payload], tuple[Any]]:
        return Payload, (self.value,)


def takes_payloads(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Let a task function receive `Payload` arguments as their values (put it beneath `@task`)."""

    @functools.wraps(fn)
    def unwrapped(*args: Any, **kwargs: Any) -> Any:
        return fn(*(a.value if isinstance(a, Payload) else a for a in args),
                  **{k: v.value if isinstance(v, Payload) else v for k, v in kwargs.items()})

    return unwrapped


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@overload
def as_utc(moment: datetime) -> datetime: ...
@overload
def as_utc(moment: datetime | None) -> datetime | None: ...
def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; everything Sluice writes is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=timezone.utc)


def engine_for(settings: SluiceSettings | None = None) -> Engine:
    """The engine of the settings' store (the environment's when None), migrated on first use, with a connection
    for each of the settings' batch threads and the flow's own (`store.db.pool_size_for`)."""
    settings = settings_or_environment(settings)
    return get_engine(settings.resolved_database_url, pool_size=pool_size_for(settings.resolved_batch_threads))


def derive_rng(*parts: Any) -> np.random.Generator:
    """A generator seeded from `parts`, so a retried step draws exactly what the first try drew."""
    digest = hashlib.sha256(json.dumps(parts, default=str).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def load_policy_file(path: Path | str) -> Policy:
    return Policy.load(Path(path))


def resolution_rules(engine: Engine) -> Callable[[str], ResolutionRule]:
    """Each segment's resolution method and agreement limit, from the active policy."""
    policy, _ = active_policy(engine)

    def rule(segment: str) -> ResolutionRule:
        rules = policy.for_segment(segment)
        return ResolutionRule(method=rules.resolution, min_agreement=rules.min_agreement,
                              audit_train_share=rules.audit_train_share, expert_issues=frozenset(rules.expert_issues))

    return rule


@lru_cache(maxsize=4)
def _load(path: str, sha256: str) -> ScoringModel:
    return load_model(Path(path), sha256=sha256)


def artifact_file(version: ModelVersion | ModelArtifact, settings: SluiceSettings | None = None) -> Path:
    """Where a registered model's file is for `settings` (the environment's when None): a path recorded relative
    (the file's name) is in the settings' models folder; an absolute one (recorded before) is taken from that
    folder too when a copy of it is there, so a store copied with its home loads its own files, not the
    original's."""
    if not version.artifact_path or not version.sha256:
        raise ValueError(f"model {version.version} has no artifact to load")
    recorded = Path(version.artifact_path)
    models_dir = settings_or_environment(settings).models_dir
    if not recorded.is_absolute():
        return models_dir / recorded
    local = models_dir / recorded.name
    return local if local.exists() else recorded


def load_scoring_model(version: ModelVersion, settings: SluiceSettings | None = None) -> ScoringModel:
    return _load(str(artifact_file(version, settings)), version.sha256)


@lru_cache(maxsize=4)
def _load_family(path: str, sha256: str, family: str) -> Verifier | PreferenceModel:
    loaders: dict[ModelFamily, Callable[..., Verifier | PreferenceModel]] = {
        ModelFamily.VERIFIER: load_verifier, ModelFamily.PREFERENCE: load_preference_model}
    return loaders[ModelFamily(family)](Path(path), sha256=sha256)


def load_family_model(version: ModelVersion, settings: SluiceSettings | None = None) -> Verifier | PreferenceModel:
    """The verifier or preference model of a registered version (its `kind` names the family), hash-checked."""
    if version.kind not in set(ModelFamily):
        raise ValueError(f"model {version.version} is a {version.kind!r} model, not a verifier or preference model")
    return _load_family(str(artifact_file(version, settings)), version.sha256, version.kind)


SizedGroup = TypeVar("SizedGroup", bound=Sized)


def pack(groups: Sequence[SizedGroup], *, max_items: int, max_groups: int) -> list[list[SizedGroup]]:
    """Consecutive groups packed into batches of about `max_items` items or at most `max_groups` groups: one Prefect
    task per batch, so neither a million tiny segments nor one huge one multiplies or starves the tasks."""
    packed: list[list[SizedGroup]] = []
    size = 0
    for group in groups:
        if not packed or size >= max_items or len(packed[-1]) >= max_groups:
            packed.append([])
            size = 0
        packed[-1].append(group)
        size += len(group)
    return packed
