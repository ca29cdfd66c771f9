"""Does active learning pay? Learning curves of each strategy against random sampling, over many seeds.

Runs `sluice simulate --annotator direct` (in-process: `flows.simulate.run_simulation`) for every dataset,
strategy and seed; accuracy is measured on a fixed test split drawn from the seed before the loop, which no
strategy labels or trains on. The target accuracy is 98% of a model trained on every non-test label of the same
seed. Prints, per dataset, the mean test accuracy per cycle with a 95% interval over seeds, and the labels each
strategy needs to reach the target (median over seeds, and its ratio to random's), and draws the curves to PNG.

    .venv/bin/python bench/bench_active_learning.py [--datasets bbc rotten] [--seeds 20] [--cycles 8]
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

STRATEGIES = ("margin", "entropy", "diverse", "random")
TARGET_SHARE = 0.98


def export_dataset(name: str, directory: Path) -> tuple[Path, Path]:
    from scoring.datasets import load_bbc_news, load_rotten_tomatoes

    frame = load_bbc_news() if name == "bbc" else load_rotten_tomatoes()
    frame = frame[frame["text"].str.len() > 0]
    items, labels = directory / f"{name}-items.jsonl", directory / f"{name}-labels.jsonl"
    items.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in zip(frame["id"], frame["text"])))
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
    model = train_model([r["text"] for r in pool], [truth[r["id"]] for r in pool], kind="text", seed=config.seed)
    return float(np.mean(model.predict([r["text"] for r in test]) == np.array([truth[r["id"]] for r in test])))


def labels_to_target(cycles: list[dict], target: float) -> float:
    for row in cycles:
        if row["accuracy"] is not None and row["accuracy"] >= target:
            return float(row["labels_total"])
    return float("nan")


def run(args: argparse.Namespace) -> dict:
    from flows.simulate import SimulationConfig, run_simulation
    from rich.console import Console

    quiet = Console(quiet=True)
    work = Path(tempfile.mkdtemp(prefix="sluice-al-"))
    results: dict = {}
    for dataset in args.datasets:
        items, labels = export_dataset(dataset, work)
        results[dataset] = {"curves": {s: [] for s in args.strategies}, "ceiling": []}
        for seed in range(args.seeds):
            base = dict(items=items, labels=labels, seed_labels=args.seed_labels, cycles=args.cycles,
                        batch_size=args.batch_size, budget=args.budget, annotator="direct", seed=seed)
            ceiling = full_label_accuracy(items, labels, SimulationConfig(**base, strategy="random"))
            results[dataset]["ceiling"].append(ceiling)
            for strategy in args.strategies:
                started = time.perf_counter()
                config = SimulationConfig(**base, strategy=strategy, home=work / f"{dataset}-{strategy}-{seed}")
                cycles = run_simulation(config, console=quiet)["cycles"]
                results[dataset]["curves"][strategy].append(cycles)
                print(f"{dataset} seed {seed} {strategy:8s} final accuracy {cycles[-1]['accuracy']:.3f} "
                      f"(ceiling {ceiling:.3f}) in {time.perf_counter() - started:.0f} s", flush=True)
    return results


def summarise(results: dict, out: Path) -> None:
    for dataset, data in results.items():
        ceiling = np.array(data["ceiling"])
        print(f"\n{dataset}: full-label accuracy {ceiling.mean():.3f} (mean of {len(ceiling)} seeds); "
              f"target = {TARGET_SHARE:.0%} of it, per seed")
        print(f"{'strategy':10s} {'labels per cycle':>40s}   accuracy per cycle (mean ± 95% CI over seeds)")
        needed = {}
        for strategy, runs in data["curves"].items():
            accuracy = np.array([[c["accuracy"] for c in run] for run in runs], dtype=float)
            labels = np.array([[c["labels_total"] for c in run] for run in runs], dtype=float)
            half = 1.96 * accuracy.std(axis=0, ddof=1) / np.sqrt(len(runs)) if len(runs) > 1 else 0 * accuracy[0]
            cells = " ".join(f"{m:.3f}±{h:.3f}" for m, h in zip(accuracy.mean(axis=0), half))
            print(f"{strategy:10s} {' '.join(f'{v:.0f}' for v in labels.mean(axis=0)):>40s}   {cells}")
            needed[strategy] = [labels_to_target(run, TARGET_SHARE * c) for run, c in zip(runs, ceiling)]
        random_need = np.nanmedian(needed["random"]) if "random" in needed else float("nan")
        print("labels to reach the target (median over seeds; NaN: not reached within the run):")
        for strategy, values in needed.items():
            median = np.nanmedian(values) if not np.all(np.isnan(values)) else float("nan")
            reached = int(np.sum(~np.isnan(values)))
            print(f"  {strategy:10s} {median:8.0f}  reached in {reached}/{len(values)} seeds  "
                  f"ratio to random {median / random_need:.2f}")
    plot(results, out)


def plot(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5), squeeze=False)
    for ax, (dataset, data) in zip(axes[0], results.items()):
        for strategy, runs in data["curves"].items():
            accuracy = np.array([[c["accuracy"] for c in run] for run in runs], dtype=float)
            labels = np.array([[c["labels_total"] for c in run] for run in runs], dtype=float).mean(axis=0)
            mean = accuracy.mean(axis=0)
            half = 1.96 * accuracy.std(axis=0, ddof=1) / np.sqrt(len(runs)) if len(runs) > 1 else 0 * mean
            ax.plot(labels, mean, marker="o", label=strategy)
            ax.fill_between(labels, mean - half, mean + half, alpha=0.2)
        ax.axhline(TARGET_SHARE * np.mean(data["ceiling"]), color="grey", linestyle="--", label="98% of all labels")
        ax.set(title=dataset, xlabel="labels", ylabel="test accuracy")
        ax.legend()
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    print(f"\nlearning curves: {out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["bbc", "rotten"], choices=["bbc", "rotten"])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--cycles", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--budget", type=int, default=30)
    parser.add_argument("--seed-labels", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("bench/out/learning-curves.png"))
    args = parser.parse_args()
    from flows.cli import prefect_quietly

    with prefect_quietly():
        summarise(run(args), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
