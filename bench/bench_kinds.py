"""Active learning and the auto-accept guarantee for the items of LLM pipelines: generation, pairwise, extraction.

All figures are on SEMI-SYNTHETIC data (scoring.datasets: real BBC News articles, with responses, preferences,
extractions and reviewer answers built from them by rules and simulated people; no package ships real ones).
For each kind and seed:

(a) Active learning against random. A pool and a held-out test split are drawn; both arms start from the same
    random seed labels (redrawn until they hold both outcomes, so that the first model can be fitted) and add a
    batch per round, chosen by the kind's selector (routing.kind_selection: the verifier's uncertainty, the
    preference model's uncertainty with cluster diversity, documents by their most uncertain field) or uniformly
    at random, refitting the kind's model (scoring.verifier.Verifier, scoring.preference.PreferenceModel,
    scoring.fields.FieldChecker) after each, up to a fixed label budget. Labels are counted as people give them
    (responses, pairs including ties, fields: a chosen document costs all its fields). Two measures per seed,
    both against the AUC of the model fitted on the whole pool (the ceiling):
    - the shortfall area: the mean over the label budget of how far the test AUC is below the ceiling (linear
      between rounds, zero above it); the ratio active / random per seed is the headline (below 1: active
      learning stays closer to the ceiling over the budget), with the mean-AUC difference beside it;
    - labels to close `GAP_SHARE` of the gap between the seed labels' AUC (shared by both arms) and the ceiling.
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

from _common import read_results  # noqa: E402
from routing.kind_selection import select_documents, select_pairs, select_responses  # noqa: E402
from routing.thresholds import guaranteed_threshold  # noqa: E402

KINDS = ("generation", "pairwise", "extraction")
# (a)'s secondary target: the share of the gap between the seed labels' test AUC and the full-pool AUC to close.
GAP_SHARE = 0.9
# Per kind, in units people review (responses, pairs, documents): pool and test of (a), its seed labels, batch and
# label budget (the last round); train, calibration and fresh sets of (b). Generation and pairwise start small and
# step finely because their models rise over the first hundred labels and are flat after (kinds.md).
SIZES = {
    "full": {"generation": dict(pool=800, test=400, start=10, step=10, most=200, train=600, cal=1500, fresh=1500),
             "pairwise": dict(pool=800, test=400, start=10, step=10, most=200, train=600, cal=1500, fresh=1500),
             "extraction": dict(pool=400, test=200, start=10, step=5, most=100, train=200, cal=500, fresh=500)},
    "quick": {"generation": dict(pool=400, test=300, start=10, step=10, most=120, train=300, cal=800, fresh=800),
              "pairwise": dict(pool=400, test=300, start=10, step=10, most=120, train=300, cal=800, fresh=800),
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

    def outcomes(self, units: np.ndarray) -> np.ndarray:
        return self.accepted[units]

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

    def outcomes(self, units: np.ndarray) -> np.ndarray:
        decided = self.answers[units]
        return decided[decided != "tie"] == "a"

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

    def outcomes(self, units: np.ndarray) -> np.ndarray:
        return self.kept[self._fields_of(units)]

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


def seed_labels(task: Any, pool: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """`size` pool units drawn uniformly, redrawn until their answers hold both outcomes (a model needs both)."""
    for _ in range(1_000):
        units = rng.choice(pool, size=size, replace=False)
        outcomes = task.outcomes(units)
        if 0 < outcomes.sum() < outcomes.shape[0]:
            return units
    raise ValueError(f"no draw of {size} seed labels holds both outcomes")


def active_learning_run(kind: str, seed: int, size: dict) -> dict:
    task = TASKS[kind](size["pool"] + size["test"], seed)
    order = np.random.default_rng([seed, 0]).permutation(size["pool"] + size["test"])
    pool, test = np.sort(order[: size["pool"]]), np.sort(order[size["pool"]:])
    ceiling = task.auc(task.fit(pool), test)
    seed_units = seed_labels(task, pool, size["start"], np.random.default_rng([seed, 1]))
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


def shortfall_and_mean(curve: list, ceiling: float, last: float) -> tuple[float, float]:
    """(mean shortfall of the test AUC below `ceiling`, mean test AUC) over labels from the curve's first point to
    `last`, the curve linear between rounds (a uniform grid of labels, so both arms weigh each label alike)."""
    labels, aucs = np.array(curve, dtype=float).T
    grid = np.linspace(labels[0], last, 200)
    auc = np.interp(grid, labels, aucs)
    return float(np.maximum(ceiling - auc, 0.0).mean()), float(auc.mean())


def seed_measures(row: dict) -> dict[str, float]:
    """(a)'s per-seed figures: each arm's shortfall area and mean AUC over the labels both arms reached, and
    labels to close GAP_SHARE of the gap from the seed labels' AUC to the ceiling."""
    curves, ceiling = row["al"]["curves"], row["al"]["ceiling"]
    last = min(curves[arm][-1][0] for arm in curves)
    start = curves["random"][0][1]  # both arms' first model is fitted on the same seed labels
    out = {"ceiling": ceiling, "start_auc": start, "last": last}
    for arm in ("active", "random"):
        out[f"{arm}_shortfall"], out[f"{arm}_mean_auc"] = shortfall_and_mean(curves[arm], ceiling, last)
        out[f"{arm}_to_gap"] = labels_to_target(curves[arm], start + GAP_SHARE * (ceiling - start))
    return out


def _median_iqr(values: np.ndarray, digits: int = 2) -> str:
    q1, q2, q3 = np.quantile(values, [0.25, 0.5, 0.75])
    return f"{q2:.{digits}f} ({q1:.{digits}f} to {q3:.{digits}f})"


def summarise_active_learning(rows: list[dict], kinds: list[str]) -> list[str]:
    from scipy.stats import binomtest

    lines = ["(a) Active learning against random (same seed labels), over a fixed label budget: shortfall = mean over "
             "the budget of (full-pool AUC - test AUC), zero above it; ratio below 1 favours active learning:", "",
             "| kind | sizes | seeds | full-pool AUC (median) | seed labels' AUC (median) | budget (labels) | "
             "shortfall active, random (medians) | per-seed shortfall ratio active/random, median (IQR) | "
             "per-seed mean-AUC difference active - random, median (IQR) | seeds active ahead (two-sided sign test) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    gap_lines = ["", f"(a') Labels to close {GAP_SHARE:.0%} of the gap between the seed labels' test AUC and the "
                 "full-pool AUC (a seed whose arm never gets there counts at one batch past its budget):", "",
                 "| kind | seeds | active: reached, median labels | random: reached, median labels | "
                 "per-seed ratio active/random, median (IQR) |", "|---|---|---|---|---|"]
    for kind in kinds:
        mine = [r for r in rows if r["kind"] == kind]
        if not mine:
            continue
        size = mine[0]["size"]
        m = {key: np.array([seed_measures(r)[key] for r in mine]) for key in seed_measures(mine[0])}
        ratio = m["active_shortfall"] / np.maximum(m["random_shortfall"], 1e-12)
        difference = m["active_mean_auc"] - m["random_mean_auc"]
        ahead = int((difference > 0).sum())
        sign_p = binomtest(ahead, int((difference != 0).sum()), 0.5).pvalue if (difference != 0).any() else 1.0
        lines.append(f"| {kind} | pool {size['pool']}, test {size['test']}, start {size['start']}, batch "
                     f"{size['step']}, last round {size['most']} | {len(mine)} | {np.median(m['ceiling']):.3f} | "
                     f"{np.median(m['start_auc']):.3f} | {np.median(m['last']):.0f} | "
                     f"{np.median(m['active_shortfall']):.4f}, {np.median(m['random_shortfall']):.4f} | "
                     f"{_median_iqr(ratio)} | {_median_iqr(difference, 4)} | {ahead}/{len(mine)} (p {sign_p:.2g}) |")
        step = np.median([np.diff([c[0] for c in r["al"]["curves"]["random"]]).mean() for r in mine])
        censored = {arm: np.where(np.isfinite(m[f"{arm}_to_gap"]), m[f"{arm}_to_gap"], m["last"] + step)
                    for arm in ("active", "random")}
        cells = [f"{int(np.isfinite(m[f'{arm}_to_gap']).sum())}/{len(mine)}, {np.median(censored[arm]):.0f}"
                 for arm in ("active", "random")]
        gap_lines.append(f"| {kind} | {len(mine)} | {cells[0]} | {cells[1]} | "
                         f"{_median_iqr(censored['active'] / censored['random'])} |")
    return lines + gap_lines


def summarise(rows: list[dict], kinds: list[str]) -> str:
    lines = ["SEMI-SYNTHETIC data (scoring.datasets, built from real BBC News articles). (a): shortfall below the "
             "full-pool AUC over a fixed label budget, and labels to close a share of the gap to it. Guarantee (b): "
             f"confidence {1 - DELTA:g} (delta {DELTA:g}), alpha per kind in the table.", "",
             *summarise_active_learning(rows, kinds)]
    lines += ["", "Labels are what people give: responses, pairs (ties included), fields (a chosen document costs all "
              "its fields). Pool, test, start, batch and last round are in responses, pairs and documents; the budget in labels.", "",
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
