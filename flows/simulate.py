"""The flywheel over a labelled dataset, with simulated annotators, measured on a split it never touches.

Simulated annotators answer from the dataset's ground truth (wrong with a set probability); they are not
people, and figures from them say how the loop behaves, not how real annotators do.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from flows.common import engine_for, load_scoring_model, utcnow
from flows.cycle import Annotate, run_cycle
from flows.ingest import ingest_flow, read_labels, seed_labels
from flows.retrain import retrain_flow
from labeling.resolve import resolve_items
from store.annotations import HumanAnswer, upsert_annotations
from labeling.simulate import KindAnnotators, SimulatedAnnotators
from routing.policy import Policy, budget_window
from store.ingest import reader_for
from store.figures import automated_predictions
from store.outbox import pending_tasks, pushed_tasks
from store.policies import active_policy, save_policy
from store.registry import promoted_model
from store.settings import SluiceSettings, settings_or_environment

CYCLE_KEYS = ("cycle", "labels_total", "labels_train", "accuracy", "automation_rate", "auto_error_rate", "ece",
              "review_count", "labels_spent", "labels_spent_total", "target_error", "auto_accepted",
              "auto_errors", "halted_segments")


@dataclass(frozen=True)
class SimulationConfig:
    items: Path
    labels: Path
    seed_labels: int = 100
    cycles: int = 5
    batch_size: int = 500
    budget: int = 50
    strategy: str = "margin"
    annotator: str = "direct"
    annotator_error: float = 0.0
    test_share: float = 0.2
    seed: int = 0
    home: Path | None = None
    holdout_share: float = 0.5
    policy: Path | None = None
    retrain_every: int = 1  # retrain after every Nth cycle; the same model routes the cycles in between


def settings_for_home(home: Path, settings: SluiceSettings | None = None) -> SluiceSettings:
    """`settings` (the environment's when None) with their state (database, models, reports) under `home`,
    created if missing."""
    home.mkdir(parents=True, exist_ok=True)
    return settings_or_environment(settings).with_home(home.resolve())


def read_records(path: Path) -> list[dict[str, Any]]:
    return [r.value for r in reader_for(path)(path) if r.value is not None]


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, default=str) + "\n")
    return path


class DirectAnnotators:
    """Answer pending review tasks straight from the ground truth, without Label Studio (fast experiments)."""

    def __init__(self, engine: Engine, truth: dict[str, str], labels: list[str], error_rate: float,
                 rng: np.random.Generator) -> None:
        self.engine = engine
        self.draw = SimulatedAnnotators(queue=None, project_id=0, true_labels=truth, labels=labels,  # type: ignore[arg-type]
                                        error_rate=error_rate, rng=rng)

    def __call__(self, cycle: int) -> dict[str, Any]:
        tasks = pending_tasks(self.engine)
        answers = self.draw.answers([t.item_id for t in tasks])
        from flows.common import utcnow

        now = utcnow()
        upsert_annotations(self.engine, [
            HumanAnswer(source="direct", external_id=task.id, item_id=task.item_id, label=label,
                        annotator="sim-direct", was_cancelled=False, updated_at=now)
            for task, label in zip(tasks, answers)
        ])
        from flows.common import resolution_rules

        return {"answered": resolve_items(self.engine, [t.item_id for t in tasks], cycle=cycle,
                                          rules=resolution_rules(self.engine)).resolved}


class LabelStudioAnnotators:
    """Simulated annotators answering this cycle's pushed tasks through Label Studio's API."""

    def __init__(self, engine: Engine, settings: SluiceSettings, truth: dict[str, str], labels: list[str],
                 error_rate: float, rng: np.random.Generator, n_annotators: int = 2) -> None:
        from flows.labelstudio import open_queue

        self.engine = engine
        queue, project_id = open_queue(engine, settings)
        self.people = SimulatedAnnotators(queue=queue, project_id=project_id, true_labels=truth, labels=labels,
                                          error_rate=error_rate, rng=rng, n_annotators=n_annotators)

    def __call__(self, cycle: int) -> dict[str, Any]:
        tasks = pushed_tasks(self.engine)
        return {"answered": self.people.annotate([t.ls_task_id for t in tasks], [t.item_id for t in tasks])}


class LabelStudioKindAnnotators:
    """Simulated annotators answering this cycle's pushed tasks of an LLM kind's queues through Label Studio's
    API (`labeling.simulate.KindAnnotators`)."""

    def __init__(self, engine: Engine, settings: SluiceSettings, kind: str, true_answers: dict[str, dict],
                 error_rate: float, rng: np.random.Generator, n_annotators: int = 2) -> None:
        from flows.labelstudio import open_queue

        self.engine, self.settings, self.kind = engine, settings, kind
        queue, _ = open_queue(engine, settings, kind=kind)
        self.people = KindAnnotators(queue=queue, kind=kind, true_answers=true_answers, error_rate=error_rate,
                                     rng=rng, n_annotators=n_annotators)

    def __call__(self, cycle: int) -> dict[str, Any]:
        from flows.labelstudio import open_queue

        tasks = pushed_tasks(self.engine)
        if not tasks:
            return {"answered": 0}
        projects = [open_queue(self.engine, self.settings, queue_name=name, kind=self.kind)[1]
                    for name in ("review", "expert")]
        return {"answered": self.people.annotate(projects, [t.ls_task_id for t in tasks])}


def auto_error_rate(engine: Engine, cycle: int, truth: dict[str, str]) -> float | None:
    """Share of this cycle's auto-accepted items (spot-checked ones included) whose prediction is wrong."""
    rows = automated_predictions(engine, cycle)
    if not rows:
        return None
    return float(np.mean([truth.get(row.item_id) != row.predicted_label for row in rows]))


def auto_errors(engine: Engine, cycle: int, truth: dict[str, str]) -> int:
    """How many of this cycle's auto-accepted items (spot-checked ones included) are wrong, against the truth."""
    return int(sum(truth.get(row.item_id) != row.predicted_label for row in automated_predictions(engine, cycle)))


def test_accuracy(engine: Engine, test_records: list[dict[str, Any]], truth: dict[str, str],
                  settings: SluiceSettings | None = None) -> float | None:
    model_row = promoted_model(engine)
    if model_row is None or not test_records:
        return None
    model = load_scoring_model(model_row, settings)
    key = "text" if model.kind == "text" else "features"
    inputs = [r.get(key) for r in test_records]
    predicted = model.predict(np.asarray(inputs, dtype=float) if key == "features" else inputs)
    return float(np.mean([p == truth[r["id"]] for p, r in zip(predicted, test_records)]))


def simulation_policy(config: SimulationConfig, labels: list[str]) -> Policy:
    base = Policy.load(config.policy) if config.policy else Policy.load(
        Path(__file__).resolve().parents[1] / "policies" / "default.yaml")
    data = base.model_dump()
    data["name"] = f"{base.name}-simulation"
    data["labels"] = labels
    data["defaults"]["review_budget"] = config.budget
    return Policy.model_validate(data)


def split_dataset(records: list[dict[str, Any]], truth: dict[str, str], config: SimulationConfig):
    """(test, seed, stream): a fixed test split first, then seed items, then the production stream."""
    labelled = [r for r in records if str(r.get("id")) in truth]
    order = np.random.default_rng(config.seed).permutation(len(labelled))
    shuffled = [labelled[i] for i in order]
    n_test = int(round(config.test_share * len(shuffled)))
    test, rest = shuffled[:n_test], shuffled[n_test:]
    return test, rest[: config.seed_labels], rest[config.seed_labels:]


def run_loop(
    *, engine: Engine, settings: SluiceSettings, stream: list[dict[str, Any]], cycles: int, batch_size: int,
    strategy: str, annotate: Annotate, push: bool, truth: dict[str, str], work: Path,
    on_cycle: Callable[[dict[str, Any]], None] | None = None, accuracy: Callable[[], float | None],
    retrain_every: int = 1,
) -> list[dict[str, Any]]:
    """Each cycle: ingest the next batch, run the full cycle with `annotate` between push and pull, measure. The
    simulated clock moves one budget window (the policy's longest) per cycle, so each cycle spends a fresh review
    budget as an hourly cycle in production does. The model is retrained after every `retrain_every`-th cycle."""
    rows = []
    policy, _ = active_policy(engine)
    window = timedelta(hours=max([policy.defaults.budget_window_hours,
                                  *(policy.for_segment(s).budget_window_hours for s in policy.segments)]))
    clock = budget_window(utcnow(), window.total_seconds() / 3600)[0]
    for index in range(cycles):
        batch = stream[index * batch_size:(index + 1) * batch_size]
        if batch:
            ingest_flow(str(write_jsonl(work / f"batch-{index + 1:03d}.jsonl", batch)), settings=settings)
        result = run_cycle(strategy=strategy, settings=settings, annotate=annotate, push=push,
                           as_of=clock + index * window, retrain=(index + 1) % retrain_every == 0)
        figures = result["figures"]
        row = {
            "cycle": result["cycle"], "items": len(batch), "labels_total": figures["labels_total"],
            "labels_train": figures["labels_train"],
            "accuracy": accuracy(), "holdout_accuracy": figures["holdout_accuracy"],
            "automation_rate": figures["automation_rate"],
            "auto_error_rate": auto_error_rate(engine, result["cycle"], truth), "ece": figures["ece"],
            "labels_spent": figures["labels_spent"], "labels_spent_total": figures["labels_spent_total"],
            "target_error": figures["target_error"], "auto_accepted": figures["auto_accepted"],
            "auto_errors": auto_errors(engine, result["cycle"], truth),
            "halted_segments": figures["halted_segments"],
            "review_count": figures["review_tasks"], "labels_gained": figures["labels_gained"],
            "model_version": figures["model_version"], "retrain": result["steps"]["retrain"].get("status"),
            "model_agreement": figures.get("model_agreement"),
            "gain_per_100_labels": figures.get("gain_per_100_labels"),
        }
        rows.append(row)
        if on_cycle:
            on_cycle(row)
    return rows


def cycle_table(rows: list[dict[str, Any]], *, title: str, accuracy_label: str) -> Table:
    table = Table(title=title, title_justify="left")
    columns = [("cycle", "cycle"), ("items", "items"), ("automation", "automation_rate"),
               ("auto-accept error", "auto_error_rate"), ("to review", "review_count"),
               ("labels gained", "labels_gained"), (accuracy_label, "accuracy"), ("ECE", "ece"),
               ("model", "model_version"), ("retrain", "retrain"), ("agreement", "model_agreement")]
    for name, _ in columns:
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(*(_cell(row.get(key)) for _, key in columns))
    return table


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def run_simulation(config: SimulationConfig, *, settings: SluiceSettings | None = None,
                   console: Console | None = None) -> dict[str, Any]:
    """Run the loop over `config.items` with answers from `config.labels`, its state under `config.home` (the
    other settings from `settings`, the environment's when None); returns {"cycles": [...]}."""
    console = console or Console()
    if config.annotator not in ("direct", "labelstudio"):
        raise ValueError(f"--annotator must be direct or labelstudio, got {config.annotator!r}")
    home = config.home or Path(tempfile.mkdtemp(prefix="sluice-sim-"))
    settings = settings_for_home(home, settings)
    engine = engine_for(settings)
    truth = dict(read_labels(config.labels))
    labels = sorted(set(truth.values()))
    test, seed_items, stream = split_dataset(read_records(config.items), truth, config)
    save_policy(engine, simulation_policy(config, labels), comment="simulation policy")
    ingest_flow(str(write_jsonl(home / "seed-items.jsonl", seed_items)), settings=settings)
    seed_labels(engine, [(r["id"], truth[r["id"]]) for r in seed_items], holdout_share=config.holdout_share,
                seed=config.seed)
    retrain_flow(settings=settings)
    rng = np.random.default_rng(config.seed)
    if config.annotator == "direct":
        annotate: Annotate = DirectAnnotators(engine, truth, labels, config.annotator_error, rng)
    else:
        annotate = LabelStudioAnnotators(engine, settings, truth, labels, config.annotator_error, rng)
    rows = run_loop(
        engine=engine, settings=settings, stream=stream, cycles=config.cycles, batch_size=config.batch_size, strategy=config.strategy,
        annotate=annotate, push=config.annotator == "labelstudio", truth=truth, work=home,
        retrain_every=config.retrain_every,
        accuracy=lambda: test_accuracy(engine, test, truth, settings),
        on_cycle=lambda row: console.print(f"cycle {row['cycle']}: accuracy {_cell(row['accuracy'])}, "
                                           f"labels {row['labels_total']}"),
    )
    console.print(cycle_table(rows, title=f"simulation ({config.strategy}, seed {config.seed})",
                              accuracy_label="test accuracy"))
    return {"config": {k: str(v) for k, v in config.__dict__.items()}, "test_items": len(test),
            "cycles": [{k: row[k] for k in CYCLE_KEYS} for row in rows]}
