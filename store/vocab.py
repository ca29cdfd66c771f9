"""Sluice's vocabulary: the one place that names item and task states, label splits, selection reasons and model
statuses, and says which labels may evaluate a model.

Every value is a ``StrEnum``, so it compares equal to, and is stored as, the plain string the tables have always
held; flows, the console and the labelling adapter import these names instead of spelling the strings.

Which labels are unbiased
-------------------------
A label may calibrate a model and certify its thresholds only when the item was drawn without regard to that
model's uncertainty, from the traffic the model routes: the held-out share of the seed set (a uniform draw at
ingest), the audits (a known-probability draw from everything routed) and gold items (held-out seed items sent
out again to grade annotators). These are ``UNBIASED_SELECTIONS``. A ``random`` review pick is uniform only among
the items already routed to review, a harder population than what is auto-accepted, so it is *not* unbiased: its
label trains the next model. So do uncertainty picks, escalations and answers to tasks Sluice never sent.
"""

from __future__ import annotations

from enum import StrEnum

from routing.decide import Route

__all__ = [
    "AUTOMATED_ROUTES",
    "EVALUATION_SELECTIONS",
    "HOLDOUT_SELECTIONS",
    "ItemKind",
    "KIND_LABELS",
    "ItemState",
    "LabelSource",
    "FAMILY_ITEM_KIND",
    "ModelFamily",
    "ModelStatus",
    "ChangeKind",
    "ChangeStatus",
    "Queue",
    "Role",
    "Route",
    "Selection",
    "Split",
    "TaskState",
    "UNBIASED_SELECTIONS",
    "UNBUDGETED_SELECTIONS",
    "split_for",
]


class ItemKind(StrEnum):
    """What an item is an output of (the input contract's `kind`): a classifier's label, an LLM pipeline's
    generated response, a pair of responses to prefer between, or fields extracted from a document."""

    CLASSIFICATION = "classification"
    GENERATION = "generation"
    PAIRWISE = "pairwise"
    EXTRACTION = "extraction"


# The label a person gives an item of each LLM kind, and so the classes its score is calibrated and certified on:
# a response accepted or rejected; response a or b preferred (a tie counts against whichever side was predicted);
# an extraction confirmed as extracted or corrected in some field.
KIND_LABELS: dict[str, tuple[str, ...]] = {
    ItemKind.GENERATION: ("accept", "reject"),
    ItemKind.PAIRWISE: ("a", "b", "tie"),
    ItemKind.EXTRACTION: ("confirmed", "corrected"),
}


class ItemState(StrEnum):
    """An item's place in its lifecycle (docs/architecture.md, *Item lifecycle*)."""

    received = "received"
    scored = "scored"
    routed = "routed"
    auto_accepted = "auto_accepted"
    queued = "queued"
    annotated = "annotated"
    resolved = "resolved"
    quarantined = "quarantined"
    failed = "failed"


class TaskState(StrEnum):
    """A review task in the outbox: written (pending), in Label Studio (pushed), answered and resolved (done)."""

    PENDING = "pending"
    PUSHED = "pushed"
    DONE = "done"


class Queue(StrEnum):
    """Which Label Studio project a task goes to."""

    REVIEW = "review"
    EXPERT = "expert"


class Split(StrEnum):
    """Which set a label joins: ``train`` may teach a model, ``holdout`` evaluates, calibrates and certifies it."""

    TRAIN = "train"
    HOLDOUT = "holdout"


class Selection(StrEnum):
    """Why an item reached a person (``ReviewTask.selection_reason``, ``Label.selection_reason``)."""

    SEED = "seed"
    AUDIT = "audit"
    GOLD = "gold"
    ESCALATION = "escalation"
    MARGIN = "margin"
    ENTROPY = "entropy"
    LEAST_CONFIDENCE = "least_confidence"
    RANDOM = "random"
    DIVERSE = "diverse"
    # an output of an LLM pipeline chosen by its kind's uncertainty (routing.kind_selection.KIND_REASONS)
    VERIFIER_UNCERTAINTY = "verifier_uncertainty"
    PREFERENCE_UNCERTAINTY = "preference_uncertainty"
    FIELD_UNCERTAINTY = "field_uncertainty"
    UNSOLICITED = "unsolicited"
    # drawn by the probabilistic strategy with a known probability (review_draws): weighted, it estimates without bias
    ACTIVE = "active"


class LabelSource(StrEnum):
    """Where a label came from."""

    SEED = "seed"
    ANNOTATION = "annotation"
    DIRECT = "direct"


class ModelFamily(StrEnum):
    """The model that scores outputs of LLM pipelines of one kind when the pipeline sends no score, stored as its
    ``ModelVersion.kind``: Sluice's verifier for generated responses, its preference model for pairs. A classifier
    (kind ``text`` or ``features``, its input) is the model of classification items, as it always was."""

    VERIFIER = "verifier"
    PREFERENCE = "preference"


# The item kind each family scores, learns from and is judged on.
FAMILY_ITEM_KIND: dict[ModelFamily, ItemKind] = {
    ModelFamily.VERIFIER: ItemKind.GENERATION,
    ModelFamily.PREFERENCE: ItemKind.PAIRWISE,
}


class ModelStatus(StrEnum):
    CANDIDATE = "candidate"
    PROMOTED = "promoted"
    REJECTED = "rejected"
    RETIRED = "retired"


class Role(StrEnum):
    """What a console account may do, each role including the ones before it: a viewer reads; an operator proposes
    and applies policy changes; an approver also approves, as a second person, changes to segments the policy
    marks regulated or high stakes."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    APPROVER = "approver"

    def allows(self, needed: Role) -> bool:
        order = list(Role)
        return order.index(self) >= order.index(needed)


class ChangeKind(StrEnum):
    """A policy change: a new version edited in, or a rollback to a stored one."""

    EDIT = "edit"
    ROLLBACK = "rollback"


class ChangeStatus(StrEnum):
    """Where a policy change stands: waiting for an approver, applied (its version active), rejected, or
    superseded (another change was applied over its base before it was approved)."""

    PENDING = "pending"
    APPLIED = "applied"
    REJECTED = "rejected"
    SUPERSEDED = "superseded"


# Routes that take an item without a person first: a spot-checked item is accepted too, and maybe audited later.
AUTOMATED_ROUTES: tuple[Route, ...] = (Route.AUTO_ACCEPT, Route.SPOT_CHECK)
# Drawn without regard to any model's uncertainty from the traffic it routes: the only labels that calibrate and
# certify, and only while they are held out (see the module docstring).
UNBIASED_SELECTIONS: frozenset[Selection] = frozenset({Selection.SEED, Selection.AUDIT, Selection.GOLD})
# Labels that go to the held-out split unless a policy share sends them to training.
HOLDOUT_SELECTIONS: frozenset[Selection] = frozenset({Selection.AUDIT, Selection.GOLD})
# Tasks that do not spend a segment's review budget: audits (sized by the policy) and gold (graded annotators).
UNBUDGETED_SELECTIONS: frozenset[Selection] = frozenset({Selection.AUDIT, Selection.GOLD})
# The retrain gate compares models on these: chosen by no model's routing at all, so fair to every candidate.
EVALUATION_SELECTIONS: frozenset[Selection] = frozenset({Selection.SEED, Selection.GOLD})


def split_for(reason: str, *, trains: bool = False) -> Split:
    """The split of a new label chosen for ``reason``.

    Audit and gold labels are held out unless ``trains`` (the audit-train share's fixed draw per decision); a seed
    label is held out unless ``trains`` (the seed split's draw at ingest); everything else trains.
    """
    try:
        selection = Selection(reason)
    except ValueError as error:
        raise ValueError(f"unknown selection reason {reason!r}; expected one of {[s.value for s in Selection]}") \
            from error
    if selection in HOLDOUT_SELECTIONS or selection is Selection.SEED:
        return Split.TRAIN if trains else Split.HOLDOUT
    return Split.TRAIN
