"""The tables of Sluice's store: items, predictions, decisions, the review outbox, labels and their versions."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar, overload

from sqlalchemy import JSON, Column, Index, Table, UniqueConstraint, false
from sqlmodel import Field, SQLModel

from store.vocab import ItemState, ModelStatus, Queue, TaskState

# A table model's attribute is a column on the class (`Item.segment.in_(...)`, `select(Item.segment)`) and a
# value on an instance and in the constructor. SQLAlchemy's `Mapped[T]` tells a type checker exactly that; at
# run time `Mapped[T]` is plain `T`, the annotation SQLModel builds the column from: the tables are unchanged.
# `_Table` declares, for the type checker, the `__table__` that SQLAlchemy sets on every table model.
if TYPE_CHECKING:
    from sqlalchemy.orm import Mapped

    class _Table(SQLModel):
        __table__: ClassVar[Table]
else:
    class Mapped:
        def __class_getitem__(cls, value_type: Any) -> Any:
            return value_type

    _Table = SQLModel


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@overload
def as_utc(moment: datetime) -> datetime: ...
@overload
def as_utc(moment: None) -> None: ...
@overload
def as_utc(moment: datetime | None) -> datetime | None: ...
def as_utc(moment: datetime | None) -> datetime | None:
    """A time read back from the store, made timezone-aware: SQLite hands back naive datetimes, and everything
    Sluice writes is UTC."""
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class ItemSource(_Table, table=True):
    """A file items were ingested from, stored once: its items point at it."""

    __tablename__ = "item_sources"
    __table_args__ = (UniqueConstraint("fingerprint", name="uq_item_source_fingerprint"),)

    id: Mapped[int | None] = Field(default=None, primary_key=True)
    path: Mapped[str]
    # unique on a digest of the path: PostgreSQL's index entries stop at about 2.7 KB, a path may be longer
    fingerprint: Mapped[str] = Field(max_length=64, description="sha256 of the path, hex")
    created_at: Mapped[datetime] = Field(default_factory=utcnow)


class Item(_Table, table=True):
    """One producer output, as ingested; the producer's id is the key, so ingest is idempotent."""

    __tablename__ = "items"

    id: Mapped[str] = Field(primary_key=True, max_length=512)
    segment: Mapped[str] = Field(default="default", max_length=128)
    text: Mapped[str | None] = Field(default=None)
    features: Mapped[list[float] | None] = Field(default=None, sa_column=Column(JSON))
    upstream_prediction: Mapped[str | None] = Field(default=None)
    upstream_confidence: Mapped[float | None] = Field(default=None)
    upstream_probs: Mapped[dict[str, float] | None] = Field(default=None, sa_column=Column(JSON))
    item_metadata: Mapped[dict[str, Any] | None] = Field(default=None, sa_column=Column("metadata", JSON))
    source_id: Mapped[int | None] = Field(default=None, foreign_key="item_sources.id",
                                          description="the file the item came from")
    kind: Mapped[str] = Field(
        default="classification", max_length=16, sa_column_kwargs={"server_default": "classification"},
        description="classification, generation, pairwise or extraction (the input contract's kind)")
    payload: Mapped[dict[str, Any] | None] = Field(
        default=None, sa_column=Column(JSON),
        description="what a non-classification kind carries: prompt, response, "
                    "context, scores; response_a and _b, preference; fields")
    received_at: Mapped[datetime] = Field(default_factory=utcnow)


class ItemStateRow(_Table, table=True):
    """Where an item is in its lifecycle (``store.transitions``), in a narrow row of its own: a move rewrites these
    few bytes, not the item's row and its text. It is written with the item (``store.transitions.born_states``:
    scored when the row holds its upstream prediction, else received); the segment is the item's, copied so that
    the steps find the items of a state and segment through one index. SQLite keeps it without a rowid: the item
    id is the table's own key, one b-tree fewer per look-up. ``decision_id`` is the item's latest routing
    decision, set by the move route makes with it (migration 0021): the way from an item to its decision, so the
    decisions need no index of their own."""

    __tablename__ = "item_states"
    # the index holds every column route's and select's reads take of a state row (migration 0022)
    __table_args__ = (Index("ix_item_states_state_segment", "state", "segment", "item_id", "decision_id"),
                      {"sqlite_with_rowid": False})

    item_id: Mapped[str] = Field(primary_key=True, max_length=512, foreign_key="items.id")
    state: Mapped[str] = Field(default=ItemState.received, max_length=32)
    segment: Mapped[str] = Field(default="default", max_length=128)
    updated_at: Mapped[datetime] = Field(default_factory=utcnow, description="when the item last moved")
    decision_id: Mapped[int | None] = Field(default=None, description="the item's latest routing decision")


class Prediction(_Table, table=True):
    """A model's scoring of an item; never overwritten by a human's label."""

    __tablename__ = "predictions"
    __table_args__ = (UniqueConstraint("item_id", "model_version", name="uq_prediction_item_model"),)

    id: Mapped[int | None] = Field(default=None, primary_key=True)
    # uq_prediction_item_model leads with it
    item_id: Mapped[str] = Field(foreign_key="items.id", max_length=512)
    model_version: Mapped[str] = Field(max_length=64, index=True)
    label: Mapped[str | None] = Field(default=None)
    confidence: Mapped[float | None] = Field(default=None)
    margin: Mapped[float | None] = Field(default=None, description="top-1 minus top-2 probability")
    probs: Mapped[dict[str, float] | None] = Field(default=None, sa_column=Column(JSON))
    created_at: Mapped[datetime] = Field(default_factory=utcnow)


class ModelVersion(_Table, table=True):
    """A trained (or passthrough) model, its artifact and its held-out metrics."""

    __tablename__ = "model_versions"

    version: Mapped[str] = Field(primary_key=True, max_length=64)
    kind: Mapped[str] = Field(max_length=32)
    artifact_path: Mapped[str | None] = Field(default=None)
    sha256: Mapped[str | None] = Field(default=None, max_length=64)
    classes: Mapped[list[str] | None] = Field(default=None, sa_column=Column(JSON))
    metrics: Mapped[dict[str, Any] | None] = Field(default=None, sa_column=Column(JSON))
    train_size: Mapped[int] = Field(default=0)
    data_hash: Mapped[str | None] = Field(
        default=None, max_length=64, description="fingerprint of the training set")
    status: Mapped[str] = Field(
        default=ModelStatus.CANDIDATE, max_length=16, description="candidate, promoted, rejected, retired")
    parent_version: Mapped[str | None] = Field(default=None, max_length=64)
    created_at: Mapped[datetime] = Field(default_factory=utcnow)
    promoted_at: Mapped[datetime | None] = Field(default=None)


class PolicyVersion(_Table, table=True):
    """An immutable routing policy document; its content hash is its identity."""

    __tablename__ = "policy_versions"

    version: Mapped[str] = Field(primary_key=True, max_length=64)
    name: Mapped[str] = Field(max_length=128)
    document: Mapped[str]
    author: Mapped[str] = Field(default="system", max_length=128)
    comment: Mapped[str] = Field(default="")
    active: Mapped[bool] = Field(default=False)
    created_at: Mapped[datetime] = Field(default_factory=utcnow)


class CalibrationReportRow(_Table, table=True):
    """A fitted recalibrator for one model version and segment, with its validation figures."""

    __tablename__ = "calibration_reports"
    __table_args__ = (
        UniqueConstraint("model_version", "segment", "data_hash", name="uq_calibration_model_segment_data"),
    )

    id: Mapped[int | None] = Field(default=None, primary_key=True)
    model_version: Mapped[str] = Field(index=True, max_length=64)
    segment: Mapped[str] = Field(max_length=128)
    data_hash: Mapped[str] = Field(
        max_length=64, description="fingerprint of the labelled data it was fitted on")
    method: Mapped[str] = Field(max_length=32)
    n: Mapped[int]
    ece: Mapped[float]
    ece_low: Mapped[float]
    ece_high: Mapped[float]
    mce: Mapped[float]
    brier: Mapped[float]
    passed: Mapped[bool]
    reasons: Mapped[list[str]] = Field(default_factory=list, sa_column=Column(JSON))
    calibrator: Mapped[dict[str, Any]] = Field(default_factory=dict, sa_column=Column(JSON))
    report: Mapped[dict[str, Any]] = Field(default_factory=dict, sa_column=Column(JSON))
    created_at: Mapped[datetime] = Field(default_factory=utcnow)


class RoutingBatch(_Table, table=True):
    """What one route run held constant for a group of decisions: the segment, the policy and model versions, the
    calibrator, the threshold and the evidence that certified it, the audit rate and the cycle. A decision row
    carries only what varies per item and points here."""

    __tablename__ = "routing_batches"

    id: Mapped[int | None] = Field(default=None, primary_key=True)
    segment: Mapped[str] = Field(max_length=128)
    policy_version: Mapped[str] = Field(foreign_key="policy_versions.version", max_length=64)
    model_version: Mapped[str] = Field(max_length=64)
    calibration_id: Mapped[int | None] = Field(default=None, foreign_key="calibration_reports.id")
    threshold: Mapped[float | None] = Field(default=None)
    evidence_id: Mapped[int | None] = Field(default=None, foreign_key="threshold_evidence.id",
                                            description="the certification behind a derived threshold")
    audit_rate: Mapped[float | None] = Field(
        default=None, description="the audit share applied to this run's segment")
    cycle: Mapped[int | None] = Field(default=None)
    run_id: Mapped[str | None] = Field(default=None, max_length=64, description="the route flow run that wrote it")
    created_at: Mapped[datetime] = Field(default_factory=utcnow)


class RoutingDecision(_Table, table=True):
    """Where an item went and why; append-only, a correction is a new row pointing at the old one. What its route
    run held constant is in its batch row (``RoutingBatch``)."""

    __tablename__ = "routing_decisions"

    id: Mapped[int | None] = Field(default=None, primary_key=True)
    # no index: an item finds its latest decision through its state row (``ItemStateRow.decision_id``)
    item_id: Mapped[str] = Field(foreign_key="items.id", max_length=512)
    batch_id: Mapped[int] = Field(foreign_key="routing_batches.id")
    route: Mapped[str] = Field(max_length=16)
    reasons: Mapped[list[str]] = Field(default_factory=list, sa_column=Column(JSON))
    raw_confidence: Mapped[float | None] = Field(default=None)
    calibrated_confidence: Mapped[float | None] = Field(default=None)
    predicted_label: Mapped[str | None] = Field(default=None)
    inclusion_probability: Mapped[float | None] = Field(default=None)
    supersedes_id: Mapped[int | None] = Field(default=None, foreign_key="routing_decisions.id")


class ThresholdEvidence(_Table, table=True):
    """What certified a derived auto-accept threshold: the labels (by fingerprint), the test and its outcome.

    One row per (model, segment, policy version, label set); a route run on the same labels reuses it. The
    threshold applies to ``scale`` (``raw``: the model's own confidence, on which it was certified).
    """

    __tablename__ = "threshold_evidence"
    __table_args__ = (
        UniqueConstraint("model_version", "segment", "policy_version", "label_fingerprint",
                         name="uq_evidence_model_segment_policy_labels"),
    )

    id: Mapped[int | None] = Field(default=None, primary_key=True)
    model_version: Mapped[str] = Field(max_length=64)
    segment: Mapped[str] = Field(max_length=128, index=True)
    policy_version: Mapped[str] = Field(max_length=64)
    label_fingerprint: Mapped[str] = Field(max_length=64)
    scale: Mapped[str] = Field(default="raw", max_length=16)
    threshold: Mapped[float | None] = Field(default=None)
    calibrated_threshold: Mapped[float | None] = Field(default=None)
    n: Mapped[int] = Field(default=0)
    n_accepted: Mapped[int] = Field(default=0)
    n_errors: Mapped[int] = Field(default=0)
    coverage: Mapped[float] = Field(default=0.0)
    error_upper_bound: Mapped[float | None] = Field(default=None)
    alpha: Mapped[float]
    delta: Mapped[float]
    tested: Mapped[int] = Field(default=0)
    pool: Mapped[str] = Field(default="segment", max_length=128, description="whose labels certified it")
    estimator: Mapped[str] = Field(
        default="clopper_pearson", max_length=32,
        sa_column_kwargs={"server_default": "clopper_pearson"},
        description="the test behind each candidate: exact binomial (Clopper-Pearson) bounds on "
                    "labels drawn uniformly, in a fixed sequence (Learn-then-Test)")
    labels_by_reason: Mapped[dict[str, int] | None] = Field(
        default=None, sa_column=Column(JSON, nullable=True),
        description="the labels that certified it, by why each was drawn (seed, audit, gold)")
    calibration_id: Mapped[int | None] = Field(default=None, foreign_key="calibration_reports.id")
    created_at: Mapped[datetime] = Field(default_factory=utcnow)


class GuardHalt(_Table, table=True):
    """A segment whose live guard halted automation under one model: its audits showed the target exceeded."""

    __tablename__ = "guard_halts"
    __table_args__ = (UniqueConstraint("segment", "model_version", name="uq_guard_halt_segment_model"),)

    id: Mapped[int | None] = Field(default=None, primary_key=True)
    segment: Mapped[str] = Field(max_length=128, index=True)
    model_version: Mapped[str] = Field(max_length=64)
    last_decision_id: Mapped[int] = Field(
        description="the audited decision at which the test crossed 1 / delta")
    e_value: Mapped[float]
    n_audited: Mapped[int]
    n_errors: Mapped[int]
    alpha: Mapped[float]
    delta: Mapped[float]
    created_at: Mapped[datetime] = Field(default_factory=utcnow)


class ReviewTask(_Table, table=True):
    """The outbox: written before anything is pushed to Label Studio, so a crash loses and doubles nothing."""

    __tablename__ = "review_tasks"
    __table_args__ = (
        UniqueConstraint("item_id", name="uq_review_item"),
        Index("ix_review_state", "state"),
    )

    id: Mapped[int | None] = Field(default=None, primary_key=True)
    item_id: Mapped[str] = Field(foreign_key="items.id", max_length=512)
    decision_id: Mapped[int | None] = Field(default=None, foreign_key="routing_decisions.id")
    selection_reason: Mapped[str] = Field(max_length=32)
    selection_probability: Mapped[float] = Field(default=1.0)
    priority: Mapped[float] = Field(default=0.0)
    model_version: Mapped[str | None] = Field(default=None, max_length=64)
    policy_version: Mapped[str | None] = Field(default=None, max_length=64)
    predicted_label: Mapped[str | None] = Field(default=None)
    score: Mapped[float | None] = Field(default=None)
    blind: Mapped[bool] = Field(
        default=False, sa_column_kwargs={"server_default": false()},
        description="shown without the model's suggestion (automation-bias measurement)")
    overlap: Mapped[int] = Field(
        default=1, sa_column_kwargs={"server_default": "1"},
        description="how many annotators answer the task before its label is resolved")
    queue: Mapped[str] = Field(
        default=Queue.REVIEW, max_length=16, sa_column_kwargs={"server_default": "review"},
        description="review, or expert once the annotators disagreed beyond the policy's limit")
    project_id: Mapped[int | None] = Field(default=None)
    batch_key: Mapped[str | None] = Field(default=None, max_length=64, index=True)
    ls_task_id: Mapped[int | None] = Field(default=None, index=True)
    state: Mapped[str] = Field(default=TaskState.PENDING, max_length=16, description="pending, pushed, done")
    attempts: Mapped[int] = Field(default=0)
    last_error: Mapped[str | None] = Field(default=None)
    cycle: Mapped[int | None] = Field(default=None)
    created_at: Mapped[datetime] = Field(default_factory=utcnow)
    pushed_at: Mapped[datetime | None] = Field(default=None)


class ReviewDraw(_Table, table=True):
    """One routing decision's draw for review under the probabilistic strategy: the probability it was drawn with
    (known before the draw), whether it was drawn, and whether it went to people (a drawn item beyond the review
    cap did not: the estimators count it as a missing label). One per decision, ever: a decision is drawn once."""

    __tablename__ = "review_draws"

    decision_id: Mapped[int] = Field(
        primary_key=True, foreign_key="routing_decisions.id", sa_column_kwargs={"autoincrement": False})
    item_id: Mapped[str] = Field(foreign_key="items.id", max_length=512, index=True)
    probability: Mapped[float]
    drawn: Mapped[bool]
    labelled: Mapped[bool]
    cycle: Mapped[int | None] = Field(default=None)
    created_at: Mapped[datetime] = Field(default_factory=utcnow)


class BacklogDraw(_Table, table=True):
    """A review item a select run left waiting (its strategy did not pick it), with the audit rate it was drawn at
    and whether the audit took it. One select run's rows of a segment are a population whose audits at the
    smallest rate are a uniform sample of it: they certify the backlog under a later model (``routing.backlog``)."""

    __tablename__ = "backlog_draws"
    __table_args__ = (Index("ix_backlog_draws_run", "run", "segment"),)

    decision_id: Mapped[int] = Field(
        primary_key=True, foreign_key="routing_decisions.id", sa_column_kwargs={"autoincrement": False})
    item_id: Mapped[str] = Field(foreign_key="items.id", max_length=512)
    segment: Mapped[str] = Field(max_length=128)
    run: Mapped[str] = Field(max_length=32, description="the select run that left these items waiting")
    audit_probability: Mapped[float]
    audited: Mapped[bool]
    audit_held_out: Mapped[bool] = Field(
        default=False, sa_column_kwargs={"server_default": false()},
        description="its audit never trains: the run held only re-routed items")
    cycle: Mapped[int | None] = Field(default=None)
    created_at: Mapped[datetime] = Field(default_factory=utcnow)


class Annotation(_Table, table=True):
    """One human answer as pulled from Label Studio; unique on Label Studio's annotation id."""

    __tablename__ = "annotations"
    __table_args__ = (UniqueConstraint("source", "external_id", name="uq_annotation_external"),)

    id: Mapped[int | None] = Field(default=None, primary_key=True)
    source: Mapped[str] = Field(default="labelstudio", max_length=32)
    external_id: Mapped[int]
    ls_task_id: Mapped[int | None] = Field(default=None)
    item_id: Mapped[str] = Field(foreign_key="items.id", index=True, max_length=512)
    label: Mapped[str | None] = Field(default=None)
    annotator: Mapped[str] = Field(max_length=128)
    was_cancelled: Mapped[bool] = Field(default=False)
    external_updated_at: Mapped[datetime | None] = Field(default=None)
    answer: Mapped[dict[str, Any] | None] = Field(
        default=None, sa_column=Column(JSON(none_as_null=True)),
        description="what the answer holds beyond its label, by kind: correction, "
                    "issues, severity; side and left_is; fields")
    pulled_at: Mapped[datetime] = Field(default_factory=utcnow)


class Label(_Table, table=True):
    """The training set: one resolved label per item, with its provenance."""

    __tablename__ = "labels"
    __table_args__ = (UniqueConstraint("item_id", name="uq_label_item"), Index("ix_labels_split", "split"))

    id: Mapped[int | None] = Field(default=None, primary_key=True)
    item_id: Mapped[str] = Field(foreign_key="items.id", max_length=512)
    label: Mapped[str]
    split: Mapped[str] = Field(
        max_length=16, description="train (may teach the model) or holdout (evaluates and calibrates it)")
    source: Mapped[str] = Field(max_length=32, description="seed, annotation, gold, direct")
    annotator: Mapped[str | None] = Field(default=None, max_length=128)
    selection_reason: Mapped[str] = Field(max_length=32, description="seed, audit, margin, entropy, ...")
    selection_probability: Mapped[float | None] = Field(default=None)
    model_version: Mapped[str | None] = Field(default=None, max_length=64)
    policy_version: Mapped[str | None] = Field(default=None, max_length=64)
    resolution: Mapped[str | None] = Field(default=None, max_length=32,
                                           description="single, majority, dawid_skene or expert")
    agreement: Mapped[float | None] = Field(
        default=None, description="share of the annotators who gave the resolved label")
    annotator_count: Mapped[int | None] = Field(default=None)
    annotation_id: Mapped[int | None] = Field(default=None, foreign_key="annotations.id")
    answer: Mapped[dict[str, Any] | None] = Field(
        default=None, sa_column=Column(JSON(none_as_null=True)),
        description="the resolved answer beyond its label (a correction, issues, "
                    "severity, corrected fields), from the annotation it names")
    cycle: Mapped[int | None] = Field(default=None)
    created_at: Mapped[datetime] = Field(default_factory=utcnow)


class RowHistory(_Table, table=True):
    """What an annotation or a label was before it changed or was withdrawn: the old row, whole, with when and why.
    Their tables hold the current answer and label; this one keeps every earlier version (append-only)."""

    __tablename__ = "row_history"
    __table_args__ = (Index("ix_row_history_key", "table_name", "row_key"),)

    id: Mapped[int | None] = Field(default=None, primary_key=True)
    table_name: Mapped[str] = Field(max_length=32)
    row_key: Mapped[str] = Field(max_length=512, description="the annotation's id, or the label's item id")
    old: Mapped[dict[str, Any]] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    reason: Mapped[str] = Field(
        max_length=64, description="updated (a newer answer or resolution) or withdrawn")
    replaced_at: Mapped[datetime] = Field(default_factory=utcnow)


class AuditEvent(_Table, table=True):
    """Something that happened: a flow step, a promotion, a policy change."""

    __tablename__ = "audit_events"

    id: Mapped[int | None] = Field(default=None, primary_key=True)
    kind: Mapped[str] = Field(max_length=64, index=True)
    actor: Mapped[str] = Field(default="system", max_length=128)
    payload: Mapped[dict[str, Any]] = Field(default_factory=dict, sa_column=Column(JSON))
    created_at: Mapped[datetime] = Field(default_factory=utcnow)


class QuarantinedRecord(_Table, table=True):
    """An input record that broke the contract, kept with a machine-readable reason."""

    __tablename__ = "quarantine"
    __table_args__ = (UniqueConstraint("source", "record_number", "fingerprint", name="uq_quarantine_record_content"),)

    id: Mapped[int | None] = Field(default=None, primary_key=True)
    source: Mapped[str] = Field(max_length=512)
    record_number: Mapped[int]
    fingerprint: Mapped[str | None] = Field(
        default=None, max_length=64,
        description="sha256 of the record as read: the same line of a file overwritten "
                    "with other content is another record")
    record_id: Mapped[str | None] = Field(default=None, max_length=512)
    reason: Mapped[str] = Field(max_length=64, index=True)
    detail: Mapped[str] = Field(default="")
    raw: Mapped[str] = Field(default="")
    created_at: Mapped[datetime] = Field(default_factory=utcnow)


class CycleReport(_Table, table=True):
    """The figures of one flywheel cycle."""

    __tablename__ = "cycle_reports"

    cycle: Mapped[int] = Field(primary_key=True)
    model_version: Mapped[str | None] = Field(default=None, max_length=64)
    policy_version: Mapped[str | None] = Field(default=None, max_length=64)
    figures: Mapped[dict[str, Any]] = Field(default_factory=dict, sa_column=Column(JSON))
    started_at: Mapped[datetime] = Field(default_factory=utcnow)
    finished_at: Mapped[datetime | None] = Field(default=None)


class Watermark(_Table, table=True):
    """A named high-water mark, e.g. how far annotations have been pulled."""

    __tablename__ = "watermarks"

    name: Mapped[str] = Field(primary_key=True, max_length=128)
    value: Mapped[str]
    updated_at: Mapped[datetime] = Field(default_factory=utcnow)


class StoreLockHolder(_Table, table=True):
    """Who holds (or last held) the store's lock: written by the holder once it has the lock, for `sluice status`.
    The lock itself is an operating-system or database lock (`store.lock`); this row only names its holder and
    can be stale after a crash, which `store.lock.lock_status` tells apart."""

    __tablename__ = "store_lock_holders"

    name: Mapped[str] = Field(primary_key=True, max_length=64)
    flow: Mapped[str] = Field(max_length=256)
    flow_run_id: Mapped[str | None] = Field(default=None, max_length=64)
    pid: Mapped[int]
    host: Mapped[str] = Field(max_length=256)
    process_started: Mapped[float] = Field(description="the holder process's start (seconds since the epoch)")
    backend_pid: Mapped[int | None] = Field(
        default=None, description="PostgreSQL: the session that holds the lock")
    acquired_at: Mapped[datetime] = Field(default_factory=utcnow)
    namespace: Mapped[str | None] = Field(
        default=None, max_length=256,
        description="boot id and pid namespace: where `pid` names this very process")


class Account(_Table, table=True):
    """A person who signs in to the console: a local account (scrypt password hash) or an organisation's sign-in
    (OIDC: no password here, the identity provider vouches for the email), with one role."""

    __tablename__ = "accounts"

    username: Mapped[str] = Field(primary_key=True, max_length=256)
    role: Mapped[str] = Field(max_length=16)
    password_hash: Mapped[str | None] = Field(default=None, max_length=512)
    display_name: Mapped[str | None] = Field(default=None, max_length=256)
    created_at: Mapped[datetime] = Field(default_factory=utcnow)
    disabled: Mapped[bool] = Field(default=False)


class PolicyChange(_Table, table=True):
    """A proposed or applied change of the active policy: an edit or a rollback to a stored version. Applying one
    activates its version; the applied changes in order are the policy's history (a rollback is a new entry)."""

    __tablename__ = "policy_changes"
    __table_args__ = (Index("ix_policy_changes_status", "status"),)

    id: Mapped[int | None] = Field(default=None, primary_key=True)
    kind: Mapped[str] = Field(max_length=16, description="edit or rollback")
    version: Mapped[str] = Field(foreign_key="policy_versions.version", max_length=64)
    base_version: Mapped[str | None] = Field(
        default=None, max_length=64, description="the active version it was made on")
    author: Mapped[str] = Field(max_length=256)
    comment: Mapped[str]
    status: Mapped[str] = Field(max_length=16, description="pending, applied, rejected or superseded")
    approval_segments: Mapped[list[str]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    approver: Mapped[str | None] = Field(default=None, max_length=256)
    decision_comment: Mapped[str | None] = Field(default=None)
    created_at: Mapped[datetime] = Field(default_factory=utcnow)
    decided_at: Mapped[datetime | None] = Field(default=None)
