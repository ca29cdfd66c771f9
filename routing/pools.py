"""Calibration groups: which labels calibrate and certify each segment, whatever the number of segments.

A segment is a user's grouping (a product, a customer, a form), so there may be ten thousand of them, most with
a handful of labels. A segment with enough unbiased labels is calibrated and certified on its own. One with too
few either routes to people (``small_segment: review``) or, by default (``small_segment: pool``), joins its
parent group: every segment whose policy names the same ``parent`` (no parent: the default group ``@default``).
The pool's labels (its large members' included) then calibrate and certify one threshold for all its small
members, and the guarantee is stated for the pool: the error among auto-accepted items drawn like the pool's
labels is at most the target. Pure: counts in, names out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from routing.policy import Policy, SegmentPolicy
from routing.thresholds import default_start_count

__all__ = ["DEFAULT_POOL", "POOL_PREFIX", "calibration_group", "groups_in_use", "labels_needed", "pool_members", "pool_name"]

POOL_PREFIX = "@"
DEFAULT_POOL = f"{POOL_PREFIX}default"


def pool_name(rules: SegmentPolicy) -> str:
    """The pool a small segment with these rules joins: ``@<parent>``, or ``@default`` without a parent."""
    return DEFAULT_POOL if rules.parent is None else f"{POOL_PREFIX}{rules.parent}"


def labels_needed(rules: SegmentPolicy) -> int:
    """Unbiased labels a segment needs to stand alone: the gate's ``min_samples``, and with a target as many as
    the first tested threshold needs above it (``routing.thresholds.default_start_count``)."""
    need = rules.calibration.min_samples
    if rules.max_auto_error is not None and rules.delta is not None:
        need = max(need, default_start_count(alpha=rules.max_auto_error, delta=rules.delta))
    return need


def calibration_group(policy: Policy, segment: str, n_labels: int) -> str:
    """The name whose calibration and certification ``segment`` uses: itself, or its pool."""
    rules = policy.for_segment(segment)
    if segment.startswith(POOL_PREFIX) or rules.small_segment == "review" or n_labels >= labels_needed(rules):
        return segment
    return pool_name(rules)


def pool_members(policy: Policy, segments: Iterable[str]) -> dict[str, list[str]]:
    """Every pool and the segments (of those given) that belong to it, large ones included."""
    members: dict[str, list[str]] = {}
    for segment in sorted(set(segments)):
        if not segment.startswith(POOL_PREFIX):
            members.setdefault(pool_name(policy.for_segment(segment)), []).append(segment)
    return members


def groups_in_use(policy: Policy, counts: Mapping[str, int], segments: Iterable[str]) -> dict[str, str]:
    """``calibration_group`` of each of ``segments`` given the label ``counts`` of every segment."""
    return {segment: calibration_group(policy, segment, counts.get(segment, 0)) for segment in segments}
