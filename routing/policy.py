"""The routing policy document: per-segment mode, stakes, thresholds, budgets and calibration limits."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["CalibrationLimits", "CalibrationOverride", "Policy", "SegmentOverride", "SegmentPolicy"]

Mode = Literal["in_the_loop", "on_the_loop"]
Stakes = Literal["low", "medium", "high"]
HASH_LENGTH = 16

_FROZEN = ConfigDict(frozen=True, extra="forbid")


def _threshold(value: float | None) -> float | None:
    if value is not None and not (0.0 < value <= 1.0):  # NaN fails the comparison too
        raise ValueError(f"auto_accept_threshold must be in (0, 1], got {value!r}")
    return value


def _rate(value: float | None) -> float | None:
    if value is not None and not (0.0 <= value <= 1.0):
        raise ValueError(f"spot_check_rate must be in [0, 1], got {value!r}")
    return value


def _budget(value: int | None) -> int | None:
    if value is not None and value < 0:
        raise ValueError(f"review_budget must be >= 0 items per cycle, got {value!r}")
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


class SegmentPolicy(BaseModel):
    """The effective routing rules of one segment."""

    model_config = _FROZEN

    mode: Mode = "on_the_loop"
    stakes: Stakes = "low"
    regulated: bool = False
    auto_accept_threshold: float = 0.9
    spot_check_rate: float = 0.05
    review_budget: int = 50
    calibration: CalibrationLimits = Field(default_factory=CalibrationLimits)

    _check_threshold = field_validator("auto_accept_threshold")(_threshold)
    _check_rate = field_validator("spot_check_rate")(_rate)
    _check_budget = field_validator("review_budget")(_budget)


class SegmentOverride(BaseModel):
    """Fields a segment sets over the defaults; unset fields (None) inherit."""

    model_config = _FROZEN

    mode: Mode | None = None
    stakes: Stakes | None = None
    regulated: bool | None = None
    auto_accept_threshold: float | None = None
    spot_check_rate: float | None = None
    review_budget: int | None = None
    calibration: CalibrationOverride | None = None

    _check_threshold = field_validator("auto_accept_threshold")(_threshold)
    _check_rate = field_validator("spot_check_rate")(_rate)
    _check_budget = field_validator("review_budget")(_budget)


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
        document = yaml.safe_load(text)
        if not isinstance(document, dict):
            raise ValueError(f"a policy YAML document must be a mapping, got {type(document).__name__}")
        return cls.model_validate(document)

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        return cls.from_yaml(Path(path).read_text(encoding="utf-8"))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self._canonical(), sort_keys=False, allow_unicode=True)

    def for_segment(self, name: str) -> SegmentPolicy:
        """The defaults merged with the segment's overrides; an unknown segment gets the defaults."""
        override = self.segments.get(name)
        return self.defaults if override is None else _merge(self.defaults, override)

    def content_hash(self) -> str:
        """First 16 hex digits of the sha256 of the policy's canonical, key-sorted JSON."""
        canonical = json.dumps(self._canonical(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:HASH_LENGTH]

    def _canonical(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)
