"""Tests for routing.pools: which labels calibrate and certify a segment."""

from __future__ import annotations

from routing.policy import Policy
from routing.pools import DEFAULT_POOL, calibration_group, groups_in_use, labels_needed, pool_members

POLICY = Policy.from_yaml("""
name: pools
defaults: {max_auto_error: 0.05, confidence: 0.9, calibration: {min_samples: 50}}
segments:
  shoes-a: {parent: shoes}
  shoes-b: {parent: shoes}
  loans: {small_segment: review}
""")
FIXED = Policy.from_yaml("name: fixed\ndefaults: {auto_accept_threshold: 0.9, calibration: {min_samples: 50}}\n")


def test_labels_needed_is_what_the_first_certified_threshold_needs() -> None:
    assert labels_needed(POLICY.defaults) == 100  # 2 x 45 zero-error items, at least 100
    assert labels_needed(FIXED.defaults) == 50  # no target: the gate's min_samples


def test_small_segments_pool_with_their_parent_or_the_default_group() -> None:
    assert calibration_group(POLICY, "shoes-a", 10) == "@shoes"
    assert calibration_group(POLICY, "shoes-a", 100) == "shoes-a"  # enough labels: it stands alone
    assert calibration_group(POLICY, "product-17", 0) == DEFAULT_POOL
    assert calibration_group(POLICY, "loans", 3) == "loans"  # small_segment: review keeps its own (failing) gate
    assert calibration_group(FIXED, "any", 49) == DEFAULT_POOL and calibration_group(FIXED, "any", 50) == "any"
    assert calibration_group(POLICY, "@shoes", 0) == "@shoes"  # a pool is never pooled again
    assert groups_in_use(POLICY, {"shoes-b": 500}, ["shoes-a", "shoes-b"]) == {"shoes-a": "@shoes",
                                                                                "shoes-b": "shoes-b"}


def test_pool_members_include_large_segments() -> None:
    members = pool_members(POLICY, ["shoes-b", "shoes-a", "product-1", "loans", "@default"])
    assert members == {"@shoes": ["shoes-a", "shoes-b"], DEFAULT_POOL: ["loans", "product-1"]}
