"""What-if page: what a segment's policy, and any other fixed auto-accept threshold, would do to automation, the
error of auto-accepted items and the reviewers' load per day, previewed by ``services.preview`` (as the policy
editor previews a change) on the held-out labels and the segment's measured arrival rate."""

from __future__ import annotations

import math

import altair as alt
import pandas as pd
import streamlit as st

from routing.policy import SegmentPolicy
from routing.preview import SegmentPreview, preview_segment
from routing.whatif import WhatIfCurve, what_if
from services.preview import PreviewInputs, preview_from
from ui import state
from ui.display import interval, percent

EMPTY_POLICY = "No active policy yet — activate one with the `sluice` CLI to explore thresholds."
EMPTY_SEGMENTS = "No segments yet — run `sluice cycle` to score and route items."
SERIES = {"expected_error": "expected error (calibrated)", "empirical_error": "error on held-out labels"}


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
    inputs = state.preview_inputs(url, segment)
    if inputs.missing is not None:
        st.info(f"Nothing to preview yet: {inputs.missing}.")
        return
    _basis(inputs, state.promoted_version(url))
    policy = preview_from(inputs, view.policy)
    st.markdown(f"**Policy now** — threshold {_threshold(policy)} ({policy.threshold_kind}): "
                f"{policy.threshold_reason}.")
    settings = view.for_segment(segment)
    start = policy.threshold if policy.threshold is not None else settings.auto_accept_threshold
    threshold = st.slider("Auto-accept threshold (fixed)", min_value=0.01, max_value=1.0,
                          value=float(round(start, 2)), step=0.01, key=f"whatif_threshold_{segment}")
    per_day = inputs.arrivals_per_day
    assert per_day is not None  # `missing` was None
    chosen = preview_segment(inputs.confidence, inputs.correct, rules=fixed_threshold(settings, threshold),
                             arrivals_per_day=per_day, calibrated=inputs.calibrated)
    if chosen.reason is not None:
        st.info(f"Nothing to preview at this threshold: {chosen.reason}; each `sluice cycle` adds audits.")
        return
    _metrics(chosen)
    curve = what_if(inputs.confidence if inputs.calibrated is None else inputs.calibrated, inputs.correct,
                    items_per_cycle=per_day, seconds_per_item=settings.seconds_per_item,
                    spot_check_rate=settings.spot_check_rate)
    st.altair_chart(whatif_chart(curve, policy.threshold, threshold), width="stretch")


def fixed_threshold(settings: SegmentPolicy, threshold: float) -> SegmentPolicy:
    """The segment's rules with a fixed `threshold` in place of any target (its other rules, people-only ones
    included, kept)."""
    review = settings.review_threshold
    return SegmentPolicy.model_validate({
        **settings.model_dump(), "auto_accept_threshold": threshold, "max_auto_error": None, "confidence": None,
        "review_threshold": None if review is None else min(review, threshold)})


def _threshold(preview: SegmentPreview) -> str:
    return "none" if preview.threshold is None else f"{preview.threshold:.3f}"


def _basis(inputs: PreviewInputs, routing_now: str) -> None:
    arrivals = inputs.arrivals
    assert arrivals is not None  # `missing` was None
    model = f"model `{inputs.model_version}`"
    if inputs.model_version != routing_now:
        model += (f" (`{routing_now}` routes now but has not scored the held-out labels yet: the next `sluice cycle` "
                  "does)")
    calibrated = "calibrated out of fold" if inputs.calibrated is not None else "raw (no calibration report yet)"
    st.caption(
        f"{inputs.confidence.size:,} certifying labels of {model} (held out, or audits of its own decisions), "
        f"confidences {calibrated} · "
        f"{arrivals.items:,} items arrived in cycles {arrivals.first_cycle}–{arrivals.last_cycle} over "
        f"{arrivals.hours:,.2f} h: {arrivals.per_day:,.0f} a day"
    )


def _metrics(preview: SegmentPreview) -> None:
    automation, error, volume, hours = st.columns(4)
    automation.metric("Automation rate", percent(preview.automation_rate),
                      help=f"{preview.n_auto} of {preview.n_labels} held-out labelled items at or above the threshold")
    error.metric("Error of auto-accepted", percent(preview.expected_error),
                 help=f"{preview.n_errors} wrong of {preview.n_auto} held-out labelled items auto-accepted; "
                      f"{preview.interval_confidence:.0%} Clopper-Pearson interval "
                      f"{interval(preview.error_low, preview.error_high)}")
    volume.metric("Review volume / day", f"{preview.review_per_day:,.0f}",
                  help="arrivals not auto-accepted, plus the spot-checked share of those that are")
    hours.metric("Reviewer hours / day", f"{preview.reviewer_hours_per_day:,.1f}")
    notes = [] if math.isnan(preview.expected_error) else [
        f"Error of auto-accepted {preview.interval_confidence:.0%} interval: "
        f"{interval(preview.error_low, preview.error_high)}"]
    if preview.over_budget_per_day > 0:
        notes.append(f"{preview.over_budget_per_day:,.0f} reviews a day beyond the review budget "
                     f"({preview.review_budget_per_day:,.0f} a day) would pile up in the backlog")
    if notes:
        st.caption(" · ".join(notes))


def _y_scale(values: pd.Series) -> alt.Scale:
    """The y axis spans the data, not [0, 1]: error curves of a few percent would lie flat on a unit axis."""
    if values.empty:
        return alt.Scale(domain=[0.0, 1.0])
    low, high = float(values.min()), float(values.max())
    pad = (high - low) * 0.05 or max(abs(high) * 0.05, 0.005)
    return alt.Scale(domain=[max(0.0, low - pad), high + pad], nice=False, zero=False)


def whatif_chart(curve: WhatIfCurve, current: float | None, chosen: float) -> alt.VConcatChart:
    """Automation rate (top) and the errors of auto-accepted items (bottom) against the threshold, each y axis
    scaled to its curves; a rule at the policy's threshold (solid, when it has one) and the chosen one (dashed)."""
    x = alt.X("threshold:Q", scale=alt.Scale(domain=[0, 1]), title="auto-accept threshold")
    automation = pd.DataFrame({"threshold": curve.thresholds, "value": curve.automation_rate})
    errors = (pd.DataFrame({"threshold": curve.thresholds, **{k: getattr(curve, k) for k in SERIES}})
              .rename(columns=SERIES).melt(id_vars=["threshold"], var_name="series", value_name="value")
              .dropna(subset=["value"]))
    top = alt.Chart(automation).mark_line().encode(
        x=x, y=alt.Y("value:Q", scale=_y_scale(automation["value"]), title="automation rate"),
        tooltip=["threshold:Q", alt.Tooltip("value:Q", format=".3f")])
    bottom = alt.Chart(errors).mark_line().encode(
        x=x, y=alt.Y("value:Q", scale=_y_scale(errors["value"]), title="error of auto-accepted"),
        color=alt.Color("series:N", title=None),
        tooltip=["threshold:Q", "series:N", alt.Tooltip("value:Q", format=".3f")])
    rules = pd.DataFrame({"threshold": [chosen] + ([] if current is None else [current]),
                          "rule": ["chosen"] + ([] if current is None else ["policy"])})
    marks = alt.Chart(rules).mark_rule().encode(
        x="threshold:Q", strokeDash=alt.StrokeDash("rule:N", title=None), tooltip=["rule:N", "threshold:Q"])
    return alt.vconcat((top + marks).properties(height=180), (bottom + marks).properties(height=220))


if __name__ == "__main__":  # Streamlit runs a page file as __main__; importing it runs nothing
    render()
