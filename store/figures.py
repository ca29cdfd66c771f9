"""Figures over the routing record that the cycle report and the console both show: route counts per segment and
per cycle, the audited automated items, open reviews, labels and human answers spent, annotators' answers on gold
items and on shown or blind suggestions, the cycle reports themselves, the items arriving over the last cycles and
the models that scored the unbiased held-out labels.

A "latest decision" is the newest routing decision of an item (decisions are append-only, ids increase); the
console's per-segment figures and the live audit estimate count those. A cycle's figures count the decisions made
in that cycle. Rows come back as named tuples, read by attribute.
"""

from __future__ import annotations

from collections.abc import Iterable
import json
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np

from sqlalchemy import Engine, String, Subquery, cast, func, insert, select, update

from store.decision_batches import full_decisions
from store.models import (
    Annotation,
    CycleReport,
    Item,
    ItemStateRow,
    Label,
    Prediction,
    ReviewTask,
    RoutingDecision,
    ThresholdEvidence,
    as_utc,
    utcnow,
)
from store.passthrough import UPSTREAM_MODEL
from store.predictions import upstream_predicted
from store.bulk import driver_rows
from store.vocab import AUTOMATED_ROUTES, UNBIASED_SELECTIONS, LabelSource, Route, Selection, Split, TaskState

__all__ = [
    "Arrivals",
    "CycleBacklog",
    "CycleRoutes",
    "ReasonCount",
    "WaitingTasks",
    "backlog_by_cycle",
    "latest_cycle_reasons",
    "routes_by_cycle",
    "waiting_tasks",
    "AuditedItem",
    "AutomatedPopulation",
    "AutomatedPrediction",
    "CycleCounts",
    "CycleRecord",
    "GoldAnswer",
    "HeldOutModel",
    "RouteCount",
    "SuggestionAnswer",
    "arrivals",
    "audited_automation",
    "automated_population_columns",
    "automated_predictions",
    "cycle_counts",
    "cycle_report_figures",
    "cycle_reports",
    "cycle_route_counts",
    "finish_cycle",
    "gold_answers",
    "held_out_models",
    "human_labels",
    "label_class_count",
    "label_count",
    "latest_route_counts",
    "open_cycle",
    "open_reviews",
    "suggestion_answers",
]


def _latest_decisions() -> Subquery:
    """Subquery: the id of each item's newest decision (its state row points at it)."""
    return select(ItemStateRow.decision_id.label("id")).where(ItemStateRow.decision_id.is_not(None)).subquery()


class RouteCount(NamedTuple):
    """How many items of a segment have a latest decision with this route."""

    segment: str
    route: str
    n: int


def latest_route_counts(engine: Engine) -> list[RouteCount]:
    """Per (segment, route): the items whose latest decision took that route, in segment and route order."""
    decision = full_decisions()
    latest = _latest_decisions()
    query = (
        select(decision.c.segment, decision.c.route, func.count().label("n"))
        .join(latest, decision.c.id == latest.c.id)
        .group_by(decision.c.segment, decision.c.route)
        .order_by(decision.c.segment, decision.c.route)
    )
    with engine.connect() as conn:
        return [RouteCount(row.segment, row.route, row.n) for row in conn.execute(query)]


def cycle_route_counts(engine: Engine, cycle: int) -> dict[str, int]:
    """Per route: the decisions made in `cycle`."""
    decision = full_decisions()
    query = (select(decision.c.route, func.count().label("n")).where(decision.c.cycle == cycle)
             .group_by(decision.c.route))
    with engine.connect() as conn:
        return {row.route: row.n for row in conn.execute(query)}


def cycle_certifications(engine: Engine, cycle: int) -> dict[str, dict[str, dict[str, Any]]]:
    """Per segment and test (``estimator``: the segment's threshold on unbiased labels, or ``backlog_sample`` for a
    re-routed backlog certified on its own audits): what stood behind the decisions `cycle` made with a derived
    threshold. The threshold, its error bound, ``n`` (the labels a segment's threshold was tested on; the items of a
    backlog's population), ``n_accepted`` and ``n_errors`` (the labels at or above the threshold and the wrong ones
    among them; a backlog's: the items above it and the errors its sample found), the target (``alpha``,
    ``delta``), the labels of each kind that certified it, how many decisions pointed at it and how many of them
    were auto-accepted. A segment certified twice by one test in a cycle (two
    models) keeps the later evidence."""
    decision = full_decisions()
    counts = (
        select(decision.c.segment, decision.c.evidence_id, decision.c.route,
               func.count().label("n"))
        .where(decision.c.cycle == cycle, decision.c.evidence_id.is_not(None))
        .group_by(decision.c.segment, decision.c.evidence_id, decision.c.route)
    )
    automated = {r.value for r in AUTOMATED_ROUTES}
    found: dict[str, dict[str, dict[str, Any]]] = {}
    with engine.connect() as conn:
        rows = conn.execute(counts).all()
        evidence = {e.id: e for e in conn.execute(select(ThresholdEvidence).where(
            ThresholdEvidence.id.in_(sorted({r.evidence_id for r in rows}))))} if rows else {}
    for row in sorted(rows, key=lambda r: r.evidence_id):
        e = evidence[row.evidence_id]
        entry = found.setdefault(row.segment, {}).get(e.estimator)
        if entry is None or entry["evidence_id"] != e.id:
            entry = found[row.segment][e.estimator] = {
                "evidence_id": e.id, "threshold": e.threshold, "error_upper_bound": e.error_upper_bound,
                "n": int(e.n), "n_accepted": int(e.n_accepted), "n_errors": int(e.n_errors), "alpha": e.alpha,
                "delta": e.delta, "labels_by_reason": dict(e.labels_by_reason or {}), "decisions": 0,
                "auto_accepted": 0}
        entry["decisions"] += int(row.n)
        entry["auto_accepted"] += int(row.n) if row.route in automated else 0
    return found


class AuditedItem(NamedTuple):
    """One audited automated item: its latest routing decision and whether the audit found the model wrong."""

    decision_id: int
    segment: str
    model_version: str
    wrong: bool
    inclusion_probability: float | None


def audited_automation(engine: Engine) -> list[AuditedItem]:
    """Every item whose latest decision automated it and whose label is an audit's, in decision order. A decision
    without a predicted label counts as wrong (fail closed)."""
    decision = full_decisions()
    latest = _latest_decisions()
    query = (
        select(decision.c.id, decision.c.segment, decision.c.model_version,
               decision.c.predicted_label, Label.label.label("truth"), decision.c.inclusion_probability)
        .join(latest, latest.c.id == decision.c.id)
        .join(Label, Label.item_id == decision.c.item_id)
        .where(decision.c.route.in_(AUTOMATED_ROUTES), Label.selection_reason == Selection.AUDIT)
        .order_by(decision.c.id)
    )
    with engine.connect() as conn:
        return [AuditedItem(r.id, r.segment, r.model_version, r.predicted_label is None or r.predicted_label != r.truth,
                            r.inclusion_probability) for r in conn.execute(query)]


class AutomatedPopulation(NamedTuple):
    """The items of one segment whose latest decision automated them, as aligned columns in decision order: the
    calibrated confidence the decision routed on (NaN where none was recorded), the chance it had of an audit
    (0 where none was recorded), whether it was drawn (spot-checked), whether the audit's label is back, and
    whether that label found the model wrong (False where no label is back; a decision without a predicted label
    is wrong)."""

    confidence: np.ndarray
    inclusion_probability: np.ndarray
    drawn: np.ndarray
    labelled: np.ndarray
    wrong: np.ndarray


def automated_population_columns(engine: Engine) -> dict[str, AutomatedPopulation]:
    """Per segment with any: every item whose latest decision automated it, with its audit draw and label (see
    ``AutomatedPopulation``), read in one pass through the driver's cursor."""
    decision = full_decisions()
    latest = _latest_decisions()
    audit = select(Label.item_id, Label.label).where(Label.selection_reason == Selection.AUDIT).subquery()
    query = (
        select(decision.c.segment, decision.c.calibrated_confidence, decision.c.inclusion_probability,
               decision.c.route, decision.c.predicted_label, audit.c.label)
        .join(latest, latest.c.id == decision.c.id)
        .outerjoin(audit, audit.c.item_id == decision.c.item_id)
        .where(decision.c.route.in_(AUTOMATED_ROUTES))
        .order_by(decision.c.segment, decision.c.id)
    )
    with engine.connect() as conn:
        rows = driver_rows(conn, query)
    if not rows:
        return {}
    segments, confidence, probability, routes, predicted, truth = (np.array(column, dtype=object)
                                                                   for column in zip(*rows))
    drawn = routes == Route.SPOT_CHECK.value
    labelled = drawn & ~_is_null(truth)
    columns = AutomatedPopulation(
        confidence=np.where(_is_null(confidence), np.nan, confidence).astype(float),
        inclusion_probability=np.where(_is_null(probability), 0.0, probability).astype(float),
        drawn=drawn,
        labelled=labelled,
        wrong=labelled & (_is_null(predicted) | (predicted != truth)),
    )
    # rows come in segment order: one slice per segment
    starts = np.flatnonzero(np.r_[True, segments[1:] != segments[:-1]])
    ends = np.r_[starts[1:], len(rows)]
    return {segments[start]: AutomatedPopulation(*(column[start:end] for column in columns))
            for start, end in zip(starts.tolist(), ends.tolist())}


def _is_null(column: np.ndarray) -> np.ndarray:
    """Elementwise: which values of an object column are SQL NULL."""
    return np.asarray(column == None, dtype=bool)  # noqa: E711  (elementwise on an object array)


class AutomatedPrediction(NamedTuple):
    item_id: str
    predicted_label: str | None


def automated_predictions(engine: Engine, cycle: int) -> list[AutomatedPrediction]:
    """The predicted label of every decision of `cycle` that automated its item (spot-checked ones included)."""
    decision = full_decisions()
    query = (select(decision.c.item_id, decision.c.predicted_label)
             .where(decision.c.cycle == cycle, decision.c.route.in_(AUTOMATED_ROUTES)))
    with engine.connect() as conn:
        return [AutomatedPrediction(row.item_id, row.predicted_label) for row in conn.execute(query)]


def open_reviews(engine: Engine) -> dict[str, int]:
    """Per segment with any: review tasks not done yet."""
    query = (
        select(Item.segment, func.count().label("n"))
        .select_from(ReviewTask)
        .join(Item, Item.id == ReviewTask.item_id)
        .where(ReviewTask.state != TaskState.DONE)
        .group_by(Item.segment)
    )
    with engine.connect() as conn:
        return {row.segment: row.n for row in conn.execute(query)}


def label_count(engine: Engine) -> int:
    """Every label, of either split."""
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(Label)).scalar_one()


def label_class_count(engine: Engine) -> int:
    """How many distinct label values the labels hold."""
    with engine.connect() as conn:
        return conn.execute(select(func.count(func.distinct(Label.label)))).scalar_one()


def human_labels(engine: Engine, since: datetime | None = None) -> int:
    """Human answers that count against the people's time: every non-cancelled annotation (review, audit, gold,
    overlap and expert answers alike) pulled at or after `since`, and, without `since`, the seed labels too."""
    query = select(func.count()).select_from(Annotation).where(Annotation.was_cancelled.is_(False))
    with engine.connect() as conn:
        if since is not None:
            return conn.execute(query.where(Annotation.pulled_at >= since)).scalar_one()
        seeds = conn.execute(
            select(func.count()).select_from(Label).where(Label.source == LabelSource.SEED)).scalar_one()
        return conn.execute(query).scalar_one() + seeds


class GoldAnswer(NamedTuple):
    """An annotator's answer on a gold item (one whose seed label is known), and whether it was right."""

    annotator: str
    right: bool


def gold_answers(engine: Engine) -> list[GoldAnswer]:
    """Every non-cancelled answer with a label on a task sent as gold."""
    query = (
        select(Annotation.annotator, (Annotation.label == Label.label).label("right"))
        .join(ReviewTask, ReviewTask.item_id == Annotation.item_id)
        .join(Label, Label.item_id == Annotation.item_id)
        .where(ReviewTask.selection_reason == Selection.GOLD, Label.source == LabelSource.SEED,
               Annotation.label.is_not(None), Annotation.was_cancelled.is_(False))
    )
    with engine.connect() as conn:
        return [GoldAnswer(row.annotator, bool(row.right)) for row in conn.execute(query)]


class SuggestionAnswer(NamedTuple):
    """A resolved review of an item that had a model suggestion: shown or blind, and whether the label agrees."""

    model_version: str | None
    blind: bool
    agrees: bool


# Selections whose shown/blind split is random within them: the automation-bias comparison is made there only
# (audits are always blind and lean to confident items; escalations are always shown).
BIAS_EXCLUDED = (Selection.AUDIT, Selection.ESCALATION)


def suggestion_answers(engine: Engine) -> list[SuggestionAnswer]:
    """The annotated labels of review tasks that carried a prediction, outside audits and escalations."""
    query = (
        select(ReviewTask.model_version, ReviewTask.blind, (Label.label == ReviewTask.predicted_label).label("agrees"))
        .join(Label, Label.item_id == ReviewTask.item_id)
        .where(Label.source == LabelSource.ANNOTATION, ReviewTask.predicted_label.is_not(None),
               ReviewTask.selection_reason.not_in(BIAS_EXCLUDED))
    )
    with engine.connect() as conn:
        return [SuggestionAnswer(row.model_version, bool(row.blind), bool(row.agrees)) for row in conn.execute(query)]


class CycleCounts(NamedTuple):
    """What a cycle's report counts in the store: when it started, the tasks it queued, labels in all and its own."""

    started_at: datetime | None
    review_tasks: int
    labels_total: int
    labels_train: int
    labels_gained: int


def cycle_counts(engine: Engine, cycle: int) -> CycleCounts:
    def count(query: Any) -> int:
        return conn.execute(query).scalar_one()

    with engine.connect() as conn:
        started = conn.execute(select(CycleReport.started_at).where(CycleReport.cycle == cycle)).scalar()
        return CycleCounts(
            started_at=started,
            review_tasks=count(select(func.count()).select_from(ReviewTask).where(ReviewTask.cycle == cycle)),
            labels_total=count(select(func.count()).select_from(Label)),
            labels_train=count(select(func.count()).select_from(Label).where(Label.split == Split.TRAIN)),
            labels_gained=count(select(func.count()).select_from(Label).where(Label.cycle == cycle)),
        )


def open_cycle(engine: Engine, model_version: str | None) -> int:
    """Start the next cycle's report (one past the highest so far) under `model_version`; its number."""
    with engine.begin() as conn:
        cycle = (conn.execute(select(func.max(CycleReport.cycle))).scalar() or 0) + 1
        conn.execute(insert(CycleReport).values(cycle=cycle, model_version=model_version, figures={},
                                                started_at=utcnow()))
    return cycle


def finish_cycle(engine: Engine, cycle: int, figures: dict[str, Any]) -> None:
    """Store a cycle's figures and the time it finished."""
    with engine.begin() as conn:
        conn.execute(update(CycleReport).where(CycleReport.cycle == cycle)
                     .values(figures=figures, finished_at=utcnow()))


def cycle_report_figures(engine: Engine, cycle: int) -> dict[str, Any] | None:
    """The figures stored for `cycle`; None when there is no such cycle (or it stored none)."""
    with engine.connect() as conn:
        return conn.execute(select(CycleReport.figures).where(CycleReport.cycle == cycle)).scalar()


class CycleRecord(NamedTuple):
    cycle: int
    model_version: str | None
    policy_version: str | None
    started_at: datetime
    finished_at: datetime | None
    figures: dict[str, Any]


def cycle_reports(engine: Engine) -> list[CycleRecord]:
    """Every cycle report, oldest first."""
    query = select(*(getattr(CycleReport, f) for f in CycleRecord._fields)).order_by(CycleReport.cycle)
    with engine.connect() as conn:
        return [CycleRecord(*(getattr(row, f) for f in CycleRecord._fields)) for row in conn.execute(query)]


class Arrivals(NamedTuple):
    """Items first routed, per segment, in the cycles ``first_cycle`` .. ``last_cycle``, and the time they arrived
    in: from the start of the finished cycle before ``first_cycle`` (``since``) to the start of ``last_cycle``
    (``until``). A cycle routes what arrived since the one before it started."""

    first_cycle: int
    last_cycle: int
    since: datetime
    until: datetime
    items: dict[str, int]


def arrivals(engine: Engine, *, cycles: int) -> Arrivals | None:
    """What arrived over the last `cycles` finished cycles (fewer when fewer have finished); None until two have.
    An item counts in the cycle of its first routing decision: one re-routed from the backlog later is not a new
    arrival, and the oldest finished cycle of the window, which routed whatever was waiting before it, only opens
    it. A cycle that never finished inside the window still counts its items (its time is in the window)."""
    if cycles < 1:
        raise ValueError(f"cycles must be >= 1, got {cycles!r}")
    decision = full_decisions()
    finished = (select(CycleReport.cycle, CycleReport.started_at).where(CycleReport.finished_at.is_not(None))
                .order_by(CycleReport.cycle.desc()).limit(cycles + 1))
    first_decisions = select(func.min(RoutingDecision.id).label("id")).group_by(RoutingDecision.item_id).subquery()
    with engine.connect() as conn:
        window = list(conn.execute(finished))[::-1]
        if len(window) < 2:
            return None
        counted = (select(decision.c.segment, func.count().label("n"))
                   .join(first_decisions, first_decisions.c.id == decision.c.id)
                   .where(decision.c.cycle > window[0].cycle, decision.c.cycle <= window[-1].cycle)
                   .group_by(decision.c.segment))
        items = {row.segment: row.n for row in conn.execute(counted)}
    return Arrivals(window[0].cycle + 1, window[-1].cycle, window[0].started_at, window[-1].started_at, items)


class HeldOutModel(NamedTuple):
    """A model that scored unbiased held-out labels: how many, and when it scored the newest of them."""

    model_version: str
    n: int
    scored_at: datetime


def held_out_models(engine: Engine, *, segment: str | None = None) -> list[HeldOutModel]:
    """Every model with predictions (with a confidence) on the labels that may calibrate and certify it (held out,
    chosen without regard to any model: ``store.vocab.UNBIASED_SELECTIONS``), of `segment` when given; the most
    recently scoring first."""
    unbiased = (Label.split == Split.HOLDOUT, Label.selection_reason.in_(sorted(UNBIASED_SELECTIONS)))
    models = (
        select(Prediction.model_version, func.count().label("n"), func.max(Prediction.created_at).label("at"))
        .join(Label, Label.item_id == Prediction.item_id)
        .join(Item, Item.id == Prediction.item_id)
        .where(*unbiased, Prediction.confidence.is_not(None))
        .group_by(Prediction.model_version)
    )
    upstream = (  # the passthrough's predictions are in the item rows (store.predictions)
        select(func.count().label("n"), func.max(Item.received_at).label("at"))
        .join(Label, Label.item_id == Item.id)
        .where(*unbiased, upstream_predicted())
    )
    if segment is not None:
        models, upstream = models.where(Item.segment == segment), upstream.where(Item.segment == segment)
    with engine.connect() as conn:
        found = [HeldOutModel(row.model_version, row.n, row.at) for row in conn.execute(models)]
        passthrough = conn.execute(upstream).one()
    if passthrough.n:
        found.append(HeldOutModel(UPSTREAM_MODEL, passthrough.n, passthrough.at))
    return sorted(found, key=lambda m: (as_utc(m.scored_at), m.model_version), reverse=True)


class CycleRoutes(NamedTuple):
    """How many decisions of one cycle in one segment took one route."""

    cycle: int
    segment: str
    route: str
    n: int


def routes_by_cycle(engine: Engine) -> list[CycleRoutes]:
    """Decisions per (cycle, segment, route), oldest cycle first: automation over cycles, per segment."""
    decision = full_decisions()
    query = (select(decision.c.cycle, decision.c.segment, decision.c.route, func.count())
             .where(decision.c.cycle.is_not(None))
             .group_by(decision.c.cycle, decision.c.segment, decision.c.route)
             .order_by(decision.c.cycle, decision.c.segment, decision.c.route))
    with engine.connect() as conn:
        rows: Iterable[Any] = conn.execute(query)  # the cycle is not null, by the query
        return [CycleRoutes(*row) for row in rows]


class ReasonCount(NamedTuple):
    """How many of a segment's decisions in its latest routed cycle gave these reasons."""

    segment: str
    cycle: int
    reasons: tuple[str, ...]
    n: int


def latest_cycle_reasons(engine: Engine) -> list[ReasonCount]:
    """Per segment, the reason codes of the decisions of the newest cycle that routed it, counted by combination
    (what the flows acted on last: a stale or drifted calibration, a failed gate, a halt)."""
    decision = full_decisions()
    latest = (select(decision.c.segment, func.max(decision.c.cycle).label("cycle"))
              .where(decision.c.cycle.is_not(None)).group_by(decision.c.segment).subquery())
    reasons = cast(decision.c.reasons, String)
    query = (select(decision.c.segment, decision.c.cycle, reasons, func.count())
             .join(latest, (latest.c.segment == decision.c.segment) & (latest.c.cycle == decision.c.cycle))
             .group_by(decision.c.segment, decision.c.cycle, reasons))
    with engine.connect() as conn:
        rows: Iterable[Any] = conn.execute(query)  # the cycle is not null, by the query
        return [ReasonCount(segment, cycle, tuple(json.loads(text) if text else ()), n)
                for segment, cycle, text, n in rows]


class WaitingTasks(NamedTuple):
    """Review tasks of a segment and queue that no one has finished: how many, and since when the oldest waits."""

    segment: str
    queue: str
    waiting: int
    oldest: datetime


def waiting_tasks(engine: Engine) -> list[WaitingTasks]:
    """Unfinished review tasks (written or in Label Studio) per segment and queue, with the oldest's creation."""
    query = (select(Item.segment, ReviewTask.queue, func.count(), func.min(ReviewTask.created_at))
             .join(Item, Item.id == ReviewTask.item_id)
             .where(ReviewTask.state != TaskState.DONE)
             .group_by(Item.segment, ReviewTask.queue).order_by(Item.segment, ReviewTask.queue))
    with engine.connect() as conn:
        return [WaitingTasks(segment, queue, n, as_utc(oldest))
                for segment, queue, n, oldest in conn.execute(query)]


class CycleBacklog(NamedTuple):
    """Review tasks a segment's cycle created, and labels people's answers resolved in it."""

    cycle: int
    segment: str
    created: int
    resolved: int


def backlog_by_cycle(engine: Engine) -> list[CycleBacklog]:
    """Per (cycle, segment): review tasks created, and labels resolved from people's answers (seed labels aside).
    The backlog after a cycle is the running sum of created minus resolved."""
    created = (select(ReviewTask.cycle, Item.segment, func.count())
               .join(Item, Item.id == ReviewTask.item_id).where(ReviewTask.cycle.is_not(None))
               .group_by(ReviewTask.cycle, Item.segment))
    resolved = (select(Label.cycle, Item.segment, func.count())
                .join(Item, Item.id == Label.item_id)
                .where(Label.cycle.is_not(None), Label.source != LabelSource.SEED)
                .group_by(Label.cycle, Item.segment))
    counts: dict[tuple[int, str], list[int]] = {}
    with engine.connect() as conn:
        for column, query in enumerate((created, resolved)):
            rows: Iterable[Any] = conn.execute(query)  # the cycle is not null, by the query
            for cycle, segment, n in rows:
                counts.setdefault((cycle, segment), [0, 0])[column] = n
    return [CycleBacklog(cycle, segment, made, done) for (cycle, segment), (made, done) in sorted(counts.items())]
