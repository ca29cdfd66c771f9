"""Tests for ui.data on real, migrated SQLite stores that real flow runs filled (see conftest): each figure against
the same figure counted with plain SQL beside it (tests/ui/expected.py) or recorded by the flows' cycle reports."""

from __future__ import annotations

import math

import numpy as np
import pytest

from calibration.metrics import ReliabilityCurve
from tests.ui import expected
from tests.ui.conftest import MORE_AUDITS, MORE_AUDITS_AUTHOR, MORE_AUDITS_COMMENT, answer_open_tasks
from ui import data

flows = pytest.mark.integration


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


@flows
def test_active_policy_is_the_newest_active_version_parsed(looped_engine) -> None:
    from routing.policy import Policy

    (newest,) = expected.rows(looped_engine, "SELECT version FROM policy_versions WHERE active "
                                             "ORDER BY created_at DESC, version DESC LIMIT 1")
    versions = expected.rows(looped_engine, "SELECT version FROM policy_versions")
    assert len(versions) == 2  # the first rules, then the version with more audits the loop moved on to
    view = data.active_policy(looped_engine)
    assert view is not None
    assert view.version == newest.version == Policy.from_yaml(MORE_AUDITS).content_hash()
    assert view.version == view.policy.content_hash()
    assert (view.name, view.author, view.comment) == ("console-test", MORE_AUDITS_AUTHOR, MORE_AUDITS_COMMENT)
    assert (view.defaults.auto_accept_threshold, view.defaults.spot_check_rate) == (0.8, 0.5)
    assert set(view.segments) == {"finance", "news"}
    finance = view.segments["finance"]
    assert (finance.mode, finance.stakes, finance.regulated) == ("in_the_loop", "high", True)
    settings = data.policy_settings_frame(view, ["default", "finance"]).set_index("segment")
    assert list(settings.index) == ["(defaults)", "default", "finance", "news"]
    assert settings.loc["finance", "mode"] == "in_the_loop" and settings.loc["default", "mode"] == "on_the_loop"
    assert settings.loc["news", "calibration_max_ece"] == 0.25  # the defaults' value, merged into the segment


@flows
def test_segment_figures_count_latest_decisions_audits_and_open_reviews(looped_engine) -> None:
    routes, reviews = expected.latest_routes(looped_engine), expected.open_tasks(looped_engine)
    audits = expected.audits(looped_engine)
    recorded = expected.recorded_audit(looped_engine)  # what the last cycle wrote when it finished
    figures = data.segment_figures(looped_engine).set_index("segment")
    assert list(figures.index) == sorted(set(routes) | set(reviews)) == ["default", "finance"]
    for segment in figures.index:
        counts = routes[segment]
        assert figures.loc[segment, "routed"] == sum(counts.values())
        for route in ("auto_accept", "spot_check", "review", "escalate"):
            assert figures.loc[segment, route] == counts[route], (segment, route)
        assert figures.loc[segment, "automation_rate"] == pytest.approx(
            expected.automated(counts) / sum(counts.values()))
        assert figures.loc[segment, "audited"] == sum(a.segment == segment for a in audits)
        assert figures.loc[segment, "open_reviews"] == reviews.get(segment, 0)
    # default auto-accepted and was audited, at two spot-check rates; finance's people reviewed everything
    default = [a for a in audits if a.segment == "default"]
    assert {a.inclusion_probability for a in default} == {0.2, 0.5} and any(a.wrong for a in default)
    assert figures.loc["finance", "automation_rate"] == 0.0 and figures.loc["finance", "audited"] == 0
    # the doubly robust estimate the flows record, not the share of audits that were wrong
    weighted = expected.audit_estimate(looped_engine, "default")
    assert weighted != pytest.approx(sum(a.wrong for a in default) / len(default))
    assert figures.loc["default", "audit_error_rate"] == pytest.approx(weighted)
    assert figures.loc["default", "audit_error_rate"] == pytest.approx(recorded["default"]["error_rate"])
    assert figures.loc["default", ["audit_error_low", "audit_error_high"]].tolist() == pytest.approx(
        [recorded["default"]["lower"], recorded["default"]["upper"]])
    assert figures.loc["default", "audit_error_low"] < weighted < figures.loc["default", "audit_error_high"]
    # nothing audited is unknown, not 0 %
    assert "finance" not in recorded and math.isnan(figures.loc["finance", "audit_error_rate"])


@flows
def test_overall_figures_pool_items_over_segments(looped_engine) -> None:
    routes, audits = expected.latest_routes(looped_engine), expected.audits(looped_engine)
    routed = sum(sum(counts.values()) for counts in routes.values())
    automated = sum(expected.automated(counts) for counts in routes.values())
    audit, gold = data.audit_overview(looped_engine)
    overall = data.overall_figures(data.segment_figures(looped_engine), audit)
    assert (overall.routed, overall.automated, overall.audited, overall.open_reviews) == (
        routed, automated, len(audits), sum(expected.open_tasks(looped_engine).values()))
    assert overall.automation_rate == pytest.approx(automated / routed)
    # weighted over every segment's audits, of every automated item
    assert overall.audit_error_rate == pytest.approx(expected.audit_estimate(looped_engine))
    assert audit.n_population == automated
    assert overall.audit_error_low < overall.audit_error_rate < overall.audit_error_high
    assert not expected.rows(looped_engine, "SELECT 1 FROM review_tasks WHERE selection_reason = 'gold'")
    assert gold == {"error": None, "n": 0}  # the policy asks for no gold items


def test_wilson_interval_matches_the_textbook_value_and_is_nan_without_trials() -> None:
    low, high = data.wilson_interval([1, 0], [3, 0])
    # 1 of 3, z = 1.96: Wilson (0.0615, 0.7923)
    assert low[0] == pytest.approx(0.06149, abs=1e-4) and high[0] == pytest.approx(0.79234, abs=1e-4)
    assert np.isnan(low[1]) and np.isnan(high[1])


@flows
def test_latest_calibration_is_newest_per_segment_of_the_promoted_model(looped_engine) -> None:
    promoted = expected.promoted(looped_engine)
    reports = expected.newest_reports(looped_engine, promoted)
    older = expected.rows(looped_engine, "SELECT 1 FROM calibration_reports WHERE model_version != :m", m=promoted)
    assert older, "earlier models' reports are in the store too"
    views = data.latest_calibration(looped_engine)
    assert [(v.model_version, v.segment) for v in views] == [(promoted, r.segment) for r in reports]
    assert [v.segment for v in views] == ["default", "finance"]
    for view, report in zip(views, reports):
        assert (view.passed, view.reasons, view.n) == (bool(report.passed), tuple(expected._json(report.reasons)),
                                                       report.n)
        assert (view.ece, view.ece_low, view.ece_high) == (report.ece, report.ece_low, report.ece_high)
        assert isinstance(view.curve, ReliabilityCurve) and view.curve.n_samples == report.n
        bins = data.curve_frame(view.curve)
        assert int(bins["count"].sum()) == report.n and bins["accuracy"].notna().all()
    default, finance = views
    assert default.passed and default.reasons == ()
    assert not finance.passed and "calibration_too_few_samples" in finance.reasons  # its own few held-out labels


@flows
def test_latest_calibration_falls_back_to_the_newest_reported_model(looped_engine, looped_store) -> None:
    """A model just promoted has no report until the next calibrate run: the page shows the newest one with
    reports. Here people answer the open tasks and the retrain flow promotes a model on their labels."""
    from flows.retrain import retrain_flow

    before = expected.promoted(looped_engine)
    answer_open_tasks(looped_engine, looped_store, cycle=expected.cycle_reports(looped_engine)[-1][0])
    assert retrain_flow()["status"] == "promoted"
    promoted = expected.promoted(looped_engine)
    assert promoted != before
    assert not expected.rows(looped_engine, "SELECT 1 FROM calibration_reports WHERE model_version = :m",
                             m=promoted)
    assert data.promoted_version(looped_engine) == promoted
    shown = expected.newest_reported_model(looped_engine)
    assert shown == before
    keys = [(v.model_version, v.segment) for v in data.latest_calibration(looped_engine)]
    assert keys == [(shown, r.segment) for r in expected.newest_reports(looped_engine, shown)]


@flows
def test_model_and_cycle_history(looped_engine) -> None:
    stored = expected.rows(looped_engine, "SELECT version, status, metrics FROM model_versions "
                                          "ORDER BY created_at, version")
    models = data.model_history(looped_engine)
    assert models["version"].tolist() == [r.version for r in stored]
    assert models["status"].tolist() == [r.status for r in stored]
    assert models["status"].tolist().count("promoted") == 1 and "retired" in models["status"].tolist()
    assert models["accuracy"].tolist() == pytest.approx([expected._json(r.metrics)["accuracy"] for r in stored])
    reports = expected.cycle_reports(looped_engine)
    cycles = data.cycle_history(looped_engine)
    assert cycles["cycle"].tolist() == [cycle for cycle, _, _ in reports] == [1, 2, 3, 4]
    assert cycles["routed"].tolist() == [figures["routed"] for _, _, figures in reports]
    # the row's column (the model that routed the cycle), not the figure of the same name (the one promoted at
    # its end): a retrain between them makes the two differ
    assert cycles["model_version"].tolist() == [model for _, model, _ in reports]
    assert any(model != figures["model_version"] for _, model, figures in reports)
    for route in ("auto_accept", "spot_check", "review"):
        counts = [figures["routes"].get(route) for _, _, figures in reports]
        shown = cycles[f"routes.{route}"].tolist()
        assert [None if isinstance(v, float) and math.isnan(v) else v for v in shown] == counts, route


@flows
def test_automation_bias_of_the_loop_matches_the_answers(looped_engine) -> None:
    """Per model: annotators' answers on shown and blind tasks (audits and escalations aside), as the flows stored."""
    answers = expected.rows(looped_engine, """
        SELECT t.model_version, t.blind, l.label = t.predicted_label AS agrees FROM review_tasks t
        JOIN labels l ON l.item_id = t.item_id
        WHERE l.source = 'annotation' AND t.predicted_label IS NOT NULL
          AND t.selection_reason NOT IN ('audit', 'escalation')""")
    assert answers
    frame = data.automation_bias(looped_engine).set_index("model_version")
    assert len(frame) >= 2 and sorted(frame.index) == sorted({a.model_version for a in answers})
    for version, row in frame.iterrows():
        shown = [a.agrees for a in answers if a.model_version == version and not a.blind]
        blind = [a.agrees for a in answers if a.model_version == version and a.blind]
        assert (row["shown"], row["blind"]) == (len(shown), len(blind))
        assert row["shown_accept_rate"] == pytest.approx(np.mean(shown))
        assert row["blind_agreement_rate"] == pytest.approx(np.mean(blind))
        assert row["automation_bias_gap"] == pytest.approx(np.mean(shown) - np.mean(blind))
    assert (frame["blind"] > 0).all() and (frame["shown"] > 0).all()  # the policy's blind share at work


def test_automation_bias_gap_per_model_version(tmp_path, monkeypatch):
    """A hand-computed exact case of the gap: rows written by hand, named so."""
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
