"""Models & cycles page: each model version's accuracy and status, each flywheel cycle's figures."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ui import state
from ui.display import accuracy_chart, cycle_chart

EMPTY_MODELS = "No models yet — run `sluice cycle` to train and register one."
EMPTY_CYCLES = "No cycles yet — run `sluice cycle`."
# figures on a 0-1 scale that `sluice cycle` records; charted by default, counts only on request
RATE_FIGURES = ("automation_rate", "holdout_accuracy", "ece")


EMPTY_BIAS = "No annotated review tasks with a suggestion yet."
EMPTY_GOLD = "No gold items answered yet (set `gold_share` in the policy)."
EMPTY_AGREEMENT = "No item answered by several annotators yet (set `overlap_share` in the policy)."


def render() -> None:
    st.title("Models & cycles")
    url = state.database_url()
    _models(state.model_history(url))
    st.divider()
    _cycles(state.cycle_history(url))
    st.divider()
    _people(state.automation_bias(url), state.annotator_accuracy(url))
    _agreement(*state.agreement_tables(url))


def _models(models: pd.DataFrame) -> None:
    st.subheader("Model versions")
    if models.empty:
        st.info(EMPTY_MODELS)
        return
    promoted = models.loc[models["status"] == "promoted", "version"]
    st.metric("Promoted model", promoted.iloc[-1] if len(promoted) else "none")
    if models["accuracy"].notna().any():
        st.altair_chart(accuracy_chart(models), width="stretch")
    st.dataframe(models, hide_index=True, width="stretch")


def _cycles(cycles: pd.DataFrame) -> None:
    st.subheader("Cycles")
    if cycles.empty:
        st.info(EMPTY_CYCLES)
        return
    numeric = [c for c in cycles.columns if c != "cycle" and pd.api.types.is_numeric_dtype(cycles[c])]
    if numeric:
        rates = [c for c in RATE_FIGURES if c in numeric]
        chosen = st.multiselect(
            "Figures to chart", numeric, default=rates or numeric[:4], key="cycle_figures"
        )
        if chosen:
            st.altair_chart(cycle_chart(cycles, chosen), width="stretch")
    st.dataframe(cycles, hide_index=True, width="stretch")


def _people(bias: pd.DataFrame, accuracy: pd.DataFrame) -> None:
    st.subheader("People in the loop")
    st.caption("Automation bias: how often annotators accept the model's suggestion when shown, against how often "
               "their unseen answer agrees with it on blind tasks drawn from the same selection. Gold accuracy: "
               "answers on items whose label is known.")
    if bias.empty:
        st.info(EMPTY_BIAS)
    else:
        st.dataframe(bias, hide_index=True, width="stretch")
    if accuracy.empty:
        st.info(EMPTY_GOLD)
    else:
        st.dataframe(accuracy, hide_index=True, width="stretch")


def _agreement(segments: pd.DataFrame, pairs: pd.DataFrame) -> None:
    st.subheader("Agreement")
    st.caption("Items several annotators answered (the policy's `overlap_share`): Fleiss' kappa and "
               "Krippendorff's alpha per segment, Cohen's kappa per pair of annotators. Items below the policy's "
               "`min_agreement` went to the expert queue instead of the training set.")
    if segments.empty:
        st.info(EMPTY_AGREEMENT)
        return
    st.dataframe(segments, hide_index=True, width="stretch")
    st.dataframe(pairs, hide_index=True, width="stretch")


if __name__ == "__main__":  # Streamlit runs a page file as __main__; importing it runs nothing
    render()
