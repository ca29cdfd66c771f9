"""Simulated annotators for benchmarks and tests: they answer Label Studio tasks from a dataset's ground truth."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

__all__ = ["AnnotationQueue", "KindAnnotators", "SimulatedAnnotators"]


class AnnotationQueue(Protocol):
    """What simulated annotators need from a queue; `labeling.client.LabelStudioQueue` is the real one."""

    def ensure_annotator(self, email: str, password: str) -> int: ...

    def annotate(
        self, task_id: int, label: str, *, annotator_id: int, lead_time: float | None = None
    ) -> int: ...

    def item_ids_of_tasks(self, project_id: int, task_ids: Sequence[int]) -> dict[int, str]: ...


@dataclass
class SimulatedAnnotators:
    """Annotators that answer from a dataset's ground truth, wrong with probability `error_rate`.

    They are not people: each answer is the true label of the task's item (looked up in `true_labels` by the
    `item_id` the task carries), replaced with probability `error_rate` by a different label drawn uniformly
    from `labels`. Answers go through the real Label Studio API (`LabelStudioQueue.annotate`), as one of
    `n_annotators` users `sim-annotator-<k>@sluice.local`, assigned round-robin, so pulls, agreement and
    automation-bias measurements see them exactly as they would see people.
    """

    queue: AnnotationQueue
    project_id: int
    true_labels: Mapping[str, str]
    labels: Sequence[str]
    error_rate: float
    rng: np.random.Generator
    n_annotators: int = 1
    annotator_error_rates: Sequence[float] | None = None  # one per annotator, in place of `error_rate`
    deference: float = 0.0  # chance of taking a shown suggestion over one's own answer (automation bias)
    password: str = "sluice-sim-annotator-pass"
    _annotator_ids: list[int] = field(default_factory=list, init=False, repr=False)
    given: list[tuple[int, int, str]] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error_rate must be in [0, 1], got {self.error_rate!r}")
        if len(set(self.labels)) < 2 and self.error_rate > 0:
            raise ValueError(f"a wrong answer needs at least two labels, got {list(self.labels)!r}")
        if self.n_annotators < 1:
            raise ValueError(f"n_annotators must be >= 1, got {self.n_annotators}")
        if not 0.0 <= self.deference <= 1.0:
            raise ValueError(f"deference must be in [0, 1], got {self.deference!r}")
        if self.annotator_error_rates is not None:
            rates = list(self.annotator_error_rates)
            if len(rates) != self.n_annotators or not all(0.0 <= r <= 1.0 for r in rates):
                raise ValueError(f"annotator_error_rates must be {self.n_annotators} values in [0, 1], got {rates!r}")
        unknown = sorted({label for label in self.true_labels.values() if label not in self.labels})
        if unknown:
            raise ValueError(f"true labels not in the label set {list(self.labels)!r}: {unknown[:10]!r}")

    def answers(self, item_ids: Sequence[str], error_rates: Sequence[float] | None = None) -> list[str]:
        """The labels given for `item_ids`, each wrong with `error_rates[k]` (default: `error_rate`); a
        vectorised draw that consumes `rng`."""
        missing = [item_id for item_id in item_ids if item_id not in self.true_labels]
        if missing:
            raise KeyError(f"no ground truth for items {missing[:10]!r}")
        label_array = np.asarray(list(self.labels), dtype=object)
        truth_index = np.asarray(
            [list(self.labels).index(self.true_labels[i]) for i in item_ids], dtype=np.int64
        )
        rates = self.error_rate if error_rates is None else np.asarray(error_rates, dtype=float)
        wrong = self.rng.random(len(item_ids)) < rates
        # a uniform draw among the other labels: shift the true index by 1..n_labels-1 (mod n_labels)
        n_labels = len(label_array)
        shift = self.rng.integers(1, max(n_labels, 2), size=len(item_ids))
        answer_index = np.where(wrong, (truth_index + shift) % n_labels, truth_index)
        return [str(label) for label in label_array[answer_index]]

    def assignments(self, n_tasks: int, overlaps: Sequence[int] | None = None) -> list[list[int]]:
        """Which annotators (positions in 0..n_annotators-1) answer each task: `overlaps[k]` distinct ones,
        round-robin, so the work and the pairs spread evenly."""
        overlaps = [1] * n_tasks if overlaps is None else list(overlaps)
        if len(overlaps) != n_tasks:
            raise ValueError(f"{n_tasks} tasks but {len(overlaps)} overlaps")
        if any(not 1 <= k <= self.n_annotators for k in overlaps):
            raise ValueError(f"each overlap must be between 1 and n_annotators={self.n_annotators}, got "
                             f"{sorted(set(overlaps))!r}")
        plan, cursor = [], 0
        for k in overlaps:
            plan.append([(cursor + j) % self.n_annotators for j in range(k)])
            cursor += k
        return plan

    def annotate(self, task_ids: Sequence[int], item_ids: Sequence[str], overlaps: Sequence[int] | None = None,
                 *, suggestions: Sequence[str | None] | None = None, workers: int = 1) -> int:
        """Answer each task (`task_ids[k]` shows item `item_ids[k]`) through the API, by `overlaps[k]` distinct
        annotators (default 1); where the task shows a suggestion (`suggestions[k]`), each annotator takes it
        with probability `deference` instead of their own answer. `workers` requests run at once. Returns how
        many annotations were made; every answer given is appended to `self.given` as (task id, annotator
        position, label)."""
        if len(task_ids) != len(item_ids):
            raise ValueError(f"{len(task_ids)} task ids but {len(item_ids)} item ids")
        annotator_ids = self._annotators()
        plan = self.assignments(len(task_ids), overlaps)
        work = [(task_id, item_id, who) for task_id, item_id, people in zip(task_ids, item_ids, plan)
                for who in people]
        rates = None
        if not 0.0 <= self.deference <= 1.0:
            raise ValueError(f"deference must be in [0, 1], got {self.deference!r}")
        if self.annotator_error_rates is not None:
            rates = [self.annotator_error_rates[who] for _, _, who in work]
        labels = self.answers([item_id for _, item_id, _ in work], rates)
        if suggestions is not None and self.deference > 0.0:
            shown = {task_id: s for task_id, s in zip(task_ids, suggestions, strict=True) if s is not None}
            defer = self.rng.random(len(work)) < self.deference
            labels = [shown[t] if d and t in shown else label for (t, _, _), label, d in zip(work, labels, defer)]
        calls = [(task_id, label, annotator_ids[who]) for (task_id, _, who), label in zip(work, labels)]
        self.given.extend((task_id, who, label) for (task_id, _, who), label in zip(work, labels))
        if workers <= 1:
            for task_id, label, annotator_id in calls:
                self.queue.annotate(task_id, label, annotator_id=annotator_id)
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(lambda c: self.queue.annotate(c[0], c[1], annotator_id=c[2]), calls))
        return len(calls)

    def answer(self, task_ids: Sequence[int]) -> int:
        """Answer the tasks `task_ids` through the API (their item ids are looked up first); returns how many."""
        item_of_task = self.queue.item_ids_of_tasks(self.project_id, task_ids)
        missing = [task_id for task_id in task_ids if task_id not in item_of_task]
        if missing:
            raise KeyError(f"tasks not in project {self.project_id}: {missing[:10]!r}")
        return self.annotate(task_ids, [item_of_task[task_id] for task_id in task_ids])

    def _annotators(self) -> list[int]:
        if not self._annotator_ids:
            self._annotator_ids = simulated_users(self.queue, "sim-annotator", self.n_annotators, self.password)
        return self._annotator_ids


def simulated_users(queue: Any, prefix: str, count: int, password: str) -> list[int]:
    """The Label Studio user ids of `count` simulated annotators `<prefix>-<k>@sluice.local`, created if missing."""
    return [queue.ensure_annotator(f"{prefix}-{k}@sluice.local", password) for k in range(count)]


@dataclass
class KindAnnotators:
    """Simulated annotators for the queue of an LLM pipeline's kind (`labeling.kinds`), answering through the
    real Label Studio API as its UI would. Each item's true answer (`true_answers[item]`, the kind's answer form:
    a verdict with its correction, a preferred side, the right field values) is given, or with probability
    `error_rate` a wrong one: the other verdict (with no correction), the other response, the extracted values
    confirmed as they were. Not people: a benchmark's and the demo's stand-in."""

    queue: Any
    kind: str
    true_answers: Mapping[str, Mapping[str, Any]]
    error_rate: float
    rng: np.random.Generator
    n_annotators: int = 1
    password: str = "sluice-sim-annotator-pass"
    _annotator_ids: list[int] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error_rate must be in [0, 1], got {self.error_rate!r}")
        if self.kind not in ("generation", "pairwise", "extraction"):
            raise ValueError(f"kind must be generation, pairwise or extraction, got {self.kind!r}")

    def wrong(self, answer: Mapping[str, Any], data: Mapping[str, Any]) -> dict[str, Any]:
        if self.kind == "generation":
            return {"label": "reject" if answer["label"] == "accept" else "accept"}
        if self.kind == "pairwise":
            return {"label": {"a": "b", "b": "a"}.get(answer["label"], "a")}
        return {"fields": dict(data.get("values") or {})}

    def annotate(self, project_ids: Sequence[int], task_ids: Sequence[int]) -> int:
        """Answer the tasks `task_ids` (of the projects `project_ids`: a queue and its expert twin) once each,
        round-robin over the annotators; returns how many answers were made."""
        from labeling.kinds import answer_result

        data: dict[int, dict[str, Any]] = {}
        for project_id in project_ids:
            data.update(self.queue.task_data(project_id, task_ids))
        people = self._annotators()
        made = 0
        for k, task_id in enumerate(task_ids):
            task = data.get(int(task_id))
            if task is None or task.get("item_id") not in self.true_answers:
                continue
            answer = dict(self.true_answers[task["item_id"]])
            if self.rng.random() < self.error_rate:
                answer = self.wrong(answer, task)
            self.queue.annotate(task_id, None, annotator_id=people[k % len(people)],
                                result=answer_result(self.kind, task, answer))
            made += 1
        return made

    def _annotators(self) -> list[int]:
        if not self._annotator_ids:
            self._annotator_ids = simulated_users(self.queue, f"sim-{self.kind}", self.n_annotators, self.password)
        return self._annotator_ids
