"""Does active learning pay? Learning curves of each strategy against random sampling, over many seeds.

Runs `sluice simulate --annotator direct` (in-process: `flows.simulate.run_simulation`) for every dataset,
strategy and seed; accuracy is measured on a fixed test split drawn from the seed before the loop, which no
strategy labels or trains on. The target accuracy is 98% of a model trained on every non-test label of the same
seed. Prints, per dataset, the mean test accuracy per cycle with a 95% interval over seeds, and the labels each
strategy needs to reach the target (median over seeds, and its ratio to random's), and draws the curves to PNG.

    .venv/bin/python bench/bench_active_learning.py [--datasets optdigits satimage bbc rotten] [--seeds 20]
        [--seed-start 0] [--results bench/out/active-learning-runs.jsonl] [--summary-only --also-read F ...]

Each finished run is appended to the results file, so an interrupted run resumes and processes given disjoint
seed ranges can share the work; `--summary-only` then reads them all. Training labels (seed training labels plus
the strategy's picks) are the x axis: audit labels, drawn at random for calibration and evaluation, are the
same overhead for every strategy and never enter training; the table also gives labels counted with them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import os  # noqa: E402

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
import flows  # noqa: E402,F401  (Prefect's offline defaults)
from _common import read_results  # noqa: E402

STRATEGIES = ("margin", "entropy", "diverse", "random", "active")
TARGET_SHARE = 0.98


def export_dataset(name: str, directory: Path) -> tuple[Path, Path]:
    from scoring.datasets import KEEL_DATASETS, load_bbc_news, load_keel, load_rotten_tomatoes

    if name in KEEL_DATASETS:
        frame = load_keel(name)
        records = [{"id": i, "features": f} for i, f in zip(frame["id"], frame["features"])]
    else:
        frame = load_bbc_news() if name == "bbc" else load_rotten_tomatoes()
        frame = frame[frame["text"].str.len() > 0]
        records = [{"id": i, "text": t} for i, t in zip(frame["id"], frame["text"])]
    items, labels = directory / f"{name}-items.jsonl", directory / f"{name}-labels.jsonl"
    items.write_text("".join(json.dumps(r) + "\n" for r in records))
    labels.write_text("".join(json.dumps({"id": i, "label": y}) + "\n" for i, y in zip(frame["id"], frame["label"])))
    return items, labels


def full_label_accuracy(items: Path, labels: Path, config) -> float:
    """Test accuracy of a model trained on every non-test item of this seed's split (the ceiling)."""
    from flows.ingest import read_labels
    from flows.simulate import read_records, split_dataset
    from scoring.models import train_model

    truth = dict(read_labels(labels))
    test, seed_items, stream = split_dataset(read_records(items), truth, config)
    pool = seed_items + stream
    kind = "text" if "text" in pool[0] else "features"
    inputs = (lambda rows: [r["text"] for r in rows]) if kind == "text" else (
        lambda rows: np.asarray([r["features"] for r in rows], dtype=float))
    model = train_model(inputs(pool), [truth[r["id"]] for r in pool], kind=kind, seed=config.seed)
    return float(np.mean(model.predict(inputs(test)) == np.array([truth[r["id"]] for r in test])))


# Per data set: enough cycles for random sampling to reach the target on most seeds, at a cost that lets 20
# seeds × 4 strategies run in well under an hour per data set on two cores (BBC's long texts cost the most).
PRESETS = {
    "bbc": {"cycles": 8, "batch_size": 200, "budget": 30, "seed_labels": 100},
    "rotten": {"cycles": 8, "batch_size": 500, "budget": 60, "seed_labels": 100},
    "optdigits": {"cycles": 10, "batch_size": 400, "budget": 60, "seed_labels": 100},
    "satimage": {"cycles": 10, "batch_size": 400, "budget": 60, "seed_labels": 100},
}
LABEL_AXES = {"labels_train": "training labels", "labels_total": "all labels (seed, picks and audits)"}


def labels_to_target(cycles: list[dict], target: float, axis: str = "labels_train") -> float:
    """Labels on `axis` at the first cycle whose test accuracy reaches `target`; inf if none does."""
    for row in cycles:
        if row["accuracy"] is not None and row["accuracy"] >= target:
            return float(row[axis])
    return float("inf")


def params_for(dataset: str, args: argparse.Namespace) -> dict:
    chosen = dict(PRESETS[dataset])
    for key in chosen:
        if getattr(args, key) is not None:
            chosen[key] = getattr(args, key)
    return chosen


def run(args: argparse.Namespace) -> None:
    """Run every (dataset, seed, strategy) not already in the results file, appending one line per run, so an
    interrupted benchmark resumes where it stopped and several processes can split the seeds."""
    from rich.console import Console

    quiet = Console(quiet=True)
    work = Path(tempfile.mkdtemp(prefix="sluice-al-"))
    done = {(r["dataset"], r["seed"], r["kind"], r.get("strategy"), json.dumps(r["params"], sort_keys=True))
            for r in read_results([args.results])}
    args.results.parent.mkdir(parents=True, exist_ok=True)

    def record(row: dict) -> None:
        with args.results.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")

    for dataset in args.datasets:
        params = params_for(dataset, args)
        key = json.dumps(params, sort_keys=True)
        items, labels = export_dataset(dataset, work)
        for seed in range(args.seed_start, args.seed_start + args.seeds):
            finished = seed_runs(dataset, seed, items, labels, params, args.strategies, work=work, console=quiet,
                                 record=record, done=lambda kind, strategy: (dataset, seed, kind, strategy, key) in done)
            for strategy, cycles, seconds in finished:
                print(f"{dataset} seed {seed} {strategy:8s} final accuracy {cycles[-1]['accuracy']:.3f} "
                      f"after {cycles[-1]['labels_train']} training labels, in {seconds:.0f} s", flush=True)


def seed_runs(dataset: str, seed: int, items: Path, labels: Path, params: dict, strategies: list[str], *,
              work: Path, console, record, done):
    """For one (data set, seed): the full-label ceiling, then each strategy's simulation, each recorded as it
    finishes unless `done(kind, strategy)` says it is in the results already; yields (strategy, cycles, seconds)."""
    from flows.simulate import SimulationConfig, run_simulation

    base = dict(items=items, labels=labels, annotator="direct", seed=seed, **params)
    if not done("ceiling", None):
        value = full_label_accuracy(items, labels, SimulationConfig(**base, strategy="random"))
        record({"dataset": dataset, "seed": seed, "kind": "ceiling", "params": params, "value": value})
    for strategy in strategies:
        if done("run", strategy):
            continue
        started = time.perf_counter()
        config = SimulationConfig(**base, strategy=strategy, home=work / f"{dataset}-{strategy}-{seed}")
        cycles = run_simulation(config, console=console)["cycles"]
        seconds = time.perf_counter() - started
        record({"dataset": dataset, "seed": seed, "kind": "run", "strategy": strategy, "params": params,
                "cycles": cycles, "seconds": seconds})
        yield strategy, cycles, seconds


def collect(rows: list[dict], datasets: list[str], args: argparse.Namespace) -> dict:
    """{dataset: {"ceiling": {seed: acc}, "curves": {strategy: {seed: cycles}}}} for this run's parameters."""
    results: dict = {}
    for dataset in datasets:
        params = params_for(dataset, args)
        mine = [r for r in rows if r["dataset"] == dataset and r["params"] == params]
        ceiling = {r["seed"]: r["value"] for r in mine if r["kind"] == "ceiling"}
        curves: dict = {}
        for r in mine:
            if r["kind"] == "run" and r["seed"] in ceiling:
                curves.setdefault(r["strategy"], {})[r["seed"]] = r["cycles"]
        if curves:
            results[dataset] = {"params": params, "ceiling": ceiling,
                                "curves": {s: curves[s] for s in STRATEGIES if s in curves}}
    return results


def _band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = values.mean(axis=0)
    if len(values) < 2:
        return mean, np.zeros_like(mean)
    return mean, 1.96 * values.std(axis=0, ddof=1) / np.sqrt(len(values))


def summarise(results: dict, out: Path) -> str:
    lines = []
    for dataset, data in results.items():
        ceiling = data["ceiling"]
        p = data["params"]
        lines.append(f"\n### {dataset}: {p['seed_labels']} seed labels, then {p['cycles']} cycles of "
                     f"{p['batch_size']} items with a review budget of {p['budget']}")
        lines.append(f"Full-label accuracy {np.mean(list(ceiling.values())):.3f} (mean over {len(ceiling)} seeds); "
                     f"the target is {TARGET_SHARE:.0%} of it, per seed.\n")
        n_cycles = p["cycles"]
        lines.append("| strategy | seeds | " + " | ".join(f"cycle {c + 1}" for c in range(n_cycles)) + " |")
        lines.append("|---|---|" + "---|" * n_cycles)
        needed: dict = {}
        for strategy, runs in data["curves"].items():
            seeds = sorted(runs)
            accuracy = np.array([[c["accuracy"] for c in runs[s]] for s in seeds], dtype=float)
            train = np.array([[c["labels_train"] for c in runs[s]] for s in seeds], dtype=float).mean(axis=0)
            mean, half = _band(accuracy)
            cells = " | ".join(f"{m:.3f} ± {h:.3f} ({t:.0f})" for m, h, t in zip(mean, half, train))
            lines.append(f"| {strategy} | {len(seeds)} | {cells} |")
            needed[strategy] = {axis: [labels_to_target(runs[s], TARGET_SHARE * ceiling[s], axis) for s in seeds]
                                for axis in LABEL_AXES}
        lines.append("\nCells: mean test accuracy ± 95% interval over seeds (mean training labels so far).\n")
        lines.append("| strategy | reached | median training labels to target | ratio to random | "
                     "median labels incl. seed and audits | ratio to random |")
        lines.append("|---|---|---|---|---|---|")
        reference = {axis: np.median(needed["random"][axis]) if "random" in needed else np.nan for axis in LABEL_AXES}
        # when random's median run never reached the target, it needs more than the most labels any run had:
        # the ratio is then an upper bound
        most = {axis: max(c[axis] for runs in data["curves"].values() for run in runs.values() for c in run)
                for axis in LABEL_AXES}
        for strategy, by_axis in needed.items():
            reached = int(np.sum(np.isfinite(by_axis["labels_train"])))
            cells = []
            for axis in LABEL_AXES:
                median = float(np.median(by_axis[axis]))
                if not np.isfinite(median):
                    cells += [f"> {most[axis]:.0f}", "–"]
                elif np.isfinite(reference[axis]):
                    cells += [f"{median:.0f}", f"{median / reference[axis]:.2f}"]
                else:
                    cells += [f"{median:.0f}", f"< {median / most[axis]:.2f}"]
            lines.append(f"| {strategy} | {reached}/{len(by_axis['labels_train'])} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    plot(results, out)
    return text


def plot(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5), squeeze=False)
    for ax, (dataset, data) in zip(axes[0], results.items()):
        for strategy, runs in data["curves"].items():
            seeds = sorted(runs)
            accuracy = np.array([[c["accuracy"] for c in runs[s]] for s in seeds], dtype=float)
            labels = np.array([[c["labels_train"] for c in runs[s]] for s in seeds], dtype=float).mean(axis=0)
            mean, half = _band(accuracy)
            ax.plot(labels, mean, marker="o", markersize=3, label=f"{strategy} ({len(seeds)} seeds)")
            ax.fill_between(labels, mean - half, mean + half, alpha=0.2)
        ax.axhline(TARGET_SHARE * np.mean(list(data["ceiling"].values())), color="grey", linestyle="--",
                   label="98% of all labels")
        ax.set(title=dataset, xlabel="training labels", ylabel="test accuracy")
        ax.legend(fontsize=8)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    print(f"\nlearning curves: {out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["optdigits", "satimage"], choices=list(PRESETS))
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--seed-start", type=int, default=0, help="first seed (split seeds across processes)")
    parser.add_argument("--cycles", type=int, default=None, help="default: the data set's preset")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--budget", type=int, default=None)
    parser.add_argument("--seed-labels", type=int, default=None)
    parser.add_argument("--results", type=Path, default=Path("bench/out/active-learning-runs.jsonl"),
                        help="one JSON line per finished run; runs already there are skipped")
    parser.add_argument("--also-read", type=Path, nargs="*", default=[],
                        help="more results files to include in the summary (from processes given other seeds)")
    parser.add_argument("--summary-only", action="store_true", help="summarise the results files, run nothing")
    parser.add_argument("--out", type=Path, default=Path("bench/out/learning-curves.png"))
    args = parser.parse_args()
    if not args.summary_only:
        from flows.cli import prefect_quietly

        with prefect_quietly():
            run(args)
    results = collect(read_results([args.results, *args.also_read]), args.datasets, args)
    if not results:
        print("no finished runs for these data sets and parameters", file=sys.stderr)
        return 1
    summary = summarise(results, args.out)
    args.out.with_suffix(".md").write_text(summary + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
