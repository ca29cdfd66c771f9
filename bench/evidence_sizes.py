"""The labels behind each segment-threshold certification, per data set and cycle, in the stores that a
`bench_guarantee.py` run leaves in its work folder (`/tmp/sluice-guarantee-*`, one `<data set>-<arm>-<seed>`
folder per run): the median `n` over the runs, and in how many runs the certification found a threshold.

    python bench/evidence_sizes.py WORK_FOLDER [WORK_FOLDER ...] [--arm margin]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
from pathlib import Path

QUERY = """SELECT b.cycle, e.n, e.threshold IS NOT NULL FROM routing_batches b
           JOIN threshold_evidence e ON e.id = b.evidence_id
           WHERE e.estimator = 'clopper_pearson' GROUP BY b.cycle, e.id"""


def evidence_by_cycle(folder: Path, arm: str) -> dict[tuple[str, int], list[tuple[int, bool]]]:
    """(data set, cycle) -> one (n, certified) per evidence row the run's decisions of that cycle pointed at."""
    found: dict[tuple[str, int], list[tuple[int, bool]]] = {}
    for store in sorted(folder.glob(f"*-{arm}-*/sluice.db")):
        dataset = store.parent.name.split("-")[0]
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as conn:
            for cycle, n, certified in conn.execute(QUERY):
                found.setdefault((dataset, cycle), []).append((int(n), bool(certified)))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--arm", default="margin")
    args = parser.parse_args()
    for folder in args.folders:
        print(folder)
        for (dataset, cycle), rows in sorted(evidence_by_cycle(folder, args.arm).items()):
            print(f"{dataset} cycle {cycle}: median n {statistics.median(n for n, _ in rows)}, "
                  f"certified {sum(ok for _, ok in rows)} of {len(rows)}")


if __name__ == "__main__":
    main()
