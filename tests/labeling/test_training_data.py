"""labeling.training_data: SFT, DPO and extraction records from people's answers, with provenance."""

from __future__ import annotations

import pytest

from labeling.training_data import dpo_from_correction, dpo_from_pair, extraction_record, sft_record

CHAT = [{"role": "system", "content": "Answer from the manual."}, {"role": "user", "content": "How to reset?"}]
PROVENANCE = {"item_id": "g1", "route": "review", "selection_reason": "margin", "selection_probability": 0.4,
              "annotators": ["ann"], "agreement": 1.0, "policy_version": "p1", "model_version": "m1"}


def test_sft_takes_the_accepted_or_the_corrected_response_and_nothing_else():
    accepted = sft_record(CHAT, "Hold reset 10 s.", verdict="accept", correction=None, metadata=PROVENANCE)
    assert accepted == {"messages": [*CHAT, {"role": "assistant", "content": "Hold reset 10 s."}],
                        "metadata": {**PROVENANCE, "target": "accepted"}}
    corrected = sft_record("How to reset?", "Unplug it.", verdict="reject", correction=" Hold reset 10 s. ",
                           metadata=PROVENANCE)
    assert corrected["messages"] == [{"role": "user", "content": "How to reset?"},
                                     {"role": "assistant", "content": "Hold reset 10 s."}]
    assert corrected["metadata"]["target"] == "corrected"
    assert sft_record(CHAT, "Unplug it.", verdict="reject", correction=None, metadata=PROVENANCE) is None
    with pytest.raises(ValueError, match="verdict"):
        sft_record(CHAT, "x", verdict="maybe", correction=None, metadata={})


def test_dpo_from_a_preference_and_from_a_correction():
    chosen_b = dpo_from_pair("Summarise.", "Short.", "Long and right.", preferred="b", metadata=PROVENANCE)
    assert (chosen_b["chosen"], chosen_b["rejected"], chosen_b["metadata"]["source"]) == (
        "Long and right.", "Short.", "pairwise")
    assert dpo_from_pair("Summarise.", "a", "b", preferred="tie", metadata={}) is None
    fixed = dpo_from_correction(CHAT, "Unplug it.", "Hold reset 10 s.", metadata=PROVENANCE)
    assert fixed["prompt"] == CHAT and (fixed["chosen"], fixed["rejected"]) == ("Hold reset 10 s.", "Unplug it.")
    assert dpo_from_correction(CHAT, "Same.", " Same. ", metadata={}) is None  # nothing was corrected
    assert dpo_from_correction(CHAT, "x", None, metadata={}) is None


def test_extraction_keeps_what_people_left_and_says_which_fields_they_touched():
    extracted = {"vendor": {"value": "ACME", "confidence": 0.9}, "total": {"value": 120.5, "confidence": 0.4},
                 "date": {"value": "2026-11-02", "confidence": 0.99}}
    record = extraction_record("Invoice ...", extracted, {"total": "121.50", "vendor": "ACME"}, metadata=PROVENANCE)
    assert record["fields"] == {"vendor": "ACME", "total": "121.50", "date": "2026-11-02"}
    assert (record["metadata"]["corrected"], record["metadata"]["confirmed"], record["metadata"]["unreviewed"]) == (
        ["total"], ["vendor"], ["date"])
    with pytest.raises(ValueError, match="not extracted"):
        extraction_record("x", extracted, {"iban": "DE00"}, metadata={})
