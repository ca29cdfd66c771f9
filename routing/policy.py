"""The routing policy document: per-segment mode, stakes, thresholds, budgets and calibration limits."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from routing.audit import DEFAULT_EXPECTED_ERROR, MAX_AUDIT_RATE, audits_for_width

__all__ = [
    "FieldChange",
    "InjectionAction",
    "approval_segments",
    "budget_window",
    "policy_diff",
    "CalibrationLimits",
    "CalibrationOverride",
    "Policy",
    "PolicyRevision",
    "RiskRule",
    "SegmentOverride",
    "SegmentPolicy",
]

Mode = Literal["in_the_loop", "on_the_loop"]
Stakes = Literal["low", "medium", "high"]
Resolution = Literal["majority", "dawid_skene"]
SmallSegment = Literal["pool", "review"]
RuleOp = Literal[">", ">=", "<", "<=", "==", "contains", "regex"]
RuleAction = Literal["escalate", "review"]
InjectionAction = Literal["escalate", "review", "off"]
HASH_LENGTH = 16
DEFAULT_SECONDS_PER_ITEM = 30.0
# The probabilistic review strategy's floor: every item routed to review is drawn with at least this probability
# (at most half the segment's budget goes to the floor; see flows/select.py)
MIN_REVIEW_PROBABILITY = 0.01
# The most of a segment's label budget its audits may take in a window (the rest is for reviews)
AUDIT_BUDGET_SHARE = 0.5

# Fields added after policies were first stored: left out of the canonical form while they hold their default,
# so the content hash (the version) of every policy written before them is unchanged.
_ADDED_FIELD_DEFAULTS: dict[str, Any] = {
    "max_auto_error": None,
    "confidence": None,
    "review_threshold": None,
    "seconds_per_item": DEFAULT_SECONDS_PER_ITEM,
    "risk_rules": [],
    "blind_share": 0.0,
    "gold_share": 0.0,
    "overlap_share": 0.0,
    "overlap_annotators": 3,
    "resolution": "majority",
    "min_agreement": 0.6,
    "audit_train_share": 0.5,
    "parent": None,
    "small_segment": "pool",
    "audit_interval_width": None,
    "budget_window_hours": 1.0,
    "prompt_injection": "review",
    "context_injection": "escalate",
    "expert_issues": [],
    "min_review_probability": MIN_REVIEW_PROBABILITY,
    "audit_budget_share": AUDIT_BUDGET_SHARE,
}
_NUMERIC_OPS = frozenset({">", ">=", "<", "<="})
_FIELD_PATTERN = re.compile(r"^(text|metadata(\.[A-Za-z0-9_\-]+)+)$")
_CODE_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.:\-]*$")

_FROZEN = ConfigDict(frozen=True, extra="forbid")


def _threshold(value: float | None) -> float | None:
    if value is not None and not (0.0 < value <= 1.0):  # NaN fails the comparison too
        raise ValueError(f"auto_accept_threshold must be in (0, 1], got {value!r}")
    return value


def _share(name: str):
    """A validator for a share in [0, 1] whose error names the field and the value."""

    def check(value: float | None) -> float | None:
        if value is not None and not (0.0 <= value <= 1.0):  # NaN fails the comparison too
            raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        return value

    return check


_rate, _blind_share, _gold_share = _share("spot_check_rate"), _share("blind_share"), _share("gold_share")
_overlap_share, _min_agreement = _share("overlap_share"), _share("min_agreement")
_audit_train_share = _share("audit_train_share")
_min_review_probability = _share("min_review_probability")
_audit_budget_share = _share("audit_budget_share")


def _injection_action(value: Any) -> Any:
    """YAML 1.1 reads a bare ``off`` as false: take it as the action ``off`` it was written as."""
    return "off" if value is False else value


def _issue_codes(codes: tuple[str, ...] | None) -> tuple[str, ...] | None:
    if codes is None:
        return codes
    bad = [c for c in codes if not _CODE_PATTERN.match(c)]
    if bad or len(set(codes)) != len(codes):
        raise ValueError(f"expert_issues must be distinct issue categories (lower case letters, digits, _ . : -), "
                         f"got {list(codes)!r}")
    return codes


MAX_POLICY_BYTES = 1_000_000  # a policy is a page of settings; anything near this size is a mistake or an attack


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that refuses a key given twice in one mapping (the later one would silently win: a regulated,
    high-stakes segment could become a low-stakes one), naming both lines."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ValueError(f"the key {key!r} is given twice in one mapping: lines {seen[key]} and {line}")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def read_policy_yaml(text: str) -> Any:
    """The document of a policy's YAML text, or a one-line ValueError: more than `MAX_POLICY_BYTES`, YAML that
    does not parse (with its line and column), anchors or aliases (a policy needs none, and nested aliases expand
    exponentially: a few hundred bytes can ask for gigabytes), or a key given twice."""
    if len(text.encode("utf-8", errors="replace")) > MAX_POLICY_BYTES:
        raise ValueError(f"a policy is at most {MAX_POLICY_BYTES:,} bytes; this one is larger")
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):  # events only: nothing is expanded yet
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise ValueError(f"anchors and aliases (& and *) are not allowed in a policy: line "
                                 f"{event.start_mark.line + 1}")
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ValueError(f"not valid YAML{where}: {error.problem or error.context}") from None
    except yaml.YAMLError as error:
        raise ValueError(f"not valid YAML: {error}") from None


def _overlap_annotators(value: int | None) -> int | None:
    if value is not None and not 2 <= value <= 20:
        raise ValueError(f"overlap_annotators must be between 2 and 20 annotators per task, got {value!r}")
    return value


def _budget(value: int | None) -> int | None:
    if value is not None and value < 0:
        raise ValueError(f"review_budget must be >= 0 items per budget window, got {value!r}")
    return value


def _window(value: float | None) -> float | None:
    if value is not None and not (0.0 < value <= 24.0 * 366):
        raise ValueError(f"budget_window_hours must be in (0, 8784] hours, got {value!r}")
    return value


def _open_unit(name: str) -> Any:
    def check(value: float | None) -> float | None:
        if value is not None and not (0.0 < value < 1.0):
            raise ValueError(f"{name} must be in (0, 1), got {value!r}")
        return value

    return check


def _review_threshold(value: float | None) -> float | None:
    if value is not None and not (0.0 <= value <= 1.0):
        raise ValueError(f"review_threshold must be in [0, 1], got {value!r}")
    return value


def _seconds(value: float | None) -> float | None:
    if value is not None and not (0.0 < value < math.inf):
        raise ValueError(f"seconds_per_item must be a finite number > 0, got {value!r}")
    return value


def _max_ece(value: float | None) -> float | None:
    if value is not None and not (0.0 <= value <= 1.0):
        raise ValueError(f"max_ece must be in [0, 1], got {value!r}")
    return value


def _min_samples(value: int | None) -> int | None:
    if value is not None and value < 1:
        raise ValueError(f"min_samples must be >= 1, got {value!r}")
    return value


def _max_age(value: float | None) -> float | None:
    if value is not None and not (0.0 < value < math.inf):
        raise ValueError(f"max_age_hours must be a finite number > 0, got {value!r}")
    return value


class CalibrationLimits(BaseModel):
    """What a segment's calibration must show before its threshold is trusted."""

    model_config = _FROZEN

    min_samples: int = 50
    max_ece: float = 0.1
    max_age_hours: float = 168.0

    _check_min_samples = field_validator("min_samples")(_min_samples)
    _check_max_ece = field_validator("max_ece")(_max_ece)
    _check_max_age = field_validator("max_age_hours")(_max_age)


class CalibrationOverride(BaseModel):
    """Per-segment calibration limits; unset fields keep the defaults."""

    model_config = _FROZEN

    min_samples: int | None = None
    max_ece: float | None = None
    max_age_hours: float | None = None

    _check_min_samples = field_validator("min_samples")(_min_samples)
    _check_max_ece = field_validator("max_ece")(_max_ece)
    _check_max_age = field_validator("max_age_hours")(_max_age)


class RiskRule(BaseModel):
    """A configured keyword or metadata rule: an item whose ``field`` satisfies ``op value`` goes to people.

    ``field`` is ``text`` or a dotted path into the item's metadata (``metadata.amount``,
    ``metadata.customer.tier``); ``code`` becomes the item's reason code.
    """

    model_config = _FROZEN

    field: str
    op: RuleOp
    value: float | int | str | bool
    action: RuleAction = "escalate"
    code: str

    @field_validator("field")
    @classmethod
    def _known_field(cls, value: str) -> str:
        if not _FIELD_PATTERN.match(value):
            raise ValueError(f"field must be 'text' or 'metadata.<key>[.<key>...]', got {value!r}")
        return value

    @field_validator("code")
    @classmethod
    def _reason_code(cls, value: str) -> str:
        if not _CODE_PATTERN.match(value):
            raise ValueError(f"code must be a lower-case reason code like 'amount_over_limit', got {value!r}")
        return value

    @model_validator(mode="after")
    def _value_fits_op(self) -> RiskRule:
        numeric = isinstance(self.value, (int, float)) and not isinstance(self.value, bool)
        if self.field == "text" and self.op in _NUMERIC_OPS:
            raise ValueError(f"op {self.op!r} does not apply to field 'text'; use contains, regex or ==")
        if self.op in _NUMERIC_OPS and not (isinstance(self.value, (int, float)) and numeric
                                            and math.isfinite(self.value)):
            raise ValueError(f"value of a {self.op!r} rule must be a finite number, got {self.value!r}")
        if self.op in ("contains", "regex") and not (isinstance(self.value, str) and self.value):
            raise ValueError(f"value of a {self.op!r} rule must be a non-empty string, got {self.value!r}")
        if self.op == "regex":
            try:
                linear_regex(str(self.value))
            except ValueError as error:
                raise ValueError(f"value of a 'regex' rule: {error}") from None
        return self


_RE2_OPTIONS: Any = None


def linear_regex(pattern: str) -> Any:
    """`pattern` compiled by RE2, whose matching time grows linearly with the text whatever the pattern (Python's
    `re` backtracks: `^(a+)+$` on a long line of a's takes exponential time, so one risk rule could stall every
    route run). RE2 has no backreferences or lookaround; a pattern that needs them is refused with RE2's reason."""
    import re2

    global _RE2_OPTIONS
    if _RE2_OPTIONS is None:
        _RE2_OPTIONS = re2.Options()
        _RE2_OPTIONS.log_errors = False  # the error is raised, not printed to stderr
    try:
        return re2.compile(pattern, options=_RE2_OPTIONS)
    except re2.error as error:
        reason = error.args[0].decode(errors="replace") if error.args and isinstance(error.args[0], bytes) \
            else str(error)
        raise ValueError(f"{pattern!r} is not a regular expression this policy can run in linear time "
                         f"({reason}; backreferences and lookaround are not supported)") from None


def _target_complete(max_auto_error: float | None, confidence: float | None) -> None:
    if (max_auto_error is None) != (confidence is None):
        raise ValueError(
            "a target needs both max_auto_error and confidence in (0, 1), got "
            f"max_auto_error={max_auto_error!r}, confidence={confidence!r}"
        )


class SegmentPolicy(BaseModel):
    """The effective routing rules of one segment.

    Either the fixed ``auto_accept_threshold`` applies, or, when a target (``max_auto_error``, ``confidence``) is
    set, a threshold derived from unbiased labels with ``routing.thresholds.guaranteed_threshold(alpha=
    max_auto_error, delta=1 - confidence)``; a target without a derived threshold auto-accepts nothing. Items
    below ``review_threshold`` (at most the auto-accept threshold) escalate instead of going to plain review.
    """

    model_config = _FROZEN

    mode: Mode = "on_the_loop"
    stakes: Stakes = "low"
    regulated: bool = False
    auto_accept_threshold: float = 0.9
    max_auto_error: float | None = None
    confidence: float | None = None
    review_threshold: float | None = None
    spot_check_rate: float = 0.05
    # when set, the audit share of a route run is sized so that the 95% interval of the live error estimate of the
    # run's auto-accepted items is about this wide (at the target error), with spot_check_rate as the floor
    audit_interval_width: float | None = None
    blind_share: float = 0.0  # review tasks shown without the model's suggestion, to measure automation bias
    gold_share: float = 0.0  # extra tasks with known answers, per budgeted task, to measure annotator accuracy
    overlap_share: float = 0.0  # review tasks answered by several annotators, to measure agreement
    overlap_annotators: int = 3  # how many annotators answer each of those
    resolution: Resolution = "majority"  # how several answers become one label (the method is recorded)
    min_agreement: float = 0.6  # below this share agreeing with the resolved label, the item goes to an expert
    # audit labels that, after serving the live guard and audit estimate of the model that routed them, train the
    # next model (a fixed draw per decision); the rest stay held out to calibrate and certify every later model
    audit_train_share: float = 0.5
    # a segment with too few unbiased labels to calibrate (or, with a target, to certify) on its own either pools
    # them with its parent group's (every segment naming the same parent; no parent: the default group) and is
    # calibrated and certified with the pool, the guarantee then holding for the pool, or routes to review
    parent: str | None = None
    small_segment: SmallSegment = "pool"
    # review tasks a segment may send to people per budget window (fixed windows of this many hours from
    # midnight UTC, 1: each clock hour); escalations count against it, audits and gold do not
    review_budget: int = 50
    budget_window_hours: float = 1.0
    # the `active` review strategy draws every review item with a known probability that grows with the model's
    # uncertainty and is never below this floor, so that every review label can be weighted into unbiased estimates
    min_review_probability: float = MIN_REVIEW_PROBABILITY
    # the most of the label budget audits may take in a window (their share is lowered to fit), the rest reviews'
    audit_budget_share: float = AUDIT_BUDGET_SHARE
    seconds_per_item: float = DEFAULT_SECONDS_PER_ITEM
    calibration: CalibrationLimits = Field(default_factory=CalibrationLimits)
    risk_rules: tuple[RiskRule, ...] = ()
    # where prompt-injection signals send an item of an LLM pipeline (routing.injection): instructions, smuggled
    # characters or encoded payloads in the prompt a user wrote, and, apart, in the documents the pipeline fed its
    # model or the document an extraction read (indirect injection: nobody expects orders inside data); off leaves
    # that side's detectors out
    prompt_injection: InjectionAction = "review"
    context_injection: InjectionAction = "escalate"
    # issue categories that send a reviewed response to an expert whenever an annotator names one (e.g. unsafe):
    # the item's label then comes from the expert, not from the review round
    expert_issues: tuple[str, ...] = ()

    _check_threshold = field_validator("auto_accept_threshold")(_threshold)
    _check_max_auto_error = field_validator("max_auto_error")(_open_unit("max_auto_error"))
    _check_confidence = field_validator("confidence")(_open_unit("confidence"))
    _check_review = field_validator("review_threshold")(_review_threshold)
    _check_rate = field_validator("spot_check_rate")(_rate)
    _check_width = field_validator("audit_interval_width")(_open_unit("audit_interval_width"))
    _check_blind = field_validator("blind_share")(_blind_share)
    _check_gold = field_validator("gold_share")(_gold_share)
    _check_overlap = field_validator("overlap_share")(_overlap_share)
    _check_annotators = field_validator("overlap_annotators")(_overlap_annotators)
    _check_agreement = field_validator("min_agreement")(_min_agreement)
    _check_audit_train = field_validator("audit_train_share")(_audit_train_share)
    _check_review_floor = field_validator("min_review_probability")(_min_review_probability)
    _check_audit_share = field_validator("audit_budget_share")(_audit_budget_share)
    _check_budget = field_validator("review_budget")(_budget)
    _check_window = field_validator("budget_window_hours")(_window)
    _check_seconds = field_validator("seconds_per_item")(_seconds)
    _read_injection = field_validator("prompt_injection", "context_injection", mode="before")(_injection_action)
    _check_issues = field_validator("expert_issues")(_issue_codes)

    @model_validator(mode="after")
    def _consistent(self) -> SegmentPolicy:
        _target_complete(self.max_auto_error, self.confidence)
        if self.review_threshold is not None and self.review_threshold > self.auto_accept_threshold:
            raise ValueError(
                f"review_threshold {self.review_threshold!r} must not exceed auto_accept_threshold "
                f"{self.auto_accept_threshold!r}"
            )
        return self

    @property
    def has_target(self) -> bool:
        """Whether the threshold is derived from a guarantee target rather than fixed."""
        return self.max_auto_error is not None

    @property
    def delta(self) -> float | None:
        """The allowed probability that the guarantee fails (1 - confidence), None without a target."""
        return None if self.confidence is None else 1.0 - self.confidence


class SegmentOverride(BaseModel):
    """Fields a segment sets over the defaults; unset fields (None) inherit. A segment's ``risk_rules`` replace
    the defaults' rules (an empty list removes them)."""

    model_config = _FROZEN

    mode: Mode | None = None
    stakes: Stakes | None = None
    regulated: bool | None = None
    auto_accept_threshold: float | None = None
    max_auto_error: float | None = None
    confidence: float | None = None
    review_threshold: float | None = None
    spot_check_rate: float | None = None
    audit_interval_width: float | None = None
    blind_share: float | None = None
    gold_share: float | None = None
    overlap_share: float | None = None
    overlap_annotators: int | None = None
    resolution: Resolution | None = None
    min_agreement: float | None = None
    audit_train_share: float | None = None
    parent: str | None = None
    small_segment: SmallSegment | None = None
    review_budget: int | None = None
    budget_window_hours: float | None = None
    min_review_probability: float | None = None
    audit_budget_share: float | None = None
    seconds_per_item: float | None = None
    calibration: CalibrationOverride | None = None
    risk_rules: tuple[RiskRule, ...] | None = None
    prompt_injection: InjectionAction | None = None
    context_injection: InjectionAction | None = None
    expert_issues: tuple[str, ...] | None = None

    _check_threshold = field_validator("auto_accept_threshold")(_threshold)
    _check_max_auto_error = field_validator("max_auto_error")(_open_unit("max_auto_error"))
    _check_confidence = field_validator("confidence")(_open_unit("confidence"))
    _check_review = field_validator("review_threshold")(_review_threshold)
    _check_rate = field_validator("spot_check_rate")(_rate)
    _check_width = field_validator("audit_interval_width")(_open_unit("audit_interval_width"))
    _check_blind = field_validator("blind_share")(_blind_share)
    _check_gold = field_validator("gold_share")(_gold_share)
    _check_overlap = field_validator("overlap_share")(_overlap_share)
    _check_annotators = field_validator("overlap_annotators")(_overlap_annotators)
    _check_agreement = field_validator("min_agreement")(_min_agreement)
    _check_audit_train = field_validator("audit_train_share")(_audit_train_share)
    _check_review_floor = field_validator("min_review_probability")(_min_review_probability)
    _check_audit_share = field_validator("audit_budget_share")(_audit_budget_share)
    _check_budget = field_validator("review_budget")(_budget)
    _check_window = field_validator("budget_window_hours")(_window)
    _check_seconds = field_validator("seconds_per_item")(_seconds)
    _read_injection = field_validator("prompt_injection", "context_injection", mode="before")(_injection_action)
    _check_issues = field_validator("expert_issues")(_issue_codes)


def _merge(defaults: SegmentPolicy, override: SegmentOverride) -> SegmentPolicy:
    merged = defaults.model_dump()
    changes = override.model_dump(exclude_none=True)
    merged["calibration"] = {**merged["calibration"], **changes.pop("calibration", {})}
    return SegmentPolicy.model_validate({**merged, **changes})


class Policy(BaseModel):
    """A versionable routing policy: defaults plus per-segment overrides merged field by field."""

    model_config = _FROZEN

    name: str = Field(min_length=1)
    labels: tuple[str, ...] | None = None
    defaults: SegmentPolicy = Field(default_factory=SegmentPolicy)
    segments: dict[str, SegmentOverride] = Field(default_factory=dict)

    @field_validator("labels")
    @classmethod
    def _unique_labels(cls, labels: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if labels is not None:
            duplicates = sorted({label for label in labels if labels.count(label) > 1})
            if duplicates or not labels:
                raise ValueError(f"labels must be a non-empty list without duplicates, got {list(labels)!r}")
        return labels

    @model_validator(mode="after")
    def _segments_merge_cleanly(self) -> Policy:
        for name, override in self.segments.items():
            try:
                _merge(self.defaults, override)
            except ValueError as error:
                raise ValueError(
                    f"segment {name!r} is invalid after merging with defaults: {error}"
                ) from error
        return self

    @classmethod
    def from_yaml(cls, text: str) -> Policy:
        document = read_policy_yaml(text)
        if not isinstance(document, dict):
            raise ValueError(f"a policy YAML document must be a mapping, got {type(document).__name__}")
        return cls.model_validate(document)

    @classmethod
    def from_stored(cls, version: str, document: str) -> Policy:
        """A stored policy version, refused when its document no longer hashes to its version: someone altered it
        in the database after it was saved, and acting on it would follow rules nobody saved or approved."""
        policy = cls.from_yaml(document)
        actual = policy.content_hash()
        if actual != version:
            raise ValueError(f"stored policy version {version} does not match its document (which hashes to "
                             f"{actual}): it was altered after it was saved; restore it, or save the intended "
                             "policy again with `sluice policy set`")
        return policy

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        return cls.from_yaml(Path(path).read_text(encoding="utf-8"))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self._canonical(), sort_keys=False, allow_unicode=True)

    def for_segment(self, name: str) -> SegmentPolicy:
        """The defaults merged with the segment's overrides; an unknown segment gets the defaults."""
        override = self.segments.get(name)
        return self.defaults if override is None else _merge(self.defaults, override)

    def with_segment_rules(self, segment: str, rules: dict[str, Any]) -> Policy:
        """This policy with the effective rules of `segment` ("defaults" for the defaults) changed to `rules`
        (field -> value, `calibration` as a partial mapping; fields not named keep their value). A named segment
        keeps as overrides only the fields that differ from the defaults, so it goes on inheriting the rest. A
        segment cannot drop a target its defaults set (an override of None inherits): that fails, naming why."""
        unknown = set(rules) - set(SegmentPolicy.model_fields)
        if unknown:
            raise ValueError(f"unknown policy fields {sorted(unknown)}")
        document = self.model_dump(mode="json", exclude_none=True)
        base = (self.defaults if segment == "defaults" else self.for_segment(segment)).model_dump(mode="json")
        changed = {**base, **rules, "calibration": {**base["calibration"], **(rules.get("calibration") or {})}}
        effective = SegmentPolicy.model_validate(changed)  # the field's own error, naming it
        if segment == "defaults":
            document["defaults"] = effective.model_dump(mode="json", exclude_none=True)
            return Policy.model_validate(document)
        defaults = self.defaults.model_dump(mode="json")
        after = effective.model_dump(mode="json")
        if self.defaults.has_target and not effective.has_target:
            raise ValueError(f"segment {segment!r} inherits the target of the defaults (max_auto_error "
                             f"{self.defaults.max_auto_error:g}); a segment cannot drop it: change the defaults, "
                             "or give the segment a target of its own")
        override = {field: value for field, value in after.items()
                    if field != "calibration" and value != defaults[field] and value is not None}
        calibration = {key: value for key, value in after["calibration"].items()
                       if value != defaults["calibration"][key]}
        if calibration:
            override["calibration"] = calibration
        if after["risk_rules"] != defaults["risk_rules"]:
            override["risk_rules"] = after["risk_rules"]
        document.setdefault("segments", {})[segment] = override
        return Policy.model_validate(document)

    def guarantee_lines(self) -> list[str]:
        """One line for the defaults and each named segment: what bounds its auto-accepted error. A fixed
        threshold is labelled as carrying no guarantee; people-only segments auto-accept nothing."""
        return [f"{name}: {_guarantee_text(rules)}"
                for name, rules in [("defaults", self.defaults),
                                    *((name, self.for_segment(name)) for name in sorted(self.segments))]]

    def budget_lines(self) -> list[str]:
        """One line for the defaults and each named segment: what its label budget covers and how it splits."""
        return [f"{name}: {_budget_text(rules)}"
                for name, rules in [("defaults", self.defaults),
                                    *((name, self.for_segment(name)) for name in sorted(self.segments))]]

    def content_hash(self) -> str:
        """First 16 hex digits of the sha256 of the policy's canonical, key-sorted JSON."""
        canonical = json.dumps(self._canonical(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:HASH_LENGTH]

    def revision(self, *, author: str, comment: str, created_at: datetime) -> PolicyRevision:
        """This policy as an immutable saved version; the caller supplies the time (routing reads no clock)."""
        if not author.strip():
            raise ValueError(f"author must be non-empty, got {author!r}")
        if created_at.tzinfo is None:
            raise ValueError(f"created_at must be timezone-aware, got {created_at!r}")
        return PolicyRevision(
            version=self.content_hash(),
            name=self.name,
            document=self.to_yaml(),
            author=author,
            comment=comment,
            created_at=created_at,
        )

    def _canonical(self) -> dict[str, Any]:
        document = self.model_dump(mode="json", exclude_none=True)
        defaults = document["defaults"]
        for field, default in _ADDED_FIELD_DEFAULTS.items():
            if field in defaults and defaults[field] == default:
                del defaults[field]
        return document


def review_cost(gold_share: float, overlap_share: float, overlap_annotators: int) -> float:
    """Labels one budgeted review costs, expected: itself, its share of gold tasks and its overlap's extra answers."""
    return 1.0 + gold_share + overlap_share * (overlap_annotators - 1)


def _budget_text(rules: SegmentPolicy) -> str:
    window = f"{rules.budget_window_hours:g} h" if rules.budget_window_hours != 1 else "hour"
    cost = review_cost(rules.gold_share, rules.overlap_share, rules.overlap_annotators)
    return (f"{rules.review_budget} human labels per {window}, covering every label asked for: audits first "
            f"(spot_check_rate {rules.spot_check_rate:g} of automated and review items, lowered to fit "
            f"audit_budget_share {rules.audit_budget_share:g} of the budget, never below min_review_probability "
            f"{rules.min_review_probability:g}), then escalations, then reviews "
            f"at {cost:g} labels each (gold {rules.gold_share:g}, overlap {rules.overlap_share:g} x "
            f"{rules.overlap_annotators - 1} extra answers)" + _sizing_text(rules))


def _sizing_text(rules: SegmentPolicy) -> str:
    """What `audit_interval_width` asks of each route run, in audits (``routing.audit``'s plan)."""
    if rules.audit_interval_width is None:
        return ""
    error = rules.max_auto_error or DEFAULT_EXPECTED_ERROR
    needed = audits_for_width(rules.audit_interval_width, expected_error=error)
    return (f"; audit_interval_width {rules.audit_interval_width:g} raises a run's audit share to about {needed} "
            f"audits (an interval that wide at {error:g} error), at most {MAX_AUDIT_RATE:g} of what it automates, "
            "within the same budget")


def _guarantee_text(rules: SegmentPolicy) -> str:
    if rules.mode == "in_the_loop" or rules.stakes == "high" or rules.regulated:
        return "people review every item (in the loop, high stakes or regulated): nothing is auto-accepted"
    if rules.has_target:
        return (f"target: error among auto-accepted items <= {rules.max_auto_error:g} with confidence "
                f"{rules.confidence:g} (threshold derived and certified on unbiased labels, a re-routed backlog on "
                "its own audits; live guard on)")
    return (f"fixed auto_accept_threshold {rules.auto_accept_threshold:g}: carries no guarantee on the error of "
            "auto-accepted items (set max_auto_error and confidence for one)")


@dataclass(frozen=True)
class PolicyRevision:
    """One saved, immutable policy version: its content hash is its identity, with who saved it, when and why."""

    version: str
    name: str
    document: str
    author: str
    comment: str
    created_at: datetime

    def policy(self) -> Policy:
        """The policy this revision holds, checked against its version (a tampered document fails loudly)."""
        policy = Policy.from_yaml(self.document)
        if policy.content_hash() != self.version:
            raise ValueError(
                f"policy document hashes to {policy.content_hash()!r}, not its recorded version {self.version!r}"
            )
        return policy


@dataclass(frozen=True)
class FieldChange:
    """One effective rule of one segment that differs between two policies (``defaults`` for the defaults)."""

    segment: str
    field: str
    old: Any
    new: Any


def _flat_rules(rules: SegmentPolicy) -> dict[str, Any]:
    flat = rules.model_dump(mode="json")
    for name, value in flat.pop("calibration").items():
        flat[f"calibration.{name}"] = value
    return flat


def _effective(policy: Policy | None, segment: str) -> SegmentPolicy | None:
    if policy is None:
        return None
    if segment == "defaults":
        return policy.defaults
    return policy.for_segment(segment) if segment in policy.segments else None


def policy_diff(old: Policy | None, new: Policy) -> list[FieldChange]:
    """The effective rules that differ, segment by segment (the defaults, then named segments in order); a
    segment present on one side only differs from the defaults it would inherit on the other. The policy's
    name and label set are listed under ``policy``."""
    changes: list[FieldChange] = []
    for name in ("name", "labels"):
        before = None if old is None else getattr(old, name)
        if before != getattr(new, name):
            changes.append(FieldChange("policy", name, before, getattr(new, name)))
    segments = sorted(set(new.segments) | set(old.segments if old is not None else ()))
    for segment in ("defaults", *segments):
        before_rules = _effective(old, segment) or (old.defaults if old is not None else None)
        after_rules = _effective(new, segment) or new.defaults
        before = _flat_rules(before_rules) if before_rules is not None else {}
        after = _flat_rules(after_rules)
        changes += [FieldChange(segment, field, before.get(field), after[field])
                    for field in after if before.get(field) != after[field]]
    return changes


def _guarded(rules: SegmentPolicy | None) -> bool:
    return rules is not None and (rules.regulated or rules.stakes == "high")


def approval_segments(old: Policy | None, new: Policy) -> list[str]:
    """The segments (``defaults`` included) whose effective rules a change from `old` to `new` alters and which
    either side marks regulated or high stakes: such a change needs an approver other than its author. A change
    of the defaults counts for every segment that inherits it (`policy_diff` compares effective rules)."""
    changed = {change.segment for change in policy_diff(old, new) if change.segment != "policy"}
    return sorted(name for name in changed
                  if _guarded(_effective(old, name)) or _guarded(_effective(new, name)))


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def budget_window(moment: datetime, hours: float) -> tuple[datetime, datetime]:
    """The fixed review-budget window holding `moment`: [start, end), windows of `hours` counted from the Unix
    epoch in UTC (1: each clock hour, 24: each UTC day). A naive `moment` is read as UTC."""
    if not hours > 0:
        raise ValueError(f"budget window must be > 0 hours, got {hours!r}")
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)
    width = timedelta(hours=hours)
    start = _EPOCH + width * ((moment - _EPOCH) // width)
    return start, start + width
