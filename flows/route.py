"""Route flow: every scored item gets one route, with its reasons and the versions that decided it."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, NamedTuple, cast

import numpy as np
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from sqlalchemy import Engine

from calibration.recalibrators import calibrator_from_dict
from calibration.report import CalibrationReport, GateResult, calibration_gate, is_stale
from flows.common import (
    Payload,
    as_utc,
    derive_rng,
    engine_for,
    holds_store_lock,
    pack,
    settled,
    takes_payloads,
    utcnow,
)
from flows.risk import batch_risk_flags, training_segments
from flows.runners import BATCH_RUNNER
from routing.decide import REASON_LIVE_GUARD_HALTED, Route, route
from routing.injection import item_injection_signals
from routing.policy import Policy, SegmentPolicy
from routing.pools import calibration_group, groups_in_use, pool_members
from routing.signals import RiskFlags, combine_signals, fold_flags
from services.backlog import backlog_certificate
from services.certify import Labelled, certifying_labels, derived_threshold, merge_labelled
from services.guard import check_live_guards
from store.budget import spent_this_window
from store.bulk import all_none, collector_paused
from store.calibrations import latest_calibrations
from store.db import refresh_statistics, write_transaction
from store.guarantees import write_threshold_evidence
from store.decisions import (
    LLM_KINDS, llm_inputs, LlmInputs, read_scored_groups, RiskInputs, scored_segment_sizes, ScoredGroup, SegmentSize,
)
from store.labels import held_out_labels
from store.decision_batches import DecisionBatch, settle_decisions
from store.models import CalibrationReportRow, ItemState
from store.passthrough import UPSTREAM_MODEL
from store.policies import active_policy
from store.registry import promoted_family_versions, promoted_model
from store.settings import SluiceSettings, settings_or_environment
from store.vocab import Selection

STATE_AFTER = {
    Route.AUTO_ACCEPT.value: ItemState.auto_accepted.value,
    Route.SPOT_CHECK.value: ItemState.routed.value,
    Route.REVIEW.value: ItemState.routed.value,
    Route.ESCALATE.value: ItemState.routed.value,
}


def gate_now(row: CalibrationReportRow | None, policy: SegmentPolicy) -> GateResult | None:
    """The calibration gate under the policy in force now, including the report's age."""
    if row is None:
        return None
    limits = policy.calibration
    gate = calibration_gate(CalibrationReport.from_dict(row.report), min_samples=limits.min_samples,
                            max_ece=limits.max_ece)
    age = (utcnow() - as_utc(row.created_at)).total_seconds()
    if is_stale(max(age, 0.0), max_age_seconds=limits.max_age_hours * 3600.0):
        return GateResult(passed=False, reasons=(*gate.reasons, "calibration_stale"))
    if (row.report or {}).get("drift", {}).get("stale"):
        return GateResult(passed=False, reasons=(*gate.reasons, "calibration_drift"))
    return gate


PEOPLE_ROUTES = frozenset({Route.REVIEW.value, Route.ESCALATE.value})
# A task routes whole segments until it holds this many scored items or segments: a segment is a user's grouping,
# so a million segments must not mean a million Prefect tasks, nor one task per tiny segment.
BATCH_ITEMS, BATCH_GROUPS = 20_000, 1_000


@dataclass(frozen=True)
class BatchContext:
    """What every group of one route batch shares, read once per batch."""

    policy: Policy
    policy_version: str
    reports: dict[tuple[str, str], CalibrationReportRow]
    labelled: dict[str, dict[str, Labelled]]
    group_of: dict[str, dict[str, str]]
    label_counts: dict[str, dict[str, int]]
    training: dict[str, int]
    halted: dict[str, str]
    run_id: str | None = None  # the route flow run's id, kept in every batch row it writes
    # what is left of each segment's label budget in its window, for this run's audits (used up group by group)
    audit_allowance: dict[str, float] = field(default_factory=dict)
    calibrators: dict[int, Any] = field(default_factory=dict)  # parsed once per batch, by report id
    certified: dict[tuple, tuple[Any, int | None]] = field(default_factory=dict)
    # the evidence rows the batch's decisions use, written in the batch's one transaction (by position)
    evidence: list[dict[str, Any]] = field(default_factory=list)

    def register(self, evidence: dict[str, Any] | None) -> int | None:
        """The position of an evidence row to write with the batch (None for none)."""
        if evidence is None:
            return None
        self.evidence.append(evidence)
        return len(self.evidence) - 1

    def group_for(self, model_version: str, segment: str) -> str:
        """The calibration group of any segment (in this batch or not) under `model_version`."""
        known = self.group_of.get(model_version, {})
        if segment in known:
            return known[segment]
        return calibration_group(self.policy, segment, self.label_counts.get(model_version, {}).get(segment, 0))


@dataclass(frozen=True)
class ModelLabels:
    """One model's unbiased held-out labels as routing reads them: per calibration group (a segment standing
    alone, or a pool), and each segment's own count (which decides its group)."""

    labelled: dict[str, Labelled]
    counts: dict[str, int]

    def for_segments(self, policy: Policy, segments: list[str]) -> ModelLabels:
        """Only the groups these segments use (what one batch needs), with every count kept."""
        used = set(groups_in_use(policy, self.counts, segments).values())
        return ModelLabels({k: v for k, v in self.labelled.items() if k in used}, self.counts)


def model_labels(engine: Engine, policy: Policy, model_version: str, segments: list[str]) -> ModelLabels:
    """Read once per route run: every segment's labels, since a small segment's pool reads its members'. Each
    segment's held-out count decides its group (as calibration does); a group is certified on the certifying
    labels of its members (``services.certify.certifying_labels``: held out, or audits of the model's own
    decisions), a pool on those of every segment that belongs to it (``routing.pools.pool_members``)."""
    held = held_out_labels(engine, model_version)
    counts = {segment: len(labels.item_ids) for segment, labels in held.items()}
    certifying = certifying_labels(engine, model_version, held=held)
    groups = set(groups_in_use(policy, counts, set(certifying) | set(segments)).values())
    pools = pool_members(policy, certifying)
    return ModelLabels({group: merge_labelled([certifying[m] for m in pools.get(group, [group]) if m in certifying])
                        for group in sorted(groups)}, counts)


def audit_allowances(engine: Engine, policy: Policy, segments: list[str], now: datetime) -> dict[str, float]:
    """What each segment's audits may still take of its label budget in the current window (``store.budget``):
    at most `audit_budget_share` of the budget, less the audits the window already asked for, and never more than
    the budget has left (the rest is the reviews')."""
    spent = spent_this_window(engine, policy, segments, now)
    allowance = {}
    for segment in segments:
        rules, asked = policy.for_segment(segment), spent.get(segment, {})
        left = rules.review_budget - sum(asked.values())
        audits_left = rules.audit_budget_share * rules.review_budget - asked.get(Selection.AUDIT, 0)
        allowance[segment] = float(max(min(left, audits_left), 0))
    return allowance


def _context(engine: Engine, groups: list[ScoredGroup], policy: Policy, policy_version: str,
             halted: dict[str, str], labels: dict[str, ModelLabels], allowances: dict[str, float]) -> BatchContext:
    by_model: dict[str, list[str]] = {}
    for group in groups:
        by_model.setdefault(group.model_version, []).append(group.segment)
    labelled: dict[str, dict[str, Labelled]] = {}
    group_of: dict[str, dict[str, str]] = {}
    reports: dict[tuple[str, str], CalibrationReportRow] = {}
    label_counts: dict[str, dict[str, int]] = {}
    for model, segments in by_model.items():
        labelled[model], label_counts[model] = labels[model].labelled, labels[model].counts
        group_of[model] = groups_in_use(policy, label_counts[model], segments)
        used = sorted(set(group_of[model].values()))
        reports.update(((model, key), row) for key, row in latest_calibrations(engine, model, used).items())
    allowance = {group.segment: allowances[group.segment] for group in groups if group.segment in allowances}
    return BatchContext(policy, policy_version, reports, labelled, group_of, label_counts,
                        training_segments(engine), halted, flow_run.get_id(), allowance)


def _calibrator(context: BatchContext, report_row: CalibrationReportRow | None) -> Any | None:
    if report_row is None:
        return None
    report_id = cast(int, report_row.id)  # a stored report has its id
    if report_id not in context.calibrators:
        context.calibrators[report_id] = calibrator_from_dict(report_row.calibrator)
    return context.calibrators[report_id]


def _certified(engine: Engine, context: BatchContext, model_version: str, group: str, rules: SegmentPolicy,
               calibrator: Any | None, report_row: CalibrationReportRow | None) -> tuple[Any, int | None]:
    """The group's derived threshold and the position of its evidence row in the batch, certified once per batch
    (a pool serves many segments)."""
    key = (model_version, group, rules.max_auto_error, rules.confidence)
    if key not in context.certified:
        labelled = context.labelled.get(model_version, {}).get(group, ([], np.empty(0), np.empty(0)))
        threshold, evidence = derived_threshold(
            engine, model_version, group, rules, calibrator, policy_version=context.policy_version,
            calibration_id=report_row.id if report_row else None, labelled=labelled, pool=group)
        context.certified[key] = (threshold, context.register(evidence))
    return context.certified[key]


def with_injection_signals(flags: RiskFlags, item_ids: list[str], llm: LlmInputs,
                           rules: SegmentPolicy) -> RiskFlags:
    """`flags` of `item_ids` with the prompt-injection signals of the outputs of LLM pipelines among them, sent
    where the segment's rules say (``prompt_injection``, ``context_injection``)."""
    row_of = {item_id: row for row, item_id in enumerate(llm.item_ids)}
    positions = [position for position, item_id in enumerate(item_ids) if item_id in row_of]
    if not positions:
        return flags
    rows = [row_of[item_ids[position]] for position in positions]
    signals = item_injection_signals([llm.kinds[r] for r in rows], [llm.texts[r] for r in rows],
                                     [llm.payloads[r] for r in rows], prompt_action=rules.prompt_injection,
                                     context_action=rules.context_injection)
    return fold_flags(flags, combine_signals(signals, len(rows)), positions)


def risk_flags_by_group(engine: Engine, groups: list[ScoredGroup], context: BatchContext,
                        llm: LlmInputs | None = None) -> list[RiskFlags]:
    """Risk flags of every group, computed once per (segment rules, model version) over all its items, on the
    inputs the batch read with them; `llm` holds the batch's outputs of LLM pipelines, whose prompts and context
    documents are checked for injection."""
    shared: dict[tuple[SegmentPolicy, str], list[int]] = {}
    for index, group in enumerate(groups):
        shared.setdefault((context.policy.for_segment(group.segment), group.model_version), []).append(index)
    flags: list[RiskFlags | None] = [None] * len(groups)
    for (rules, model_version), indexes in shared.items():
        item_ids = [item_id for index in indexes for item_id in groups[index].item_ids]
        found = batch_risk_flags(engine, item_ids, rules, model_version=model_version, training=context.training,
                                 group_of=partial(context.group_for, model_version),
                                 inputs=RiskInputs.concat([groups[index].inputs for index in indexes]))
        if llm is not None and llm.item_ids:
            found = with_injection_signals(found, item_ids, llm, rules)
        start = 0
        for index in indexes:
            end = start + len(groups[index])
            flags[index] = RiskFlags(found.escalate[start:end], found.review[start:end], found.reasons[start:end])
            start = end
    return flags  # type: ignore[return-value]


def decide_group(engine: Engine, group_items: ScoredGroup, cycle: int | None, context: BatchContext,
                 flags: RiskFlags) -> list[tuple[DecisionBatch, int | None]]:
    """The decisions of one (segment, model version) group of scored items, as one batch per threshold, each with
    the position of its evidence among the batch's evidence rows (turned into an id when the batch writes them)."""
    segment, model_version = group_items.segment, group_items.model_version
    segment_policy = context.policy.for_segment(segment)
    group = context.group_of[model_version][segment]  # the segment itself, or the pool it falls back to
    report_row = context.reports.get((model_version, group))
    item_ids, raw = group_items.item_ids, group_items.confidence
    calibrator = _calibrator(context, report_row)
    calibrated = raw if calibrator is None else calibrator.predict(np.nan_to_num(raw, nan=0.0))
    calibrated = np.where(np.isfinite(raw), calibrated, np.nan)
    threshold, evidence = _certified(engine, context, model_version, group, segment_policy, calibrator, report_row)
    halted = context.halted.get(segment) == model_version
    earlier = group_items.previous
    fresh = all_none(earlier)  # no item was routed before: fresh traffic
    rerouted = np.zeros(len(earlier), dtype=bool) if fresh else \
        np.array([e is not None and e[1] in PEOPLE_ROUTES for e in earlier], dtype=bool)
    backlog, backlog_row = backlog_thresholds(engine, segment, model_version, segment_policy, earlier, rerouted,
                                              context.policy_version)
    backlog_evidence = context.register(backlog_row)
    rng = derive_rng("route", context.policy_version, model_version, segment, item_ids)
    result = route(calibrated, policy=segment_policy, calibration=gate_now(report_row, segment_policy), rng=rng,
                   risk_escalate=flags.escalate, risk_review=flags.review, risk_reasons=flags.reasons,
                   threshold=threshold, threshold_scores=raw if segment_policy.has_target else None,
                   halt_reasons=(REASON_LIVE_GUARD_HALTED,) if halted and segment_policy.has_target else (),
                   rerouted=rerouted, max_audits=context.audit_allowance.get(segment), backlog_threshold=backlog)
    if segment in context.audit_allowance:  # the audits this group is expected to send use the allowance up
        audited = np.isin(result.routes, [Route.AUTO_ACCEPT, Route.SPOT_CHECK, Route.REVIEW])
        context.audit_allowance[segment] -= result.audit_rate * int(audited.sum())
    settled = np.isin(result.routes, [Route.AUTO_ACCEPT, Route.SPOT_CHECK]) & rerouted  # by the backlog's own
    constants = {"segment": segment, "policy_version": context.policy_version, "model_version": model_version,
                 "calibration_id": report_row.id if report_row else None, "audit_rate": result.audit_rate,
                 "cycle": cycle, "run_id": context.run_id, "created_at": utcnow()}
    columns: dict[str, list[Any]] = {
        "item_id": item_ids, "route": list(map(str, result.routes.tolist())), "reasons": _reasons_json(result.reasons),
        "raw_confidence": _floats_or_none(raw), "calibrated_confidence": _floats_or_none(calibrated),
        "predicted_label": group_items.labels, "inclusion_probability": _floats_or_none(result.inclusion_probability),
        "supersedes_id": [None] * len(earlier) if fresh else [None if e is None else e[0] for e in earlier],
    }
    # one batch per threshold the group's items went by: the group's own, and the backlog certificate's for the
    # items it settled (NaN, one batch, for settled items no certificate covered)
    parts = [(np.flatnonzero(~settled), result.threshold, evidence)]
    values, which = np.unique(backlog[settled], return_inverse=True)
    parts += [(np.flatnonzero(settled)[which == k], value, backlog_evidence) for k, value in enumerate(values.tolist())]
    return [(DecisionBatch({**constants, "threshold": _float_or_none(threshold)}, columns).take(positions.tolist()), at)
            for positions, threshold, at in parts if len(positions)]


def backlog_thresholds(engine: Engine, segment: str, model_version: str, rules: SegmentPolicy,
                       earlier: list[tuple[int, str] | None], rerouted: np.ndarray,
                       policy_version: str) -> tuple[np.ndarray, dict[str, Any] | None]:
    """Each item's backlog threshold (NaN for an item no certified backlog covers) and the evidence behind it:
    the rerouted items of the select run's population that left them waiting (``services.backlog``)."""
    thresholds = np.full(rerouted.shape[0], np.nan)
    if not rerouted.any():
        return thresholds, None
    certificate = backlog_certificate(engine, segment, model_version, rules,
                                      [e[0] for e, r in zip(earlier, rerouted.tolist()) if r and e is not None],
                                      policy_version=policy_version)
    if certificate.threshold is None:
        return thresholds, certificate.evidence
    covered = np.array([r and e is not None and e[0] in certificate.decision_ids
                        for e, r in zip(earlier, rerouted.tolist())], dtype=bool)
    return np.where(covered, certificate.threshold, np.nan), certificate.evidence


class RoutingVersions(NamedTuple):
    """The models whose predictions route scored items, read once per route run: the promoted classifier's
    version (None for none) and the promoted version of each kind of LLM-pipeline output."""

    model: str | None
    families: dict[str, str]

    def all(self) -> list[str]:
        """Every version whose predictions route an item: the upstream passthrough's (an item's own scores), the
        classifier's and each kind's, each once, in that order."""
        return list(dict.fromkeys([UPSTREAM_MODEL, *([self.model] if self.model else []),
                                   *sorted(self.families.values())]))


@task(name="route-batch", cache_policy=NO_CACHE)
@takes_payloads
def route_batch(
    sizes: list[SegmentSize], cycle: int | None, settings: SluiceSettings, policy: Policy,
    policy_version: str, halted: dict[str, str], labels: dict[str, ModelLabels], versions: RoutingVersions,
    allowances: dict[str, float],
) -> Counter[str]:
    """Route the scored items of a batch of segments and write their decisions at once: one read of their items,
    in (segment, model version) groups, with their predictions and risk inputs (`read_scored_groups`), one write.
    `policy` (version `policy_version`) is the one the flow read when it started, `labels` each routing model's
    certifying labels the batch's segments use, `versions` the models whose predictions route, and `allowances`
    what each segment's audits may still take of its label budget, read once by the flow."""
    engine = engine_for(settings)
    with collector_paused():  # a context, not a decorator: Dask pickles the task's function
        groups = read_scored_groups(engine, [size.segment for size in sizes], versions.model,
                                    family_versions=versions.families)
        return route_groups(engine, groups, cycle, policy, policy_version, halted, labels, allowances)


def route_groups(engine: Engine, groups: list[ScoredGroup], cycle: int | None, policy: Policy, policy_version: str,
                 halted: dict[str, str], labels: dict[str, ModelLabels],
                 allowances: dict[str, float]) -> Counter[str]:
    """Decide the groups' items and write the decisions, the threshold evidence and the items' moves in one
    transaction; an item that is no longer scored when the write comes (routed since the groups were read) gets
    no decision."""
    if not groups:  # a batch run again after its items were routed reads none
        return Counter()
    context = _context(engine, groups, policy, policy_version, halted, labels, allowances)
    llm_kinds = {str(kind) for kind in LLM_KINDS}
    llm_ids = [item_id for g in groups if not llm_kinds.isdisjoint(g.kinds)
               for item_id, kind in zip(g.item_ids, g.kinds) if kind in llm_kinds]
    llm = llm_inputs(engine, llm_ids) if llm_ids else None  # one query for the batch's payloads
    flags = risk_flags_by_group(engine, groups, context, llm)
    pending = [part for group, f in zip(groups, flags) for part in decide_group(engine, group, cycle, context, f)]
    with write_transaction(engine) as conn:  # the evidence, the decisions and the items' moves: one write
        evidence_ids = [write_threshold_evidence(conn, row) for row in context.evidence]
        batches = [DecisionBatch({**batch.constants, "evidence_id": None if at is None else evidence_ids[at]},
                                 batch.columns) for batch, at in pending]
        # only the items that moved keep a decision: a re-run of a batch already written decides nothing twice
        return settle_decisions(conn, batches, STATE_AFTER, by="route")


def _float_or_none(value: float | None) -> float | None:
    return None if value is None or value != value else float(value)  # NaN -> None


def _floats_or_none(values: np.ndarray) -> list[float | None]:
    values = np.asarray(values, dtype=float)
    if not np.isnan(values).any():  # the common case: one conversion, no test per value
        return values.tolist()
    return [None if v != v else v for v in values.tolist()]  # NaN -> None


def _reasons_json(reasons: tuple[tuple[str, ...], ...]) -> list[str]:
    """`json.dumps(list(r))` per item; items share a handful of reason tuples, so each is encoded once."""
    encoded: dict[tuple[str, ...], str] = {}
    return [encoded.get(r) or encoded.setdefault(r, json.dumps(list(r))) for r in reasons]


def submit_route_batches(futures: list, engine: Engine, settings: SluiceSettings, policy: Policy,
                         policy_version: str, halted: dict[str, str], cycle: int | None, now: datetime) -> None:
    """Count the scored items of each segment (through the state rows' index: no item read), pack the segments
    into batches, and submit one route task per batch with the certifying labels its segments use under each
    routing model and what their audits may take of their label budgets (one read of the budget window's tasks
    per run, not per batch), each added to `futures` as it is submitted (the caller's `settled()` then waits for
    every one, even when a later submission fails). Each batch reads its own items: the flow holds no item."""
    promoted = promoted_model(engine)
    versions = RoutingVersions(promoted.version if promoted else None, promoted_family_versions(engine))
    sizes = scored_segment_sizes(engine)
    if not sizes:
        return
    segments = [size.segment for size in sizes]
    labels = {model: model_labels(engine, policy, model, segments) for model in versions.all()}
    allowances = audit_allowances(engine, policy, segments, now)  # the window's spend as the run starts
    for batch in pack(sizes, max_items=BATCH_ITEMS, max_groups=BATCH_GROUPS):
        mine = {model: labelled.for_segments(policy, [size.segment for size in batch])
                for model, labelled in labels.items()}
        futures.append(route_batch.submit(Payload(batch), cycle, settings, Payload(policy), policy_version,
                                          Payload(halted), Payload(mine), versions,
                                          Payload({size.segment: allowances[size.segment] for size in batch})))


@flow(name="route", log_prints=True, task_runner=BATCH_RUNNER)
@holds_store_lock
def route_flow(cycle: int | None = None, settings: SluiceSettings | None = None,
               as_of: datetime | None = None) -> dict[str, Any]:
    """Route every scored item under the active policy, per segment and model version, in batches of segments;
    first run every target segment's live guard on the audits that came in since the last route. `as_of` (default:
    now) picks the budget window whose remaining labels size the audits; simulations pass their clock."""
    logger = get_run_logger()
    settings = settings_or_environment(settings)
    now = as_utc(as_of) or utcnow()
    engine = engine_for(settings)
    policy, policy_version = active_policy(engine)  # read once: every batch routes under this version
    guards = check_live_guards(engine, policy)
    halted = {segment: g["halted_model"] for segment, g in guards.items() if g.get("halted_model")}
    counts: Counter[str] = Counter()
    with settled() as futures:
        submit_route_batches(futures, engine, settings, policy, policy_version, halted, cycle, now)
        for future in futures:
            counts.update(future.result())
    summary = {"routed": sum(counts.values()), **{r.value: counts.get(r.value, 0) for r in Route},
               "halted_segments": sorted(halted)}
    if summary["routed"]:
        refresh_statistics(engine_for(settings), "item_states", "routing_decisions", "routing_batches")
    logger.info("route: %s", {k: v for k, v in summary.items() if k != "halted_segments"})
    if halted:
        logger.warning("route: live guard halted automation in %d segment(s): %s", len(halted),
                       ", ".join(sorted(halted)[:20]))
    return summary
