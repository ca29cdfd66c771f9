"""`sluice demo --kind generation|pairwise`: the outputs of an LLM pipeline through the whole loop, against the
real Label Studio, with simulated annotators answering in the kind's own queue.

The data are SEMI-SYNTHETIC (no package ships LLM responses with human verdicts, see
`scoring.datasets.semi_synthetic_generation`): real BBC News articles, a question about each, and a response that
is a sentence of the article (people accept it) or, for one in five, a plausible wrong one (they reject it, and
correct it with a sentence of the article). A pair sets a grounded response against a wrong one, in a random order. The pipeline's
own score is SIMULATED: a judge that is mostly right and overconfident (its log-odds are the truth at +-2 plus
Gaussian noise of sd 1.2, stretched by 1.6), so calibration has something to correct and some
answers must go to people. A pilot labels the first items (half held out), as a team would before trusting the
score at all; then batches arrive cycle by cycle.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console

from flows.common import engine_for
from flows.demo import fresh_demo, password_hint, start_store
from flows.ingest import ingest_flow, seed_labels
from flows.simulate import LabelStudioKindAnnotators, cycle_table, run_loop, write_jsonl
from scoring.datasets import semi_synthetic_generation
from store.settings import PROJECT_ROOT, SluiceSettings

KIND_POLICY = PROJECT_ROOT / "policies" / "llm-review.yaml"
DEMO_KINDS = ("generation", "pairwise")


def _judge(truth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A simulated pipeline judge: P(good) from the truth at +-2 log-odds, noise sd 1.2, overconfident (x1.6)."""
    logit = np.where(truth, 2.0, -2.0) + rng.normal(0.0, 1.2, size=len(truth))
    return np.round(1.0 / (1.0 + np.exp(-1.6 * logit)), 6)


def generation_records(n: int, seed: int) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """(items, each item's true answer) of `n` SEMI-SYNTHETIC generated responses with a SIMULATED judge score."""
    # most of a working pipeline's responses are fine: about one in five is wrong here (the generator makes half)
    pool = semi_synthetic_generation(2 * n, seed=seed)
    good, bad = pool[pool["accepted"]], pool[~pool["accepted"]]
    n_bad = min(len(bad), n // 5)
    data = pd.concat([good.iloc[: n - n_bad], bad.iloc[:n_bad]]).sample(frac=1.0, random_state=seed)
    rng = np.random.default_rng([seed, 1])
    confidence = _judge(data["accepted"].to_numpy(dtype=bool), rng)
    records, answers = [], {}
    for row, score in zip(data.itertuples(index=False), confidence):
        records.append({"id": row.id, "kind": "generation", "segment": "answers", "prompt": row.prompt,
                        "response": row.response, "context": [row.context], "confidence": float(score)})
        if row.accepted:
            answers[row.id] = {"label": "accept", "severity": 0}
        else:
            fix = row.context.split(". ")[0].rstrip(".") + "."
            answers[row.id] = {"label": "reject", "correction": fix, "severity": 2,
                               "issues": ["factual_error" if row.how == "a number changed" else "unsupported_by_context"]}
    return records, answers


def pairwise_records(n: int, seed: int) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """(items, each item's true answer) of `n` SEMI-SYNTHETIC pairs: a grounded response against a wrong one, in
    a random order, with a SIMULATED judge's preference."""
    data = semi_synthetic_generation(2 * n, seed=seed)
    good = data[data["accepted"]].reset_index(drop=True)
    bad = data[~data["accepted"]].reset_index(drop=True)
    rng = np.random.default_rng([seed, 2])
    a_is_good = rng.random(min(len(good), len(bad), n)) < 0.5
    preference = _judge(a_is_good, rng)
    records, answers = [], {}
    for k, (first_good, p) in enumerate(zip(a_is_good, preference)):
        right, wrong = good.iloc[k], bad.iloc[k]
        item_id = f"pair-{seed}-{k:05d}"
        a, b = (right.response, wrong.response) if first_good else (wrong.response, right.response)
        records.append({"id": item_id, "kind": "pairwise", "segment": "pairs", "prompt": right.prompt,
                        "response_a": a, "response_b": b, "context": [right.context], "preference": float(p)})
        answers[item_id] = {"label": "a" if first_good else "b"}
    return records, answers


def run_kind_demo(*, kind: str, cycles: int, batch_size: int, pilot_labels: int, annotator_error: float, seed: int,
                  home: Path, console: Console, settings: SluiceSettings | None = None) -> list[dict]:
    """A pilot's labels, then `cycles` cycles of `batch_size` items of `kind` through the loop and Label Studio."""
    if kind not in DEMO_KINDS:
        raise ValueError(f"--kind must be one of {DEMO_KINDS} (or classification, the default demo), got {kind!r}")
    started = time.perf_counter()
    settings, url = fresh_demo(home, settings, console)
    build = generation_records if kind == "generation" else pairwise_records
    records, answers = build(pilot_labels + cycles * batch_size, seed)
    truth = {item_id: answer["label"] for item_id, answer in answers.items()}
    console.print(f"{kind}: {len(records):,} SEMI-SYNTHETIC items from BBC News articles, the pipeline's score "
                  f"SIMULATED (an overconfident judge); a pilot labels {pilot_labels}, then {cycles} cycles of "
                  f"{batch_size}")
    engine = engine_for(settings)
    start_store(engine, KIND_POLICY, "LLM-output demo policy")
    pilot, stream = records[:pilot_labels], records[pilot_labels:]
    ingest_flow(str(write_jsonl(home / "pilot-items.jsonl", pilot)), settings=settings)
    seed_labels(engine, [(r["id"], truth[r["id"]]) for r in pilot], holdout_share=0.5, seed=seed)
    annotate = LabelStudioKindAnnotators(engine, settings, kind, answers, annotator_error,
                                         np.random.default_rng(seed))
    rows = run_loop(
        engine=engine, settings=settings, stream=stream, cycles=cycles, batch_size=batch_size, strategy="margin",
        annotate=annotate, push=True, truth=truth, work=home, accuracy=lambda: None,
        on_cycle=lambda row: console.print(f"cycle {row['cycle']} done: {row['items']} items, "
                                           f"{row['auto_accepted']} auto-accepted, {row['review_count']} to people"),
    )
    console.print(cycle_table(rows, title=f"Sluice demo: {kind} (SEMI-SYNTHETIC), simulated annotators in Label "
                                          "Studio", accuracy_label="accuracy"))
    export = "sft" if kind == "generation" else "dpo"
    console.print(f"finished in {time.perf_counter() - started:.0f} s")
    console.print(f"Label Studio: {url}  (user {settings.labelstudio_username}, {password_hint(settings)}, project "
                  f"{settings.labelstudio_project + ': ' + kind!r})")
    console.print(f"Training data: SLUICE_HOME={home} sluice export {export} {home / (export + '.jsonl')}")
    return rows
