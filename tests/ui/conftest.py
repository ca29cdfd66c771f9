"""Fixtures for the console tests: a real, migrated SQLite store under tmp_path, empty or filled by real flow runs.

Two stores are filled once per session by real Prefect flow runs (under the session's test harness) and each test
gets a copy of one, so a test may run more flows on it:

- `looped_engine`: 900 short texts (every sixth in segment finance, the rest in default); the first 400 seeded
  (half held out) and a model trained; two cycles of the loop with simulated annotators under POLICY (spot checks
  at 0.2); then, under its next version MORE_AUDITS (spot checks at 0.5), a third answered cycle and a fourth whose
  review tasks nobody has answered yet. Four cycle reports, several model versions, audits drawn at two different
  probabilities, open review tasks, a calibration gate passed (default) and failed (finance, too few labels).
- `routed_engine`: 600 texts, 400 seeded, trained, scored, calibrated, routed and selected once as cycle 1
  (`tests.flows.seeded.seed_and_route`); no cycle has finished, so no arrival rate is known yet.

What a test expects is read from the store it checks (plain SQL in the test, or the cycle reports the flows
recorded), never from the function under test, and never typed in from a run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import NamedTuple

import pytest
from sqlalchemy import Engine

from store.db import dispose_engines, get_engine
from store.settings import get_settings

# A fixed threshold: 200 held-out labels are too few to certify a target on this data, and the console's figures
# need items auto-accepted and audited. Finance stands alone on its own few labels (its gate fails); news is named
# but never sees an item. The label budget (which covers audits) holds the audits at either spot-check rate.
POLICY = """\
name: console-test
defaults:
  auto_accept_threshold: 0.8
  spot_check_rate: 0.2
  review_budget: 150
  blind_share: 0.3
  calibration: {min_samples: 50, max_ece: 0.25}
segments:
  finance: {stakes: high, regulated: true, mode: in_the_loop, small_segment: review}
  news: {spot_check_rate: 0.5}
"""
MORE_AUDITS = POLICY.replace("spot_check_rate: 0.2", "spot_check_rate: 0.5")
MORE_AUDITS_AUTHOR, MORE_AUDITS_COMMENT = "alice", "more audits of what is auto-accepted"


class FilledStore(NamedTuple):
    """A store the flows filled (never opened by a test: each gets a copy) and the true label of every item."""

    home: Path
    labels: Path


@pytest.fixture
def sluice_home(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SLUICE_HOME", str(tmp_path))
    monkeypatch.delenv("SLUICE_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield tmp_path
    dispose_engines()
    get_settings.cache_clear()


@pytest.fixture
def empty_engine(sluice_home) -> Engine:
    return get_engine()


@contextmanager
def sluice_environment(home: Path) -> Iterator[None]:
    """SLUICE_HOME set to `home` (and no database URL) for the flows run inside; the environment restored after."""
    saved = {key: os.environ.get(key) for key in ("SLUICE_HOME", "SLUICE_DATABASE_URL")}
    os.environ["SLUICE_HOME"] = str(home)
    os.environ.pop("SLUICE_DATABASE_URL", None)
    get_settings.cache_clear()
    dispose_engines()
    try:
        yield
    finally:
        dispose_engines()  # closes every connection, so the SQLite file is whole before it is copied
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()


def segmented(records: list[dict]) -> list[dict]:
    """Every sixth record in segment finance, the others in the default segment."""
    return [{**record, "segment": "finance"} if index % 6 == 5 else record for index, record in enumerate(records)]


def fill_looped(data: Path) -> Path:
    """The looped store (see the module docstring) in the current SLUICE_HOME; returns the true labels' file."""
    import numpy as np

    from flows.common import engine_for, utcnow
    from flows.cycle import run_cycle
    from flows.ingest import ingest_flow, read_labels
    from flows.simulate import DirectAnnotators, read_records, write_jsonl
    from routing.policy import Policy, budget_window
    from store.policies import save_policy
    from tests.flows.conftest import make_dataset, write_files
    from tests.flows.seeded import seed_then_loop

    settings = get_settings()
    engine = engine_for(settings)
    items, labels = write_files(data, segmented(make_dataset(900, seed=3)))
    save_policy(engine, Policy.from_yaml(POLICY), author="bob", comment="first rules")
    seed_then_loop(settings, items, labels, data, seed_count=400, cycles=2, batch_size=150)
    save_policy(engine, Policy.from_yaml(MORE_AUDITS), author=MORE_AUDITS_AUTHOR, comment=MORE_AUDITS_COMMENT)
    records, truth = read_records(items), dict(read_labels(labels))
    annotate = DirectAnnotators(engine, truth, sorted(set(truth.values())), 0.0, np.random.default_rng(2))
    window = budget_window(utcnow(), 1)[0] + timedelta(days=1)  # review budget windows no earlier cycle spent
    ingest_flow(str(write_jsonl(data / "cycle-3.jsonl", records[700:800])), settings=settings)
    run_cycle(settings=settings, annotate=annotate, push=False, as_of=window)
    ingest_flow(str(write_jsonl(data / "cycle-4.jsonl", records[800:900])), settings=settings)
    run_cycle(settings=settings, push=False, as_of=window + timedelta(hours=1))  # nobody answers this one
    return labels


def fill_routed(data: Path) -> Path:
    """The routed store (see the module docstring) in the current SLUICE_HOME; returns the true labels' file."""
    from tests.flows.conftest import make_dataset, write_files
    from tests.flows.seeded import seed_and_route

    items, labels = write_files(data, segmented(make_dataset(600, seed=3)))
    seed_and_route(items, labels, policy_yaml=POLICY, seed_count=400)
    return labels


@pytest.fixture(scope="session")
def looped_store(tmp_path_factory, prefect_harness) -> FilledStore:
    home, data = tmp_path_factory.mktemp("looped-home"), tmp_path_factory.mktemp("looped-data")
    with sluice_environment(home):
        labels = fill_looped(data)
    return FilledStore(home, labels)


@pytest.fixture(scope="session")
def routed_store(tmp_path_factory, prefect_harness) -> FilledStore:
    home, data = tmp_path_factory.mktemp("routed-home"), tmp_path_factory.mktemp("routed-data")
    with sluice_environment(home):
        labels = fill_routed(data)
    return FilledStore(home, labels)


def _copy_of(store: FilledStore, tmp_path: Path, monkeypatch) -> Iterator[Engine]:
    home = tmp_path / "sluice-home"
    shutil.copytree(store.home, home)
    monkeypatch.setenv("SLUICE_HOME", str(home))
    monkeypatch.delenv("SLUICE_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    dispose_engines()
    yield get_engine()
    dispose_engines()
    get_settings.cache_clear()


@pytest.fixture
def looped_engine(looped_store, tmp_path, monkeypatch) -> Iterator[Engine]:
    """A copy of the looped store, SLUICE_HOME pointing at it."""
    yield from _copy_of(looped_store, tmp_path, monkeypatch)


@pytest.fixture
def routed_engine(routed_store, tmp_path, monkeypatch) -> Iterator[Engine]:
    """A copy of the routed store, SLUICE_HOME pointing at it."""
    yield from _copy_of(routed_store, tmp_path, monkeypatch)


def answer_open_tasks(engine: Engine, store: FilledStore, *, cycle: int) -> int:
    """Simulated annotators (never wrong) answer every written review task, as in the loop; returns how many."""
    import numpy as np

    from flows.ingest import read_labels
    from flows.simulate import DirectAnnotators

    truth = dict(read_labels(store.labels))
    annotate = DirectAnnotators(engine, truth, sorted(set(truth.values())), 0.0, np.random.default_rng(3))
    return annotate(cycle)["answered"]
