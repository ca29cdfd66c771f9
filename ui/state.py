"""Streamlit glue: the cached engine and cached reads of the data layer, keyed by database URL."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st
from sqlalchemy import Engine, make_url

from routing.active_inference import ErrorInterval
from services import preview
from services.preview import PreviewInputs
from store.db import read_only_engine
from store.settings import get_settings
from ui import data

CACHE_SECONDS = 30  # the flows write while the console watches; figures may lag this much


def database_url() -> str:
    """The database the console reads: SLUICE_DATABASE_URL, else the SQLite file under SLUICE_HOME."""
    return get_settings().resolved_database_url


def database_label() -> str:
    """The database URL with any password masked, fit to show on screen."""
    return make_url(database_url()).render_as_string(hide_password=True)


@st.cache_resource(show_spinner=False)
def _engine_for(url: str) -> Engine:
    """Read-only and never migrating: the console watches the store the flows write (`StoreNotReady` when there is
    none yet, or an older one)."""
    return read_only_engine(url)


def engine() -> Engine:
    return _engine_for(database_url())


@st.cache_resource(show_spinner=False)
def _writer_for(url: str) -> Engine:
    """The one engine that writes: policy changes made in the console (never migrates: the store is there)."""
    from store.db import get_engine

    _engine_for(url)  # refuses a store that is missing or behind this code's schema
    return get_engine(url, migrate_first=False)


def writer() -> Engine:
    return _writer_for(database_url())


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def active_policy(url: str) -> data.PolicyView | None:
    return data.active_policy(_engine_for(url))


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def segment_figures(url: str) -> pd.DataFrame:
    return data.segment_figures(_engine_for(url))


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def audit_overview(url: str) -> tuple[ErrorInterval | None, dict]:
    return data.audit_overview(_engine_for(url))


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def preview_inputs(url: str, segment: str) -> PreviewInputs:
    return preview.preview_inputs(_engine_for(url), segment)


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def latest_calibration(url: str) -> list[data.CalibrationView]:
    return data.latest_calibration(_engine_for(url))


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def promoted_version(url: str) -> str:
    return data.promoted_version(_engine_for(url))


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def model_history(url: str) -> pd.DataFrame:
    return data.model_history(_engine_for(url))


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def cycle_history(url: str) -> pd.DataFrame:
    return data.cycle_history(_engine_for(url))


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def automation_bias(url: str) -> pd.DataFrame:
    return data.automation_bias(_engine_for(url))


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def annotator_accuracy(url: str) -> pd.DataFrame:
    return data.annotator_accuracy(_engine_for(url))


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def agreement_tables(url: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    return data.agreement_tables(_engine_for(url))


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def guard_halts(url: str) -> pd.DataFrame:
    return data.guard_halts(_engine_for(url))


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def segments_seen(url: str) -> list[str]:
    """Every segment with items (a scan of the items: once per cache period, not once per widget change)."""
    from store.decisions import segments_seen as read

    return sorted(read(_engine_for(url)))


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def decision_export(url: str, start: Any, end: Any, segments: tuple[str, ...], routes: tuple[str, ...], fmt: str,
                    limit: int) -> tuple[bytes, int, bool]:
    """The filtered decision trail written as `fmt` (at most `limit` decisions): (file bytes, count, cut short)."""
    import io

    from store.audit import write_trail
    from store.decisions import decision_trail

    records = list(decision_trail(_engine_for(url), since=start, until=end, segments=segments, routes=routes,
                                  limit=limit + 1))
    handle = io.StringIO()
    count = write_trail(records[:limit], handle, fmt=fmt)
    return handle.getvalue().encode(), count, len(records) > limit


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def calibration_flags(url: str) -> list[data.SegmentFlag]:
    return data.calibration_flags(_engine_for(url))


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def segment_trends(url: str) -> pd.DataFrame:
    return data.segment_trends(_engine_for(url))


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def certifications(url: str) -> pd.DataFrame:
    return data.certifications(_engine_for(url))


@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False)
def queue_age(url: str) -> pd.DataFrame:
    from datetime import datetime, timezone

    return data.queue_age(_engine_for(url), datetime.now(timezone.utc))


def refresh() -> None:
    """Drop the cached reads (not the engine) so the next run shows what the flows wrote since."""
    for reader in (active_policy, segment_figures, audit_overview, preview_inputs, latest_calibration,
                   promoted_version, model_history, cycle_history,
                   automation_bias, annotator_accuracy, agreement_tables, guard_halts, calibration_flags,
                   segment_trends, queue_age, segments_seen, decision_export):
        reader.clear()
