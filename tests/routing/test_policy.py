"""Tests for routing.policy: YAML loading, validation naming the field, merging and hash stability."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from routing import Policy, SegmentPolicy
from routing.policy import policy_diff

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


# --- guarantee targets, review threshold, risk rules, versioning ------------------------------------------------

TARGETED = """
name: targeted
defaults:
  auto_accept_threshold: 0.9
  max_auto_error: 0.02
  confidence: 0.95
  review_threshold: 0.4
  seconds_per_item: 45
  risk_rules:
    - {field: metadata.amount, op: ">", value: 10000, action: escalate, code: amount_over_limit}
    - {field: text, op: contains, value: "wire transfer", action: review, code: wire_transfer_keyword}
segments:
  support: {risk_rules: [], review_threshold: 0.2}
  legal: {max_auto_error: 0.01}
"""


def test_stored_policy_hashes_do_not_change() -> None:
    # Versions written before the target/review/risk fields existed must keep their identity.
    root = DEFAULT_POLICY.parent
    before_targets = """
name: default
defaults:
  mode: on_the_loop
  stakes: low
  regulated: false
  auto_accept_threshold: 0.9
  spot_check_rate: 0.05
  review_budget: 50
  calibration: {min_samples: 50, max_ece: 0.1, max_age_hours: 168}
segments:
  finance: {stakes: high, regulated: true, mode: in_the_loop}
"""
    assert Policy.from_yaml(before_targets).content_hash() == "bf11829d62fcefa0"  # the default until targets
    assert Policy.load(root / "bbc-news.yaml").content_hash() == "69c84f87d7024f9d"
    assert Policy(name="x").content_hash() == "f205a2a4c98141ae"
    spelled_out = BASE.replace(
        "  spot_check_rate: 0.05\n", "  spot_check_rate: 0.05\n  seconds_per_item: 30\n  risk_rules: []\n"
    )
    assert Policy.from_yaml(spelled_out).content_hash() == Policy.from_yaml(BASE).content_hash()


def test_target_review_threshold_and_rules_load_and_merge() -> None:
    policy = Policy.from_yaml(TARGETED)
    defaults = policy.defaults
    assert defaults.has_target and defaults.max_auto_error == 0.02 and defaults.delta == pytest.approx(0.05)
    assert defaults.seconds_per_item == 45 and len(defaults.risk_rules) == 2
    assert defaults.risk_rules[0].field == "metadata.amount" and defaults.risk_rules[0].value == 10000
    support = policy.for_segment("support")
    assert support.risk_rules == () and support.review_threshold == 0.2 and support.has_target
    legal = policy.for_segment("legal")
    assert legal.max_auto_error == 0.01 and legal.confidence == 0.95 and len(legal.risk_rules) == 2
    assert not SegmentPolicy().has_target and SegmentPolicy().delta is None
    again = Policy.from_yaml(policy.to_yaml())
    assert again == policy and again.content_hash() == policy.content_hash()
    assert policy.content_hash() != Policy.from_yaml(TARGETED.replace("0.02", "0.03")).content_hash()


@pytest.mark.parametrize(
    ("yaml_text", "field", "value"),
    [
        ("name: x\ndefaults: {max_auto_error: 0.02}", "confidence", "None"),
        ("name: x\ndefaults: {confidence: 0.9}", "max_auto_error", "None"),
        ("name: x\ndefaults: {max_auto_error: 0, confidence: 0.9}", "max_auto_error", "0"),
        ("name: x\ndefaults: {max_auto_error: 0.02, confidence: 1.0}", "confidence", "1.0"),
        ("name: x\ndefaults: {max_auto_error: .nan, confidence: 0.9}", "max_auto_error", "nan"),
        ("name: x\ndefaults: {review_threshold: 0.95}", "review_threshold", "0.95"),
        ("name: x\ndefaults: {review_threshold: 0.95}", "auto_accept_threshold", "0.9"),
        ("name: x\nsegments: {a: {review_threshold: 0.99}}", "segments", "0.99"),
        ("name: x\ndefaults: {review_threshold: -0.1}", "review_threshold", "-0.1"),
        ("name: x\ndefaults: {seconds_per_item: 0}", "seconds_per_item", "0"),
        (
            "name: x\ndefaults: {risk_rules: [{field: amount, op: '>', value: 1, code: c}]}",
            "field",
            "'amount'",
        ),
        ("name: x\ndefaults: {risk_rules: [{field: text, op: '~', value: 1, code: c}]}", "op", "~"),
        ("name: x\ndefaults: {risk_rules: [{field: text, op: '>', value: big, code: c}]}", "value", "'big'"),
        ("name: x\ndefaults: {risk_rules: [{field: text, op: contains, value: 3, code: c}]}", "value", "3"),
        ("name: x\ndefaults: {risk_rules: [{field: text, op: regex, value: '(', code: c}]}", "regex", "'('"),
        (
            "name: x\ndefaults: {risk_rules: [{field: text, op: '==', value: a, action: drop, code: c}]}",
            "action",
            "drop",
        ),
        (
            "name: x\ndefaults: {risk_rules: [{field: text, op: '==', value: a, code: 'Bad Code'}]}",
            "code",
            "Bad Code",
        ),
        ("name: x\ndefaults: {risk_rules: [{field: text, op: '==', value: a}]}", "code", "Field required"),
        ("name: x\ndefaults: {overlap_share: 1.5}", "overlap_share", "1.5"),
        ("name: x\ndefaults: {overlap_annotators: 1}", "overlap_annotators", "1"),
        ("name: x\nsegments: {a: {overlap_annotators: 50}}", "overlap_annotators", "50"),
        ("name: x\ndefaults: {resolution: vote}", "resolution", "vote"),
        ("name: x\ndefaults: {min_agreement: -0.1}", "min_agreement", "-0.1"),
        ("name: x\ndefaults: {prompt_injection: ignore}", "prompt_injection", "ignore"),
        ("name: x\nsegments: {a: {context_injection: true}}", "context_injection", "True"),
    ],
)
def test_invalid_new_fields_name_field_and_value(yaml_text: str, field: str, value: str) -> None:
    with pytest.raises(ValueError) as error:
        Policy.from_yaml(yaml_text)
    message = str(error.value)
    assert field in message and value in message


def test_revision_records_author_comment_time_and_checks_its_hash() -> None:
    from dataclasses import replace
    from datetime import UTC, datetime

    policy = Policy.from_yaml(TARGETED)
    when = datetime(2024, 6, 1, 12, tzinfo=UTC)
    revision = policy.revision(author="alice", comment="tighter legal target", created_at=when)
    assert revision.version == policy.content_hash() and revision.created_at == when
    assert revision.policy() == policy
    with pytest.raises(ValueError, match="recorded version"):
        replace(revision, document=revision.document.replace("0.02", "0.5")).policy()
    with pytest.raises(ValueError, match="author"):
        policy.revision(author=" ", comment="", created_at=when)
    with pytest.raises(ValueError, match="timezone"):
        policy.revision(author="a", comment="", created_at=datetime(2024, 6, 1))


def test_overlap_fields_merge_per_segment_and_keep_old_hashes() -> None:
    policy = Policy.from_yaml("name: x\ndefaults: {overlap_share: 0.2, resolution: dawid_skene}\n"
                              "segments: {legal: {overlap_annotators: 5, min_agreement: 0.8}}")
    legal = policy.for_segment("legal")
    assert (legal.overlap_share, legal.overlap_annotators, legal.resolution, legal.min_agreement) == (
        0.2, 5, "dawid_skene", 0.8)
    assert policy.for_segment("other").overlap_annotators == 3
    plain = Policy.from_yaml("name: x\ndefaults: {review_budget: 10}")
    explicit = Policy.from_yaml("name: x\ndefaults: {review_budget: 10, overlap_share: 0.0, "
                                "overlap_annotators: 3, resolution: majority, min_agreement: 0.6}")
    assert plain.content_hash() == explicit.content_hash()


def test_the_default_policy_states_a_target_and_says_what_carries_a_guarantee() -> None:
    policy = Policy.load(DEFAULT_POLICY)
    assert policy.defaults.has_target and policy.defaults.max_auto_error == 0.05 and policy.defaults.delta == \
        pytest.approx(0.1)
    lines = policy.guarantee_lines()
    assert lines[0].startswith("defaults: target: error among auto-accepted items <= 0.05 with confidence 0.9")
    assert lines[1].startswith("finance: people review every item")
    fixed = Policy.from_yaml("name: f\ndefaults: {auto_accept_threshold: 0.8}\n")
    assert fixed.guarantee_lines() == [
        "defaults: fixed auto_accept_threshold 0.8: carries no guarantee on the error of auto-accepted items "
        "(set max_auto_error and confidence for one)"]


def test_budget_windows_are_fixed_from_the_epoch_in_utc() -> None:
    from datetime import datetime, timedelta, timezone

    from routing.policy import budget_window

    at = datetime(2026, 12, 3, 10, 59, 59, tzinfo=timezone.utc)
    assert budget_window(at, 1) == (datetime(2026, 12, 3, 10, tzinfo=timezone.utc),
                                    datetime(2026, 12, 3, 11, tzinfo=timezone.utc))
    assert budget_window(at + timedelta(seconds=1), 1)[0] == datetime(2026, 12, 3, 11, tzinfo=timezone.utc)
    assert budget_window(at, 24)[0] == datetime(2026, 12, 3, tzinfo=timezone.utc)
    assert budget_window(at.replace(tzinfo=None), 0.5)[0] == datetime(2026, 12, 3, 10, 30, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="budget_window_hours"):
        Policy.from_yaml("name: x\ndefaults: {budget_window_hours: 0}")
    assert Policy.from_yaml("name: x\nsegments: {a: {budget_window_hours: 24}}").for_segment("a") \
        .budget_window_hours == 24


def test_policy_diff_lists_effective_rules_that_change_and_who_inherits_them():
    from routing.policy import FieldChange, approval_segments, policy_diff

    old = Policy.model_validate({"name": "p", "segments": {"finance": {"regulated": True}, "sport": {}}})
    new = Policy.model_validate({"name": "p", "defaults": {"spot_check_rate": 0.1},
                                 "segments": {"finance": {"regulated": True}, "sport": {"review_budget": 5}}})
    diff = policy_diff(old, new)
    assert FieldChange("defaults", "spot_check_rate", 0.05, 0.1) in diff
    assert FieldChange("finance", "spot_check_rate", 0.05, 0.1) in diff  # inherited from the defaults
    assert FieldChange("sport", "review_budget", 50, 5) in diff
    assert approval_segments(old, new) == ["finance"]
    assert policy_diff(new, new) == [] and approval_segments(new, new) == []
    only_sport = Policy.model_validate({**old.model_dump(mode="json"),
                                        "segments": {"finance": {"regulated": True}, "sport": {"review_budget": 5}}})
    assert approval_segments(old, only_sport) == []
    # un-regulating a segment needs the approver too (the old side was regulated)
    freed = Policy.model_validate({"name": "p", "segments": {"finance": {}, "sport": {}}})
    assert approval_segments(old, freed) == ["finance"]
    assert FieldChange("finance", "calibration.max_ece", 0.1, 0.2) in policy_diff(
        old, Policy.model_validate({"name": "p", "segments": {"finance": {"regulated": True,
                                                                          "calibration": {"max_ece": 0.2}}}}))


def test_with_segment_rules_keeps_only_what_differs_from_the_defaults():
    from routing.policy import policy_diff

    policy = Policy.model_validate({"name": "p", "segments": {"sport": {"review_budget": 5}}})
    changed = policy.with_segment_rules("sport", {"spot_check_rate": 0.2, "review_budget": 50})
    assert changed.segments["sport"].model_dump(exclude_none=True) == {"spot_check_rate": 0.2}  # 50 is inherited
    assert [(c.segment, c.field) for c in policy_diff(policy, changed)] == [("sport", "spot_check_rate"),
                                                                           ("sport", "review_budget")]
    new = policy.with_segment_rules("news", {"max_auto_error": 0.02, "confidence": 0.95,
                                             "calibration": {"max_ece": 0.05}})
    assert new.for_segment("news").max_auto_error == 0.02 and new.for_segment("news").calibration.max_ece == 0.05
    assert new.for_segment("news").calibration.min_samples == 50
    defaults = policy.with_segment_rules("defaults", {"review_budget": 7})
    assert defaults.for_segment("sport").review_budget == 5 and defaults.for_segment("other").review_budget == 7
    with pytest.raises(ValueError, match="spot_check_rate must be in"):
        policy.with_segment_rules("sport", {"spot_check_rate": 2.0})
    with pytest.raises(ValueError, match="unknown policy fields"):
        policy.with_segment_rules("sport", {"threshold": 0.5})
    targeted = Policy.model_validate({"name": "p", "defaults": {"max_auto_error": 0.05, "confidence": 0.9}})
    with pytest.raises(ValueError, match="cannot drop it"):
        targeted.with_segment_rules("sport", {"max_auto_error": None, "confidence": None})


def test_injection_actions_default_per_side_merge_per_segment_and_keep_old_hashes() -> None:
    policy = Policy.from_yaml("name: x\ndefaults: {prompt_injection: escalate}\n"
                              "segments: {rag: {context_injection: off}, chat: {prompt_injection: review}}")
    assert (SegmentPolicy().prompt_injection, SegmentPolicy().context_injection) == ("review", "escalate")
    assert (policy.defaults.prompt_injection, policy.defaults.context_injection) == ("escalate", "escalate")
    assert (policy.for_segment("rag").prompt_injection, policy.for_segment("rag").context_injection) == (
        "escalate", "off")
    assert policy.for_segment("chat").prompt_injection == "review"
    assert Policy.from_yaml(policy.to_yaml()) == policy
    # a bare off, which YAML reads as false, is the action off, as written; quoted, the same policy
    assert Policy.from_yaml("name: x\ndefaults: {prompt_injection: escalate}\nsegments: {rag: {context_injection: "
                            "'off'}, chat: {prompt_injection: review}}").content_hash() == policy.content_hash()
    spelled_out = Policy.from_yaml("name: x\ndefaults: {review_budget: 10, prompt_injection: review, "
                                   "context_injection: escalate}")
    assert spelled_out.content_hash() == Policy.from_yaml("name: x\ndefaults: {review_budget: 10}").content_hash()
    assert Policy.load(DEFAULT_POLICY).defaults.context_injection == "escalate"
    changes = {(c.segment, c.field, c.old, c.new) for c in policy_diff(Policy(name="x"), policy)}
    assert ("rag", "context_injection", "escalate", "off") in changes


# --- hardening: what a careless operator or an attacker can hand `policy set` -------------------------------------

def test_a_key_given_twice_is_refused_with_both_lines():
    text = "name: dup\nsegments:\n  finance: {stakes: high, regulated: true}\n  retail: {}\n  finance: {stakes: low}\n"
    with pytest.raises(ValueError, match=r"'finance' is given twice in one mapping: lines 3 and 5"):
        Policy.from_yaml(text)
    with pytest.raises(ValueError, match="'stakes' is given twice"):
        Policy.from_yaml("name: x\ndefaults:\n  stakes: high\n  stakes: low\n")


def test_anchors_aliases_and_oversized_documents_are_refused_before_anything_expands():
    # nine levels of nine aliases: 9**9 (387 million) strings if expanded
    levels = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"] + [
        f"l{k}: &l{k} [{', '.join([f'*l{k - 1}'] * 9)}]" for k in range(1, 9)]
    with pytest.raises(ValueError, match=r"anchors and aliases .* line 1"):
        Policy.from_yaml("\n".join(levels) + "\nname: bomb\n")
    with pytest.raises(ValueError, match="at most 1,000,000 bytes"):
        Policy.from_yaml("name: big\n# " + "x" * 1_000_001 + "\n")


def test_yaml_that_does_not_parse_is_one_line_naming_where():
    with pytest.raises(ValueError, match=r"not valid YAML at line 3, column 1") as caught:
        Policy.from_yaml("name: x\ndefaults: {stakes: [\n")
    assert "\n" not in str(caught.value)


def test_a_risk_rules_regex_runs_in_linear_time_and_backtracking_only_patterns_are_refused():
    import time

    from routing.policy import RiskRule
    from routing.signals import rule_hits

    rule = RiskRule(field="text", op="regex", value="^(a+)+$", action="review", code="aaa")
    started = time.perf_counter()
    hits = rule_hits([None, None, None], ["a" * 30 + "b", "a" * 100_000 + "!", "aaaa"], [rule])
    assert time.perf_counter() - started < 5.0  # Python's backtracking `re` would not finish the first in hours
    assert [bool(h) for h in hits[0].hits] == [False, False, True]
    with pytest.raises(ValueError, match="linear time.*backreferences"):
        RiskRule(field="text", op="regex", value=r"(\w+) \1", action="review", code="repeat")


def test_budget_lines_say_what_an_audit_interval_width_asks_of_each_run() -> None:
    from routing.audit import audits_for_width

    policy = Policy.from_yaml("name: w\ndefaults: {max_auto_error: 0.05, confidence: 0.9, audit_interval_width: 0.1}\n")
    lines = policy.budget_lines()
    needed = audits_for_width(0.1, expected_error=0.05)
    assert f"audit_interval_width 0.1 raises a run's audit share to about {needed} audits" in lines[0]
    assert "an interval that wide at 0.05 error" in lines[0]
    assert Policy.from_yaml("name: p\ndefaults: {review_budget: 10}").budget_lines()[0].endswith("extra answers)")
