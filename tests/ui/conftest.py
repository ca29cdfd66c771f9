"""Fixtures for the console tests: a real, migrated SQLite store under tmp_path, empty or populated by hand.

The populated store is small enough to count on paper (see `populate`):

| segment | routed | auto_accept | spot_check | review | escalate | audited (wrong) | open reviews |
|---------|--------|-------------|------------|--------|----------|-----------------|--------------|
| default | 10     | 6           | 2          | 1      | 1        | 3 (1)           | 2            |
| finance | 4      | 0           | 1          | 2      | 1        | 0               | 1            |
| news    | 0      | 0           | 0          | 0      | 0        | 0               | 1            |

Every automated decision had an inclusion probability of 1/2, so the weighted audit estimate of default is
2 x 1 wrong / 8 automated = 25 %, and over all segments 2 x 1 / 9 automated = 22.2 %.
"""

from __future__ import annotations

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
from store.settings import get_settings

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
