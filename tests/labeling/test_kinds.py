"""labeling.kinds: the Label Studio queues of generation, pairwise and extraction items. The configs are accepted
by a real Label Studio, tasks import, annotations shaped as its UI makes them come back, and the answers read back
mean what the annotator chose (the pairwise side undone whatever side response a was shown on)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from labeling.kinds import (
    DEFAULT_ISSUES,
    extraction_answer,
    extraction_config,
    extraction_data,
    generation_answer,
    generation_config,
    generation_data,
    pairwise_answer,
    pairwise_config,
    pairwise_data,
)

GENERATION = {"prompt": [{"role": "user", "content": "How do I reset the router?"}],
              "response": "Unplug it.", "context": ["Manual p.4: hold reset 10 s."]}
PAIR = {"prompt": "Summarise.", "response_a": "A short summary.", "response_b": "A long summary."}
FIELDS = {"vendor": {"value": "ACME", "confidence": 0.97}, "total amount": {"value": 120.5, "confidence": 0.6}}


def region(name: str, to_name: str, kind: str, value: dict) -> dict:
    return {"from_name": name, "to_name": to_name, "type": kind, "value": value}


def test_the_configs_are_well_formed_xml_naming_what_the_answers_read():
    for config in (generation_config(), pairwise_config(), extraction_config(FIELDS)):
        ET.fromstring(config)
    root = ET.fromstring(generation_config())
    assert [c.get("value") for c in root.find(".//Choices[@name='issues']")] == list(DEFAULT_ISSUES)
    assert {e.get("name") for e in ET.fromstring(extraction_config(FIELDS)).iter("TextArea")} == {
        "field_vendor", "field_total_amount"}
    with pytest.raises(ValueError, match="unique"):
        generation_config(["a", "a"])
    with pytest.raises(ValueError, match="distinct"):
        extraction_config(["total amount", "total_amount"])


def test_answers_are_read_back_as_the_contract_says():
    result = [region("verdict", "response", "choices", {"choices": ["reject"]}),
              region("correction", "response", "textarea", {"text": ["Hold the reset button for 10 s."]}),
              region("issues", "response", "choices", {"choices": ["factual_error", "unsupported_by_context"]}),
              region("severity", "response", "choices", {"choices": ["3"]})]
    assert generation_answer(result) == {"label": "reject", "correction": "Hold the reset button for 10 s.",
                                         "issues": ["factual_error", "unsupported_by_context"], "severity": 3}
    assert generation_answer([]) == {"label": None, "correction": None, "issues": [], "severity": None}
    chose_left = [region("preference", "left,right", "pairwise", {"selected": "left"})]
    assert pairwise_answer(chose_left, left_is="a") == {"label": "a", "side": "left"}
    assert pairwise_answer(chose_left, left_is="b") == {"label": "b", "side": "left"}
    tie = [region("tie", "prompt", "choices", {"choices": ["the two are equally good"]})]
    assert pairwise_answer(tie, left_is="b")["label"] == "tie"
    assert extraction_answer([region("field_total_amount", "text", "textarea", {"text": ["121.50"]})],
                             list(FIELDS)) == {"total amount": "121.50"}
    data = pairwise_data("p1", PAIR, a_on_left=False)
    assert (data["left"], data["right"], data["left_is"]) == ("A long summary.", "A short summary.", "b")


@pytest.mark.integration
def test_each_kind_round_trips_through_a_real_label_studio(labelstudio):
    from labeling.client import LabelStudioQueue

    queue = LabelStudioQueue(labelstudio.url, labelstudio.token, retries=2, backoff=0.2)
    sdk = queue._sdk  # project creation and raw results: the kinds' own client methods come with their flows
    annotator = queue.ensure_annotator("kinds@sluice.local", "kinds-pass-123")
    cases = [
        ("generation", generation_config(), generation_data("g1", GENERATION),
         [region("verdict", "response", "choices", {"choices": ["reject"]}),
          region("correction", "response", "textarea", {"text": ["Hold reset for 10 s."]}),
          region("severity", "response", "choices", {"choices": ["2"]})],
         lambda r: (generation_answer(r)["correction"], generation_answer(r)["severity"]) == ("Hold reset for 10 s.",
                                                                                               2)),
        ("pairwise", pairwise_config(), pairwise_data("p1", PAIR, a_on_left=False),
         [region("preference", "left,right", "pairwise", {"selected": "right"})],
         lambda r: pairwise_answer(r, left_is="b")["label"] == "a"),
        ("extraction", extraction_config(FIELDS), extraction_data("x1", "Invoice 17 from ACME", {"fields": FIELDS}),
         [region("field_vendor", "text", "textarea", {"text": ["ACME Ltd"]})],
         lambda r: extraction_answer(r, list(FIELDS)) == {"vendor": "ACME Ltd"}),
    ]
    for kind, config, data, result, check in cases:
        project = sdk.projects.create(title=f"sluice {kind} queue test", label_config=config)
        imported = sdk.projects.import_tasks(project.id, request=[data], return_task_ids=True)
        task_id = list(imported.task_ids)[0]
        sdk.annotations.create(task_id, result=result, completed_by=annotator)
        task = sdk.tasks.get(task_id)
        stored = task.annotations[0]
        stored_result = stored["result"] if isinstance(stored, dict) else stored.result
        assert task.data["item_id"] == data["item_id"]
        assert check(stored_result), (kind, stored_result)


def test_fields_to_review_are_the_fewest_that_lift_the_rest_over_the_threshold():
    from labeling.kinds import fields_to_review

    fields = {"vendor": {"value": "ACME", "confidence": 0.99}, "total": {"value": 1, "confidence": 0.6},
              "due": {"value": "2026-01-01", "confidence": 0.9}}
    assert fields_to_review(fields, None) == ["total", "due", "vendor"]  # nothing certified: the whole document
    assert fields_to_review(fields, 0.85) == ["total"]  # 0.99 * 0.9 = 0.891 clears 0.85 once total is checked
    assert fields_to_review(fields, 0.95) == ["total", "due"]
    assert fields_to_review(fields, 0.5) == []  # 0.99 * 0.6 * 0.9 = 0.53: the document needs nobody
    assert fields_to_review(fields, 0.999) == ["total", "due", "vendor"]


@pytest.mark.parametrize("kind, payload, answer, label", [
    ("generation", GENERATION, {"label": "reject", "correction": "Hold reset for 10 s.", "issues": ["incomplete"],
                                "severity": 2}, "reject"),
    ("generation", GENERATION, {"label": "accept"}, "accept"),
    ("pairwise", PAIR, {"label": "b"}, "b"),
    ("pairwise", PAIR, {"label": "tie"}, "tie"),
    ("extraction", {"fields": FIELDS}, {"fields": {"vendor": "ACME", "total amount": "120.5"}}, "confirmed"),
    ("extraction", {"fields": FIELDS}, {"fields": {"vendor": "ACME Ltd"}}, "corrected"),
])
def test_an_answer_made_as_the_ui_makes_it_reads_back_as_given(kind, payload, answer, label):
    from labeling.kinds import answer_result, read_answer, suggestion, task_data

    for a_on_left in (True, False):
        data = task_data(kind, "item-1", "Invoice 17 from ACME, total 120.50 EUR", payload, a_on_left=a_on_left)
        read_label, rest = read_answer(kind, data, answer_result(kind, data, answer))
        assert read_label == label
        if kind == "generation":
            assert rest == {"correction": answer.get("correction"), "issues": answer.get("issues", []),
                            "severity": answer.get("severity")}
        elif kind == "pairwise":
            assert rest["left_is"] == ("a" if a_on_left else "b")
            if label == "b":
                assert rest["side"] == ("right" if a_on_left else "left")
        else:
            assert rest["fields"] == answer["fields"]
            assert rest["corrected"] == (["vendor"] if label == "corrected" else [])
        # the model's suggestion, accepted as it is, reads back as the prediction
        predicted = {"generation": "accept", "pairwise": "a", "extraction": "confirmed"}[kind]
        assert read_answer(kind, data, suggestion(kind, data, predicted))[0] == predicted
