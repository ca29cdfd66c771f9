"""The console's one data layer: the store's typed reads (``store.registry``, ``store.labels``, ``store.figures``
and their siblings) and the figures the flows compute from them (``services``: the audit estimate, the
policy preview), returned as frames and frozen views.

Every function takes a SQLAlchemy engine and nothing else, imports no Streamlit, and returns an empty frame
(or None, or an empty list) on an empty database. Rates whose denominator is zero are NaN, never 0: a console
that shows "0 % errors" for a segment nobody audited would invite auto-accepting everything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from calibration.intervals import wilson_interval
from calibration.metrics import ReliabilityCurve
from routing.decide import Route
from routing.active_inference import ErrorInterval
from routing.policy import Policy, SegmentPolicy
from services.audit import annotator_gold_error, audit_estimates, overall_audit_estimate
from store import figures as store_figures
from store import calibrations, guarantees, passthrough, policies, registry
from store.models import CalibrationReportRow
from store.vocab import AUTOMATED_ROUTES as _AUTOMATED

__all__ = [
    "SegmentFlag",
    "calibration_flags",
    "certifications",
    "queue_age",
    "segment_trends",
    "CalibrationView",
    "OverallFigures",
    "PolicyView",
    "active_policy",
    "curve_frame",
    "cycle_history",
    "latest_calibration",
    "model_history",
    "overall_figures",
    "policy_settings_frame",
    "segment_figures",
    "promoted_version",
    "wilson_interval",
    "automation_bias",
    "annotator_accuracy",
    "audit_overview",
    "guard_halts",
]

ROUTES = tuple(route.value for route in Route)
AUTOMATED_ROUTES = tuple(route.value for route in _AUTOMATED)

SEGMENT_COLUMNS = [
    "segment",
    "routed",
    *ROUTES,
    "automation_rate",
    "audited",
    "audits_awaiting",
    "audit_error_rate",
    "audit_error_low",
    "audit_error_high",
    "open_reviews",
]
MODEL_COLUMNS = [
    "version",
    "kind",
    "status",
    "accuracy",
    "train_size",
    "parent_version",
    "created_at",
    "promoted_at",
]
CYCLE_COLUMNS = ["cycle", "model_version", "policy_version", "started_at", "finished_at"]
CERTIFICATION_COLUMNS = ["cycle", "segment", "test", "threshold", "n", "n_accepted", "n_errors", "estimate",
                         "error_upper_bound", "alpha", "delta", "labels_by_reason", "decisions", "auto_accepted"]
# what each certification test is, as the console names it (the evidence row's ``estimator``)
CERTIFICATION_TESTS = {"clopper_pearson": "segment threshold", "backlog_sample": "re-routed backlog"}


@dataclass(frozen=True)
class PolicyView:
    """The active policy version: its provenance and the effective settings of each named segment."""

    version: str
    name: str
    author: str
    comment: str
    created_at: datetime
    policy: Policy
    defaults: SegmentPolicy
    segments: dict[str, SegmentPolicy]

    def for_segment(self, segment: str) -> SegmentPolicy:
        return self.policy.for_segment(segment)


@dataclass(frozen=True)
class CalibrationView:
    """The newest calibration report of one (model version, segment), with its reliability curve."""

    model_version: str
    segment: str
    method: str
    n: int
    ece: float
    ece_low: float
    ece_high: float
    passed: bool
    reasons: tuple[str, ...]
    curve: ReliabilityCurve | None
    created_at: datetime


@dataclass(frozen=True)
class OverallFigures:
    """Totals over all segments; rates are NaN when nothing was routed or audited. The audited error is the
    estimate the flows record (``services.audit``) with its 95 % interval; ``audits_awaiting`` counts audits
    drawn whose labels are not back (the interval counts each of them both ways)."""

    routed: int
    automated: int
    automation_rate: float
    audited: int
    audits_awaiting: int
    audit_error_rate: float
    audit_error_low: float
    audit_error_high: float
    open_reviews: int


def active_policy(engine: Engine) -> PolicyView | None:
    """The newest policy version marked active, parsed; None when no version is active."""
    record = policies.stored_policy(engine)
    if record is None:
        return None
    return PolicyView(
        version=record.version,
        name=record.name,
        author=record.author,
        comment=record.comment,
        created_at=record.created_at,
        policy=record.policy,
        defaults=record.policy.defaults,
        segments={name: record.policy.for_segment(name) for name in sorted(record.policy.segments)},
    )


def policy_settings_frame(view: PolicyView, segments: list[str] | tuple[str, ...] = ()) -> pd.DataFrame:
    """Effective settings, one row per segment: "(defaults)", the policy's named ones, extra `segments`."""
    names = ["(defaults)", *sorted(set(view.segments) | set(segments))]
    rows = []
    for name in names:
        settings = view.defaults if name == "(defaults)" else view.for_segment(name)
        flat = settings.model_dump()
        calibration = flat.pop("calibration")
        rows.append(
            {"segment": name, **flat, **{f"calibration_{key}": value for key, value in calibration.items()}}
        )
    return pd.DataFrame(rows)


def _route_counts(engine: Engine) -> pd.DataFrame:
    frame = pd.DataFrame(store_figures.latest_route_counts(engine), columns=list(store_figures.RouteCount._fields))
    counts = frame.pivot_table(index="segment", columns="route", values="n", aggfunc="sum", fill_value=0)
    counts = counts.reindex(columns=list(ROUTES), fill_value=0)
    counts.columns.name = None
    # routed counts every latest decision, including a route this console does not know by name
    counts.insert(0, "routed", frame.groupby("segment")["n"].sum())
    return counts


def _audit_estimates(engine: Engine) -> pd.DataFrame:
    # the estimate the flows store in each cycle report (``services.audit``), with its interval
    estimates = audit_estimates(engine)
    return pd.DataFrame({"audited": [e["n_audited"] for e in estimates.values()],
                         "audits_awaiting": [e["n_awaiting"] for e in estimates.values()],
                         "audit_error_rate": [_number(e["error_rate"]) for e in estimates.values()],
                         "audit_error_low": [e["lower"] for e in estimates.values()],
                         "audit_error_high": [e["upper"] for e in estimates.values()]},
                        index=pd.Index(list(estimates), name="segment"), dtype=float).astype(
        {"audited": "int64", "audits_awaiting": "int64"})


def _open_reviews(engine: Engine) -> pd.DataFrame:
    reviews = store_figures.open_reviews(engine)
    return pd.DataFrame({"open_reviews": pd.Series(reviews, dtype="int64")}).rename_axis("segment")


def segment_figures(engine: Engine) -> pd.DataFrame:
    """One row per segment: latest-decision route counts, automation rate, audit error rate, open reviews."""
    routes, audits, reviews = _route_counts(engine), _audit_estimates(engine), _open_reviews(engine)
    frame = routes.join(audits, how="outer").join(reviews, how="outer")
    if frame.empty:
        return pd.DataFrame({column: pd.Series(dtype=_dtype(column)) for column in SEGMENT_COLUMNS})
    counts = ["routed", *ROUTES, "audited", "audits_awaiting", "open_reviews"]
    frame[counts] = frame[counts].fillna(0).astype("int64")
    with np.errstate(divide="ignore", invalid="ignore"):
        automated = frame[list(AUTOMATED_ROUTES)].sum(axis=1)
        frame["automation_rate"] = np.where(frame["routed"] > 0, automated / frame["routed"], np.nan)
    # a segment nobody audited has no estimate: NaN, never 0
    no_audit = frame["audited"] == 0
    frame.loc[no_audit, ["audit_error_rate", "audit_error_low", "audit_error_high"]] = np.nan
    frame.index.name = "segment"
    return frame.reset_index().sort_values("segment", ignore_index=True)[SEGMENT_COLUMNS]


HALT_COLUMNS = ["segment", "model_version", "active", "n_errors", "n_audited", "e_value", "alpha", "delta",
                "created_at"]


def guard_halts(engine: Engine) -> pd.DataFrame:
    """Every halt of a segment's live guard, newest first; ``active`` when the halted model still routes (the
    promoted one, or the upstream passthrough), so the segment auto-accepts nothing now."""
    routing = {registry.promoted_version(engine), passthrough.UPSTREAM_MODEL}
    return pd.DataFrame([{**{c: getattr(r, c) for c in HALT_COLUMNS if c != "active"},
                          "active": r.model_version in routing} for r in guarantees.guard_halts(engine)],
                        columns=HALT_COLUMNS)


def _dtype(column: str) -> str:
    if column == "segment":
        return "object"
    return "float64" if column.endswith(("rate", "_low", "_high")) else "int64"


def overall_figures(figures: pd.DataFrame, audit: ErrorInterval | None = None) -> OverallFigures:
    """Totals of a `segment_figures` frame, rates pooled over items, not averaged over segments; the audited error
    is `audit` (``services.audit.overall_audit_estimate``), NaN without one."""
    routed = int(figures["routed"].sum())
    automated = int(figures[list(AUTOMATED_ROUTES)].sum().sum())
    return OverallFigures(
        routed=routed,
        automated=automated,
        automation_rate=automated / routed if routed else math.nan,
        audited=0 if audit is None else audit.n_labelled,
        audits_awaiting=0 if audit is None else audit.n_missing,
        audit_error_rate=math.nan if audit is None else audit.error_rate,
        audit_error_low=math.nan if audit is None else audit.lower,
        audit_error_high=math.nan if audit is None else audit.upper,
        open_reviews=int(figures["open_reviews"].sum()),
    )


def audit_overview(engine: Engine) -> tuple[ErrorInterval | None, dict[str, Any]]:
    """The audit estimate over all segments and the annotators' gold error beside it
    (``services.audit``): {"error", "n"}, error None without gold answers."""
    return overall_audit_estimate(engine), annotator_gold_error(engine)


def _curve(report: dict[str, Any] | None) -> ReliabilityCurve | None:
    data = (report or {}).get("curve")
    return None if data is None else ReliabilityCurve.from_dict(data)


def latest_calibration(engine: Engine) -> list[CalibrationView]:
    """Newest report per segment, in segment order, of a model that routes now: a promoted one (the classifier,
    or the verifier or preference model of LLM items) or the pipelines' own scores (upstream); where none of
    those has a report yet, of the model of the globally newest report (a model just promoted has none until the
    next calibrate run scores and calibrates it); empty without reports."""
    rows = calibrations.calibration_reports(engine)  # one row per report, not per item; already newest first
    if not rows:
        return []
    in_use = set(registry.promoted_versions(engine)) | {passthrough.UPSTREAM_MODEL}
    if not any(row.model_version in in_use for row in rows):
        in_use = {rows[0].model_version}
    newest: dict[str, Any] = {}
    for row in rows:
        if row.model_version in in_use:
            newest.setdefault(row.segment, row)
    return [_calibration_view(newest[segment]) for segment in sorted(newest)]


def _calibration_view(row: CalibrationReportRow) -> CalibrationView:
    return CalibrationView(
        model_version=row.model_version,
        segment=row.segment,
        method=row.method,
        n=row.n,
        ece=row.ece,
        ece_low=row.ece_low,
        ece_high=row.ece_high,
        passed=bool(row.passed),
        reasons=tuple(row.reasons or ()),
        curve=_curve(row.report),
        created_at=row.created_at,
    )


def model_history(engine: Engine) -> pd.DataFrame:
    """Model versions, oldest first, with their held-out accuracy (NaN when not recorded) and status."""
    records = [
        {
            "version": row.version,
            "kind": row.kind,
            "status": row.status,
            "accuracy": _number((row.metrics or {}).get("accuracy")),
            "train_size": row.train_size,
            "parent_version": row.parent_version,
            "created_at": row.created_at,
            "promoted_at": row.promoted_at,
        }
        for row in registry.model_versions(engine)
    ]
    return pd.DataFrame(records, columns=MODEL_COLUMNS)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def cycle_history(engine: Engine) -> pd.DataFrame:
    """Cycle reports, oldest first, with their `figures` flattened into dotted columns (`queue.review`)."""
    rows = store_figures.cycle_reports(engine)
    if not rows:
        return pd.DataFrame(columns=CYCLE_COLUMNS)
    base = pd.DataFrame([{column: getattr(row, column) for column in CYCLE_COLUMNS} for row in rows])
    figures = pd.json_normalize([row.figures or {} for row in rows], sep=".")
    figures = figures.drop(columns=[c for c in figures.columns if c in CYCLE_COLUMNS])
    return pd.concat([base, figures], axis=1)


def certifications(engine: Engine) -> pd.DataFrame:
    """Per segment and test, what certified the thresholds of the newest cycle that routed with one (the cycle
    report's ``certification``, as the route flow recorded it): the threshold, the labels tested (``n``), those
    at or above the threshold and the wrong ones among them, the point estimate there (a segment threshold's
    errors over its labels at or above it; NaN for a backlog, whose estimate is over its sample), the one-sided
    ``1 - delta`` upper bound, the target, the labels of each kind, and the decisions that used it."""
    for row in reversed(store_figures.cycle_reports(engine)):
        found = (row.figures or {}).get("certification")
        if found:
            records = []
            for segment, tests in sorted(found.items()):
                for test, entry in sorted(tests.items()):
                    estimate = (entry["n_errors"] / entry["n_accepted"]
                                if test == "clopper_pearson" and entry.get("n_accepted") else math.nan)
                    records.append({"cycle": row.cycle, "segment": segment,
                                    "test": CERTIFICATION_TESTS.get(test, test), "estimate": estimate,
                                    **{k: entry.get(k) for k in CERTIFICATION_COLUMNS
                                       if k not in ("cycle", "segment", "test", "estimate")}})
            return pd.DataFrame(records, columns=CERTIFICATION_COLUMNS)
    return pd.DataFrame(columns=CERTIFICATION_COLUMNS)


def curve_frame(curve: ReliabilityCurve) -> pd.DataFrame:
    """The filled bins of a reliability curve as a frame, one row per bin, for charting and tables."""
    edges = np.asarray(curve.bin_edges, dtype=float)
    frame = pd.DataFrame(
        {
            "bin_low": edges[:-1],
            "bin_high": edges[1:],
            "mean_confidence": curve.mean_confidence,
            "accuracy": curve.accuracy,
            "count": curve.count,
            "wilson_low": curve.wilson_low,
            "wilson_high": curve.wilson_high,
        }
    )
    return frame[~np.asarray(curve.empty, dtype=bool)].reset_index(drop=True)


def promoted_version(engine: Engine) -> str:
    """The model routing now: the promoted one, else the upstream passthrough."""
    return registry.promoted_version(engine)


def automation_bias(engine: Engine) -> pd.DataFrame:
    """Per model version, oldest model first (the last row is the newest model annotators saw): how often
    annotators accept the suggestion when shown, how often their unseen answer agrees with it when blind, the gap
    between the two (automation bias) and the override rate when shown."""
    rows = store_figures.suggestion_answers(engine)
    columns = ["model_version", "shown", "shown_accept_rate", "blind", "blind_agreement_rate",
               "automation_bias_gap", "override_rate"]
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows, columns=list(store_figures.SuggestionAnswer._fields)).astype({"blind": bool, "agrees": float})
    out = []
    for version, group in frame.groupby("model_version", sort=True):
        shown, blind = group[~group["blind"]], group[group["blind"]]
        accept = shown["agrees"].mean() if len(shown) else math.nan
        agree = blind["agrees"].mean() if len(blind) else math.nan
        out.append([version, len(shown), accept, len(blind), agree, accept - agree, 1.0 - accept])
    created = {model.version: position for position, model in
               enumerate(sorted(registry.model_versions(engine), key=lambda m: (m.created_at, m.version)))}
    out.sort(key=lambda row: (created.get(row[0], -1), str(row[0])))  # versions are hashes: order by creation
    return pd.DataFrame(out, columns=columns)


def annotator_accuracy(engine: Engine) -> pd.DataFrame:
    """Per annotator: gold items answered (items whose answer is known from the seed) and the share answered
    right, with a 95% Wilson interval."""
    rows = store_figures.gold_answers(engine)
    columns = ["annotator", "gold_answered", "gold_accuracy", "accuracy_low", "accuracy_high"]
    if not rows:
        return pd.DataFrame(columns=columns)
    frame = pd.DataFrame(rows, columns=list(store_figures.GoldAnswer._fields)).astype({"right": float})
    grouped = frame.groupby("annotator", sort=True)["right"].agg(["count", "sum"]).reset_index()
    low, high = wilson_interval(grouped["sum"].to_numpy(), grouped["count"].to_numpy())
    return pd.DataFrame({"annotator": grouped["annotator"], "gold_answered": grouped["count"],
                         "gold_accuracy": grouped["sum"] / grouped["count"], "accuracy_low": low,
                         "accuracy_high": high}, columns=columns)


def agreement_tables(engine: Engine) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per segment, per annotator pair) agreement over the items several annotators answered: Fleiss' kappa,
    Krippendorff's alpha and Cohen's kappa, from `labeling.quality.agreement_report`."""
    from dataclasses import asdict

    from labeling.quality import PairAgreement, SegmentAgreement, agreement_report

    report = agreement_report(engine)
    segments = pd.DataFrame([asdict(r) for r in report["segments"]],
                            columns=list(SegmentAgreement.__dataclass_fields__))
    pairs = pd.DataFrame([asdict(r) for r in report["pairs"]], columns=list(PairAgreement.__dataclass_fields__))
    return segments, pairs


# Reason codes of the route step that say a segment's calibration no longer stands, and what each means to ops;
# any other `calibration_*` code is a failed gate (too few unbiased labels, an ECE interval above `max_ece`).
CALIBRATION_FLAGS = {
    "calibration_stale": "its calibration is older than the policy's `max_age_hours`: `sluice calibrate` (or the "
                         "next cycle) refits it",
    "calibration_drift": "the confidences it routes drifted away from those it was calibrated on: new audits, then "
                         "`sluice calibrate`, refit it",
    "calibration_missing": "it has no calibration yet: `sluice calibrate` fits one once it has unbiased labels",
}
GATE_FAILED = "calibration_gate_failed"
NOT_FLAGS = frozenset({"calibration_group"})


@dataclass(frozen=True)
class SegmentFlag:
    """A segment whose latest route run sent items to people because its calibration does not stand."""

    segment: str
    cycle: int
    reason: str
    affected: int
    routed: int
    text: str


def calibration_flags(engine: Engine) -> list[SegmentFlag]:
    """Per segment, why its latest routed cycle sent items to people for calibration's sake (stale, drift,
    missing, else the failed gate's own codes), with how many of that cycle's decisions it concerned."""
    by_segment: dict[str, list[store_figures.ReasonCount]] = {}
    for row in store_figures.latest_cycle_reasons(engine):
        by_segment.setdefault(row.segment, []).append(row)
    flags = []
    for segment, rows in sorted(by_segment.items()):
        routed, cycle = sum(r.n for r in rows), rows[0].cycle
        found = next(((reason, text) for reason, text in CALIBRATION_FLAGS.items()
                      if any(reason in r.reasons for r in rows)), None)
        if found is not None:
            reason, text = found
            flags.append(SegmentFlag(segment, cycle, reason, sum(r.n for r in rows if reason in r.reasons),
                                     routed, text))
            continue
        failing = [r for r in rows if any(c.startswith("calibration_") and c not in NOT_FLAGS for c in r.reasons)]
        if failing:
            codes = sorted({c for r in failing for c in r.reasons if c.startswith("calibration_")} - NOT_FLAGS)
            flags.append(SegmentFlag(segment, cycle, GATE_FAILED, sum(r.n for r in failing), routed,
                                     f"its calibration failed the gate ({', '.join(codes)}): more unbiased labels "
                                     "(audits, `sluice seed-labels`) or a looser `max_ece` let it pass"))
    return flags


TREND_COLUMNS = ["cycle", "segment", "routed", "automation_rate", "audit_error", "audit_low", "audit_high",
                 "backlog"]


def segment_trends(engine: Engine) -> pd.DataFrame:
    """Per cycle and segment: items routed, the automation rate, the estimated error of auto-accepted items
    with its interval as the cycle report recorded it, and the review backlog after the cycle."""
    routes = store_figures.routes_by_cycle(engine)
    if not routes:
        return pd.DataFrame(columns=TREND_COLUMNS)
    frame = pd.DataFrame(routes, columns=list(store_figures.CycleRoutes._fields))
    frame["automated"] = frame["route"].isin(AUTOMATED_ROUTES) * frame["n"]
    trends = frame.groupby(["cycle", "segment"], as_index=False).agg(routed=("n", "sum"),
                                                                      automated=("automated", "sum"))
    trends["automation_rate"] = trends["automated"] / trends["routed"]
    audits = {(row.cycle, segment): estimate for row in store_figures.cycle_reports(engine)
              for segment, estimate in ((row.figures or {}).get("audit") or {}).items()}
    for column, key in (("audit_error", "error_rate"), ("audit_low", "lower"), ("audit_high", "upper")):
        trends[column] = [_number((audits.get((c, s)) or {}).get(key))
                          for c, s in zip(trends["cycle"], trends["segment"])]
    backlog = pd.DataFrame(store_figures.backlog_by_cycle(engine),
                           columns=list(store_figures.CycleBacklog._fields))
    if backlog.empty:
        trends["backlog"] = 0
    else:
        backlog = backlog.sort_values("cycle")
        backlog["backlog"] = (backlog["created"] - backlog["resolved"]).groupby(backlog["segment"]).cumsum()
        trends = trends.merge(backlog[["cycle", "segment", "backlog"]], on=["cycle", "segment"], how="left")
        trends["backlog"] = trends.groupby("segment")["backlog"].ffill().fillna(0).clip(lower=0).astype(int)
    return trends[TREND_COLUMNS]


def queue_age(engine: Engine, now: datetime) -> pd.DataFrame:
    """Unfinished review tasks per segment and queue, and how many hours the oldest has waited at `now`."""
    rows = store_figures.waiting_tasks(engine)
    return pd.DataFrame([{"segment": r.segment, "queue": r.queue, "waiting": r.waiting,
                          "oldest_hours": (now - r.oldest).total_seconds() / 3600.0} for r in rows],
                        columns=["segment", "queue", "waiting", "oldest_hours"])
