"""Tests for ui.data on a real, migrated SQLite store: exact, hand-counted figures (see conftest's table)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sqlalchemy import update

from calibration.metrics import ReliabilityCurve
from store.models import ModelVersion
from services.audit import audit_estimates
from tests.ui.conftest import T0
from ui import data


def test_empty_store_gives_empty_results_not_errors(empty_engine) -> None:
    assert data.active_policy(empty_engine) is None
    figures = data.segment_figures(empty_engine)
    assert figures.empty and list(figures.columns) == data.SEGMENT_COLUMNS
    assert data.latest_calibration(empty_engine) == []
    assert data.model_history(empty_engine).empty
    assert data.cycle_history(empty_engine).empty
    overall = data.overall_figures(figures)
    assert (
        overall.routed == 0 and math.isnan(overall.automation_rate) and math.isnan(overall.audit_error_rate)
    )


def test_active_policy_is_the_newest_active_version_parsed(populated_engine) -> None:
    view = data.active_policy(populated_engine)
    assert view is not None
    assert view.version == view.policy.content_hash()
    assert (view.name, view.author, view.comment) == ("default", "alice", "tighter finance review")
    assert view.defaults.auto_accept_threshold == 0.9
    assert set(view.segments) == {"finance"}
    finance = view.segments["finance"]
    assert (finance.mode, finance.stakes, finance.regulated) == ("in_the_loop", "high", True)
    settings = data.policy_settings_frame(view, ["default", "news"]).set_index("segment")
    assert list(settings.index) == ["(defaults)", "default", "finance", "news"]
    assert (
        settings.loc["finance", "mode"] == "in_the_loop"
        and settings.loc["news", "calibration_max_ece"] == 0.1
    )


def test_segment_figures_count_latest_decisions_audits_and_open_reviews(populated_engine) -> None:
    figures = data.segment_figures(populated_engine).set_index("segment")
    assert list(figures.index) == ["default", "finance", "news"]
    counts = [
        "routed",
        "auto_accept",
        "spot_check",
        "review",
        "escalate",
        "audited",
        "open_reviews",
    ]
    assert figures.loc["default", counts].tolist() == [10, 6, 2, 1, 1, 3, 2]
    assert figures.loc["finance", counts].tolist() == [4, 0, 1, 2, 1, 0, 1]
    assert figures.loc["news", counts].tolist() == [0, 0, 0, 0, 0, 0, 1]
    assert figures.loc["default", "automation_rate"] == pytest.approx(0.8)
    assert figures.loc["finance", "automation_rate"] == pytest.approx(0.25)
    # the weighted estimate the flows record, not the share of audits: 1 wrong audit weighing 2, of 8 automated
    estimate = audit_estimates(populated_engine)["default"]
    assert figures.loc["default", "audit_error_rate"] == pytest.approx(2 / 8) == estimate["error_rate"]
    assert figures.loc["default", ["audit_error_low", "audit_error_high"]].tolist() == [estimate["lower"],
                                                                                        estimate["upper"]]
    assert figures.loc["default", "audit_error_low"] < 0.25 < figures.loc["default", "audit_error_high"]
    # nothing routed or audited is unknown, not 0 %
    assert math.isnan(figures.loc["news", "automation_rate"])
    assert math.isnan(figures.loc["finance", "audit_error_rate"])


def test_overall_figures_pool_items_over_segments(populated_engine) -> None:
    audit, gold = data.audit_overview(populated_engine)
    overall = data.overall_figures(data.segment_figures(populated_engine), audit)
    assert (overall.routed, overall.automated, overall.audited, overall.open_reviews) == (14, 9, 3, 4)
    assert overall.automation_rate == pytest.approx(9 / 14)
    # weighted over every segment: 1 wrong audit weighing 2, of 9 automated items
    assert overall.audit_error_rate == pytest.approx(2 / 9) and audit.n_population == 9
    assert overall.audit_error_low < 2 / 9 < overall.audit_error_high
    assert gold == {"error": None, "n": 0}  # no gold answers in this store


def test_wilson_interval_matches_the_textbook_value_and_is_nan_without_trials() -> None:
    low, high = data.wilson_interval([1, 0], [3, 0])
    # 1 of 3, z = 1.96: Wilson (0.0615, 0.7923)
    assert low[0] == pytest.approx(0.06149, abs=1e-4) and high[0] == pytest.approx(0.79234, abs=1e-4)
    assert np.isnan(low[1]) and np.isnan(high[1])


def test_latest_calibration_is_newest_per_segment_of_the_promoted_model(populated_engine) -> None:
    views = data.latest_calibration(populated_engine)
    assert [(v.model_version, v.segment) for v in views] == [("m1", "default"), ("m1", "finance")]
    default, finance = views
    assert default.passed and default.reasons == () and default.n == 400
    assert not finance.passed and finance.reasons == ("calibration_too_few_samples",) and finance.n == 30
    assert isinstance(default.curve, ReliabilityCurve) and default.curve.n_samples == 400
    assert default.ece_low <= default.ece_high
    bins = data.curve_frame(default.curve)
    assert int(bins["count"].sum()) == 400 and bins["accuracy"].notna().all()


def test_latest_calibration_falls_back_to_the_newest_reported_model(populated_engine) -> None:
    # a model just promoted has no report until the next calibrate run: the page shows the newest one with reports
    with populated_engine.begin() as connection:
        connection.execute(update(ModelVersion).values(status="retired"))
        connection.execute(ModelVersion.__table__.insert().values(version="m3", kind="sklearn", status="promoted",
                                                                 train_size=400, created_at=T0))
    assert data.promoted_version(populated_engine) == "m3"
    keys = [(v.model_version, v.segment) for v in data.latest_calibration(populated_engine)]
    assert keys == [("m2", "default")]  # m2's report (T0) is newer than any of m1's


def test_model_and_cycle_history(populated_engine) -> None:
    models = data.model_history(populated_engine)
    assert models["version"].tolist() == ["m0", "m1", "m2"]
    assert models["status"].tolist() == ["retired", "promoted", "candidate"]
    assert models["accuracy"].iloc[:2].tolist() == [0.8, 0.86] and math.isnan(models["accuracy"].iloc[2])
    cycles = data.cycle_history(populated_engine)
    assert cycles["cycle"].tolist() == [1, 2]
    assert cycles["routed"].tolist() == [10, 14]
    assert cycles["model_version"].tolist() == ["m0", "m1"]  # the row's column, not a duplicate from figures
    assert cycles["queue.review"].tolist() == [4, 3]
    assert math.isnan(cycles["queue.escalate"].iloc[0]) and cycles["queue.escalate"].iloc[1] == 2


def test_automation_bias_gap_per_model_version(tmp_path, monkeypatch):
    from store.db import dispose_engines, get_engine
    from store.models import Item, Label, ReviewTask
    from store.settings import get_settings
    from sqlmodel import Session
    from ui.data import automation_bias

    monkeypatch.setenv("SLUICE_HOME", str(tmp_path / "bias"))
    get_settings.cache_clear()
    dispose_engines()
    engine = get_engine()
    answers = [  # (blind, annotator's label); the model suggested "a" every time
        (False, "a"), (False, "a"), (False, "a"), (False, "b"),
        (True, "a"), (True, "b"), (True, "b"), (True, "a"),
    ]
    with Session(engine) as session:
        for k, (blind, label) in enumerate(answers):
            session.add(Item(id=f"i{k}", text="t"))
            session.add(ReviewTask(item_id=f"i{k}", selection_reason="margin", model_version="m-1",
                                   predicted_label="a", blind=blind))
            session.add(Label(item_id=f"i{k}", label=label, split="train", source="annotation",
                              selection_reason="margin"))
        session.add(Item(id="audit", text="t"))
        session.add(ReviewTask(item_id="audit", selection_reason="audit", model_version="m-1",
                               predicted_label="a", blind=True))
        session.add(Label(item_id="audit", label="b", split="holdout", source="annotation",
                          selection_reason="audit"))
        session.commit()
    frame = automation_bias(engine)
    row = frame.set_index("model_version").loc["m-1"]
    assert (row["shown"], row["blind"]) == (4, 4)
    assert row["shown_accept_rate"] == 0.75 and row["blind_agreement_rate"] == 0.5
    assert row["automation_bias_gap"] == pytest.approx(0.25) and row["override_rate"] == pytest.approx(0.25)
    dispose_engines()
    get_settings.cache_clear()
