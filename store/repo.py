"""Typed reads and writes that flows and the console share: policy versions, models, events, watermarks and the
held-out labels that calibrate and certify.

Rows come back as named tuples or table objects, read by attribute; nothing outside ``store/`` needs to know a
column's position. Every write here is idempotent: re-running it with the same input changes nothing.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, cast

import numpy as np
from sqlalchemy import Engine, and_, bindparam, func, insert, select, update
from sqlmodel import Session

from routing.policy import Policy
from store.bulk import LOOKUP_CHUNK, chunked, existing_keys, insert_ignore
from store.models import (
    AuditEvent,
    CalibrationReportRow,
    GuardHalt,
    Item,
    Label,
    ModelVersion,
    PolicyVersion,
    Prediction,
    RoutingDecision,
    ThresholdEvidence,
    Watermark,
)
from store.passthrough import UPSTREAM_MODEL
from store.policy_changes import record_applied
from store.settings import PROJECT_ROOT
from store.vocab import FAMILY_ITEM_KIND, UNBIASED_SELECTIONS, ItemKind, ItemState, ModelFamily, ModelStatus, Split

__all__ = [
    "ModelArtifact",
    "DECISION_FIELDS",
    "DEFAULT_POLICY_PATH",
    "EVIDENCE_FIELDS",
    "UPSTREAM_MODEL",
    "BacklogRow",
    "HeldOut",
    "ItemInputs",
    "LabelledItem",
    "LlmInputs",
    "PolicyRecord",
    "ScoredItem",
    "StoredCalibration",
    "active_policy",
    "calibration_report_for",
    "calibration_reports",
    "decision_trail",
    "get_watermark",
    "guard_halts",
    "held_out_labels",
    "labelled_arrays",
    "labels_by_reason",
    "item_inputs",
    "known_items",
    "labelled_items",
    "llm_inputs",
    "latest_calibration_method",
    "latest_ece",
    "model_for_data",
    "model_row",
    "model_versions",
    "promote_model",
    "promoted_family_model",
    "promoted_family_versions",
    "promoted_model",
    "promoted_version",
    "promoted_versions",
    "model_artifacts",
    "predicted_model_versions",
    "previous_decisions",
    "recent_confidences",
    "record_event",
    "register_model",
    "reject_model",
    "review_backlog",
    "save_guard_halts",
    "save_calibration_report",
    "save_policy",
    "save_threshold_evidence",
    "scored_items",
    "scored_llm_item_ids",
    "segments_seen",
    "selection_probabilities",
    "set_watermark",
    "stored_policy",
    "training_fingerprint",
    "training_segments",
    "training_texts",
    "training_vectors",
    "unlabelled_inputs",
    "update_calibration_report",
]

DEFAULT_POLICY_PATH = PROJECT_ROOT / "policies" / "default.yaml"


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def record_event(engine: Engine, kind: str, payload: dict[str, Any], *, actor: str = "system") -> None:
    with engine.begin() as conn:
        conn.execute(insert(AuditEvent).values(kind=kind, actor=actor, payload=payload, created_at=_utcnow()))


class PolicyRecord(NamedTuple):
    """A stored policy version: the parsed policy and its provenance."""

    version: str
    name: str
    author: str
    comment: str
    created_at: datetime
    policy: Policy


def save_policy(
    engine: Engine, policy: Policy, *, author: str = "system", comment: str = "", activate: bool = True
) -> str:
    """Store `policy` as an immutable version (its content hash) and, by default, make it the active one."""
    version = policy.content_hash()
    with engine.begin() as conn:
        insert_ignore(conn, PolicyVersion.__table__, [{
            "version": version, "name": policy.name, "document": policy.to_yaml(), "author": author,
            "comment": comment, "active": False, "created_at": _utcnow(),
        }])
        if activate:  # written into the policy's history like any applied change
            record_applied(conn, version, author=author, comment=comment)
    record_event(engine, "policy_saved", {"version": version, "activate": activate, "comment": comment}, actor=author)
    return version


def stored_policy(engine: Engine) -> PolicyRecord | None:
    """The newest policy version marked active, parsed; None when none is (a read: it writes nothing)."""
    query = (
        select(PolicyVersion)
        .where(PolicyVersion.active.is_(True))
        .order_by(PolicyVersion.created_at.desc(), PolicyVersion.version.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    return PolicyRecord(row.version, row.name, row.author, row.comment, row.created_at,
                        Policy.from_stored(row.version, row.document))


def active_policy(engine: Engine, *, default: Path = DEFAULT_POLICY_PATH) -> tuple[Policy, str]:
    """The active policy and its version, for a flow about to act on it: the embedded default is saved and
    activated on first use."""
    record = stored_policy(engine)
    if record is None:
        policy = Policy.load(default)
        return policy, save_policy(engine, policy, comment="embedded default policy")
    return record.policy, record.version


_FAMILY_KINDS = sorted(family.value for family in ModelFamily)


def _newest_promoted(engine: Engine, in_family: Any) -> ModelVersion | None:
    query = (
        select(ModelVersion)
        .where(ModelVersion.status == ModelStatus.PROMOTED, in_family)
        .order_by(ModelVersion.promoted_at.desc(), ModelVersion.version.desc())
        .limit(1)
    )
    with Session(engine, expire_on_commit=False) as session:
        return session.scalars(query).first()


def promoted_model(engine: Engine) -> ModelVersion | None:
    """The most recently promoted classifier (the model of classification items), or None while none is; the
    models of outputs of LLM pipelines are `promoted_family_model`'s."""
    return _newest_promoted(engine, ModelVersion.kind.not_in(_FAMILY_KINDS))


def promoted_family_model(engine: Engine, family: ModelFamily | str) -> ModelVersion | None:
    """The most recently promoted model of `family` (``store.vocab.ModelFamily``), or None while none is."""
    return _newest_promoted(engine, ModelVersion.kind == ModelFamily(family).value)


def promoted_family_versions(engine: Engine) -> dict[str, str]:
    """Per item kind whose family has a promoted model (generation, pairwise): that model's version, which scores
    and routes the items of the kind that arrive without a score of their pipeline's own."""
    found = {FAMILY_ITEM_KIND[family].value: promoted_family_model(engine, family) for family in ModelFamily}
    return {kind: model.version for kind, model in found.items() if model is not None}


def promoted_version(engine: Engine) -> str:
    """The version that routes now: the promoted model's, else the upstream passthrough's."""
    model = promoted_model(engine)
    return UPSTREAM_MODEL if model is None else model.version


def get_watermark(engine: Engine, name: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(Watermark.value).where(Watermark.name == name)).scalar()


def set_watermark(engine: Engine, name: str, value: str) -> None:
    with engine.begin() as conn:
        if conn.execute(select(Watermark.name).where(Watermark.name == name)).first() is None:
            conn.execute(insert(Watermark).values(name=name, value=value, updated_at=_utcnow()))
        else:
            conn.execute(update(Watermark).where(Watermark.name == name).values(value=value, updated_at=_utcnow()))


class HeldOut(NamedTuple):
    """One model's outputs on a segment's unbiased held-out labels, in item id order."""

    item_ids: list[str]
    confidence: np.ndarray
    correct: np.ndarray  # 0/1; an output without a predicted label is never right (fail closed)


def held_out_labels(engine: Engine, model_version: str, *, segment: str | None = None) -> dict[str, HeldOut]:
    """Per segment (or only `segment`): the raw confidence and correctness of `model_version` on the labels that
    may calibrate and certify it: held out, and chosen without regard to any model's uncertainty
    (`store.vocab.UNBIASED_SELECTIONS`). Outputs without a confidence are left out."""
    query = (
        select(Item.segment, Label.item_id, Prediction.confidence, Prediction.label.label("predicted"),
               Label.label.label("truth"))
        .join(Prediction, Prediction.item_id == Label.item_id)
        .join(Item, Item.id == Label.item_id)
        .where(
            Label.split == Split.HOLDOUT,
            Label.selection_reason.in_(sorted(UNBIASED_SELECTIONS)),
            Prediction.model_version == model_version,
            Prediction.confidence.is_not(None),
        )
        .order_by(Label.item_id)
    )
    if segment is not None:
        query = query.where(Item.segment == segment)
    return labelled_arrays(engine, query)


def labelled_arrays(engine: Engine, query: Any) -> dict[str, HeldOut]:
    """Per segment, the :class:`HeldOut` arrays of `query`'s rows (``segment``, ``item_id``, ``confidence``,
    ``predicted``, ``truth``), in the query's order."""
    grouped: dict[str, list[Any]] = {}
    with engine.connect() as conn:
        for row in conn.execute(query):
            grouped.setdefault(row.segment, []).append(row)
    return {
        name: HeldOut(
            [r.item_id for r in rows],
            np.array([r.confidence for r in rows], dtype=float),
            np.array([r.predicted is not None and r.predicted == r.truth for r in rows], dtype=float),
        )
        for name, rows in grouped.items()
    }


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


def training_fingerprint(engine: Engine) -> str:
    """A fingerprint of the training set's content: the ids of its label rows (labels and items are immutable, so
    the same ids are the same examples). Caches of models fitted on the training set are keyed by it."""
    digest = hashlib.sha256()
    with engine.connect() as conn:
        for (label_id,) in conn.execute(select(Label.id).where(Label.split == Split.TRAIN).order_by(Label.id)):
            digest.update(cast(int, label_id).to_bytes(8, "little"))
    return digest.hexdigest()[:32]


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


def latest_ece(engine: Engine, model_version: str) -> dict[str, tuple[int, float]]:
    """Per segment (or pool): (n, ECE) of the newest calibration report of `model_version`."""
    query = (
        select(CalibrationReportRow.segment, CalibrationReportRow.n, CalibrationReportRow.ece)
        .where(CalibrationReportRow.model_version == model_version)
        .order_by(CalibrationReportRow.created_at, CalibrationReportRow.id)
    )
    with engine.connect() as conn:
        return {row.segment: (row.n, row.ece) for row in conn.execute(query)}


class HaltRecord(NamedTuple):
    segment: str
    model_version: str
    last_decision_id: int
    e_value: float
    n_audited: int
    n_errors: int
    alpha: float
    delta: float
    created_at: datetime


def guard_halts(engine: Engine, *, model_versions: list[str] | None = None) -> list[HaltRecord]:
    """Every halt of a live guard (of the given models only, when named), newest first."""
    query = select(*(getattr(GuardHalt, f) for f in HaltRecord._fields)).order_by(GuardHalt.id.desc())
    if model_versions is not None:
        query = query.where(GuardHalt.model_version.in_(model_versions))
    with engine.connect() as conn:
        return [HaltRecord(*row) for row in conn.execute(query)]


def unlabelled_inputs(engine: Engine, kind: str, *, limit: int) -> list[Any]:
    """The texts (`kind` "text") or feature vectors of up to `limit` classification items without a label, in item
    id order."""
    column = Item.text if kind == "text" else Item.features
    query = (select(column).where(column.is_not(None), Item.kind == ItemKind.CLASSIFICATION,
                                  Item.id.not_in(select(Label.item_id)))
             .order_by(Item.id).limit(limit))
    with engine.connect() as conn:
        return list(conn.execute(query).scalars().all())


def model_versions(engine: Engine) -> list[ModelVersion]:
    """Every registered model version, oldest first."""
    query = select(ModelVersion).order_by(ModelVersion.created_at, ModelVersion.version)
    with Session(engine, expire_on_commit=False) as session:
        return list(session.scalars(query).all())


def promoted_versions(engine: Engine) -> list[str]:
    """The versions of every model marked promoted (normally one)."""
    with engine.connect() as conn:
        return list(conn.execute(select(ModelVersion.version).where(ModelVersion.status == ModelStatus.PROMOTED))
                    .scalars())


def calibration_reports(engine: Engine, *, model_versions: list[str] | None = None) -> list[CalibrationReportRow]:
    """Every calibration report (of the given models only, when named), newest first."""
    query = select(CalibrationReportRow).order_by(CalibrationReportRow.created_at.desc(),
                                                  CalibrationReportRow.id.desc())
    if model_versions is not None:
        query = query.where(CalibrationReportRow.model_version.in_(model_versions))
    with Session(engine, expire_on_commit=False) as session:
        return list(session.scalars(query).all())


def latest_calibration_method(engine: Engine, model_version: str, segment: str) -> str | None:
    """The recalibration method of the newest report of (model, segment); None when there is none."""
    query = (
        select(CalibrationReportRow.method)
        .where(CalibrationReportRow.model_version == model_version, CalibrationReportRow.segment == segment)
        .order_by(CalibrationReportRow.created_at.desc(), CalibrationReportRow.id.desc())
        .limit(1)
    )
    with engine.connect() as conn:
        return conn.execute(query).scalar()


def labels_by_reason(engine: Engine, item_ids: Sequence[str]) -> dict[str, int]:
    """How many of the labels of `item_ids` were drawn for each reason (seed, audit, gold, ...)."""
    counts: dict[str, int] = {}
    query = (select(Label.selection_reason, func.count()).where(Label.item_id.in_(bindparam("ids", expanding=True)))
             .group_by(Label.selection_reason))
    with engine.connect() as conn:
        for part in chunked(list(item_ids), LOOKUP_CHUNK):
            for reason, count in conn.execute(query, {"ids": list(part)}):
                counts[reason] = counts.get(reason, 0) + int(count)
    return dict(sorted(counts.items()))


def save_threshold_evidence(engine: Engine, evidence: dict[str, Any]) -> int:
    """Insert a certification's evidence row unless the same one (model, segment, policy version, label set) is
    stored already; its id either way."""
    key = ("model_version", "segment", "policy_version", "label_fingerprint")
    with engine.begin() as conn:
        insert_ignore(conn, ThresholdEvidence.__table__, [evidence])
        return cast(int, conn.execute(select(ThresholdEvidence.id).where(
            *(getattr(ThresholdEvidence, k) == evidence[k] for k in key))).scalar_one())


def save_guard_halts(engine: Engine, halts: list[dict[str, Any]]) -> None:
    """Store new halts of live guards; a halt of a (segment, model) stored already is left as it is."""
    if halts:
        with engine.begin() as conn:
            insert_ignore(conn, GuardHalt.__table__, halts)


def training_texts(engine: Engine) -> list[str]:
    """The texts of the items in the training set (items without text left out)."""
    query = (select(Item.text).join(Label, Label.item_id == Item.id)
             .where(Label.split == Split.TRAIN, Item.text.is_not(None)))
    with engine.connect() as conn:
        return cast(list[str], list(conn.execute(query).scalars().all()))


def training_vectors(engine: Engine) -> list[list[float]]:
    """The feature vectors of the items in the training set (items without one left out)."""
    query = (select(Item.features).join(Label, Label.item_id == Item.id)
             .where(Label.split == Split.TRAIN, Item.features.is_not(None)))
    with engine.connect() as conn:
        return cast(list[list[float]], list(conn.execute(query).scalars().all()))


def training_segments(engine: Engine) -> dict[str, int]:
    """Per segment with any: the labels in the training set."""
    query = (select(Item.segment, func.count().label("n")).join(Label, Label.item_id == Item.id)
             .where(Label.split == Split.TRAIN).group_by(Item.segment))
    with engine.connect() as conn:
        return {row.segment: row.n for row in conn.execute(query)}


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


class StoredCalibration(NamedTuple):
    """A stored calibration report's identity, age and report document."""

    id: int
    created_at: datetime
    report: dict[str, Any]


def calibration_report_for(engine: Engine, model_version: str, segment: str,
                           data_hash: str) -> StoredCalibration | None:
    """The report of (model, segment) fitted on the labels fingerprinted `data_hash`; None when there is none."""
    query = select(CalibrationReportRow.id, CalibrationReportRow.created_at, CalibrationReportRow.report).where(
        CalibrationReportRow.model_version == model_version,
        CalibrationReportRow.segment == segment,
        CalibrationReportRow.data_hash == data_hash,
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    return None if row is None else StoredCalibration(row.id, row.created_at, row.report or {})


def save_calibration_report(engine: Engine, row: dict[str, Any]) -> None:
    """Store a fitted report; one of the same (model, segment, labels) stored already is left as it is."""
    with engine.begin() as conn:
        insert_ignore(conn, CalibrationReportRow.__table__, [row])


def update_calibration_report(engine: Engine, report_id: int, report: dict[str, Any]) -> None:
    """Replace the report document (drift, diagram) of a stored report; its fitted figures never change."""
    with engine.begin() as conn:
        conn.execute(update(CalibrationReportRow).where(CalibrationReportRow.id == report_id).values(report=report))


def recent_confidences(engine: Engine, model_version: str, segments: list[str], since: datetime) -> np.ndarray:
    """Confidences `model_version` gave items of `segments` after `since`."""
    query = (
        select(Prediction.confidence)
        .join(Item, Item.id == Prediction.item_id)
        .where(Prediction.model_version == model_version, Prediction.created_at > since,
               Prediction.confidence.is_not(None), Item.segment.in_(bindparam("segments", expanding=True)))
    )
    with engine.connect() as conn:
        values = [v for part in chunked(segments, 5_000)
                  for v in conn.execute(query, {"segments": list(part)}).scalars().all()]
    return np.asarray(values, dtype=float)


def selection_probabilities(engine: Engine, item_ids: list[str]) -> dict[str, float | None]:
    """The probability with which each labelled item of `item_ids` was drawn for its label (None when unknown)."""
    query = (select(Label.item_id, Label.selection_probability)
             .where(Label.item_id.in_(bindparam("ids", expanding=True))))
    found: dict[str, float | None] = {}
    with engine.connect() as conn:
        for part in chunked(item_ids, 5_000):
            found.update((r.item_id, r.selection_probability) for r in conn.execute(query, {"ids": list(part)}))
    return found


def segments_seen(engine: Engine) -> list[str]:
    """Every segment that has items in the store."""
    with engine.connect() as conn:
        return list(conn.execute(select(Item.segment).distinct()).scalars())


def predicted_model_versions(engine: Engine) -> set[str]:
    """Every model version that has scored some item."""
    with engine.connect() as conn:
        return set(conn.execute(select(Prediction.model_version).distinct()).scalars())


class LabelledItem(NamedTuple):
    """A labelled item's inputs (text, features; the payload of an output of an LLM pipeline) and its label."""

    item_id: str
    label: str
    text: str | None
    features: list[float] | None
    payload: dict[str, Any] | None = None


def labelled_items(engine: Engine, *, split: str, reasons: frozenset[str] | None = None,
                   kind: str = ItemKind.CLASSIFICATION) -> list[LabelledItem]:
    """The labelled items of `kind` in `split` (chosen for one of `reasons` only, when given), in item id order:
    a classifier learns from classifications only, never from the verdicts on generated responses."""
    query = (
        select(Label.item_id, Label.label, Item.text, Item.features, Item.payload)
        .join(Item, Item.id == Label.item_id)
        .where(Label.split == split, Item.kind == kind)
        .order_by(Label.item_id)
    )
    if reasons is not None:
        query = query.where(Label.selection_reason.in_(sorted(reasons)))
    with engine.connect() as conn:
        return [LabelledItem(r.item_id, r.label, r.text, r.features, r.payload) for r in conn.execute(query)]


def model_row(engine: Engine, version: str) -> ModelVersion | None:
    """The registry row of one model version."""
    with Session(engine, expire_on_commit=False) as session:
        return session.get(ModelVersion, version)


def model_for_data(engine: Engine, data_hash: str) -> str | None:
    """The version of a model already trained on the training set fingerprinted `data_hash`, if any."""
    with engine.connect() as conn:
        return conn.execute(select(ModelVersion.version).where(ModelVersion.data_hash == data_hash)).scalar()


class ModelArtifact(NamedTuple):
    version: str
    artifact_path: str
    sha256: str


def model_artifacts(engine: Engine) -> list[ModelArtifact]:
    """Every registered model version that has an artifact file, oldest first."""
    query = (select(ModelVersion.version, ModelVersion.artifact_path, ModelVersion.sha256)
             .where(ModelVersion.artifact_path.is_not(None), ModelVersion.sha256.is_not(None))
             .order_by(ModelVersion.created_at, ModelVersion.version))
    with engine.connect() as conn:
        rows: Iterable[Any] = conn.execute(query)  # the path and hash are not null, by the query
        return [ModelArtifact(*row) for row in rows]


def register_model(engine: Engine, row: dict[str, Any]) -> None:
    """Record a saved model version (as a candidate, unless `row` says otherwise); a known version is left as is."""
    with engine.begin() as conn:
        insert_ignore(conn, ModelVersion.__table__, [{"status": ModelStatus.CANDIDATE, **row}])


def promote_model(engine: Engine, version: str) -> None:
    """Make `version` the promoted model of its family; any other promoted one of the family retires (a verifier's
    promotion leaves the classifier and the preference model as they are)."""
    with engine.begin() as conn:
        kind = conn.execute(select(ModelVersion.kind).where(ModelVersion.version == version)).scalar()
        if kind is None:
            raise ValueError(f"no registered model version {version!r} to promote")
        same_family = (ModelVersion.kind == kind) if kind in _FAMILY_KINDS else ModelVersion.kind.not_in(_FAMILY_KINDS)
        conn.execute(update(ModelVersion)
                     .where(ModelVersion.status == ModelStatus.PROMOTED, ModelVersion.version != version, same_family)
                     .values(status=ModelStatus.RETIRED))
        conn.execute(update(ModelVersion).where(ModelVersion.version == version)
                     .values(status=ModelStatus.PROMOTED, promoted_at=_utcnow()))


def reject_model(engine: Engine, version: str) -> None:
    """Mark a candidate that the retrain gate found worse than the incumbent."""
    with engine.begin() as conn:
        conn.execute(update(ModelVersion).where(ModelVersion.version == version).values(status=ModelStatus.REJECTED))


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
