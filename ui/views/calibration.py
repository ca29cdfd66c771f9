"""Calibration page: per segment, the reliability diagram, the ECE with its interval, and the gate outcome."""

from __future__ import annotations

import streamlit as st

from ui import data, state
from ui.display import interval, reliability_chart

EMPTY = "No calibration reports yet — run `sluice cycle` once labelled audit data exists."
NOT_YET = ("Model `{routing_now}` routes now but has no calibration report yet: the next `sluice cycle` (or `sluice "
           "score` then `sluice calibrate`) scores its held-out labels and calibrates it. Shown meanwhile: `{shown}`, "
           "the most recent model with reports.")


def render() -> None:
    st.title("Calibration")
    url = state.database_url()
    views = state.latest_calibration(url)
    if not views:
        st.info(EMPTY)
        return
    shown, routing_now = views[0].model_version, state.promoted_version(url)
    st.caption(f"Newest report per segment for model `{shown}`")
    if shown != routing_now:
        st.info(NOT_YET.format(routing_now=routing_now, shown=shown))
    for view in views:
        _segment(view)


def _segment(view: data.CalibrationView) -> None:
    st.subheader(view.segment)
    ece, samples, method = st.columns(3)
    ece.metric(
        "ECE", f"{view.ece:.3f}", help=f"95 % bootstrap interval {interval(view.ece_low, view.ece_high)}"
    )
    samples.metric("Labelled items", f"{view.n:,}")
    method.metric("Recalibrator", view.method)
    st.caption(
        f"ECE 95 % interval {interval(view.ece_low, view.ece_high)} · "
        f"report of {view.created_at:%Y-%m-%d %H:%M}"
    )
    if view.passed:
        st.success("Calibration gate passed")
    else:
        st.error(
            "Calibration gate failed: " + (", ".join(f"`{r}`" for r in view.reasons) or "no reason recorded")
        )
    if view.curve is None:
        st.warning("This report carries no reliability curve.")
    else:
        st.altair_chart(reliability_chart(view.curve), width="stretch")


if __name__ == "__main__":  # Streamlit runs a page file as __main__; importing it runs nothing
    render()
