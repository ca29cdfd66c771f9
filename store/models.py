"""The tables of Sluice's store: items, predictions, decisions, the review outbox, labels and their versions."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint, false
from sqlmodel import Field, SQLModel

from store.vocab import ItemState, ModelStatus, Queue, TaskState


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(moment: datetime | None) -> datetime | None:
    """A time read back from the store, made timezone-aware: SQLite hands back naive datetimes, and everything
    Sluice writes is UTC."""
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class Item(SQLModel, table=True):
    """One producer output, as ingested; the producer's id is the key, so ingest is idempotent."""

    __tablename__ = "items"
    __table_args__ = (Index("ix_items_state_segment", "state", "segment"),)

    id: str = Field(primary_key=True, max_length=512)
    segment: str = Field(default="default", max_length=128)
    text: str | None = None
    features: list[float] | None = Field(default=None, sa_column=Column(JSON))
    upstream_prediction: str | None = None
    upstream_confidence: float | None = None
    upstream_probs: dict[str, float] | None = Field(default=None, sa_column=Column(JSON))
    item_metadata: dict[str, Any] | None = Field(default=None, sa_column=Column("metadata", JSON))
    state: str = Field(default=ItemState.received, max_length=32)
    source: str | None = Field(default=None, description="file or batch the item came from")
    kind: str = Field(default="classification", max_length=16, sa_column_kwargs={"server_default": "classification"},
                      description="classification, generation, pairwise or extraction (the input contract's kind)")
    payload: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON),
                                           description="what a non-classification kind carries: prompt, response, "
                                                       "context, scores; response_a and _b, preference; fields")
    received_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Prediction(SQLModel, table=True):
    """A model's scoring of an item; never overwritten by a human's label."""

    __tablename__ = "predictions"
    __table_args__ = (UniqueConstraint("item_id", "model_version", name="uq_prediction_item_model"),)

    id: int | None = Field(default=None, primary_key=True)
    item_id: str = Field(foreign_key="items.id", max_length=512)  # uq_prediction_item_model leads with it
    model_version: str = Field(max_length=64, index=True)
    label: str | None = None
    confidence: float | None = None
    margin: float | None = Field(default=None, description="top-1 minus top-2 probability")
    probs: dict[str, float] | None = Field(default=None, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow)


class ModelVersion(SQLModel, table=True):
    """A trained (or passthrough) model, its artifact and its held-out metrics."""

    __tablename__ = "model_versions"

    version: str = Field(primary_key=True, max_length=64)
    kind: str = Field(max_length=32)
    artifact_path: str | None = None
    sha256: str | None = Field(default=None, max_length=64)
    classes: list[str] | None = Field(default=None, sa_column=Column(JSON))
    metrics: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    train_size: int = 0
    data_hash: str | None = Field(default=None, max_length=64, description="fingerprint of the training set")
    status: str = Field(default=ModelStatus.CANDIDATE, max_length=16, description="candidate, promoted, rejected, retired")
    parent_version: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    promoted_at: datetime | None = None


class PolicyVersion(SQLModel, table=True):
    """An immutable routing policy document; its content hash is its identity."""

    __tablename__ = "policy_versions"

    version: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=128)
    document: str
    author: str = Field(default="system", max_length=128)
    comment: str = ""
    active: bool = False
    created_at: datetime = Field(default_factory=utcnow)


class CalibrationReportRow(SQLModel, table=True):
    """A fitted recalibrator for one model version and segment, with its validation figures."""

    __tablename__ = "calibration_reports"
    __table_args__ = (
        UniqueConstraint("model_version", "segment", "data_hash", name="uq_calibration_model_segment_data"),
    )

    id: int | None = Field(default=None, primary_key=True)
    model_version: str = Field(index=True, max_length=64)
    segment: str = Field(max_length=128)
    data_hash: str = Field(max_length=64, description="fingerprint of the labelled data it was fitted on")
    method: str = Field(max_length=32)
    n: int
    ece: float
    ece_low: float
    ece_high: float
    mce: float
    brier: float
    passed: bool
    reasons: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    calibrator: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    report: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow)


class RoutingDecision(SQLModel, table=True):
    """Where an item went and why; append-only, a correction is a new row pointing at the old one."""

    __tablename__ = "routing_decisions"
    __table_args__ = (
        UniqueConstraint("item_id", "policy_version", "model_version", name="uq_decision_item_versions"),
        Index("ix_decisions_route", "route"),
    )

    id: int | None = Field(default=None, primary_key=True)
    item_id: str = Field(foreign_key="items.id", max_length=512)  # uq_decision_item_versions leads with it
    segment: str = Field(max_length=128)
    route: str = Field(max_length=16)
    reasons: list[str] = Field(default_factory=list, sa_column=Column(JSON))
    policy_version: str = Field(foreign_key="policy_versions.version", max_length=64)
    model_version: str = Field(max_length=64)
    calibration_id: int | None = Field(default=None, foreign_key="calibration_reports.id")
    threshold: float | None = None
    raw_confidence: float | None = None
    calibrated_confidence: float | None = None
    predicted_label: str | None = None
    inclusion_probability: float | None = None
    audit_rate: float | None = Field(default=None, description="the audit share applied to this run's segment")
    cycle: int | None = None
    supersedes_id: int | None = Field(default=None, foreign_key="routing_decisions.id")
    evidence_id: int | None = Field(default=None, foreign_key="threshold_evidence.id",
                                    description="the certification behind a derived threshold")
    created_at: datetime = Field(default_factory=utcnow)


class ThresholdEvidence(SQLModel, table=True):
    """What certified a derived auto-accept threshold: the labels (by fingerprint), the test and its outcome.

    One row per (model, segment, policy version, label set); a route run on the same labels reuses it. The
    threshold applies to ``scale`` (``raw``: the model's own confidence, on which it was certified).
    """

    __tablename__ = "threshold_evidence"
    __table_args__ = (
        UniqueConstraint("model_version", "segment", "policy_version", "label_fingerprint",
                         name="uq_evidence_model_segment_policy_labels"),
    )

    id: int | None = Field(default=None, primary_key=True)
    model_version: str = Field(max_length=64)
    segment: str = Field(max_length=128, index=True)
    policy_version: str = Field(max_length=64)
    label_fingerprint: str = Field(max_length=64)
    scale: str = Field(default="raw", max_length=16)
    threshold: float | None = None
    calibrated_threshold: float | None = None
    n: int = 0
    n_accepted: int = 0
    n_errors: int = 0
    coverage: float = 0.0
    error_upper_bound: float | None = None
    alpha: float
    delta: float
    tested: int = 0
    pool: str = Field(default="segment", max_length=128, description="whose labels certified it")
    estimator: str = Field(default="clopper_pearson", max_length=32,
                           sa_column_kwargs={"server_default": "clopper_pearson"},
                           description="the test behind each candidate: exact binomial (Clopper-Pearson) bounds on "
                                       "labels drawn uniformly, in a fixed sequence (Learn-then-Test)")
    labels_by_reason: dict[str, int] | None = Field(
        default=None, sa_column=Column(JSON, nullable=True),
        description="the labels that certified it, by why each was drawn (seed, audit, gold)")
    calibration_id: int | None = Field(default=None, foreign_key="calibration_reports.id")
    created_at: datetime = Field(default_factory=utcnow)


class GuardHalt(SQLModel, table=True):
    """A segment whose live guard halted automation under one model: its audits showed the target exceeded."""

    __tablename__ = "guard_halts"
    __table_args__ = (UniqueConstraint("segment", "model_version", name="uq_guard_halt_segment_model"),)

    id: int | None = Field(default=None, primary_key=True)
    segment: str = Field(max_length=128, index=True)
    model_version: str = Field(max_length=64)
    last_decision_id: int = Field(description="the audited decision at which the test crossed 1 / delta")
    e_value: float
    n_audited: int
    n_errors: int
    alpha: float
    delta: float
    created_at: datetime = Field(default_factory=utcnow)


class ReviewTask(SQLModel, table=True):
    """The outbox: written before anything is pushed to Label Studio, so a crash loses and doubles nothing."""

    __tablename__ = "review_tasks"
    __table_args__ = (
        UniqueConstraint("item_id", name="uq_review_item"),
        Index("ix_review_state", "state"),
    )

    id: int | None = Field(default=None, primary_key=True)
    item_id: str = Field(foreign_key="items.id", max_length=512)
    decision_id: int | None = Field(default=None, foreign_key="routing_decisions.id")
    selection_reason: str = Field(max_length=32)
    selection_probability: float = 1.0
    priority: float = 0.0
    model_version: str | None = Field(default=None, max_length=64)
    policy_version: str | None = Field(default=None, max_length=64)
    predicted_label: str | None = None
    score: float | None = None
    blind: bool = Field(default=False, sa_column_kwargs={"server_default": false()},
                        description="shown without the model's suggestion (automation-bias measurement)")
    overlap: int = Field(default=1, sa_column_kwargs={"server_default": "1"},
                         description="how many annotators answer the task before its label is resolved")
    queue: str = Field(default=Queue.REVIEW, max_length=16, sa_column_kwargs={"server_default": "review"},
                       description="review, or expert once the annotators disagreed beyond the policy's limit")
    project_id: int | None = None
    batch_key: str | None = Field(default=None, max_length=64, index=True)
    ls_task_id: int | None = Field(default=None, index=True)
    state: str = Field(default=TaskState.PENDING, max_length=16, description="pending, pushed, done")
    attempts: int = 0
    last_error: str | None = None
    cycle: int | None = None
    created_at: datetime = Field(default_factory=utcnow)
    pushed_at: datetime | None = None


class ReviewDraw(SQLModel, table=True):
    """One routing decision's draw for review under the probabilistic strategy: the probability it was drawn with
    (known before the draw), whether it was drawn, and whether it went to people (a drawn item beyond the review
    cap did not: the estimators count it as a missing label). One per decision, ever: a decision is drawn once."""

    __tablename__ = "review_draws"

    decision_id: int = Field(primary_key=True, foreign_key="routing_decisions.id", sa_column_kwargs={"autoincrement": False})
    item_id: str = Field(foreign_key="items.id", max_length=512, index=True)
    probability: float
    drawn: bool
    labelled: bool
    cycle: int | None = None
    created_at: datetime = Field(default_factory=utcnow)


class BacklogDraw(SQLModel, table=True):
    """A review item a select run left waiting (its strategy did not pick it), with the audit rate it was drawn at
    and whether the audit took it. One select run's rows of a segment are a population whose audits at the
    smallest rate are a uniform sample of it: they certify the backlog under a later model (``routing.backlog``)."""

    __tablename__ = "backlog_draws"
    __table_args__ = (Index("ix_backlog_draws_run", "run", "segment"),)

    decision_id: int = Field(primary_key=True, foreign_key="routing_decisions.id", sa_column_kwargs={"autoincrement": False})
    item_id: str = Field(foreign_key="items.id", max_length=512)
    segment: str = Field(max_length=128)
    run: str = Field(max_length=32, description="the select run that left these items waiting")
    audit_probability: float
    audited: bool
    audit_held_out: bool = Field(default=False, sa_column_kwargs={"server_default": false()},
                                 description="its audit never trains: the run held only re-routed items")
    cycle: int | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Annotation(SQLModel, table=True):
    """One human answer as pulled from Label Studio; unique on Label Studio's annotation id."""

    __tablename__ = "annotations"
    __table_args__ = (UniqueConstraint("source", "external_id", name="uq_annotation_external"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(default="labelstudio", max_length=32)
    external_id: int
    ls_task_id: int | None = None
    item_id: str = Field(foreign_key="items.id", index=True, max_length=512)
    label: str | None = None
    annotator: str = Field(max_length=128)
    was_cancelled: bool = False
    external_updated_at: datetime | None = None
    answer: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True)),
                                          description="what the answer holds beyond its label, by kind: correction, "
                                                      "issues, severity; side and left_is; fields")
    pulled_at: datetime = Field(default_factory=utcnow)


class Label(SQLModel, table=True):
    """The training set: one resolved label per item, with its provenance."""

    __tablename__ = "labels"
    __table_args__ = (UniqueConstraint("item_id", name="uq_label_item"), Index("ix_labels_split", "split"))

    id: int | None = Field(default=None, primary_key=True)
    item_id: str = Field(foreign_key="items.id", max_length=512)
    label: str
    split: str = Field(max_length=16, description="train (may teach the model) or holdout (evaluates and calibrates it)")
    source: str = Field(max_length=32, description="seed, annotation, gold, direct")
    annotator: str | None = Field(default=None, max_length=128)
    selection_reason: str = Field(max_length=32, description="seed, audit, margin, entropy, ...")
    selection_probability: float | None = None
    model_version: str | None = Field(default=None, max_length=64)
    policy_version: str | None = Field(default=None, max_length=64)
    resolution: str | None = Field(default=None, max_length=32,
                                   description="single, majority, dawid_skene or expert")
    agreement: float | None = Field(default=None, description="share of the annotators who gave the resolved label")
    annotator_count: int | None = None
    annotation_id: int | None = Field(default=None, foreign_key="annotations.id")
    answer: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON(none_as_null=True)),
                                          description="the resolved answer beyond its label (a correction, issues, "
                                                      "severity, corrected fields), from the annotation it names")
    cycle: int | None = None
    created_at: datetime = Field(default_factory=utcnow)


class RowHistory(SQLModel, table=True):
    """What an annotation or a label was before it changed or was withdrawn: the old row, whole, with when and why.
    Their tables hold the current answer and label; this one keeps every earlier version (append-only)."""

    __tablename__ = "row_history"
    __table_args__ = (Index("ix_row_history_key", "table_name", "row_key"),)

    id: int | None = Field(default=None, primary_key=True)
    table_name: str = Field(max_length=32)
    row_key: str = Field(max_length=512, description="the annotation's id, or the label's item id")
    old: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    reason: str = Field(max_length=64, description="updated (a newer answer or resolution) or withdrawn")
    replaced_at: datetime = Field(default_factory=utcnow)


class AuditEvent(SQLModel, table=True):
    """Something that happened: a flow step, a promotion, a policy change."""

    __tablename__ = "audit_events"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=64, index=True)
    actor: str = Field(default="system", max_length=128)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow)


class QuarantinedRecord(SQLModel, table=True):
    """An input record that broke the contract, kept with a machine-readable reason."""

    __tablename__ = "quarantine"
    __table_args__ = (UniqueConstraint("source", "record_number", "fingerprint", name="uq_quarantine_record_content"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=512)
    record_number: int
    fingerprint: str | None = Field(default=None, max_length=64,
                                    description="sha256 of the record as read: the same line of a file overwritten "
                                                "with other content is another record")
    record_id: str | None = Field(default=None, max_length=512)
    reason: str = Field(max_length=64, index=True)
    detail: str = ""
    raw: str = ""
    created_at: datetime = Field(default_factory=utcnow)


class CycleReport(SQLModel, table=True):
    """The figures of one flywheel cycle."""

    __tablename__ = "cycle_reports"

    cycle: int = Field(primary_key=True)
    model_version: str | None = Field(default=None, max_length=64)
    policy_version: str | None = Field(default=None, max_length=64)
    figures: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON))
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class Watermark(SQLModel, table=True):
    """A named high-water mark, e.g. how far annotations have been pulled."""

    __tablename__ = "watermarks"

    name: str = Field(primary_key=True, max_length=128)
    value: str
    updated_at: datetime = Field(default_factory=utcnow)


class StoreLockHolder(SQLModel, table=True):
    """Who holds (or last held) the store's lock: written by the holder once it has the lock, for `sluice status`.
    The lock itself is an operating-system or database lock (`store.lock`); this row only names its holder and
    can be stale after a crash, which `store.lock.lock_status` tells apart."""

    __tablename__ = "store_lock_holders"

    name: str = Field(primary_key=True, max_length=64)
    flow: str = Field(max_length=256)
    flow_run_id: str | None = Field(default=None, max_length=64)
    pid: int
    host: str = Field(max_length=256)
    process_started: float = Field(description="the holder process's start (seconds since the epoch)")
    backend_pid: int | None = Field(default=None, description="PostgreSQL: the session that holds the lock")
    acquired_at: datetime = Field(default_factory=utcnow)
    namespace: str | None = Field(default=None, max_length=256,
                                  description="boot id and pid namespace: where `pid` names this very process")


class Account(SQLModel, table=True):
    """A person who signs in to the console: a local account (scrypt password hash) or an organisation's sign-in
    (OIDC: no password here, the identity provider vouches for the email), with one role."""

    __tablename__ = "accounts"

    username: str = Field(primary_key=True, max_length=256)
    role: str = Field(max_length=16)
    password_hash: str | None = Field(default=None, max_length=512)
    display_name: str | None = Field(default=None, max_length=256)
    created_at: datetime = Field(default_factory=utcnow)
    disabled: bool = False


class PolicyChange(SQLModel, table=True):
    """A proposed or applied change of the active policy: an edit or a rollback to a stored version. Applying one
    activates its version; the applied changes in order are the policy's history (a rollback is a new entry)."""

    __tablename__ = "policy_changes"
    __table_args__ = (Index("ix_policy_changes_status", "status"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16, description="edit or rollback")
    version: str = Field(foreign_key="policy_versions.version", max_length=64)
    base_version: str | None = Field(default=None, max_length=64, description="the active version it was made on")
    author: str = Field(max_length=256)
    comment: str
    status: str = Field(max_length=16, description="pending, applied, rejected or superseded")
    approval_segments: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    approver: str | None = Field(default=None, max_length=256)
    decision_comment: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    decided_at: datetime | None = None
