"""What routing reads and the decision trail it leaves: scored items, the review backlog, earlier
decisions, the inputs of risk signals and of LLM-pipeline outputs, the audit export."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy import Connection, Engine, String, and_, bindparam, case, func, literal, null, or_, select, union_all

from store.bulk import (
    LOOKUP_CHUNK, all_none, chunked, columns_of, driver_rows, existing_keys, json_reader, runs,
)
from store.decision_batches import full_decisions
from store.models import Item, ItemStateRow, Prediction, RoutingBatch, RoutingDecision, ThresholdEvidence
from store.passthrough import UPSTREAM_MODEL
from store.predictions import upstream_predicted
from store.vocab import ItemKind, ItemState

__all__ = [
    "BacklogRow", "DECISION_FIELDS", "decision_trail", "EVIDENCE_FIELDS", "known_items", "llm_inputs",
    "LLM_KINDS", "LLM_READ_CHUNK", "LlmInputs", "review_backlog", "review_backlog_sizes",
    "risk_inputs", "RiskInputs", "read_scored_groups", "SegmentSize", "scored_groups", "scored_segment_sizes",
    "ScoredGroup", "segments_seen",
]


class BacklogRow(NamedTuple):
    """A routed item waiting for people: its latest decision and that decision's prediction."""

    decision_id: int
    item_id: str
    segment: str
    route: str
    inclusion_probability: float | None
    model_version: str
    policy_version: str
    predicted_label: str | None
    raw_confidence: float | None
    probs: dict[str, float] | None
    audit_rate: float | None
    rerouted: bool = False  # the decision re-routed an item people already had


@dataclass(frozen=True)
class SegmentSize:
    """How many items one segment's review backlog holds: what select packs into batches before any batch reads
    its rows."""

    segment: str
    size: int

    def __len__(self) -> int:
        return self.size


def review_backlog_sizes(engine: Engine) -> list[SegmentSize]:
    """How many items in state ``routed`` each segment holds, in segment order: what select packs into batches."""
    return _segment_sizes(engine, ItemState.routed)


def scored_segment_sizes(engine: Engine) -> list[SegmentSize]:
    """How many items in state ``scored`` each segment holds, in segment order: what route packs into batches. An
    item scored by a model that no longer routes (one demoted since) is counted and then not read
    (`read_scored_groups`): the count bounds a batch's size, it does not promise it."""
    return _segment_sizes(engine, ItemState.scored)


def _segment_sizes(engine: Engine, state: ItemState) -> list[SegmentSize]:
    """How many items in `state` each segment holds, in segment order: counted through the state rows' (state,
    segment) index, no item read."""
    query = (select(ItemStateRow.segment, func.count()).where(ItemStateRow.state == state)
             .group_by(ItemStateRow.segment).order_by(ItemStateRow.segment))
    with engine.connect() as conn:
        return [SegmentSize(segment, count) for segment, count in conn.execute(query)]


def review_backlog(engine: Engine, segments: Sequence[str] | None = None) -> list[BacklogRow]:
    """Every item in state ``routed`` (of `segments` when given, read 1,000 segments at a time through the state
    rows' index) with its latest decision, in item id order within each segment."""
    upstream = RoutingBatch.model_version == UPSTREAM_MODEL  # its prediction is the item's (store.predictions)
    query = (
        select(RoutingDecision.id, RoutingDecision.item_id, RoutingBatch.segment, RoutingDecision.route,
               RoutingDecision.inclusion_probability, RoutingBatch.model_version,
               RoutingBatch.policy_version, RoutingDecision.predicted_label,
               RoutingDecision.raw_confidence, case((upstream, Item.upstream_probs), else_=Prediction.probs),
               RoutingBatch.audit_rate, RoutingDecision.supersedes_id.is_not(None).label("rerouted"))
        .select_from(ItemStateRow)
        .join(RoutingDecision, RoutingDecision.id == ItemStateRow.decision_id)  # the item's latest decision
        .join(RoutingBatch, RoutingBatch.id == RoutingDecision.batch_id)
        .join(Item, Item.id == RoutingDecision.item_id)
        .outerjoin(Prediction, and_(Prediction.item_id == RoutingDecision.item_id,
                                    Prediction.model_version == RoutingBatch.model_version))
        .where(ItemStateRow.state == ItemState.routed, or_(upstream, Prediction.id.is_not(None)))
        .order_by(RoutingDecision.item_id)
    )
    if segments is None:
        parts: list[dict[str, Any]] = [{}]
    else:
        query = query.where(ItemStateRow.segment.in_(bindparam("segments", expanding=True)))
        parts = [{"segments": list(part)} for part in chunked(sorted(set(segments)), SEGMENT_CHUNK)]
    with engine.connect() as conn:
        return [BacklogRow._make((*row[:-1], bool(row.rerouted)))
                for part in parts for row in conn.execute(query, part)]  # rows, unpacked by position


@dataclass(frozen=True, eq=False)
class ScoredGroup:
    """The scored items of one (segment, model version), in columns and item id order: each item with the
    prediction that routes it (its confidence, NaN for none, and label), its kind, what its risk signals read
    (``inputs``, aligned with ``item_ids``), and its latest earlier routing decision, (its id, its route), or None
    (``previous``: an item scored again after it was routed)."""

    segment: str
    model_version: str
    item_ids: list[str]
    confidence: np.ndarray
    labels: list[str | None]
    kinds: list[str]
    inputs: RiskInputs
    previous: list[tuple[int, str] | None]

    def __len__(self) -> int:
        return len(self.item_ids)


def _scored_parts(model_version: str | None, family_versions: Mapping[str, str] | None,
                  columns: Callable[[Any, Any, Any, Any], list[Any]]) -> list[Any]:
    """One select per kind of prediction that routes a scored item, each of the columns `columns` builds from
    (model version, confidence, label, feature vector): the upstream passthrough's prediction for an item that
    carries upstream scores (the item's own, ``store.predictions``); else, for an output of an LLM pipeline, the
    version `family_versions` names for its kind, and `model_version`'s for the rest (the classifier's
    predictions never route an output of an LLM pipeline)."""
    upstream = Item.upstream_confidence.is_not(None) | Item.upstream_probs.is_not(None)
    routes = []
    if model_version:
        routes.append(~upstream & (Item.kind == ItemKind.CLASSIFICATION) & (Prediction.model_version == model_version))
    routes.extend(~upstream & (Item.kind == kind) & (Prediction.model_version == version)
                  for kind, version in sorted((family_versions or {}).items()))
    # an upstream model's training data is not known, so no feature vector of a passthrough item is read
    parts: list[Any] = [_scored(select(*columns(literal(UPSTREAM_MODEL, String), Item.upstream_confidence,
                                                Item.upstream_prediction, null())))
                        .where(upstream_predicted())]
    if routes:
        parts.append(_scored(select(*columns(Prediction.model_version, Prediction.confidence, Prediction.label,
                                             Item.features)))
                     .join(Prediction, Prediction.item_id == Item.id)
                     .where(or_(*routes)))
    return parts


def _scored(query: Any) -> Any:
    """`query` over the items in state ``scored``, found through their state rows' (state, segment) index; the
    segment a caller filters on is the state row's (``ItemStateRow.segment``, the item's own)."""
    return (query.select_from(ItemStateRow).join(Item, Item.id == ItemStateRow.item_id)
            .where(ItemStateRow.state == ItemState.scored))


def read_scored_groups(engine: Engine, segments: Sequence[str], model_version: str | None, *,
                       family_versions: Mapping[str, str] | None = None) -> list[ScoredGroup]:
    """The scored items of `segments`, in one group per (segment, model version) whose prediction routes them
    (`_scored_parts`), each item with that prediction and its risk inputs, in one read per 1,000 segments through
    the (state, segment) index, with no list of ids to bind: what a route batch reads, once. Groups come in
    (segment, model version) order; a segment that holds no scored item (anymore) has none."""
    parts = _scored_parts(model_version, family_versions,
                          lambda version, confidence, label, features: [
                              # the state row's id: its index holds (state, segment, id) in order, so SQLite
                              # reads the groups already sorted
                              ItemStateRow.segment.label("segment"), version.label("version"),
                              ItemStateRow.item_id.label("id"), confidence.label("confidence"),
                              label.label("label"), Item.kind, Item.text, Item.item_metadata,
                              features.label("features"), ItemStateRow.decision_id])
    selects: list[Any] = [part.where(ItemStateRow.segment.in_(bindparam("segments", expanding=True)))
                          for part in parts]
    # the passthrough alone has one version: ordered as its index holds it, SQLite sorts nothing (a bound version in
    # the order made it sort every segment's rows: 0.61 s against 0.54 s for 200,000 items in raw sqlite3)
    query: Any = union_all(*selects).order_by("segment", "version", "id") if len(selects) > 1 else \
        selects[0].order_by("segment", "id")
    groups = []
    with engine.connect() as conn:
        decode = json_reader(conn)
        for part in chunked(sorted(set(segments)), SEGMENT_CHUNK):
            segment_of, version_of, ids, confidence, labels, kinds, texts, metadata, features, decided = columns_of(
                driver_rows(conn, query, {"segments": list(part)}), 10)
            routes = _decision_routes(conn, [d for d in decided if d is not None])
            for (segment, version), start, stop in runs(segment_of, version_of):
                at = slice(start, stop)
                groups.append(ScoredGroup(
                    segment, version, ids[at], np.array(confidence[at], dtype=float), labels[at],
                    list(map(str, kinds[at])),
                    RiskInputs(texts[at], _decoded(metadata[at], decode), _decoded(features[at], decode),
                               [segment] * (stop - start)), _previous(decided[at], routes)))
    return groups


def _decoded(values: Sequence[Any], decode: Callable[[Any], Any]) -> list[Any]:
    """Each of a read's JSON `values` decoded (`decode`: see ``store.bulk.json_reader``); a column with no value at
    all (passthrough items have no feature vector, most items no metadata) is not decoded value by value."""
    if all_none(values):
        return list(values)
    return [decode(value) for value in values]


def _previous(decided: Sequence[int | None], routes: Mapping[int, str]) -> list[tuple[int, str] | None]:
    """(decision id, route) of each item's latest earlier decision id in `decided`, None for none."""
    if all_none(decided):  # fresh traffic: no item was decided before
        return [None] * len(decided)
    return [None if d is None else (d, routes[d]) for d in decided]


def scored_groups(engine: Engine, model_version: str | None, *,
                  family_versions: Mapping[str, str] | None = None) -> list[ScoredGroup]:
    """Every group of items in state ``scored``, read whole (`read_scored_groups` of every segment that holds
    any)."""
    return read_scored_groups(engine, [size.segment for size in scored_segment_sizes(engine)], model_version,
                              family_versions=family_versions)


# segments per read by segment: a route batch's groups (at most 1,000), well within every bound-parameter limit
SEGMENT_CHUNK = 1_000


def _decision_routes(conn: Connection, decision_ids: Sequence[int]) -> dict[int, str]:
    """The route of each of `decision_ids`, read by primary key (nothing is read for none: fresh traffic has no
    earlier decision)."""
    statement = select(RoutingDecision.id, RoutingDecision.route).where(
        RoutingDecision.id.in_(bindparam("ids", expanding=True)))
    return {decision_id: route for part in chunked(sorted(set(decision_ids)), LOOKUP_CHUNK)
            for decision_id, route in driver_rows(conn, statement, {"ids": list(part)})}


class RiskInputs(NamedTuple):
    """What risk signals read of items, in columns aligned with the ids asked for (None where an item has no
    value, or was not found)."""

    texts: list[str | None]
    metadata: list[dict[str, Any] | None]
    features: list[list[float] | None]
    segments: list[str]

    @classmethod
    def concat(cls, parts: Sequence[RiskInputs]) -> RiskInputs:
        """The inputs of `parts`, one after the other."""
        return cls(*([value for part in parts for value in getattr(part, name)] for name in cls._fields))


def risk_inputs(engine: Engine, item_ids: Sequence[str], *, features: bool = True) -> RiskInputs:
    """The text, metadata, segment and (when `features`) feature vector of each item, in one read per 5,000 ids;
    an id not found gets None and an empty segment."""
    query = select(*_risk_columns(features)).where(Item.id.in_(bindparam("ids", expanding=True)))
    with engine.connect() as conn:
        decode = json_reader(conn)
        found = {row[0]: row for part in chunked(list(item_ids), LOOKUP_CHUNK)
                 for row in driver_rows(conn, query, {"ids": list(part)})}
    return _aligned(found, item_ids, decode, features)


def _risk_columns(features: bool) -> list[Any]:
    return [Item.id, Item.text, Item.item_metadata, Item.segment] + ([Item.features] if features else [])


def _aligned(found: Mapping[str, tuple], item_ids: Sequence[str], decode: Any, features: bool) -> RiskInputs:
    missing = (None, None, None, "", None)
    rows = [found.get(item_id, missing) for item_id in item_ids]
    return RiskInputs([r[1] for r in rows], [decode(r[2]) for r in rows],
                      [decode(r[4]) for r in rows] if features else [None] * len(rows), [r[3] for r in rows])


LLM_KINDS = (ItemKind.GENERATION, ItemKind.PAIRWISE, ItemKind.EXTRACTION)


# ids per query of the LLM-pipeline reads: a route batch's worth (20,000), within SQLite's 32,766 and PostgreSQL's
# 65,535 bound parameters, so a batch reads its payloads in one query
LLM_READ_CHUNK = 20_000


class LlmInputs(NamedTuple):
    """Columns of outputs of LLM pipelines, one entry per item: what their prompt-injection signals read."""

    item_ids: list[str]
    kinds: list[str]
    texts: list[str | None]
    payloads: list[dict[str, Any] | None]


def llm_inputs(engine: Engine, item_ids: Sequence[str]) -> LlmInputs:
    """The kind, text and payload of those of `item_ids` that are outputs of LLM pipelines (a classification item
    is left out), in columns; one query per 20,000 ids."""
    query = (select(Item.id, Item.kind, Item.text, Item.payload)
             .where(Item.id.in_(bindparam("ids", expanding=True)), Item.kind.in_(LLM_KINDS)))
    with engine.connect() as conn:
        rows = [tuple(row) for part in chunked(list(item_ids), LLM_READ_CHUNK)
                for row in conn.execute(query, {"ids": list(part)})]
    if not rows:
        return LlmInputs([], [], [], [])
    return LlmInputs(*(list(column) for column in zip(*rows)))


def segments_seen(engine: Engine) -> list[str]:
    """Every segment that has items in the store."""
    with engine.connect() as conn:
        return list(conn.execute(select(Item.segment).distinct()).scalars())


def known_items(engine: Engine, item_ids: list[str]) -> set[str]:
    """Those of `item_ids` that are items in the store."""
    with engine.connect() as conn:
        return existing_keys(conn, Item.__table__.c.id, item_ids)


# The audit trail's columns: each decision with the versions and evidence behind it, and the certification behind
# a derived threshold beside each decision it applied to (empty for fixed thresholds), as ``evidence_<field>``.
DECISION_FIELDS = ("id", "item_id", "segment", "route", "reasons", "policy_version", "model_version",
                   "calibration_id", "threshold", "raw_confidence", "calibrated_confidence", "predicted_label",
                   "inclusion_probability", "cycle", "supersedes_id", "created_at", "evidence_id", "batch_id",
                   "run_id")


EVIDENCE_FIELDS = ("scale", "calibrated_threshold", "n", "n_accepted", "n_errors", "coverage", "error_upper_bound",
                   "alpha", "delta", "tested", "pool", "label_fingerprint", "estimator", "labels_by_reason")


def decision_trail(engine: Engine, *, since: datetime | None = None, until: datetime | None = None,
                   item_id: str | None = None, segments: Sequence[str] = (), routes: Sequence[str] = (),
                   limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Routing decisions made at or after `since` (and before `until`), of one item, some segments or routes when
    asked, in decision order, as records keyed by `DECISION_FIELDS` and ``evidence_`` + `EVIDENCE_FIELDS`."""
    decision = full_decisions()
    query = (
        select(*(decision.c[f] for f in DECISION_FIELDS),
               *(getattr(ThresholdEvidence, f).label(f"evidence_{f}") for f in EVIDENCE_FIELDS))
        .outerjoin(ThresholdEvidence, ThresholdEvidence.id == decision.c.evidence_id)
        .order_by(decision.c.id)
    )
    if since is not None:
        query = query.where(decision.c.created_at >= since)
    if until is not None:
        query = query.where(decision.c.created_at < until)
    if item_id is not None:
        query = query.where(decision.c.item_id == item_id)
    if segments:
        query = query.where(decision.c.segment.in_(list(segments)))
    if routes:
        query = query.where(decision.c.route.in_(list(routes)))
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        for row in conn.execute(query):
            yield row._asdict()
