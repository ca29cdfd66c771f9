"""Per arm and cycle, what the stores of `bench_guarantee.py` runs hold about confidence and certification: the
share of decisions at raw confidence >= 0.99 and >= 0.95, the mean raw confidence, how many runs had a certified
threshold, and the automated share (auto-accept and spot-check routes).

    .venv/bin/python bench/guarantee_confidence.py "/tmp/sluice-guarantee-*/spambase-*-*" [--cycles 3 5 10]

Each run keeps its store under the benchmark's temporary folder, named <data set>-<arm>-<seed>; the decisions are
read with `store.decisions.decision_trail` (opening a store migrates it to the current schema).
"""

from __future__ import annotations

import argparse
import collections
import glob
from pathlib import Path

import numpy as np

AUTOMATED = ("auto_accept", "spot_check")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("homes", help="a glob of run homes, each holding sluice.db")
    parser.add_argument("--cycles", type=int, nargs="+", default=[3, 5, 10])
    args = parser.parse_args(argv)
    from store.db import dispose_engines, get_engine
    from store.decisions import decision_trail

    per_arm: dict[str, dict[int, list[tuple[float, ...]]]] = collections.defaultdict(
        lambda: collections.defaultdict(list))
    for home in sorted(glob.glob(args.homes)):
        arm = Path(home).name.split("-")[1]
        by_cycle: dict[int, list[dict]] = collections.defaultdict(list)
        for decision in decision_trail(get_engine(f"sqlite:///{home}/sluice.db")):
            if decision["cycle"] is not None:
                by_cycle[decision["cycle"]].append(decision)
        dispose_engines()
        for cycle, decisions in by_cycle.items():
            confidence = np.array([d["raw_confidence"] for d in decisions if d["raw_confidence"] is not None])
            certified = any(d["threshold"] is not None for d in decisions)
            automated = np.mean([d["route"] in AUTOMATED for d in decisions])
            per_arm[arm][cycle].append((np.mean(confidence >= 0.99), np.mean(confidence >= 0.95),
                                        float(confidence.mean()), float(certified), float(automated)))
    print("| cycle | arm | runs | raw confidence >= 0.99 | >= 0.95 | mean raw confidence | runs certified "
          "| automated |")
    print("|---|---|---|---|---|---|---|---|")
    for cycle in args.cycles:
        for arm in sorted(per_arm):
            rows = np.array(per_arm[arm][cycle], dtype=float)
            if rows.size == 0:
                continue
            print(f"| {cycle} | {arm} | {len(rows)} | {rows[:, 0].mean():.1%} | {rows[:, 1].mean():.1%} | "
                  f"{rows[:, 2].mean():.3f} | {int(rows[:, 3].sum())} of {len(rows)} | {rows[:, 4].mean():.1%} |")


if __name__ == "__main__":
    main()
