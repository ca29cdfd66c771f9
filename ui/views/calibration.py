"""Calibration page: per segment, the reliability diagram, the ECE with its interval, and the gate outcome."""

from __future__ import annotations

import streamlit as st

from ui import data, state
from ui.display import interval, reliability_chart

EMPTY = "No calibration reports yet — run `sluice cycle` once labelled audit data exists."


def render() -> None:
    st.title("Calibration")
    views = state.latest_calibration(state.database_url())
    if not views:
        st.info(EMPTY)
        return
    models = sorted({view.model_version for view in views})
    st.caption(f"Newest report per segment for model {', '.join(f'`{m}`' for m in models)}")
    for view in views:
        _segment(view, show_model=len(models) > 1)


def _segment(view: data.CalibrationView, *, show_model: bool) -> None:
    title = view.segment + (f" · model {view.model_version}" if show_model else "")
    st.subheader(title)
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
