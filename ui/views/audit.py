"""Audit page: one item's whole story (decisions with their versions, calibrator and threshold evidence, review
tasks, every human answer, the resolved label), and a filtered export of the decision trail."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import pandas as pd
import streamlit as st

from routing.decide import Route
from store.audit import item_history
from ui import state

EMPTY_TRAIL = "No routing decisions yet: `sluice route` (or `sluice cycle`) makes them."
EXPORT_LIMIT = 200_000  # decisions in one download; `sluice audit export` writes any number
DECISION_COLUMNS = ["id", "created_at", "cycle", "route", "reasons", "predicted_label", "raw_confidence",
                    "calibrated_confidence", "threshold", "inclusion_probability", "policy_version", "model_version",
                    "calibration_id", "evidence_id", "supersedes_id"]
EVIDENCE_COLUMNS = ["id", "evidence_scale", "evidence_n", "evidence_n_accepted", "evidence_n_errors",
                    "evidence_coverage", "evidence_error_upper_bound", "evidence_alpha", "evidence_delta",
                    "evidence_tested", "evidence_pool", "evidence_estimator", "evidence_labels_by_reason",
                    "evidence_label_fingerprint"]


def render() -> None:
    st.title("Audit")
    engine = state.engine()
    _item_story(engine)
    st.divider()
    _export()


def _table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> None:
    frame = pd.DataFrame(rows)
    if columns is not None:
        frame = frame[[c for c in columns if c in frame.columns]]
    for column in frame.columns:  # lists and mappings as text, so every cell shows
        if frame[column].map(lambda v: isinstance(v, (list, dict))).any():
            frame[column] = frame[column].map(lambda v: ", ".join(map(str, v)) if isinstance(v, list) else str(v))
    st.dataframe(frame, hide_index=True, width="stretch")


def _item_story(engine) -> None:
    st.subheader("One item")
    item_id = st.text_input("Item id", key="audit-item", placeholder="the producer's id, as ingested").strip()
    if not item_id:
        st.caption("Type an item's id to see every decision about it and every human answer.")
        return
    story = item_history(engine, item_id)
    if story is None:
        st.warning(f"No item `{item_id}` in this store.")
        return
    item = story.item
    st.markdown(f"**{item['id']}** · segment `{item['segment']}` · state `{item['state']}` · received "
                f"{item['received_at']:%Y-%m-%d %H:%M} from `{item.get('source') or '—'}`")
    if item.get("text"):
        st.text(item["text"])
    if item.get("upstream_prediction") is not None:
        st.caption(f"Upstream prediction `{item['upstream_prediction']}` with confidence "
                   f"{item.get('upstream_confidence')}")
    st.markdown("**Decisions**, oldest first (a re-route under a newer model or policy is a new row)")
    if story.decisions:
        _table(story.decisions, DECISION_COLUMNS)
        evidence = [d for d in story.decisions if d.get("evidence_id") is not None]
        if evidence:
            st.markdown("**Threshold evidence** behind the derived thresholds (Learn-then-Test certification)")
            _table(evidence, EVIDENCE_COLUMNS)
        if story.calibrators:
            st.markdown("**Calibrators** used")
            _table([{"calibration_id": key, **value} for key, value in story.calibrators.items()])
    else:
        st.caption("Not routed yet.")
    st.markdown("**Review tasks**")
    if story.tasks:
        _table(story.tasks, ["id", "created_at", "selection_reason", "selection_probability", "queue", "blind",
                             "overlap", "state", "model_version", "policy_version", "predicted_label", "cycle"])
    else:
        st.caption("Never sent to people.")
    st.markdown("**Human answers**")
    if story.answers:
        _table(story.answers, ["external_id", "annotator", "label", "was_cancelled", "external_updated_at",
                               "pulled_at"])
    else:
        st.caption("No answers.")
    if story.label is not None:
        label = story.label
        st.markdown(f"**Label** `{label['label']}` ({label['split']}) from {label['source']} · chosen as "
                    f"{label['selection_reason']} · resolved by {label.get('resolution') or '—'} · agreement "
                    f"{label.get('agreement') if label.get('agreement') is not None else '—'}")


def _export() -> None:
    st.subheader("Export decisions")
    url = state.database_url()
    segments = state.segments_seen(url)
    if not segments:
        st.info(EMPTY_TRAIL)
        return
    left, middle, right = st.columns(3)
    chosen_segments = left.multiselect("Segments", segments, key="audit-segments", placeholder="all")
    chosen_routes = middle.multiselect("Routes", [route.value for route in Route], key="audit-routes",
                                       placeholder="all")
    picked = right.date_input("Decided between", value=(date.today() - timedelta(days=30), date.today()),
                              key="audit-dates")
    if not isinstance(picked, tuple) or len(picked) != 2:
        st.caption("Pick the last day of the range too.")
        return
    since, until = picked
    start = datetime.combine(since, time.min, tzinfo=timezone.utc)
    end = datetime.combine(until, time.min, tzinfo=timezone.utc) + timedelta(days=1)
    fmt = st.radio("Format", ("csv", "jsonl"), horizontal=True, key="audit-format")
    content, count, cut = state.decision_export(url, start, end, tuple(chosen_segments), tuple(chosen_routes), fmt,
                                                EXPORT_LIMIT)
    if cut:
        st.warning(f"More than {EXPORT_LIMIT:,} decisions match: narrow the filters, or use "
                   "`sluice audit export` for all of them.")
    st.caption(f"{count:,} decisions match, each with its policy, model and calibrator versions and the "
               "threshold evidence behind it.")
    st.download_button(f"Download {count:,} decisions", content, key="audit-download",
                       file_name=f"sluice-decisions-{since:%Y%m%d}-{until:%Y%m%d}.{fmt}",
                       mime="text/csv" if fmt == "csv" else "application/x-ndjson", disabled=not count)


if __name__ == "__main__":  # Streamlit runs a page file as __main__; importing it runs nothing
    render()
