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
# but never sees an item.
POLICY = """\
name: console-test
defaults:
  auto_accept_threshold: 0.8
  spot_check_rate: 0.2
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
    from store.repo import save_policy
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


# --- hand-written store, still used by tests not yet moved to flow-filled stores (removed once unused) ---

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine

from calibration.recalibrators import PlattCalibrator
from calibration.report import fit_and_select
from routing.policy import Policy
from store.db import dispose_engines, get_engine, session_scope
from store.models import (
    CalibrationReportRow,
    CycleReport,
    Item,
    Label,
    ModelVersion,
    PolicyVersion,
    Prediction,
    ReviewTask,
    RoutingDecision,
)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_POLICY = REPO / "policies" / "default.yaml"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)
# Promoted model m1's predictions (all "business") and confidences; with the labels in `populate`, the
# unbiased held-out ones of segment default are d0 (right), d6 (wrong), d7 (right), d8 (wrong).
M1_CONFIDENCE = {"d0": 0.95, "d1": 0.99, "d6": 0.9, "d7": 0.7, "d8": 0.6}
DEFAULT_HOLDOUT = ("d0", "d6", "d7", "d8")
DEFAULT_HOLDOUT_CORRECT = (1.0, 0.0, 1.0, 0.0)


def platt_calibrator(power: float, seed: int) -> dict:
    """A fitted Platt recalibrator as stored in calibration_reports.calibrator."""
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.5, 1.0, 200)
    correct = (rng.random(200) < confidence**power).astype(float)
    return PlattCalibrator().fit(confidence, correct).to_dict()


# the newest m1/default report's recalibrator (the one the what-if page applies) and an older one
M1_DEFAULT_CALIBRATOR = platt_calibrator(3.0, seed=4)
M1_DEFAULT_OLD_CALIBRATOR = platt_calibrator(0.5, seed=5)


@pytest.fixture
def populated_engine(sluice_home) -> Engine:
    engine = get_engine()
    populate(engine)
    return engine


def calibration_report(n: int, *, power: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(0.5, 1.0, n)
    correct = (rng.random(n) < confidence**power).astype(float)
    _, report = fit_and_select(confidence, correct, rng=rng, n_bootstrap=50)
    return report.to_dict()


def _report_row(
    model: str,
    segment: str,
    report: dict,
    *,
    passed: bool,
    reasons: list[str],
    at: datetime,
    data_hash: str,
    calibrator: dict | None = None,
) -> CalibrationReportRow:
    return CalibrationReportRow(
        model_version=model,
        segment=segment,
        data_hash=data_hash,
        method=report["method"],
        n=report["n"],
        ece=report["ece"],
        ece_low=report["ece_low"],
        ece_high=report["ece_high"],
        mce=report["mce"],
        brier=report["brier"],
        passed=passed,
        reasons=reasons,
        report=report,
        calibrator=calibrator or {},
        created_at=at,
    )


def _decisions(
    segment: str, routes: list[str], *, policy: str, predicted: str = "business"
) -> list[RoutingDecision]:
    prefix = segment[0]
    return [
        RoutingDecision(
            item_id=f"{prefix}{i}",
            segment=segment,
            route=route,
            policy_version=policy,
            model_version="m1",
            predicted_label=predicted,
            calibrated_confidence=0.95,
            # each automated item was drawn for audit with probability 1/2: its audit weighs 2
            inclusion_probability=0.5 if route in ("auto_accept", "spot_check") else None,
            created_at=T0 + timedelta(hours=1),
        )
        for i, route in enumerate(routes)
    ]


def populate(engine: Engine) -> None:
    document = DEFAULT_POLICY.read_text(encoding="utf-8")
    policy_hash = Policy.from_yaml(document).content_hash()
    old_document = document.replace("auto_accept_threshold: 0.9", "auto_accept_threshold: 0.8")
    with session_scope(engine) as session:
        session.add_all(
            [
                PolicyVersion(
                    version="old-inactive",
                    name="default",
                    document=old_document,
                    active=False,
                    created_at=T0 + timedelta(days=2),
                ),
                PolicyVersion(
                    version="old-active",
                    name="default",
                    document=old_document,
                    author="bob",
                    active=True,
                    created_at=T0 - timedelta(days=1),
                ),
                PolicyVersion(
                    version=policy_hash,
                    name="default",
                    document=document,
                    author="alice",
                    comment="tighter finance review",
                    active=True,
                    created_at=T0,
                ),
            ]
        )
        session.add_all(
            [
                ModelVersion(
                    version="m0",
                    kind="sklearn",
                    status="retired",
                    metrics={"accuracy": 0.8},
                    train_size=100,
                    created_at=T0 - timedelta(days=3),
                ),
                ModelVersion(
                    version="m1",
                    kind="sklearn",
                    status="promoted",
                    metrics={"accuracy": 0.86},
                    train_size=200,
                    parent_version="m0",
                    created_at=T0 - timedelta(days=2),
                ),
                ModelVersion(
                    version="m2",
                    kind="sklearn",
                    status="candidate",
                    metrics={},
                    train_size=300,
                    parent_version="m1",
                    created_at=T0 - timedelta(days=1),
                ),
            ]
        )
        items = [Item(id=f"d{i}", segment="default", state="routed") for i in range(10)]
        items += [Item(id=f"f{i}", segment="finance", state="routed") for i in range(4)]
        items += [Item(id="n0", segment="news", state="queued")]
        session.add_all(items)
        session.flush()
        good = calibration_report(400, power=1.0, seed=1)
        session.add_all(
            [
                _report_row(
                    "m1",
                    "default",
                    calibration_report(120, power=3.0, seed=2),
                    passed=False,
                    reasons=["calibration_ece_above_limit"],
                    at=T0 - timedelta(hours=5),
                    data_hash="a",
                    calibrator=M1_DEFAULT_OLD_CALIBRATOR,
                ),
                _report_row(
                    "m1",
                    "default",
                    good,
                    passed=True,
                    reasons=[],
                    at=T0 - timedelta(hours=1),
                    data_hash="b",
                    calibrator=M1_DEFAULT_CALIBRATOR,
                ),
                _report_row(
                    "m1",
                    "finance",
                    calibration_report(30, power=1.0, seed=3),
                    passed=False,
                    reasons=["calibration_too_few_samples"],
                    at=T0 - timedelta(hours=1),
                    data_hash="c",
                ),
                _report_row("m2", "default", good, passed=True, reasons=[], at=T0, data_hash="d"),
            ]
        )
        # d8 was first auto-accepted by m0; a newer decision sent it to review, and only the newest counts
        session.add(
            RoutingDecision(
                item_id="d8",
                segment="default",
                route="auto_accept",
                policy_version="old-active",
                model_version="m0",
                predicted_label="business",
                created_at=T0,
            )
        )
        session.flush()
        session.add_all(
            [
                Prediction(item_id=item_id, model_version="m1", label="business", confidence=confidence)
                for item_id, confidence in M1_CONFIDENCE.items()
            ]
        )
        # another model's prediction on a labelled item: not the promoted model, never counted
        session.add(Prediction(item_id="d6", model_version="m0", label="sport", confidence=0.2))
        session.flush()
        default_routes = ["auto_accept"] * 6 + ["spot_check"] * 2 + ["review", "escalate"]
        session.add_all(_decisions("default", default_routes, policy=policy_hash))
        session.add_all(
            _decisions("finance", ["review", "review", "escalate", "spot_check"], policy=policy_hash)
        )
        session.flush()
        session.add_all(
            [
                Label(
                    item_id="d0",
                    label="business",
                    split="holdout",
                    source="annotation",
                    selection_reason="audit",
                ),
                Label(
                    item_id="d6",
                    label="sport",
                    split="holdout",
                    source="annotation",
                    selection_reason="audit",
                ),
                Label(
                    item_id="d7",
                    label="business",
                    split="holdout",
                    source="annotation",
                    selection_reason="audit",
                ),
                # wrong but chosen by active learning: never counts as an audit
                Label(
                    item_id="d1", label="tech", split="train", source="annotation", selection_reason="margin"
                ),
                # an audit label on an item whose newest decision is review: not an automated item
                Label(
                    item_id="d8", label="tech", split="holdout", source="annotation", selection_reason="audit"
                ),
            ]
        )
        session.add_all(
            [
                ReviewTask(item_id="d8", selection_reason="uncertainty", state="pending"),
                ReviewTask(item_id="d9", selection_reason="escalate", state="pushed"),
                ReviewTask(item_id="d6", selection_reason="audit", state="done"),
                ReviewTask(item_id="f0", selection_reason="uncertainty", state="done"),
                ReviewTask(item_id="f1", selection_reason="uncertainty", state="pending"),
                ReviewTask(item_id="n0", selection_reason="uncertainty", state="pending"),
            ]
        )
        session.add_all(
            [
                CycleReport(
                    cycle=2,
                    model_version="m1",
                    policy_version=policy_hash,
                    figures={
                        "routed": 14,
                        "automation_rate": 0.6,
                        "queue": {"review": 3, "escalate": 2},
                        "model_version": "m1",
                    },
                    started_at=T0,
                    finished_at=T0 + timedelta(minutes=3),
                ),
                CycleReport(
                    cycle=1,
                    model_version="m0",
                    policy_version="old-active",
                    figures={"routed": 10, "automation_rate": 0.5, "queue": {"review": 4}},
                    started_at=T0 - timedelta(days=1),
                ),
            ]
        )
