"""Run every Sluice speed benchmark at its default size (`--quick`: n=100,000); used by `make bench`."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("bench_ingest_route.py", "bench_score.py", "bench_calibration.py", "bench_routing.py")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="n=100,000 instead of each benchmark's default")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    extra = (["--n", "100000"] if args.quick else []) + ["--repeat", str(args.repeat)]
    failed = []
    for name in BENCHMARKS:  # one process each, so neither inherits the other's caches or Prefect server
        print(f"\n=== {name} {' '.join(extra)}", flush=True)
        if subprocess.run([sys.executable, str(HERE / name), *extra]).returncode != 0:
            failed.append(name)
    print(f"\n{'MISS' if failed else 'PASS'}: {len(BENCHMARKS) - len(failed)}/{len(BENCHMARKS)} benchmarks met "
          f"their targets{': missed ' + ', '.join(failed) if failed else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
