"""Overview page: the active policy and each segment's routing, automation and audited error figures."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from routing.active_inference import ErrorInterval
from services.audit import MIN_GOLD_FOR_CORRECTION
from ui import data, state
from ui.display import MISSING, percent, trend_chart

EMPTY_POLICY = "No active policy yet — activate one (e.g. `policies/default.yaml`) with the `sluice` CLI."
EMPTY_ROUTING = "Nothing routed yet — run `sluice cycle` to score and route items."
EMPTY_TRENDS = "No cycle has routed items yet: `sluice cycle` (or the hourly deployment) records one per run."


def render() -> None:
    st.title("Overview")
    url = state.database_url()
    figures = state.segment_figures(url)
    _halted_banner(state.guard_halts(url))
    _calibration_banner(state.calibration_flags(url))
    _policy_summary(state.active_policy(url), list(figures["segment"]))
    st.divider()
    if figures.empty:
        st.info(EMPTY_ROUTING)
        return
    audit, gold = state.audit_overview(url)
    _overall_metrics(data.overall_figures(figures, audit), audit)
    _annotator_error_note(gold)
    st.subheader("Per segment")
    st.dataframe(_segment_table(figures), hide_index=True, width="stretch")
    _certifications(state.certifications(url))
    _review_queue(state.queue_age(url))
    _trends(state.segment_trends(url))
    _people(state.automation_bias(url), state.agreement_tables(url)[0])


def _halted_banner(halts: pd.DataFrame) -> None:
    """Segments whose live guard halted automation, at the top: the audits of what was auto-accepted showed
    the target exceeded, so they route everything to people until a new model routes them."""
    active = halts[halts["active"]]
    for row in active.itertuples():
        st.error(
            f"**{row.segment}**: automation halted by the live guard — {row.n_errors} of {row.n_audited} audited "
            f"auto-accepted items were wrong (e-value {row.e_value:.1f} ≥ 1/δ = {1 / row.delta:.0f}), so the "
            f"error of auto-accepted items exceeds the target {row.alpha:g}. Model `{row.model_version}` no longer "
            "auto-accepts here; a newly promoted model starts a fresh test.",
            icon="🛑",
        )


def _calibration_banner(flags: list[data.SegmentFlag]) -> None:
    """Segments whose last route run sent items to people because their calibration does not stand."""
    for flag in flags:
        st.warning(f"**{flag.segment}**: {flag.affected:,} of {flag.routed:,} items routed in cycle {flag.cycle} went "
                   f"to people because {flag.text}.", icon="⚠️")


def _certifications(found: pd.DataFrame) -> None:
    """What stood behind the newest cycle's certified thresholds: the estimate, its one-sided bound and the labels
    of each kind, as the route flow recorded them in the cycle report."""
    st.subheader("Certified thresholds")
    if found.empty:
        st.caption("No segment with a target (`max_auto_error`, `confidence`) has been routed on a certified "
                   "threshold yet.")
        return
    table = found.assign(
        threshold=[MISSING if pd.isna(t) else f"{t:.4f}" for t in found["threshold"]],
        estimate=found["estimate"].map(percent),
        interval=[MISSING if pd.isna(bound) else f"0 – {percent(bound)}" for bound in found["error_upper_bound"]],
        target=[f"≤ {percent(a)} at {percent(1 - d)}" for a, d in zip(found["alpha"], found["delta"])],
        labels=[", ".join(f"{k} {v}" for k, v in sorted((by or {}).items())) or MISSING
                for by in found["labels_by_reason"]],
    )
    st.dataframe(table[["segment", "test", "threshold", "n", "n_accepted", "n_errors", "estimate", "interval",
                        "target", "labels", "decisions", "auto_accepted"]], hide_index=True, width="stretch")
    st.caption(
        f"Cycle {int(found['cycle'].iloc[0])}. A segment threshold is the lowest at which the error among items at "
        "or above it is certified within the target (Learn-then-Test, exact Clopper-Pearson): `n` labels were "
        "tested, `n_accepted` of them at or above the threshold, `n_errors` of those wrong; `estimate` is that "
        "share and `interval` the one-sided bound the guarantee rests on. `labels` says which kinds certified it: "
        "held-out seed, audit and gold labels, and every audit of the model's own decisions. A re-routed backlog "
        "is certified on its own audit sample (`n`: the population, `n_accepted`: the items auto-accepted "
        "above it). No threshold: nothing was certified and those items went to people.")


def _review_queue(waiting: pd.DataFrame) -> None:
    st.subheader("Review queue")
    if waiting.empty:
        st.caption("No review task waits for people.")
        return
    table = waiting.assign(oldest=[f"{hours:,.1f} h" for hours in waiting["oldest_hours"]])
    st.table(table[["segment", "queue", "waiting", "oldest"]], hide_index=True)
    st.caption("Tasks written or in Label Studio that no one has finished; `oldest` is how long the oldest waits. "
               "`sluice push` sends written ones, `sluice pull` brings answers back.")


def _trends(trends: pd.DataFrame) -> None:
    st.subheader("Over cycles")
    if trends.empty or trends["cycle"].nunique() < 1:
        st.info(EMPTY_TRENDS)
        return
    left, right = st.columns(2)
    left.altair_chart(trend_chart(trends, "automation_rate", title="automation"), width="stretch")
    audited = trends.dropna(subset=["audit_error"])
    if audited.empty:
        right.info("No audited error yet: each `sluice cycle` records the weighted estimate once audits of "
                   "auto-accepted items are answered.")
    else:
        right.altair_chart(trend_chart(audited, "audit_error", low="audit_low", high="audit_high",
                                       title="audited error of auto-accepted (95 % interval)"), width="stretch")
    st.altair_chart(trend_chart(trends, "backlog", title="review backlog (tasks)", rate=False), width="stretch")


def _people(bias: pd.DataFrame, agreement: pd.DataFrame) -> None:
    """The people side at a glance: automation bias of the newest model annotators saw, agreement per segment."""
    columns = st.columns(2)
    known = bias.dropna(subset=["automation_bias_gap"])
    if known.empty:
        columns[0].caption("Automation bias: no blind and shown tasks answered yet (`blind_share` in the policy).")
    else:
        last = known.iloc[-1]
        columns[0].metric("Automation-bias gap", percent(float(last["automation_bias_gap"])),
                          help=f"model {last['model_version']}: accept rate when the suggestion is shown "
                               f"({percent(float(last['shown_accept_rate']))}) minus agreement when blind "
                               f"({percent(float(last['blind_agreement_rate']))})")
    if agreement.empty:
        columns[1].caption("Agreement: no item answered by several annotators yet (`overlap_share`).")
    else:
        lowest = agreement.sort_values("krippendorff_alpha").iloc[0]
        columns[1].metric("Agreement (Krippendorff's alpha, lowest segment)", f"{lowest['krippendorff_alpha']:.2f}",
                          help=f"segment {lowest['segment']}: {lowest['items']} items answered by several people")


def _policy_summary(view: data.PolicyView | None, segments: list[str]) -> None:
    st.subheader("Active policy")
    if view is None:
        st.info(EMPTY_POLICY)
        return
    st.markdown(
        f"**{view.name}** · version `{view.version}` · by {view.author} · "
        f"{view.created_at:%Y-%m-%d %H:%M}" + (f"  \n_{view.comment}_" if view.comment else "")
    )
    st.markdown("\n".join(f"- {line}" for line in view.policy.guarantee_lines()))
    with st.expander("Effective settings per segment", expanded=False):
        st.dataframe(data.policy_settings_frame(view, segments), hide_index=True, width="stretch")


def _overall_metrics(overall: data.OverallFigures, audit: ErrorInterval | None) -> None:
    routed, automation, error, reviews = st.columns(4)
    routed.metric("Items routed", f"{overall.routed:,}")
    automation.metric(
        "Automation rate",
        percent(overall.automation_rate),
        help="(auto-accepted + spot-checked) / routed, latest decision per item",
    )
    error.metric(
        "Auto-accept error (audited)",
        percent(overall.audit_error_rate),
        help=MISSING if audit is None else _audit_method(audit),
    )
    reviews.metric("Open review tasks", f"{overall.open_reviews:,}")
    if audit is not None and audit.reason:
        st.caption(f"No audit estimate of the auto-accepted items: {audit.reason}.")
    elif audit is not None:
        st.caption(f"Auto-accept error {percent(overall.audit_error_rate)}, 95 % interval "
                   f"{percent(overall.audit_error_low)} – {percent(overall.audit_error_high)}, from "
                   f"{audit.n_labelled} audits of {audit.n_population:,} automated items"
                   + (f"; {audit.n_missing} audits await their labels, and the interval counts each of them both "
                      "ways until it is back." if audit.n_missing else "."))


def _audit_method(audit: ErrorInterval) -> str:
    """How the audit estimate was made, in a sentence an operator can check."""
    return (f"{audit.n_labelled} audits of {audit.n_population:,} automated items, {audit.n_errors} of them wrong. "
            "Doubly robust estimate: each item's calibrated confidence predicts its error, and each audit corrects "
            "that prediction, weighted by 1 / the chance the item had of an audit (and by the share of its batch's "
            "audits back, while some are pending). The interval's ends are betting bounds, valid for any model and "
            "any number of items; an audit still pending counts as wrong for the upper end and right for the lower.")


def _annotator_error_note(gold: dict) -> None:
    """Audited error compares the model with people, who err too: say how often, from their gold answers."""
    if not gold["n"]:
        st.caption("Audited error is the share of audits where people disagreed with the model. No gold answers "
                   "yet measure the annotators' own error (set `gold_share` in the policy).")
        return
    st.caption(
        f"Audited error is the share of audits where people disagreed with the model, not corrected here for "
        f"the annotators' own error: their gold accuracy is {percent(1 - gold['error'])} "
        f"({percent(gold['error'])} wrong) on {gold['n']} gold answers. Each cycle report also holds the estimate "
        f"corrected for it (with {MIN_GOLD_FOR_CORRECTION} or more gold answers)."
    )


def _segment_table(figures: pd.DataFrame) -> pd.DataFrame:
    table = figures.copy()
    table["automation"] = table["automation_rate"].map(percent)
    table["audit error"] = table["audit_error_rate"].map(percent)
    table["audit error 95 %"] = [
        MISSING if pd.isna(low) else f"{percent(low)} – {percent(high)}"
        for low, high in zip(table["audit_error_low"], table["audit_error_high"])
    ]
    columns = [
        "segment",
        "routed",
        "auto_accept",
        "spot_check",
        "review",
        "escalate",
        "automation",
        "audited",
        "audits_awaiting",
        "audit error",
        "audit error 95 %",
        "open_reviews",
    ]
    return table[columns]


if __name__ == "__main__":  # Streamlit runs a page file as __main__; importing it runs nothing
    render()
