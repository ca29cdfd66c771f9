"""The main job: BBC News through the whole flywheel, with simulated annotators answering in Label Studio.

The annotators are simulated: they answer from the dataset's ground truth, wrong with a set probability.
Everything else is the real thing: the SQLite store, Prefect flow runs and a local Label Studio server.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from flows.common import engine_for
from flows.ingest import ingest_flow, seed_labels
from flows.retrain import retrain_flow
from flows.simulate import LabelStudioAnnotators, cycle_table, run_loop, settings_for_home, write_jsonl
from labeling.server import LabelStudioServer
from routing.policy import Policy
from scoring.datasets import load_bbc_news
from store.accounts import add_account
from store.policies import save_policy
from store.settings import CREDENTIALS_FILE, PROJECT_ROOT, SluiceSettings, settings_or_environment

DEMO_POLICY = PROJECT_ROOT / "policies" / "bbc-news.yaml"
# The demo store's console accounts (a local store on 127.0.0.1 only; a real store gets its own, `sluice user add`)
DEMO_ACCOUNTS = (("ops", "operator"), ("lead", "approver"), ("guest", "viewer"))
DEMO_PASSWORD = "sluice-demo-pass"


def ensure_labelstudio(settings: SluiceSettings, console: Console) -> str:
    """The Label Studio the demo uses: a configured one (SLUICE_LABELSTUDIO_URL) as it is, else the local one,
    started if it is not running."""
    if settings.labelstudio_url:
        return settings.shown_labelstudio_url
    server = LabelStudioServer(settings)
    status = server.status()
    if not status.running:
        console.print(f"starting Label Studio on {server.url} (the first start migrates its database: "
                      "about a minute) …")
        started = time.perf_counter()
        status = server.start()
        console.print(f"Label Studio {status.version} is up after {time.perf_counter() - started:.0f} s "
                      f"(pid {status.pid})")
    return status.url


def fresh_demo(home: Path, settings: SluiceSettings | None, console: Console) -> tuple[SluiceSettings, str]:
    """(the demo's settings, Label Studio's address): a state folder `home` made anew, Label Studio kept in the
    data folder of `settings` (the environment's when None) and running, a fresh project per run."""
    base = settings_or_environment(settings)
    if home.exists():
        shutil.rmtree(home)
    settings = settings_for_home(home, base).variant(
        labelstudio_home=base.labelstudio_data_dir,
        labelstudio_project=f"Sluice demo {time.strftime('%Y-%m-%d %H:%M:%S')}")
    return settings, ensure_labelstudio(settings, console)


def password_hint(settings: SluiceSettings) -> str:
    """Where the local Label Studio's admin password is (never the password itself: a terminal log is not a
    vault)."""
    if settings.labelstudio_url or settings.labelstudio_password:
        return "your own password"
    return f"password in {settings.labelstudio_data_dir / CREDENTIALS_FILE}"


def start_store(engine, policy: Path, comment: str) -> None:
    """The demo store's policy and its console accounts."""
    save_policy(engine, Policy.load(policy), comment=comment)
    for username, role in DEMO_ACCOUNTS:
        add_account(engine, username, role=role, password=DEMO_PASSWORD)


def run_demo(*, cycles: int, batch_size: int, seed_labels: int, annotator_error: float, seed: int, home: Path,
             console: Console, settings: SluiceSettings | None = None) -> list[dict]:
    """Seed a model on a few labels, then stream the rest of BBC News in batches through `cycles` cycles. The
    demo's state lives under `home` (recreated); Label Studio keeps the data folder of `settings` (the
    environment's when None), with a fresh project per run."""
    started = time.perf_counter()
    settings, url = fresh_demo(home, settings, console)
    data = load_bbc_news().sample(frac=1.0, random_state=seed).reset_index(drop=True)
    truth = dict(zip(data["id"], data["label"]))
    records = [{"id": i, "text": t, "segment": "news"} for i, t in zip(data["id"], data["text"])]
    console.print(f"BBC News: {len(records):,} articles, {data['label'].nunique()} topics; "
                  f"seeding with {seed_labels} labels, then {cycles} cycles of {batch_size} items")
    engine = engine_for(settings)
    start_store(engine, DEMO_POLICY, "demo policy")
    seed_items, stream = records[:seed_labels], records[seed_labels:]
    ingest_flow(str(write_jsonl(home / "seed-items.jsonl", seed_items)), settings=settings)
    seed_labels_summary = seed_labels_into(engine, seed_items, truth, seed)
    first = retrain_flow(seed=seed, settings=settings)
    console.print(f"seed model {first.get('version')}: held-out accuracy "
                  f"{(first.get('metrics') or {}).get('accuracy', float('nan')):.3f} on "
                  f"{seed_labels_summary['holdout']} held-out labels")
    labels = sorted(set(truth.values()))
    annotate = LabelStudioAnnotators(engine, settings, truth, labels, annotator_error, np.random.default_rng(seed))
    rows = run_loop(
        engine=engine, settings=settings, stream=stream, cycles=cycles, batch_size=batch_size, strategy="margin", annotate=annotate,
        push=True, truth=truth, work=home, accuracy=lambda: None,
        on_cycle=lambda row: console.print(f"cycle {row['cycle']} done: {row['items']} items, "
                                           f"{row['review_count']} sent to review"),
    )
    for row in rows:
        row["accuracy"] = row["holdout_accuracy"]
    console.print(cycle_table(rows, title="Sluice demo: BBC News, simulated annotators in Label Studio",
                              accuracy_label="held-out accuracy"))
    console.print(f"finished in {time.perf_counter() - started:.0f} s")
    console.print(f"Label Studio: {url}  (user {settings.labelstudio_username}, {password_hint(settings)}, "
                  f"project {settings.labelstudio_project!r}); stop it with `sluice labelstudio stop`")
    console.print(f"Console: SLUICE_HOME={home} sluice ui  →  http://127.0.0.1:8501  (sign in as ops, lead or guest: "
                  f"operator, approver, viewer; password {DEMO_PASSWORD})")
    return rows


def seed_labels_into(engine, seed_items: list[dict], truth: dict[str, str], seed: int) -> dict:
    return seed_labels(engine, [(r["id"], truth[r["id"]]) for r in seed_items], holdout_share=0.5, seed=seed)
