"""Does a backlog drain as the model improves, under the guarantee? The whole pool arrives at once (a batch larger
than the pool), so after cycle 1 everything left is backlog re-routed under each newer model; it can only be
auto-accepted on a certification of its own population (`routing/backlog.py`).

Runs the loop (`flows.simulate.run_simulation`, direct simulated annotators answering from the ground truth) with
the embedded default policy (target: error among auto-accepted items <= 0.05 with confidence 0.9) in two arms that
differ in one field: `default` (the policy's `audit_train_share` 0.5: half the audits train, out of the sample)
and `held-out` (`audit_train_share: 0`: every audit can certify). Prints, per data set and arm: the automation of
each cycle (mean over seeds), the realised error of what was auto-accepted against the ground truth (with the
share of (seed, cycle) cases significantly above the target), and the test accuracy.

    .venv/bin/python bench/bench_backlog.py [--datasets bbc] [--seeds 3] [--seed-start 0] [--budget 100]
        [--results bench/out/backlog-runs.jsonl] [--summary-only --also-read F ...]

Finished runs are appended to the results file: an interrupted run resumes, and processes given other seeds can
share the work. Simulated annotators are not people: the figures say how the loop behaves.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")
import flows  # noqa: E402,F401  (Prefect's offline defaults)
from bench_active_learning import export_dataset, read_results  # noqa: E402
from bench_guarantee import error_table  # noqa: E402

ARMS = {"default": None, "held-out": "audit_train_share: 0.0"}


def arm_policy(arm: str, work: Path) -> Path | None:
    """The default policy with the arm's one field changed (None: the embedded default itself)."""
    change = ARMS[arm]
    if change is None:
        return None
    text = (Path(__file__).resolve().parents[1] / "policies" / "default.yaml").read_text()
    path = work / f"policy-{arm}.yaml"
    path.write_text(text.replace("defaults:\n", f"defaults:\n  {change}\n", 1))
    return path


def run(args: argparse.Namespace, params: dict) -> None:
    from rich.console import Console

    from flows.ingest import read_labels
    from flows.simulate import SimulationConfig, read_records, run_simulation, split_dataset

    work = Path(tempfile.mkdtemp(prefix="sluice-backlog-"))
    done = {(r["dataset"], r["seed"], r["arm"]) for r in read_results([args.results]) if r["params"] == params}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    for dataset in args.datasets:
        items, labels = export_dataset(dataset, work)
        for seed in range(args.seed_start, args.seed_start + args.seeds):
            for arm in ARMS:
                if (dataset, seed, arm) in done:
                    continue
                started = time.perf_counter()
                config = SimulationConfig(items=items, labels=labels, annotator="direct", seed=seed,
                                          policy=arm_policy(arm, work), home=work / f"{dataset}-{arm}-{seed}",
                                          **params)
                test, seeded, stream = split_dataset(read_records(items), dict(read_labels(labels)), config)
                cycles = run_simulation(config, console=Console(quiet=True))["cycles"]
                seconds = time.perf_counter() - started
                with args.results.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps({"dataset": dataset, "seed": seed, "arm": arm, "params": params,
                                             "pool": len(stream), "cycles": cycles, "seconds": seconds}) + "\n")
                print(f"{dataset} seed {seed} {arm:8s} automation by cycle "
                      f"{[None if c['automation_rate'] is None else round(c['automation_rate'], 2) for c in cycles]}, "
                      f"{seconds:.0f} s", flush=True)


def every_case(runs: dict) -> list[str]:
    """The guarantee's own denominator: every (seed, cycle), automated or not (a cycle that certified nothing
    cannot be wrong), and how many were significantly above the target (one-sided exact binomial at 5%)."""
    from scipy.stats import binom

    lines = ["| arm | (seed, cycle) runs | significantly above 0.05 | share |", "|---|---|---|---|"]
    for arm, by_seed in runs.items():
        cases = [c for cycles in by_seed.values() for c in cycles]
        above = sum(bool(c["auto_accepted"]) and binom.sf(c["auto_errors"] - 1, c["auto_accepted"], 0.05) < 0.05
                    for c in cases)
        lines.append(f"| {arm} | {len(cases)} | {above} | {above / len(cases):.3f} |")
    return lines


def summarise(rows: list[dict], datasets: list[str], params: dict) -> str:
    lines = [f"Default policy (target 0.05, confidence 0.9), {params['seed_labels']} seed labels, the whole pool "
             f"at once, {params['cycles']} cycles, label budget {params['budget']} a cycle."]
    for dataset in datasets:
        runs: dict = {}
        pools: dict = {}
        for r in rows:
            if r["dataset"] == dataset and r["params"] == params:
                runs.setdefault(r["arm"], {})[r["seed"]] = r["cycles"]
                pools[(r["arm"], r["seed"])] = r["pool"]
        if not runs:
            continue
        seeds = sorted(set.intersection(*(set(v) for v in runs.values())))
        runs = {arm: {s: runs[arm][s] for s in seeds} for arm in ARMS if arm in runs}
        n_cycles = params["cycles"]
        header = "| arm | " + " | ".join(f"cycle {c}" for c in range(1, n_cycles + 1)) + " |"
        rule = "|---|" + "---|" * n_cycles
        automation = [header, rule]
        accuracy = [header, rule]
        for arm, by_seed in runs.items():
            rates = np.array([[np.nan if c["automation_rate"] is None else c["automation_rate"] for c in cycles]
                              for cycles in by_seed.values()], dtype=float)
            accs = np.array([[c["accuracy"] or np.nan for c in cycles] for cycles in by_seed.values()])
            automation.append(f"| {arm} | " + " | ".join(f"{v:.3f}" for v in np.nanmean(rates, axis=0)) + " |")
            accuracy.append(f"| {arm} | " + " | ".join(f"{v:.3f}" for v in np.nanmean(accs, axis=0)) + " |")
        drained = ["| arm | share of the pool auto-accepted by the last cycle, per seed | mean | labels spent, mean |",
                   "|---|---|---|---|"]
        for arm, by_seed in runs.items():
            shares = [sum(c["auto_accepted"] for c in cycles) / pools[(arm, seed)] for seed, cycles in by_seed.items()]
            spent = np.mean([cycles[-1]["labels_spent_total"] for cycles in by_seed.values()])
            drained.append(f"| {arm} | {', '.join(f'{v:.2f}' for v in shares)} | {np.mean(shares):.2f} | "
                           f"{spent:.0f} |")
        lines += [f"\n### {dataset} ({len(seeds)} seeds)", "", *drained, "",
                  "Automation (share of what was routed that cycle, backlog included), mean over seeds (nan: the "
                  "backlog was gone, nothing was routed):", "",
                  *automation, "", "Realised error of auto-accepted items against the ground truth:", "",
                  *error_table(runs), "", *every_case(runs), "", "Test accuracy:", "", *accuracy]
    text = "\n".join(lines)
    print(text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["bbc"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed-start", type=int, default=0)
    parser.add_argument("--budget", type=int, default=100)
    parser.add_argument("--cycles", type=int, default=6)
    parser.add_argument("--results", type=Path, default=Path("bench/out/backlog-runs.jsonl"))
    parser.add_argument("--also-read", type=Path, nargs="*", default=[])
    parser.add_argument("--summary-only", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("bench/out/backlog.md"))
    args = parser.parse_args()
    params = {"seed_labels": 100, "cycles": args.cycles, "batch_size": 1_000_000, "budget": args.budget}
    if not args.summary_only:
        from flows.cli import prefect_quietly

        with prefect_quietly():
            run(args, params)
    text = summarise(read_results([args.results, *args.also_read]), args.datasets, params)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
