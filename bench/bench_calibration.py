"""Top-label ECE and reliability curve (15 uniform bins): Sluice's `calibration` against (a) a minimal numpy
searchsorted + bincount implementation written here, (b) netcal's `ECE` (when installed) and (c)
scikit-learn's `calibration_curve`, on N binary confidences and N/10 x 10 class probabilities, same run.

    python bench/bench_calibration.py [--n 10000000] [--repeat 3]

Every timing includes the reduction to top-label confidence and correctness, so all rows do the same work.
Targets: ours within 1.5x of (a), and at least 10x faster than netcal.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from calibration import expected_calibration_error, reliability_curve  # noqa: E402

N_BINS = 15
TARGET_VS_MINIMAL = 1.5
TARGET_VS_NETCAL = 10.0


def binary_case(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y_prob = rng.random(n)
    return (rng.random(n) < y_prob**1.5).astype(np.int64), y_prob


def multiclass_case(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, (n, k))
    logits -= logits.max(axis=1, keepdims=True)
    y_prob = np.exp(logits)
    y_prob /= y_prob.sum(axis=1, keepdims=True)
    return rng.integers(0, k, n), y_prob


def top_label_hits(y_true: np.ndarray, y_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the ECE bins: a (n,) input is P(y = 1) against y == 1 (netcal's and scikit-learn's reading), a (n, k)
    input the top label against whether it is right."""
    if y_prob.ndim == 1:
        return y_prob, y_true == 1
    return y_prob.max(axis=1), y_prob.argmax(axis=1) == y_true


def minimal_ece(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """(a): netcal's bin rule with searchsorted, then three bincounts."""
    confidence, hits = top_label_hits(y_true, y_prob)
    index = np.clip(np.searchsorted(np.linspace(0, 1, N_BINS + 1), confidence, side="right") - 1, 0, N_BINS - 1)
    conf_sum = np.bincount(index, weights=confidence, minlength=N_BINS)
    hit_sum = np.bincount(index, weights=hits, minlength=N_BINS)
    count = np.bincount(index, minlength=N_BINS)
    return float(np.abs(hit_sum - conf_sum).sum() / count.sum())


def netcal_ece(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """(b): netcal, given the same arrays (it reads a (n,) input as P(y=1), as Sluice does)."""
    from netcal.metrics import ECE

    return float(ECE(bins=N_BINS).measure(y_prob, y_true))


def sklearn_curve(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    """(c): the curve only (it returns no counts, and bins edge values to the left, so it is no ECE)."""
    from sklearn.calibration import calibration_curve

    confidence, hits = top_label_hits(y_true, y_prob)
    accuracy, _ = calibration_curve(hits, confidence, n_bins=N_BINS, strategy="uniform")
    return float(accuracy.shape[0])


def ours_ece(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    return expected_calibration_error(y_true, y_prob, n_bins=N_BINS)


def ours_curve(y_true: np.ndarray, y_prob: np.ndarray) -> float:
    return reliability_curve(y_true, y_prob, n_bins=N_BINS).expected_calibration_error


def median_seconds(run: Callable[[], float], repeat: int) -> tuple[float, float, float]:
    """Median wall seconds, median CPU seconds of this process (steadier on a shared machine), last value."""
    value, wall, cpu = 0.0, [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        value = run()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu), value


def netcal_available() -> bool:
    try:
        import netcal.metrics  # noqa: F401
    except ImportError:
        return False
    return True


def bench_case(name: str, y_true: np.ndarray, y_prob: np.ndarray, repeat: int, with_netcal: bool) -> list[dict]:
    rows = []
    runners = [("(a) minimal numpy", minimal_ece), ("ours: expected_calibration_error", ours_ece),
               ("ours: reliability_curve", ours_curve), ("(b) netcal ECE.measure", netcal_ece),
               ("(c) sklearn calibration_curve", sklearn_curve)]
    for label, fn in runners:
        if fn is netcal_ece and not with_netcal:
            rows.append({"case": name, "impl": label, "seconds": None, "cpu": None, "value": None})
            continue
        fn(y_true[:1000], y_prob[:1000])  # warm-up: imports and first-call costs stay out of the timing
        seconds, cpu, value = median_seconds(lambda fn=fn: fn(y_true, y_prob), repeat)
        rows.append({"case": name, "impl": label, "seconds": seconds, "cpu": cpu, "value": value})
    return rows


def print_table(rows: list[dict]) -> None:
    reference = {r["case"]: r for r in rows if r["impl"].startswith("(a)")}
    ours = {r["case"]: r for r in rows if r["impl"] == "ours: expected_calibration_error"}
    print("| case | implementation | wall s | x (a) wall | CPU s | x (a) CPU | netcal / ours (wall, CPU) | ECE |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["seconds"] is None:
            print(f"| {r['case']} | {r['impl']} | netcal not installed | | | | | |")
            continue
        ref, mine = reference[r["case"]], ours[r["case"]]
        vs_ours = (f"{r['seconds'] / mine['seconds']:.1f}x, {r['cpu'] / mine['cpu']:.1f}x"
                   if r["impl"].startswith("(b)") else "")
        value = "" if r["impl"].startswith("(c)") else f"{r['value']:.12f}"
        print(f"| {r['case']} | {r['impl']} | {r['seconds']:.4f} | {r['seconds'] / ref['seconds']:.2f} | "
              f"{r['cpu']:.4f} | {r['cpu'] / ref['cpu']:.2f} | {vs_ours} | {value} |")


def verdict(rows: list[dict]) -> bool:
    ok = True
    for case in dict.fromkeys(r["case"] for r in rows):
        by = {r["impl"]: r["seconds"] for r in rows if r["case"] == case}
        minimal = by["(a) minimal numpy"]
        for impl in ("ours: expected_calibration_error", "ours: reliability_curve"):
            meets = by[impl] <= TARGET_VS_MINIMAL * minimal
            ok &= meets
            print(f"{case}: {impl} {by[impl] / minimal:.2f}x of (a) (target <= {TARGET_VS_MINIMAL}): "
                  f"{'PASS' if meets else 'MISS'}")
        if by["(b) netcal ECE.measure"] is not None:
            speedup = by["(b) netcal ECE.measure"] / by["ours: expected_calibration_error"]
            meets = speedup >= TARGET_VS_NETCAL
            ok &= meets
            print(f"{case}: netcal / ours = {speedup:.1f}x (target >= {TARGET_VS_NETCAL}): "
                  f"{'PASS' if meets else 'MISS'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000_000, help="binary samples; multiclass uses n/10 x 10")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with_netcal = netcal_available()
    print(f"python {platform.python_version()}, numpy {np.__version__}, netcal "
          f"{'installed' if with_netcal else 'not installed'}, repeat {args.repeat}, {N_BINS} bins")
    rows = bench_case(f"binary {args.n:,}", *binary_case(args.n, seed=0), args.repeat, with_netcal)
    rows += bench_case(f"{args.n // 10:,} x 10", *multiclass_case(args.n // 10, 10, seed=1), args.repeat,
                       with_netcal)
    print_table(rows)
    return 0 if verdict(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
