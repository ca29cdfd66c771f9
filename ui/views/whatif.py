"""What-if page: what a segment's candidate auto-accept thresholds would do to automation, error, load."""

from __future__ import annotations

import math

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from routing.whatif import WhatIfCurve
from ui import data, state
from ui.display import interval, percent

EMPTY_POLICY = "No active policy yet — activate one with the `sluice` CLI to explore thresholds."
EMPTY_SEGMENTS = "No segments yet — run `sluice cycle` to score and route items."
EMPTY_LABELS = (
    "No unbiased held-out labels (seed, audit or gold) for this segment and model yet — "
    "the what-if curve needs them."
)
SERIES = {
    "automation_rate": "automation rate",
    "expected_error": "expected error",
    "empirical_error": "empirical error",
}


@st.cache_data(ttl=state.CACHE_SECONDS, show_spinner=False)
def _curve(
    url: str, segment: str, items_per_cycle: float, seconds_per_item: float, spot_check_rate: float
) -> tuple[WhatIfCurve | None, int]:
    return data.what_if_curve(
        state.engine(),
        segment,
        items_per_cycle=items_per_cycle,
        seconds_per_item=seconds_per_item,
        spot_check_rate=spot_check_rate,
    )


def render() -> None:
    st.title("What-if")
    url = state.database_url()
    view = state.active_policy(url)
    if view is None:
        st.info(EMPTY_POLICY)
        return
    segments = sorted(set(state.segment_figures(url)["segment"]) | set(view.segments))
    if not segments:
        st.info(EMPTY_SEGMENTS)
        return
    segment = st.selectbox("Segment", segments, key="whatif_segment")
    settings = view.for_segment(segment)
    items_per_cycle = float(settings.review_budget)
    curve, n_labelled = _curve(
        url, segment, items_per_cycle, float(settings.seconds_per_item), float(settings.spot_check_rate)
    )
    if curve is None:
        st.info(EMPTY_LABELS)
        return
    current = float(settings.auto_accept_threshold)
    threshold = st.slider(
        "Auto-accept threshold",
        min_value=0.0,
        max_value=1.0,
        value=round(current, 2),
        step=0.01,
        key=f"whatif_threshold_{segment}",
    )
    st.caption(
        f"{n_labelled:,} labelled items · policy threshold {current:.2f} · "
        f"{settings.review_budget:,} items per cycle (review budget) · spot-check rate "
        f"{percent(settings.spot_check_rate)} · {settings.seconds_per_item:g} s per item"
    )
    _metrics(curve, threshold)
    st.altair_chart(whatif_chart(curve, current, threshold), width="stretch")


def _at(curve: WhatIfCurve, threshold: float) -> int:
    """Index of the grid threshold nearest `threshold`."""
    return int(np.argmin(np.abs(curve.thresholds - threshold)))


def _metrics(curve: WhatIfCurve, threshold: float) -> None:
    i = _at(curve, threshold)
    automation, expected, empirical, volume, hours = st.columns(5)
    automation.metric(
        "Automation rate",
        percent(float(curve.automation_rate[i])),
        help=f"{int(curve.n_auto[i])} of {curve.n_items} labelled items at or above the threshold",
    )
    expected.metric(
        "Expected error", percent(float(curve.expected_error[i])), help="mean of 1 − calibrated confidence"
    )
    low, high = float(curve.empirical_error_lower[i]), float(curve.empirical_error_upper[i])
    empirical.metric(
        "Empirical error",
        percent(float(curve.empirical_error[i])),
        help=f"{int(curve.n_labelled_auto[i])} labelled auto-accepted items; "
        f"{curve.interval_confidence:.0%} Clopper-Pearson interval {interval(low, high)}",
    )
    volume.metric("Review volume / cycle", f"{curve.review_volume[i]:,.1f}")
    hours.metric("Reviewer hours / cycle", f"{curve.reviewer_hours[i]:,.2f}")
    if not math.isnan(float(curve.empirical_error[i])):
        st.caption(f"Empirical error {curve.interval_confidence:.0%} interval: {interval(low, high)}")


def whatif_chart(curve: WhatIfCurve, current: float, chosen: float) -> alt.LayerChart:
    """Automation rate and expected/empirical error against threshold; a rule at the policy's threshold
    (solid) and at the chosen one (dashed)."""
    wide = pd.DataFrame({"threshold": curve.thresholds, **{k: getattr(curve, k) for k in SERIES}})
    long = (
        wide.rename(columns=SERIES)
        .melt(id_vars=["threshold"], var_name="series", value_name="value")
        .dropna(subset=["value"])
    )
    scale = alt.Scale(domain=[0, 1])
    lines = (
        alt.Chart(long)
        .mark_line()
        .encode(
            x=alt.X("threshold:Q", scale=scale, title="auto-accept threshold"),
            y=alt.Y("value:Q", scale=scale, title="rate"),
            color=alt.Color("series:N", title=None),
            tooltip=["threshold:Q", "series:N", alt.Tooltip("value:Q", format=".3f")],
        )
    )
    rules = pd.DataFrame({"threshold": [current, chosen], "rule": ["policy", "chosen"]})
    policy_rule = (
        alt.Chart(rules.iloc[[0]])
        .mark_rule(color="black")
        .encode(x="threshold:Q", tooltip=["rule:N", "threshold:Q"])
    )
    chosen_rule = (
        alt.Chart(rules.iloc[[1]])
        .mark_rule(color="gray", strokeDash=[4, 4])
        .encode(x="threshold:Q", tooltip=["rule:N", "threshold:Q"])
    )
    return (lines + policy_rule + chosen_rule).properties(height=320)


if __name__ == "__main__":  # Streamlit runs a page file as __main__; importing it runs nothing
    render()
