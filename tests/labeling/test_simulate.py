"""SimulatedAnnotators with a fake queue: answers follow the ground truth, errors hit the other labels uniformly."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from labeling.simulate import SimulatedAnnotators

LABELS = ["positive", "negative", "neutral"]


class FakeQueue:
    """Records what would have gone to Label Studio; knows which item each task shows."""

    def __init__(self, item_of_task: dict[int, str]) -> None:
        self.item_of_task = item_of_task
        self.annotations: list[tuple[int, str, int]] = []
        self.users: dict[str, int] = {}

    def ensure_annotator(self, email: str, password: str) -> int:
        return self.users.setdefault(email, 100 + len(self.users))

    def annotate(self, task_id: int, label: str, *, annotator_id: int, lead_time: float | None = None) -> int:
        self.annotations.append((task_id, label, annotator_id))
        return len(self.annotations)

    def item_ids_of_tasks(self, project_id: int, task_ids: Sequence[int]) -> dict[int, str]:
        return {t: self.item_of_task[t] for t in task_ids if t in self.item_of_task}


def make(
    n: int, error_rate: float, seed: int = 0, **options: Any
) -> tuple[SimulatedAnnotators, FakeQueue, dict[str, str]]:
    truth = {f"i{k}": LABELS[k % 3] for k in range(n)}
    queue = FakeQueue({1000 + k: f"i{k}" for k in range(n)})
    annotators = SimulatedAnnotators(
        queue,
        1,
        truth,
        LABELS,
        error_rate=error_rate,
        rng=np.random.default_rng(seed),
        **options,
    )
    return annotators, queue, truth


def test_error_free_annotators_answer_the_ground_truth() -> None:
    annotators, queue, truth = make(30, 0.0)
    assert annotators.answer([1000 + k for k in range(30)]) == 30
    assert [(t, label) for t, label, _ in queue.annotations] == [
        (1000 + k, truth[f"i{k}"]) for k in range(30)
    ]


def test_always_wrong_annotators_never_give_the_true_label_and_spread_evenly() -> None:
    annotators, _, truth = make(6000, 1.0)
    item_ids = list(truth)
    answers = annotators.answers(item_ids)
    assert all(answer != truth[i] for i, answer in zip(item_ids, answers, strict=True))
    wrong_for_positive = Counter(a for i, a in zip(item_ids, answers, strict=True) if truth[i] == "positive")
    assert set(wrong_for_positive) == {"negative", "neutral"}
    assert abs(wrong_for_positive["negative"] - 1000) < 120  # binomial(2000, 1/2): sd ~22


def test_the_error_rate_is_respected_and_the_draw_is_reproducible() -> None:
    annotators, _, truth = make(5000, 0.2, seed=3)
    answers = annotators.answers(list(truth))
    error = np.mean([a != truth[i] for i, a in zip(truth, answers, strict=True)])
    assert abs(error - 0.2) < 0.03
    again, _, _ = make(5000, 0.2, seed=3)
    assert again.answers(list(truth)) == answers


def test_annotators_take_turns() -> None:
    annotators, queue, _ = make(6, 0.0, n_annotators=3)
    annotators.answer([1000 + k for k in range(6)])
    assert [user for _, _, user in queue.annotations] == [100, 101, 102, 100, 101, 102]
    assert sorted(queue.users) == [f"sim-annotator-{k}@sluice.local" for k in range(3)]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"error_rate": 1.5}, "error_rate"),
        ({"labels": ["positive"], "error_rate": 0.1}, "two labels"),
        ({"labels": ["negative", "neutral"]}, "not in the label set"),
        ({"n_annotators": 0}, "n_annotators"),
    ],
)
def test_bad_settings_are_refused(options: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {"labels": LABELS, "error_rate": 0.1}
    fields.update(options)
    with pytest.raises(ValueError, match=message):
        SimulatedAnnotators(
            FakeQueue({}),
            1,
            {"i0": "positive"},
            rng=np.random.default_rng(0),
            **fields,
        )


def test_unknown_tasks_and_items_are_refused() -> None:
    annotators, _, _ = make(3, 0.0)
    with pytest.raises(KeyError, match="tasks not in project"):
        annotators.answer([1000, 5])
    with pytest.raises(KeyError, match="no ground truth"):
        annotators.answers(["i0", "nope"])


def test_overlap_gives_each_task_distinct_annotators_spread_evenly():
    people, queue, truth = make(30, 0.0, n_annotators=4)
    tasks = sorted(queue.item_of_task)
    overlaps = [3 if k % 2 else 1 for k in range(len(tasks))]
    made = people.annotate(tasks, [queue.item_of_task[t] for t in tasks], overlaps)
    assert made == sum(overlaps) == len(queue.annotations)
    per_task: dict[int, list[int]] = {}
    for task_id, _, annotator in queue.annotations:
        per_task.setdefault(task_id, []).append(annotator)
    assert all(len(set(per_task[t])) == k for t, k in zip(tasks, overlaps))
    load = Counter(a for _, _, a in queue.annotations)
    assert max(load.values()) - min(load.values()) <= 1
    with pytest.raises(ValueError, match="overlap"):
        people.annotate(tasks[:1], [queue.item_of_task[tasks[0]]], [5])


def test_per_annotator_error_rates():
    people, queue, truth = make(3000, 0.0, n_annotators=2, annotator_error_rates=[0.0, 0.4])
    tasks = sorted(queue.item_of_task)
    people.annotate(tasks, [queue.item_of_task[t] for t in tasks])
    first, second = sorted(set(a for _, _, a in queue.annotations))
    wrong = Counter(a for t, label, a in queue.annotations if label != truth[queue.item_of_task[t]])
    assert wrong[first] == 0 and 0.35 < wrong[second] / 1500 < 0.45
    with pytest.raises(ValueError, match="annotator_error_rates"):
        make(3, 0.0, n_annotators=2, annotator_error_rates=[0.1])


def test_deference_takes_shown_suggestions_only():
    people, queue, truth = make(4000, 0.0, deference=0.5)
    tasks = sorted(queue.item_of_task)
    items = [queue.item_of_task[t] for t in tasks]
    wrong_suggestion = {t: next(label for label in LABELS if label != truth[i]) for t, i in zip(tasks, items)}
    suggestions = [wrong_suggestion[t] if k % 2 else None for k, t in enumerate(tasks)]
    people.annotate(tasks, items, suggestions=suggestions)
    answers = {t: label for t, label, _ in queue.annotations}
    shown = [t for k, t in enumerate(tasks) if k % 2]
    hidden = [t for k, t in enumerate(tasks) if not k % 2]
    assert all(answers[t] == truth[queue.item_of_task[t]] for t in hidden)
    took = np.mean([answers[t] == wrong_suggestion[t] for t in shown])
    assert 0.45 < took < 0.55
    assert [g[2] for g in people.given] == [label for _, label, _ in queue.annotations]
