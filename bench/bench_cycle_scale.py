"""A cycle over N upstream-scored items in S segments (score, calibrate, route, select as real Prefect flow runs),
with the batch tasks on the thread pool and on a local Dask cluster of 2 worker processes, into PostgreSQL (the
store a cluster needs). Prints wall time per step, the peak resident memory of this process and of its three
largest child processes with what they run (Dask's workers, the Prefect server; sampled every 0.2 s over each
runner's cycle, ingest included), and Dask's time against the thread pool's measured in the same run.

    python bench/bench_cycle_scale.py [--n 1000000] [--segments 10000] [--repeat 1]

Each run ingests into a fresh database (ingest is timed apart: it runs no batch tasks) and seeds every 50th item
with its label (half held out) so that calibration and certification have unbiased labels; every segment of a few
hundred items pools into the default group as the policy says.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import configure_home, median, prefect_session, print_table  # noqa: E402

STEPS = ("score", "calibrate", "route", "select")


def write_items(path: Path, n: int, segments: int, *, seed: int = 0) -> tuple[Path, list[tuple[str, str]]]:
    """`n` items with calibrated upstream confidences over `segments` segments, and every 50th item's label."""
    import numpy as np

    rng = np.random.default_rng(seed)
    confidence = np.round(rng.uniform(0.6, 1.0, n), 4)
    right = rng.random(n) < confidence
    truth = [(f"i{i:07d}", "good") for i in range(0, n, 50)]
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as out:
            for i in range(n):
                out.write(json.dumps({"id": f"i{i:07d}", "segment": f"s{i % segments:05d}", "text": f"review {i}",
                                      "prediction": "good" if right[i] else "bad",
                                      "confidence": float(confidence[i])}) + "\n")
        tmp.replace(path)
    return path, truth


class PeakMemory:
    """The largest resident set of this process and of any one of its child processes (recursively: a Dask
    nanny's worker too), sampled every `every` seconds while the block runs. `getrusage` cannot say this: its
    children's figure covers only children already waited for, and a child started by fork reports at least the
    parent's peak at that moment."""

    def __init__(self, every: float = 0.2) -> None:
        self.every, self.own = every, 0
        self.children: dict[int, tuple[int, str]] = {}  # pid -> (peak bytes, what it runs)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        while True:
            self.own = max(self.own, me.memory_info().rss)
            for child in me.children(recursive=True):
                try:
                    rss = child.memory_info().rss
                    if rss > self.children.get(child.pid, (0, ""))[0]:
                        self.children[child.pid] = (rss, " ".join(" ".join(child.cmdline()).split())[:60])
                except psutil.Error:
                    pass  # ended between the listing and the reading
            if self._stop.wait(self.every):
                return

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def one_cycle(path: Path, truth: list[tuple[str, str]], url: str, runner: str) -> dict[str, float]:
    """Ingest (not a batch step), seed labels, then score, calibrate, route and select on `runner`."""
    from flows.calibrate import calibrate_flow
    from flows.common import engine_for
    from flows.ingest import ingest_flow, seed_labels
    from flows.route import route_flow
    from flows.score import score_flow
    from flows.select import select_flow
    from store.db import dispose_engines
    from store.settings import get_settings

    settings = get_settings().variant(database_url=url, task_runner=runner, dask_workers=2)
    dispose_engines()
    engine = engine_for(settings)
    started = time.perf_counter()
    ingested = ingest_flow(str(path), settings=settings)
    seconds = {"ingest": time.perf_counter() - started}
    seed_labels(engine, truth, holdout_share=0.5)
    steps: dict[str, Callable[[], Any]] = {
        "score": lambda: score_flow(settings=settings), "calibrate": lambda: calibrate_flow(settings=settings),
        "route": lambda: route_flow(cycle=1, settings=settings), "select": lambda: select_flow(cycle=1, settings=settings)}
    for name in STEPS:
        started = time.perf_counter()
        result = steps[name]()
        seconds[name] = time.perf_counter() - started
        if name == "route" and result["routed"] != ingested["accepted"] - len(truth):
            raise RuntimeError(f"route routed {result['routed']} of {ingested['accepted'] - len(truth)} items")
    seconds["cycle"] = sum(seconds[name] for name in STEPS)
    return seconds


def main(argv: list[str] | None = None) -> bool:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--segments", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    home = configure_home()
    path, truth = write_items(home / f"items-cycle-{args.n}-{args.segments}.jsonl", args.n, args.segments)
    from tests.postgres_fixture import create_database, drop_database, start_cluster, stop_cluster

    cluster = start_cluster()
    results: dict[str, list[dict[str, float]]] = {"threads": [], "dask": []}
    memory: dict[str, float] = {}
    try:
        with prefect_session():
            for attempt in range(args.repeat):
                for runner in ("threads", "dask"):  # the thread pool first: this process's peak is its own
                    name = f"sluice_cycle_{runner}_{attempt}"
                    drop_database(cluster, name)
                    with PeakMemory() as peak:
                        results[runner].append(one_cycle(path, truth, create_database(cluster, name), runner))
                    memory[f"{runner}: this process, peak MB"] = max(memory.get(f"{runner}: this process, peak MB", 0),
                                                                     peak.own / 2**20)
                    for rank, (rss, command) in enumerate(sorted(peak.children.values(), reverse=True)[:3], 1):
                        memory[f"{runner}: child process {rank}, peak MB ({command})"] = rss / 2**20
                    from store.db import dispose_engines

                    dispose_engines()
                    drop_database(cluster, name)
                    print(f"repeat {attempt + 1} {runner}: "
                          + ", ".join(f"{k} {v:.1f} s" for k, v in results[runner][-1].items()), flush=True)
    finally:
        stop_cluster(cluster)
    reference = [r["cycle"] for r in results["threads"]]
    rows = []
    for runner in ("threads", "dask"):
        for step in ("ingest", *STEPS, "cycle"):
            rows.append((f"{runner}: {step}", [r[step] for r in results[runner]], None))
    print_table(f"A cycle over {args.n:,} items in {args.segments:,} segments (PostgreSQL; ingest apart)", rows,
                reference, notes=[f"ratio = median / the thread pool's cycle median; {args.repeat} repeat(s)",
                                  *(f"{k}: {v:,.0f}" for k, v in memory.items())])
    print(f"dask / threads, cycle: {median([r['cycle'] for r in results['dask']]) / median(reference):.2f}")
    return True


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
