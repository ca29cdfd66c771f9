"""LabelStudioQueue: pure mapping and retry logic with fakes, then the real API against a real Label Studio."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest
from label_studio_sdk.core.api_error import ApiError

from labeling.client import (
    LabelStudioQueue,
    TaskSpec,
    choice_result,
    config_labels,
    datetime_filter_value,
    labeling_config,
    parse_annotation,
    task_payload,
)
from labeling.errors import LabelStudioApiError, LabelStudioAuthError, LabelStudioUnavailable
from labeling.simulate import SimulatedAnnotators
from tests.labelstudio_fixture import LabelStudioInstance, free_port

LABELS = ["positive", "negative", "neutral"]


def spec(item_id: str = "a1", **overrides: Any) -> TaskSpec:
    fields: dict[str, Any] = {
        "item_id": item_id,
        "text": f"text of {item_id}",
        "batch_key": "b-1",
        "priority": 0.5,
        "selection_reason": "uncertainty",
    }
    fields.update(overrides)
    return TaskSpec(**fields)


# ---------------------------------------------------------------------- unit: config and mapping


def test_labeling_config_has_one_choice_per_label_and_single_choice() -> None:
    root = ET.fromstring(labeling_config(LABELS))
    texts = [t.attrib for t in root.iter("Text")]
    choices = root.find("Choices")
    # the panel's note (why the item is here, calibrated confidence, risk codes) above the item's text
    assert texts == [{"name": "note", "value": "$note"}, {"name": "text", "value": "$text"}]
    assert choices is not None
    assert (choices.get("name"), choices.get("toName"), choices.get("choice")) == ("label", "text", "single")
    assert [choice.get("value") for choice in choices.iter("Choice")] == LABELS


def test_labeling_config_escapes_xml_in_labels() -> None:
    tricky = ['say "hi"', "a<b & c>d", "it's"]
    config = labeling_config(tricky)
    assert config_labels(config) == tricky


@pytest.mark.parametrize("labels", [[], ["a", ""], ["a", "  "], ["a", "a"]])
def test_labeling_config_refuses_bad_label_sets(labels: list[str]) -> None:
    with pytest.raises(ValueError, match="labels"):
        labeling_config(labels)


def test_labeling_config_refuses_a_bare_string() -> None:
    with pytest.raises(TypeError):
        labeling_config("positive")


def test_task_payload_without_prediction_carries_our_ids_in_data() -> None:
    payload = task_payload(spec(priority=2.5))
    assert payload == {
        "data": {
            "text": "text of a1",
            "item_id": "a1",
            "batch_key": "b-1",
            "priority": 2.5,
            "selection_reason": "uncertainty",
            "note": "",
        }
    }


def test_a_task_with_a_queue_place_carries_one_prediction_under_the_queue_version() -> None:
    from labeling.queue import QUEUE_MODEL_VERSION

    shown = task_payload(spec(model_version="clf-v3", predicted_label="negative", score=0.61, queue_score=2.4,
                              note="Why this item: ..."))
    assert shown["predictions"] == [
        {"model_version": QUEUE_MODEL_VERSION, "score": 2.4, "result": choice_result("negative")}]
    assert (shown["data"]["model_version"], shown["data"]["note"]) == ("clf-v3", "Why this item: ...")
    blind = task_payload(spec(queue_score=1.3))  # a blind audit keeps its place and shows nothing
    assert blind["predictions"] == [{"model_version": QUEUE_MODEL_VERSION, "score": 1.3, "result": []}]


def test_task_payload_attaches_the_prediction_as_pre_annotation() -> None:
    payload = task_payload(spec(model_version="clf-v3", predicted_label="negative", score=0.61))
    assert payload["predictions"] == [
        {"model_version": "clf-v3", "score": 0.61, "result": choice_result("negative")}
    ]
    assert choice_result("negative") == [
        {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": ["negative"]}}
    ]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"item_id": ""}, "item_id"),
        ({"batch_key": ""}, "batch_key"),
        ({"priority": float("nan")}, "priority"),
        ({"predicted_label": "x"}, "model_version"),
        ({"model_version": "m", "predicted_label": "x", "score": float("inf")}, "score"),
    ],
)
def test_task_spec_refuses_bad_values(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        spec(**overrides)


def test_datetime_filter_value_is_utc_with_microseconds_and_z() -> None:
    moment = datetime(2026, 3, 1, 14, 5, 6, 7, tzinfo=timezone(timedelta(hours=2)))
    assert datetime_filter_value(moment) == "2026-03-01T12:05:06.000007Z"
    with pytest.raises(ValueError, match="timezone-aware"):
        datetime_filter_value(datetime(2026, 3, 1))


def test_parse_annotation_reads_label_annotator_and_aware_times() -> None:
    task = {"id": 7, "data": {"item_id": "a1"}}
    annotation = {
        "id": 31,
        "result": choice_result("neutral"),
        "completed_by": 3,
        "was_cancelled": False,
        "created_at": "2026-03-01T12:00:00.123456Z",
        "updated_at": "2026-03-01T12:00:01.000000Z",
    }
    pulled = parse_annotation(task, annotation)
    assert (pulled.annotation_id, pulled.task_id, pulled.item_id, pulled.label, pulled.annotator) == (
        31,
        7,
        "a1",
        "neutral",
        "3",
    )
    assert pulled.created_at == datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert pulled.updated_at.tzinfo is not None


def test_parse_annotation_of_a_cancelled_annotation_has_no_label() -> None:
    task = {"id": 7, "data": {"item_id": "a1"}}
    annotation = {
        "id": 32,
        "result": [],
        "completed_by": {"id": 4, "email": "x@y"},
        "was_cancelled": True,
        "created_at": "2026-03-01T12:00:00Z",
    }
    pulled = parse_annotation(task, annotation)
    assert (pulled.label, pulled.was_cancelled, pulled.annotator) == (None, True, "4")
    assert pulled.updated_at == pulled.created_at


# ---------------------------------------------------------------------- unit: retries, with a fake SDK call


class FakeFlakyCall:
    """Fails with the given exceptions in turn, then returns `result`; counts its calls."""

    def __init__(self, failures: list[Exception], result: Any = "ok") -> None:
        self.failures = list(failures)
        self.result = result
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        assert kwargs["request_options"] == {"max_retries": 0}
        if self.failures:
            raise self.failures.pop(0)
        return self.result


def fake_queue(retries: int = 3) -> LabelStudioQueue:
    return LabelStudioQueue("http://127.0.0.1:9", "fake-token-123", retries=retries, backoff=0.0)


def test_call_retries_connection_errors_and_5xx_then_succeeds() -> None:
    flaky = FakeFlakyCall([httpx.ConnectError("refused"), ApiError(status_code=502, body="bad gateway")])
    assert fake_queue()._call("fake", flaky) == "ok"
    assert flaky.calls == 3


def test_call_gives_up_with_unavailable_after_all_retries() -> None:
    flaky = FakeFlakyCall([httpx.ReadTimeout("slow")] * 10)
    with pytest.raises(LabelStudioUnavailable, match="after 3 attempts.*ReadTimeout"):
        fake_queue(retries=2)._call("fake", flaky)
    assert flaky.calls == 3


def test_call_does_not_retry_client_errors() -> None:
    flaky = FakeFlakyCall([ApiError(status_code=400, body={"title": ["too short"]})])
    with pytest.raises(LabelStudioApiError, match="HTTP 400.*too short") as raised:
        fake_queue()._call("fake", flaky)
    assert raised.value.status_code == 400 and flaky.calls == 1
    with pytest.raises(LabelStudioAuthError):
        fake_queue()._call("fake", FakeFlakyCall([ApiError(status_code=401, body="no")]))


def test_pages_stop_at_the_reported_total() -> None:
    queue = fake_queue()
    pages = {1: list(range(500)), 2: list(range(500, 1000))}

    def fake_list(*, page: int, page_size: int, request_options: Any) -> SimpleNamespace:
        return SimpleNamespace(items=pages.get(page, []), response=SimpleNamespace(total=1000))

    seen = [item for page in queue._pages("fake", fake_list) for item in page]
    assert seen == list(range(1000))


# ---------------------------------------------------------------------- integration: the real server


@pytest.fixture(scope="module")
def queue(labelstudio: LabelStudioInstance) -> LabelStudioQueue:
    return LabelStudioQueue(labelstudio.url, labelstudio.token, retries=2, backoff=0.2)


@pytest.fixture(scope="module")
def pushed(queue: LabelStudioQueue) -> dict[str, Any]:
    """A project with 300 tasks pushed in chunks of 100 (two batches), predictions attached."""
    project_id = queue.ensure_project("sluice integration queue", LABELS)
    rng = np.random.default_rng(7)
    truth = {f"item-{k:03d}": LABELS[int(k) % 3] for k in range(300)}
    specs = [
        TaskSpec(
            item_id=item_id,
            text=f"review text number {k}",
            batch_key="batch-A" if k < 120 else "batch-B",
            priority=float(rng.random()),
            selection_reason="uncertainty",
            model_version="clf-v1",
            predicted_label=LABELS[(k + 1) % 3],
            score=0.05 + 0.9 * k / 300,
        )
        for k, item_id in enumerate(truth)
    ]
    started = time.monotonic()
    task_ids = queue.import_tasks(project_id, specs, chunk_size=100)
    push_seconds = time.monotonic() - started
    return {
        "project_id": project_id,
        "specs": specs,
        "task_ids": task_ids,
        "truth": truth,
        "push_seconds": push_seconds,
    }


@pytest.fixture(scope="module")
def annotated(queue: LabelStudioQueue, pushed: dict[str, Any]) -> dict[str, Any]:
    """50 tasks answered by simulated annotators (error rate 0.2), with the labels they gave."""
    annotators = SimulatedAnnotators(
        queue,
        pushed["project_id"],
        pushed["truth"],
        LABELS,
        error_rate=0.2,
        rng=np.random.default_rng(11),
        n_annotators=2,
    )
    task_ids = pushed["task_ids"][100:150]
    item_ids = [s.item_id for s in pushed["specs"][100:150]]
    expected = annotators.answers(item_ids)
    annotators.rng = np.random.default_rng(11)  # replay the same draw through the API
    assert annotators.answer(task_ids) == 50
    return {"task_ids": task_ids, "item_ids": item_ids, "labels": dict(zip(item_ids, expected, strict=True))}


@pytest.mark.integration
def test_ensure_project_is_idempotent(queue: LabelStudioQueue) -> None:
    first = queue.ensure_project("sluice idempotent project", ["yes", 'no "way"'])
    assert queue.ensure_project("sluice idempotent project", ["yes", 'no "way"']) == first
    assert queue.ensure_project("sluice idempotent project 2", ["yes", 'no "way"']) != first


@pytest.mark.integration
def test_ensure_project_refuses_a_title_with_other_labels(queue: LabelStudioQueue) -> None:
    queue.ensure_project("sluice label clash", ["a", "b"])
    with pytest.raises(Exception, match="exists with labels"):
        queue.ensure_project("sluice label clash", ["a", "c"])


@pytest.mark.integration
def test_import_returns_one_task_id_per_spec_in_order(
    queue: LabelStudioQueue, pushed: dict[str, Any]
) -> None:
    task_ids = pushed["task_ids"]
    assert len(task_ids) == 300 and len(set(task_ids)) == 300
    by_task = queue.item_ids_of_tasks(pushed["project_id"], task_ids)
    assert [by_task[t] for t in task_ids] == [s.item_id for s in pushed["specs"]]


@pytest.mark.integration
def test_tasks_for_batch_finds_exactly_the_batch(queue: LabelStudioQueue, pushed: dict[str, Any]) -> None:
    expected = {
        s.item_id: t
        for s, t in zip(pushed["specs"], pushed["task_ids"], strict=True)
        if s.batch_key == "batch-A"
    }
    assert queue.tasks_for_batch(pushed["project_id"], "batch-A") == expected
    assert len(queue.tasks_for_batch(pushed["project_id"], "batch-B")) == 180
    assert queue.tasks_for_batch(pushed["project_id"], "batch-never-pushed") == {}


@pytest.mark.integration
def test_next_task_serves_the_lowest_score_of_the_current_model_first(queue: LabelStudioQueue) -> None:
    project_id = queue.ensure_project("sluice next task order", LABELS)
    scores = [0.9, 0.4, 0.15, 0.7, 0.3]
    specs = [
        spec(f"n{k}", batch_key="next-batch", model_version="clf-v1", predicted_label=LABELS[0], score=score)
        for k, score in enumerate(scores)
    ]
    task_ids = queue.import_tasks(project_id, specs)
    queue.set_model_version(project_id, "clf-v1")
    assert queue.next_task(project_id) == task_ids[scores.index(min(scores))]


@pytest.mark.integration
def test_pull_since_none_returns_every_annotation(
    queue: LabelStudioQueue, pushed: dict[str, Any], annotated: dict[str, Any]
) -> None:
    pulled = queue.pull_annotations(pushed["project_id"], since=None)
    assert len(pulled) == 50
    assert {p.item_id: p.label for p in pulled} == annotated["labels"]
    assert {p.task_id for p in pulled} == set(annotated["task_ids"])
    assert all(not p.was_cancelled and p.annotator and p.updated_at.tzinfo is not None for p in pulled)
    assert len({p.annotator for p in pulled}) == 2


@pytest.mark.integration
def test_pull_since_the_latest_update_returns_nothing_new(
    queue: LabelStudioQueue, pushed: dict[str, Any], annotated: dict[str, Any]
) -> None:
    latest = max(p.updated_at for p in queue.pull_annotations(pushed["project_id"], since=None))
    assert queue.pull_annotations(pushed["project_id"], since=latest) == []


@pytest.mark.integration
def test_updated_and_new_annotations_show_up_in_a_later_pull(
    queue: LabelStudioQueue, pushed: dict[str, Any], annotated: dict[str, Any]
) -> None:
    project_id = pushed["project_id"]
    before = queue.pull_annotations(project_id, since=None)
    latest = max(p.updated_at for p in before)
    changed = before[0]
    new_label = next(label for label in LABELS if label != changed.label)
    queue.update_annotation(changed.annotation_id, new_label)
    reviewer = queue.ensure_annotator("second-opinion@sluice.local", "second-opinion-pass")
    second_id = queue.annotate(
        changed.task_id, changed.label or LABELS[0], annotator_id=reviewer, lead_time=4.5
    )

    later = queue.pull_annotations(project_id, since=latest)
    assert {(p.annotation_id, p.label) for p in later} == {
        (changed.annotation_id, new_label),
        (second_id, changed.label or LABELS[0]),
    }
    assert all(p.item_id == changed.item_id for p in later)


@pytest.mark.integration
def test_a_skipped_task_comes_back_cancelled_without_a_label(queue: LabelStudioQueue) -> None:
    project_id = queue.ensure_project("sluice skipped tasks", LABELS)
    (task_id,) = queue.import_tasks(project_id, [spec("s1", batch_key="skip-batch")])
    annotator = queue.ensure_annotator("skipper@sluice.local", "skipper-pass-123")
    skipped_id = queue.skip(task_id, annotator_id=annotator)
    (pulled,) = queue.pull_annotations(project_id, since=None)
    assert (pulled.annotation_id, pulled.item_id, pulled.label, pulled.was_cancelled) == (
        skipped_id,
        "s1",
        None,
        True,
    )
    assert pulled.annotator == str(annotator)


@pytest.mark.integration
def test_a_retried_import_does_not_duplicate_tasks(
    queue: LabelStudioQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The import is committed but the answer is lost: the retry must find the tasks, not create them again."""
    project_id = queue.ensure_project("sluice retried import", LABELS)
    real_import = queue._sdk.projects.import_tasks
    calls: list[int] = []

    def import_then_lose_the_answer(*args: Any, **kwargs: Any) -> Any:
        calls.append(len(kwargs["request"]))
        answer = real_import(*args, **kwargs)
        if len(calls) == 1:
            raise httpx.ReadTimeout("answer lost after commit")
        return answer

    monkeypatch.setattr(queue._sdk.projects, "import_tasks", import_then_lose_the_answer)
    specs = [spec(f"r{k}", batch_key="retry-batch") for k in range(20)]
    task_ids = queue.import_tasks(project_id, specs, chunk_size=20)
    assert calls == [20]  # the retry found all 20 and sent nothing
    assert queue.tasks_for_batch(project_id, "retry-batch") == {
        s.item_id: t for s, t in zip(specs, task_ids, strict=True)
    }


@pytest.mark.integration
def test_a_queue_on_a_closed_port_raises_unavailable_after_retries() -> None:
    closed = LabelStudioQueue(
        f"http://127.0.0.1:{free_port()}", "sluice-local-token-7f3a9c2e1b", retries=2, backoff=0.01
    )
    started = time.monotonic()
    with pytest.raises(LabelStudioUnavailable, match="after 3 attempts.*ConnectError"):
        closed.ensure_project("sluice nowhere", LABELS)
    assert time.monotonic() - started < 5


@pytest.mark.integration
def test_a_wrong_token_is_an_auth_error(labelstudio: LabelStudioInstance) -> None:
    wrong = LabelStudioQueue(labelstudio.url, "not-the-token-000", retries=0)
    with pytest.raises(LabelStudioAuthError, match="refused the token"):
        wrong.ensure_project("sluice auth check", LABELS)
