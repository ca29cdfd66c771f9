"""What routing reads and the decision trail it leaves: scored items, the review backlog, earlier
decisions, the inputs of risk signals and of LLM-pipeline outputs, the audit export."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Engine, and_, bindparam, func, select

from store.bulk import chunked, existing_keys
from store.models import Item, Prediction, RoutingDecision, ThresholdEvidence
from store.passthrough import UPSTREAM_MODEL
from store.vocab import ItemKind, ItemState

__all__ = [
    "BacklogRow", "DECISION_FIELDS", "decision_trail", "EVIDENCE_FIELDS", "item_inputs", "ItemInputs",
    "known_items", "llm_inputs", "LLM_KINDS", "LLM_READ_CHUNK", "LlmInputs", "previous_decisions",
    "review_backlog", "scored_items", "scored_llm_item_ids", "ScoredItem", "segments_seen",
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


def review_backlog(engine: Engine) -> list[BacklogRow]:
    """Every item in state ``routed`` with its latest decision, in item id order."""
    latest = select(func.max(RoutingDecision.id).label("id")).group_by(RoutingDecision.item_id).subquery()
    query = (
        select(RoutingDecision.id, RoutingDecision.item_id, RoutingDecision.segment, RoutingDecision.route,
               RoutingDecision.inclusion_probability, RoutingDecision.model_version,
               RoutingDecision.policy_version, RoutingDecision.predicted_label,
               RoutingDecision.raw_confidence, Prediction.probs, RoutingDecision.audit_rate,
               RoutingDecision.supersedes_id.is_not(None).label("rerouted"))
        .join(latest, latest.c.id == RoutingDecision.id)
        .join(Item, Item.id == RoutingDecision.item_id)
        .join(Prediction, and_(Prediction.item_id == RoutingDecision.item_id,
                               Prediction.model_version == RoutingDecision.model_version))
        .where(Item.state == ItemState.routed)
        .order_by(RoutingDecision.item_id)
    )
    with engine.connect() as conn:
        rows: Iterable[Any] = conn.execute(query)  # rows, unpacked by position
        return [BacklogRow._make((*row[:-1], bool(row.rerouted))) for row in rows]


class ScoredItem(NamedTuple):
    """An item waiting to be routed, with the prediction that routes it."""

    item_id: str
    segment: str
    model_version: str
    confidence: float | None
    label: str | None


def scored_items(engine: Engine, model_version: str | None, *,
                 family_versions: Mapping[str, str] | None = None) -> list[ScoredItem]:
    """Items in state ``scored`` with the prediction that routes each, in item id order: the upstream passthrough's
    for an item that carries upstream scores; else, for an output of an LLM pipeline, the version
    `family_versions` names for its kind (`promoted_family_versions`), and `model_version`'s for the rest."""
    families = dict(family_versions or {})
    versions = sorted({UPSTREAM_MODEL, *families.values()} | ({model_version} if model_version else set()))
    query = (
        select(Item.id, Item.segment, Item.kind, Prediction.model_version, Prediction.confidence, Prediction.label,
               (Item.upstream_confidence.is_not(None) | Item.upstream_probs.is_not(None)).label("upstream"))
        .join(Prediction, and_(Prediction.item_id == Item.id, Prediction.model_version.in_(versions)))
        .where(Item.state == ItemState.scored)
        .order_by(Item.id)
    )
    wanted: dict[str, ScoredItem] = {}
    routes: str | None
    with engine.connect() as conn:
        for row in conn.execute(query):
            if row.upstream:
                routes = UPSTREAM_MODEL
            else:  # the classifier's predictions never route an output of an LLM pipeline
                routes = model_version if row.kind == ItemKind.CLASSIFICATION else families.get(row.kind)
            if row.model_version == routes:
                wanted[row.id] = ScoredItem(row.id, row.segment, row.model_version, row.confidence, row.label)
    return list(wanted.values())


def previous_decisions(engine: Engine, item_ids: list[str]) -> dict[str, tuple[int, str]]:
    """Each item's latest earlier routing decision: (its id, its route)."""
    found: dict[str, tuple[int, str]] = {}
    latest = (select(RoutingDecision.item_id, func.max(RoutingDecision.id).label("id"))
              .where(RoutingDecision.item_id.in_(bindparam("ids", expanding=True)))
              .group_by(RoutingDecision.item_id).subquery())
    statement = select(latest.c.item_id, RoutingDecision.id, RoutingDecision.route).join(
        RoutingDecision, RoutingDecision.id == latest.c.id)
    with engine.connect() as conn:
        for part in chunked(item_ids, 5_000):
            found.update((row.item_id, (row.id, row.route)) for row in conn.execute(statement, {"ids": list(part)}))
    return found


class ItemInputs(NamedTuple):
    """What risk signals read of an item."""

    text: str | None
    metadata: dict[str, Any] | None
    features: list[float] | None
    segment: str


def item_inputs(engine: Engine, item_ids: list[str]) -> dict[str, ItemInputs]:
    """The text, metadata, features and segment of each of the items found."""
    query = (select(Item.id, Item.text, Item.item_metadata.label("item_metadata"), Item.features, Item.segment)
             .where(Item.id.in_(bindparam("ids", expanding=True))))
    found: dict[str, ItemInputs] = {}
    with engine.connect() as conn:
        for part in chunked(item_ids, 5_000):
            found.update((r.id, ItemInputs(r.text, r.item_metadata, r.features, r.segment))
                         for r in conn.execute(query, {"ids": list(part)}))
    return found


LLM_KINDS = (ItemKind.GENERATION, ItemKind.PAIRWISE, ItemKind.EXTRACTION)


# ids per query of the LLM-pipeline reads: a route batch's worth (20,000), within SQLite's 32,766 and PostgreSQL's
# 65,535 bound parameters, so a batch reads its payloads in one query
LLM_READ_CHUNK = 20_000


def scored_llm_item_ids(engine: Engine) -> list[str]:
    """Ids of the scored items that are outputs of LLM pipelines (generation, pairwise, extraction), in id order."""
    query = (select(Item.id).where(Item.state == ItemState.scored, Item.kind.in_(LLM_KINDS)).order_by(Item.id))
    with engine.connect() as conn:
        return list(conn.execute(query).scalars())


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
                   "inclusion_probability", "cycle", "supersedes_id", "created_at", "evidence_id")


EVIDENCE_FIELDS = ("scale", "calibrated_threshold", "n", "n_accepted", "n_errors", "coverage", "error_upper_bound",
                   "alpha", "delta", "tested", "pool", "label_fingerprint", "estimator", "labels_by_reason")


def decision_trail(engine: Engine, *, since: datetime | None = None, until: datetime | None = None,
                   item_id: str | None = None, segments: Sequence[str] = (), routes: Sequence[str] = (),
                   limit: int | None = None) -> Iterator[dict[str, Any]]:
    """Routing decisions made at or after `since` (and before `until`), of one item, some segments or routes when
    asked, in decision order, as records keyed by `DECISION_FIELDS` and ``evidence_`` + `EVIDENCE_FIELDS`."""
    query = (
        select(*(getattr(RoutingDecision, f) for f in DECISION_FIELDS),
               *(getattr(ThresholdEvidence, f).label(f"evidence_{f}") for f in EVIDENCE_FIELDS))
        .outerjoin(ThresholdEvidence, ThresholdEvidence.id == RoutingDecision.evidence_id)
        .order_by(RoutingDecision.id)
    )
    if since is not None:
        query = query.where(RoutingDecision.created_at >= since)
    if until is not None:
        query = query.where(RoutingDecision.created_at < until)
    if item_id is not None:
        query = query.where(RoutingDecision.item_id == item_id)
    if segments:
        query = query.where(RoutingDecision.segment.in_(list(segments)))
    if routes:
        query = query.where(RoutingDecision.route.in_(list(routes)))
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        for row in conn.execute(query):
            yield row._asdict()
