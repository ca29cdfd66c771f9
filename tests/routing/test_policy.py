"""Tests for routing.policy: YAML loading, validation naming the field, merging and hash stability."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from routing import Policy, SegmentPolicy

DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "policies" / "default.yaml"

BASE = """
name: test
defaults:
  auto_accept_threshold: 0.9
  spot_check_rate: 0.05
segments:
  finance: {stakes: high, regulated: true, mode: in_the_loop, calibration: {max_ece: 0.05}}
"""


def test_default_policy_file_loads() -> None:
    policy = Policy.load(DEFAULT_POLICY)
    assert policy.name == "default"
    assert policy.labels is None
    assert policy.defaults.review_budget == 50 and policy.defaults.calibration.max_age_hours == 168
    finance = policy.for_segment("finance")
    assert (finance.stakes, finance.regulated, finance.mode) == ("high", True, "in_the_loop")
    assert finance.auto_accept_threshold == 0.9


def test_segment_override_merges_field_by_field_including_calibration() -> None:
    policy = Policy.from_yaml(BASE)
    finance = policy.for_segment("finance")
    assert finance.calibration.max_ece == 0.05 and finance.calibration.min_samples == 50
    assert finance.spot_check_rate == 0.05
    assert policy.for_segment("unknown") == policy.defaults
    assert isinstance(finance, SegmentPolicy)


def test_models_are_frozen() -> None:
    policy = Policy.from_yaml(BASE)
    with pytest.raises(ValidationError):
        policy.defaults.auto_accept_threshold = 0.5  # type: ignore[misc]


def test_yaml_round_trip_and_hash_stability() -> None:
    policy = Policy.from_yaml(BASE)
    again = Policy.from_yaml(policy.to_yaml())
    assert again == policy and again.content_hash() == policy.content_hash()
    assert len(policy.content_hash()) == 16 and int(policy.content_hash(), 16) >= 0
    reordered = BASE.replace(
        "  auto_accept_threshold: 0.9\n  spot_check_rate: 0.05\n",
        "  spot_check_rate: 0.05\n  auto_accept_threshold: 0.90\n",
    )
    assert Policy.from_yaml(reordered).content_hash() == policy.content_hash()
    # spelling out a default value is the same content
    explicit = BASE.replace("  spot_check_rate: 0.05\n", "  spot_check_rate: 0.05\n  review_budget: 50\n")
    assert Policy.from_yaml(explicit).content_hash() == policy.content_hash()


def test_hash_changes_with_content() -> None:
    policy = Policy.from_yaml(BASE)
    changed = Policy.from_yaml(BASE.replace("auto_accept_threshold: 0.9", "auto_accept_threshold: 0.95"))
    assert changed.content_hash() != policy.content_hash()


@pytest.mark.parametrize(
    ("yaml_text", "field", "value"),
    [
        ("name: x\ndefaults: {auto_accept_threshold: 0}", "auto_accept_threshold", "0"),
        ("name: x\ndefaults: {auto_accept_threshold: 1.5}", "auto_accept_threshold", "1.5"),
        ("name: x\ndefaults: {auto_accept_threshold: .nan}", "auto_accept_threshold", "nan"),
        ("name: x\ndefaults: {spot_check_rate: 1.2}", "spot_check_rate", "1.2"),
        ("name: x\ndefaults: {spot_check_rate: -0.1}", "spot_check_rate", "-0.1"),
        ("name: x\ndefaults: {review_budget: -1}", "review_budget", "-1"),
        ("name: x\ndefaults: {mode: sometimes}", "mode", "sometimes"),
        ("name: x\ndefaults: {stakes: extreme}", "stakes", "extreme"),
        ("name: x\ndefaults: {calibration: {max_ece: 2}}", "max_ece", "2"),
        ("name: x\ndefaults: {calibration: {min_samples: 0}}", "min_samples", "0"),
        ("name: x\ndefaults: {calibration: {max_age_hours: 0}}", "max_age_hours", "0"),
        ("name: x\ndefaults: {thresold: 0.9}", "thresold", "0.9"),
        ("name: x\nsegments: {a: {spot_check_rate: 2}}", "segments.a.spot_check_rate", "2"),
        ("name: x\nsegments: {a: {calibration: {max_ece: -1}}}", "max_ece", "-1"),
        ("name: x\nsegments: {a: {colour: red}}", "colour", "red"),
        ("name: x\nlabels: [a, b, a]", "labels", "'a'"),
        ("name: ''", "name", "''"),
        ("defaults: {}", "name", "Field required"),
        ("name: x\nextra_top_level: 1", "extra_top_level", "1"),
    ],
)
def test_invalid_policy_names_field_and_value(yaml_text: str, field: str, value: str) -> None:
    with pytest.raises(ValueError) as error:
        Policy.from_yaml(yaml_text)
    message = str(error.value)
    assert field in message and value in message


def test_non_mapping_yaml_is_rejected() -> None:
    with pytest.raises(ValueError, match="mapping"):
        Policy.from_yaml("- just\n- a list\n")
