"""The What-if page: its chart scales to its data, its slider is used, and on a store that real flow runs filled its
figures are exactly the policy preview's (``services.preview``) at the measured arrival rate, per day."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from routing.policy import SegmentPolicy
from routing.whatif import what_if
from store.vocab import Role
from tests.flows.conftest import dataset_files  # noqa: F401  (fixture)
from ui.auth import SESSION_KEY, SignedIn
from ui.views.whatif import fixed_threshold, whatif_chart

APP = str(Path(__file__).resolve().parents[2] / "ui" / "app.py")


def _y_domains(chart) -> list[list[float]]:
    spec = chart.to_dict()
    return [panel["layer"][0]["encoding"]["y"]["scale"]["domain"] for panel in spec["vconcat"]]


def test_each_panel_scales_its_y_axis_to_its_curves() -> None:
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.9, 1.0, 400)  # errors of a few percent: flat on a 0-1 axis
    correct = rng.random(400) < 0.97
    curve = what_if(confidence, correct, items_per_cycle=100, seconds_per_item=30)
    automation, errors = _y_domains(whatif_chart(curve, 0.95, 0.92))
    assert automation[0] <= 0.0 + 1e-9 and automation[1] >= 1.0  # automation runs 0 .. 1 on this grid
    observed = np.concatenate([curve.expected_error, curve.empirical_error])
    observed = observed[~np.isnan(observed)]
    assert errors[0] <= observed.min() and observed.max() <= errors[1] < 0.2  # not [0, 1]


def test_a_fixed_threshold_replaces_a_target_and_keeps_the_other_rules() -> None:
    rules = SegmentPolicy(max_auto_error=0.05, confidence=0.9, review_threshold=0.6, stakes="high", spot_check_rate=0.2)
    fixed = fixed_threshold(rules, 0.5)
    assert (fixed.auto_accept_threshold, fixed.max_auto_error, fixed.confidence) == (0.5, None, None)
    assert (fixed.review_threshold, fixed.stakes, fixed.spot_check_rate) == (0.5, "high", 0.2)


def _metrics(at: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in at.metric}


@pytest.mark.integration
@pytest.mark.usefixtures("prefect_harness")
def test_the_page_shows_the_policy_preview_per_day_and_follows_the_slider(sluice_home, dataset_files, tmp_path):  # noqa: F811
    import streamlit as st

    from routing.preview import preview_segment
    from services.preview import preview_inputs
    from store import policies, registry
    from store.settings import get_settings
    from tests.flows.seeded import seed_then_loop

    engine = seed_then_loop(get_settings(), *dataset_files, tmp_path, cycles=3, batch_size=150)
    inputs = preview_inputs(engine, "default")
    policy, _ = policies.active_policy(engine)
    try:
        at = AppTest.from_file(APP, default_timeout=120)
        at.session_state[SESSION_KEY] = SignedIn("ops", Role.VIEWER, "password")  # every page needs an account
        at.run().switch_page("views/whatif.py").run()
        assert not at.exception, [e.value for e in at.exception]
        captions = " ".join(c.value for c in at.caption)
        assert f"{inputs.arrivals.items:,} items arrived in cycles 2–3" in captions
        assert f"{inputs.arrivals.per_day:,.0f} a day" in captions and f"model `{inputs.model_version}`" in captions
        for threshold in (0.5, 0.8):
            at.slider[0].set_value(threshold).run()
            assert not at.exception, [e.value for e in at.exception]
            expected = preview_segment(inputs.confidence, inputs.correct,
                                       rules=fixed_threshold(policy.for_segment("default"), threshold),
                                       arrivals_per_day=inputs.arrivals_per_day, calibrated=inputs.calibrated)
            shown = _metrics(at)
            assert shown["Automation rate"] == f"{expected.automation_rate:.1%}"
            assert shown["Review volume / day"] == f"{expected.review_per_day:,.0f}"
            assert shown["Reviewer hours / day"] == f"{expected.reviewer_hours_per_day:,.1f}"
            # per day at the measured arrivals, not the review budget per cycle
            assert expected.review_per_day >= inputs.arrivals_per_day * (1 - expected.automation_rate)
        spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
        assert spec["vconcat"][1]["layer"][0]["encoding"]["y"]["scale"]["domain"][1] < 1.0

        # a model just promoted has scored nothing: the page shows the one that did, and says so
        registry.register_model(engine, {"version": "just-promoted", "kind": "text", "data_hash": "x"})
        registry.promote_model(engine, "just-promoted")
        st.cache_data.clear()
        at.run()
        assert not at.exception and at.metric
        captions = " ".join(c.value for c in at.caption)
        assert f"model `{inputs.model_version}` (`just-promoted` routes now but has not scored" in captions
    finally:
        st.cache_data.clear()
        st.cache_resource.clear()
