"""Active learning and the auto-accept guarantee for the items of LLM pipelines: generation, pairwise, extraction.

All figures are on SEMI-SYNTHETIC data (scoring.datasets: real BBC News articles, with responses, preferences,
extractions and reviewer answers built from them by rules and simulated people; no package ships real ones).
For each kind and seed:

(a) Active learning against random. A pool and a held-out test split are drawn; both arms start from the same
    random seed labels and add a batch per round, chosen by the kind's selector (routing.kind_selection: the
    verifier's uncertainty, the preference model's uncertainty with cluster diversity, documents by their most
    uncertain field) or uniformly at random, refitting the kind's model (scoring.verifier.Verifier,
    scoring.preference.PreferenceModel, scoring.fields.FieldChecker) after each. The target is a test AUC of
    `--target-share` of the AUC of the model fitted on the whole pool; labels are counted as people give them
    (responses, pairs including ties, fields: a chosen document costs all its fields).
(b) The guarantee. A model is fitted on uniformly drawn labels, an auto-accept threshold is certified by
    Learn-then-Test (routing.thresholds.guaranteed_threshold, target alpha at confidence 1 - delta) on other
    uniformly drawn labels, and applied to fresh items: the realised share that people reject among the
    auto-accepted ones is compared with alpha. Confidence is P(accept) for a response, max(p, 1 - p) for a pair
    (auto-accepting the predicted winner; people answering the other side or a tie count as a rejection), and
    P(kept) per field for an extraction.

    PYTHONPATH=. .venv/bin/python bench/bench_kinds.py [--quick] [--kinds generation pairwise extraction]
        [--seeds 20] [--seed-start 0] [--results bench/out/kinds.jsonl] [--summary-only --also-read F ...]

Each finished (kind, seed) is appended to the results file, so an interrupted run resumes and processes given other
kinds or seeds can share the work; `--summary-only` reads them all and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from routing.kind_selection import select_documents, select_pairs, select_responses  # noqa: E402
from routing.thresholds import guaranteed_threshold  # noqa: E402

KINDS = ("generation", "pairwise", "extraction")
TARGET_SHARE = 0.97
# Per kind, in units people review (responses, pairs, documents): pool and test of (a), its seed labels, batch and
# last round; train, calibration and fresh sets of (b).
SIZES = {
    "full": {"generation": dict(pool=800, test=400, start=20, step=20, most=300, train=600, cal=1500, fresh=1500),
             "pairwise": dict(pool=800, test=400, start=20, step=20, most=300, train=600, cal=1500, fresh=1500),
             "extraction": dict(pool=400, test=200, start=10, step=5, most=100, train=200, cal=500, fresh=500)},
    "quick": {"generation": dict(pool=400, test=300, start=20, step=20, most=200, train=300, cal=800, fresh=800),
              "pairwise": dict(pool=400, test=300, start=20, step=20, most=200, train=300, cal=800, fresh=800),
              "extraction": dict(pool=200, test=150, start=10, step=5, most=60, train=100, cal=300, fresh=300)},
}
# The auto-accept target per kind: responses and pairs are harder to score here than extracted fields.
ALPHA = {"generation": 0.25, "pairwise": 0.2, "extraction": 0.1}
DELTA = 0.1


def _auc(y_true: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y_true, score)) if 0 < y_true.sum() < y_true.shape[0] else float("nan")


class GenerationTask:
    """Units are responses; the model is the verifier; the outcome is people accepting the response."""

    def __init__(self, n: int, seed: int) -> None:
        from scoring.datasets import semi_synthetic_generation
        from scoring.verifier import GenerationExample

        data = semi_synthetic_generation(n, seed=seed, hard=True, flip_rate=0.05)
        self.examples = [GenerationExample(p, r, c) for p, r, c in zip(data.prompt, data.response, data.context)]
        self.accepted = data.accepted.to_numpy(dtype=bool)

    def fit(self, units: np.ndarray) -> Any:
        from scoring.verifier import Verifier

        return Verifier().fit([self.examples[i] for i in units], self.accepted[units])

    def probability(self, model: Any, units: np.ndarray) -> np.ndarray:
        return model.predict_proba([self.examples[i] for i in units])

    def select(self, model: Any, units: np.ndarray, take: int, rng: np.random.Generator) -> np.ndarray:
        return units[select_responses(self.probability(model, units), budget=take, rng=rng).indices]

    def auc(self, model: Any, units: np.ndarray) -> float:
        return _auc(self.accepted[units], self.probability(model, units))

    def labels(self, units: np.ndarray) -> int:
        return int(units.shape[0])

    def confidence_and_accepted(self, model: Any, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.probability(model, units), self.accepted[units]


class PairwiseTask:
    """Units are pairs; the model is the preference model; the outcome is which side people prefer (or a tie)."""

    def __init__(self, n: int, seed: int) -> None:
        from scoring.datasets import semi_synthetic_pairwise
        from scoring.preference import PairwiseExample, pair_description

        data = semi_synthetic_pairwise(n, seed=seed)
        self.examples = [PairwiseExample(p, a, b, c) for p, a, b, c in
                         zip(data.prompt, data.response_a, data.response_b, data.context)]
        self.answers = data.label.to_numpy()
        self.description = pair_description(self.examples)
        self.description = (self.description - self.description.mean(0)) / (self.description.std(0) + 1e-9)

    def fit(self, units: np.ndarray) -> Any:
        from scoring.preference import PreferenceModel

        return PreferenceModel().fit([self.examples[i] for i in units], self.answers[units])

    def probability(self, model: Any, units: np.ndarray) -> np.ndarray:
        return model.predict_proba([self.examples[i] for i in units])

    def select(self, model: Any, units: np.ndarray, take: int, rng: np.random.Generator) -> np.ndarray:
        chosen = select_pairs(self.probability(model, units), self.description[units], budget=take, rng=rng)
        return units[chosen.indices]

    def auc(self, model: Any, units: np.ndarray) -> float:
        decided = units[self.answers[units] != "tie"]
        return _auc(self.answers[decided] == "a", self.probability(model, decided))

    def labels(self, units: np.ndarray) -> int:
        return int(units.shape[0])

    def confidence_and_accepted(self, model: Any, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = self.probability(model, units)
        predicted = np.where(p >= 0.5, "a", "b")
        return np.maximum(p, 1.0 - p), self.answers[units] == predicted


class ExtractionTask:
    """Units are documents, labelled a whole document at a time; the model is the field checker; the outcome is
    people keeping a field's value."""

    def __init__(self, n: int, seed: int) -> None:
        from scoring.datasets import semi_synthetic_extraction
        from scoring.fields import ExtractedField

        data = semi_synthetic_extraction(n, seed=seed)
        self.fields, owner, kept = [], [], []
        for document, (text, fields, wrong) in enumerate(zip(data.text, data.fields, data.wrong)):
            for name, field in fields.items():
                self.fields.append(ExtractedField(text, name, field["value"], field["confidence"]))
                owner.append(document)
                kept.append(not wrong[name])
        self.owner, self.kept = np.asarray(owner), np.asarray(kept, dtype=bool)
        self.field_count = np.bincount(self.owner, minlength=n)

    def _fields_of(self, documents: np.ndarray) -> np.ndarray:
        return np.flatnonzero(np.isin(self.owner, documents))

    def fit(self, units: np.ndarray) -> Any:
        from scoring.fields import FieldChecker

        rows = self._fields_of(units)
        return FieldChecker().fit([self.fields[i] for i in rows], self.kept[rows])

    def select(self, model: Any, units: np.ndarray, take: int, rng: np.random.Generator) -> np.ndarray:
        rows = self._fields_of(units)
        local = np.searchsorted(units, self.owner[rows])  # document number within `units` (sorted)
        chosen = select_documents(model.predict_proba([self.fields[i] for i in rows]), local, budget=take, rng=rng,
                                  n_documents=units.shape[0])
        return units[chosen.indices]

    def auc(self, model: Any, units: np.ndarray) -> float:
        rows = self._fields_of(units)
        return _auc(self.kept[rows], model.predict_proba([self.fields[i] for i in rows]))

    def labels(self, units: np.ndarray) -> int:
        return int(self.field_count[units].sum())

    def confidence_and_accepted(self, model: Any, units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = self._fields_of(units)
        return model.predict_proba([self.fields[i] for i in rows]), self.kept[rows]


TASKS = {"generation": GenerationTask, "pairwise": PairwiseTask, "extraction": ExtractionTask}


def learning_curve(task: Any, pool: np.ndarray, test: np.ndarray, seed_units: np.ndarray, *, active: bool,
                   step: int, most: int, rng: np.random.Generator) -> list[tuple[int, float]]:
    """(labels so far, test AUC) after the seed labels and after each batch, up to `most` units labelled."""
    labelled = np.sort(seed_units)
    curve = []
    while True:
        model = task.fit(labelled)
        curve.append((task.labels(labelled), task.auc(model, test)))
        rest = np.setdiff1d(pool, labelled)
        take = min(step, most - labelled.shape[0], rest.shape[0])
        if take <= 0:
            return curve
        picked = task.select(model, rest, take, rng) if active else rng.choice(rest, size=take, replace=False)
        labelled = np.sort(np.concatenate([labelled, picked]))


def active_learning_run(kind: str, seed: int, size: dict) -> dict:
    task = TASKS[kind](size["pool"] + size["test"], seed)
    order = np.random.default_rng([seed, 0]).permutation(size["pool"] + size["test"])
    pool, test = np.sort(order[: size["pool"]]), np.sort(order[size["pool"]:])
    ceiling = task.auc(task.fit(pool), test)
    seed_units = np.random.default_rng([seed, 1]).choice(pool, size=size["start"], replace=False)
    curves = {arm: learning_curve(task, pool, test, seed_units, active=arm == "active", step=size["step"],
                                  most=size["most"], rng=np.random.default_rng([seed, 2]))
              for arm in ("active", "random")}
    return {"ceiling": ceiling, "curves": curves}


def guarantee_run(kind: str, seed: int, size: dict) -> dict:
    """Fit on uniform labels, certify on other uniform labels, measure on fresh items (one draw, split three ways)."""
    n = size["train"] + size["cal"] + size["fresh"]
    task = TASKS[kind](n, 10_000 + seed)
    units = np.random.default_rng([seed, 3]).permutation(n)
    train, cal, fresh = np.split(units, [size["train"], size["train"] + size["cal"]])
    model = task.fit(np.sort(train))
    confidence, accepted = task.confidence_and_accepted(model, np.sort(cal))
    result = guaranteed_threshold(confidence, accepted, alpha=ALPHA[kind], delta=DELTA)
    fresh_confidence, fresh_accepted = task.confidence_and_accepted(model, np.sort(fresh))
    row = {"threshold": result.threshold, "calibration_items": int(confidence.shape[0]),
           "fresh_items": int(fresh_confidence.shape[0]), "fresh_rejected_share": float(1 - fresh_accepted.mean())}
    if result.threshold is not None:
        auto = fresh_confidence >= result.threshold
        row.update(auto_accepted=int(auto.sum()), coverage=float(auto.mean()),
                   realised_error=float((~fresh_accepted[auto]).mean()) if auto.any() else None)
    return row


def labels_to_target(curve: list, target: float) -> float:
    hit = [labels for labels, auc in curve if auc >= target]
    return float(hit[0]) if hit else float("inf")


def summarise(rows: list[dict], kinds: list[str]) -> str:
    lines = [f"SEMI-SYNTHETIC data (scoring.datasets, built from real BBC News articles). Target for (a): test AUC "
             f"{TARGET_SHARE:.0%} of the AUC with the whole pool labelled. Guarantee (b): confidence "
             f"{1 - DELTA:g} (delta {DELTA:g}), alpha per kind in the table.", "",
             "(a) Labels to reach the target, active learning against random (same seed labels):", "",
             "| kind | sizes | seeds | full-pool AUC (median) | active: reached, median labels | "
             "random: reached, median labels | ratio of medians | per-seed ratio, median (IQR) |",
             "|---|---|---|---|---|---|---|---|"]
    for kind in kinds:
        mine = [r for r in rows if r["kind"] == kind]
        if not mine:
            continue
        most = max(c[0] for r in mine for curve in r["al"]["curves"].values() for c in curve)
        needed = {arm: np.array([labels_to_target(r["al"]["curves"][arm], TARGET_SHARE * r["al"]["ceiling"])
                                 for r in mine]) for arm in ("active", "random")}
        # a seed whose arm never reached the target counts at one batch past the last label (censored)
        censored = {arm: np.where(np.isfinite(v), v, most + 1) for arm, v in needed.items()}
        ratios = censored["active"] / censored["random"]
        medians = {arm: float(np.median(v)) for arm, v in needed.items()}
        cells = [f"{int(np.isfinite(needed[arm]).sum())}/{len(mine)}, "
                 + (f"{medians[arm]:.0f}" if np.isfinite(medians[arm]) else f"> {most}") for arm in needed]
        ratio = medians["active"] / medians["random"] if np.isfinite(list(medians.values())).all() else float("nan")
        q1, q2, q3 = np.quantile(ratios, [0.25, 0.5, 0.75])
        size = mine[0]["size"]
        lines.append(f"| {kind} | pool {size['pool']}, test {size['test']}, start {size['start']}, "
                     f"batch {size['step']} | {len(mine)} | {np.median([r['al']['ceiling'] for r in mine]):.3f} | "
                     f"{cells[0]} | {cells[1]} | {ratio:.2f} | {q2:.2f} ({q1:.2f}–{q3:.2f}) |")
    lines += ["", "Labels are what people give: responses, pairs (ties included), fields (a chosen document costs all "
              "its fields). Pool, test, start and batch are in responses, pairs and documents.", "",
              "(b) Realised rejected share among auto-accepted fresh items, threshold certified by Learn-then-Test on "
              "uniform labels:", "",
              "| kind | alpha | sizes | seeds | certified | median threshold | median coverage | median realised error | "
              "max | seeds above alpha | pooled error | rejected share of all fresh items |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for kind in kinds:
        mine = [r["guarantee"] for r in rows if r["kind"] == kind]
        if not mine:
            continue
        certified = [g for g in mine if g["threshold"] is not None and g.get("realised_error") is not None]
        errors = np.array([g["realised_error"] for g in certified], dtype=float)
        alpha, size = ALPHA[kind], [r["size"] for r in rows if r["kind"] == kind][0]
        head = f"| {kind} | {alpha:g} | train {size['train']}, calibration {size['cal']}, fresh {size['fresh']} | {len(mine)} |"
        above = int((errors > alpha).sum())
        pooled = (sum(g["realised_error"] * g["auto_accepted"] for g in certified)
                  / max(sum(g["auto_accepted"] for g in certified), 1))
        base = np.median([g["fresh_rejected_share"] for g in mine])
        if certified:
            lines.append(f"{head} {len(certified)} | "
                         f"{np.median([g['threshold'] for g in certified]):.3f} | "
                         f"{np.median([g['coverage'] for g in certified]):.3f} | {np.median(errors):.4f} | "
                         f"{errors.max():.4f} | {above}/{len(certified)} ({above / len(certified):.0%}) | "
                         f"{pooled:.4f} | {base:.3f} |")
        else:
            lines.append(f"{head} 0 | – | – | – | – | – | – | {base:.3f} |")
    text = "\n".join(lines)
    print(text)
    return text


def read_results(paths: list[Path]) -> list[dict]:
    rows = []
    for path in paths:
        if path.exists():
            rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def run(args: argparse.Namespace, sizes: dict) -> None:
    done = {(r["kind"], r["seed"], json.dumps(r["size"], sort_keys=True)) for r in read_results([args.results])}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    for kind in args.kinds:
        for seed in range(args.seed_start, args.seed_start + args.seeds):
            if (kind, seed, json.dumps(sizes[kind], sort_keys=True)) in done:
                continue
            started = time.perf_counter()
            row = {"kind": kind, "seed": seed, "size": sizes[kind], "al": active_learning_run(kind, seed, sizes[kind]),
                   "guarantee": guarantee_run(kind, seed, sizes[kind])}
            row["seconds"] = time.perf_counter() - started
            with args.results.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")
            print(f"{kind} seed {seed}: full-pool AUC {row['al']['ceiling']:.3f}, threshold "
                  f"{row['guarantee']['threshold']}, realised error {row['guarantee'].get('realised_error')}, "
                  f"{row['seconds']:.0f} s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=list(KINDS))
    parser.add_argument("--quick", action="store_true", help="smaller pools and 5 seeds: a few minutes on 2 cores")
    parser.add_argument("--seeds", type=int, default=None, help="default 20 (5 with --quick)")
    parser.add_argument("--seed-start", type=int, default=0)
    parser.add_argument("--results", type=Path, default=Path("bench/out/kinds.jsonl"))
    parser.add_argument("--also-read", type=Path, nargs="*", default=[])
    parser.add_argument("--summary-only", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("bench/out/kinds.md"))
    args = parser.parse_args()
    sizes = SIZES["quick" if args.quick else "full"]
    args.seeds = args.seeds if args.seeds is not None else 5 if args.quick else 20
    if not args.summary_only:
        run(args, sizes)
    rows = [r for r in read_results([args.results, *args.also_read]) if r["size"] == sizes[r["kind"]]]
    if not rows:
        print("no finished runs for these kinds and sizes", file=sys.stderr)
        return 1
    text = summarise(rows, args.kinds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
