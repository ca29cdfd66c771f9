"""How the console shows figures: value formatting and the Altair charts (no Streamlit here)."""

from __future__ import annotations

import math

import altair as alt
import pandas as pd

from calibration.metrics import ReliabilityCurve
from ui.data import curve_frame

MISSING = "—"


def percent(value: float | None, *, digits: int = 1) -> str:
    """`0.643 -> "64.3%"`; NaN or None (nothing to divide by) shows as a dash, never as 0 %."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return f"{value:.{digits}%}"


def interval(low: float, high: float, *, digits: int = 3) -> str:
    if any(math.isnan(v) for v in (low, high)):
        return MISSING
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def reliability_chart(curve: ReliabilityCurve) -> alt.VConcatChart:
    """Accuracy against mean confidence per filled bin, Wilson 95 % bars, the diagonal, bin counts."""
    bins = curve_frame(curve)
    scale = alt.Scale(domain=[0, 1])
    diagonal = (
        alt.Chart(pd.DataFrame({"x": [0.0, 1.0], "y": [0.0, 1.0]}))
        .mark_line(strokeDash=[4, 4], color="gray")
        .encode(x=alt.X("x:Q", scale=scale), y=alt.Y("y:Q", scale=scale))
    )
    base = alt.Chart(bins).encode(
        x=alt.X("mean_confidence:Q", scale=scale, title="mean confidence"),
    )
    bars = base.mark_rule(color="#4c78a8").encode(
        y=alt.Y("wilson_low:Q", scale=scale, title="accuracy"), y2="wilson_high:Q"
    )
    tooltip = [
        "bin_low:Q",
        "bin_high:Q",
        "mean_confidence:Q",
        "accuracy:Q",
        "count:Q",
        "wilson_low:Q",
        "wilson_high:Q",
    ]
    points = base.mark_circle(color="#4c78a8", opacity=0.9).encode(
        y=alt.Y("accuracy:Q", scale=scale), size=alt.Size("count:Q", legend=None), tooltip=tooltip
    )
    reliability = (diagonal + bars + points).properties(height=300)
    counts = (
        alt.Chart(bins.assign(zero=0))
        .mark_rect(color="#9ecae9", stroke="white")
        .encode(
            x=alt.X("bin_low:Q", scale=scale, title="confidence bin"),
            x2="bin_high:Q",
            y=alt.Y("count:Q", title="items"),
            y2="zero:Q",
            tooltip=["bin_low:Q", "bin_high:Q", "count:Q"],
        )
        .properties(height=90)
    )
    return alt.vconcat(reliability, counts)


def accuracy_chart(models: pd.DataFrame) -> alt.Chart:
    """Held-out accuracy of each model version in creation order, coloured by status."""
    known = models.dropna(subset=["accuracy"])
    order = list(models["version"])
    line = (
        alt.Chart(known)
        .mark_line(color="lightgray")
        .encode(
            x=alt.X("version:N", sort=order, title="model version", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("accuracy:Q", scale=alt.Scale(zero=False)),
        )
    )
    points = (
        alt.Chart(known)
        .mark_point(filled=True, size=80)
        .encode(
            x=alt.X("version:N", sort=order),
            y="accuracy:Q",
            color=alt.Color("status:N"),
            tooltip=["version", "status", "accuracy", "train_size", "created_at"],
        )
    )
    return (line + points).properties(height=260)


def cycle_chart(cycles: pd.DataFrame, columns: list[str]) -> alt.Chart:
    """The chosen numeric figures of each cycle, one line per figure."""
    long = cycles.melt(id_vars=["cycle"], value_vars=columns, var_name="figure", value_name="value").dropna()
    return (
        alt.Chart(long)
        .mark_line(point=True)
        .encode(
            x=alt.X("cycle:O", title="cycle"),
            y=alt.Y("value:Q"),
            color="figure:N",
            tooltip=["cycle", "figure", "value"],
        )
        .properties(height=260)
    )


def trend_chart(trends: pd.DataFrame, value: str, *, title: str, low: str | None = None,
                high: str | None = None, rate: bool = True) -> alt.LayerChart | alt.FacetChart:
    """One figure per cycle, a line per segment, with its interval as a band when given; the y axis spans the
    data (and the interval), not a fixed 0-1."""
    known = trends.dropna(subset=[value])
    axis = alt.Axis(format=".1%") if rate else alt.Axis()
    y = alt.Y(f"{value}:Q", title=title, scale=alt.Scale(zero=False, nice=True), axis=axis)
    base = alt.Chart(known).encode(x=alt.X("cycle:O", title="cycle", axis=alt.Axis(labelAngle=0)),
                                   color=alt.Color("segment:N"))
    line = base.mark_line(point=True).encode(y=y, tooltip=["cycle", "segment", f"{value}:Q"])
    if low is None or high is None:
        return alt.layer(line).properties(height=220)
    band = base.mark_area(opacity=0.2).encode(y=alt.Y(f"{low}:Q", scale=alt.Scale(zero=False)), y2=f"{high}:Q")
    return alt.layer(band, line).properties(height=220)
