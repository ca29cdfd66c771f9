"""A flow run right after a flow of many tasks, on a command's temporary Prefect server: how often its creation
waits on the server's own database.

The temporary server's event persister and task-run recorder write its SQLite database from the events the
tasks sent; creating the next flow run then met a locked database now and then, the server answered 503, and
Prefect's client asked again 2 s later. `flows.prefect_server.QUIET_SERVICES` turns both off on the temporary
server; `--services on` runs the same loop with them on, for comparison.

    .venv/bin/python bench/bench_flow_stall.py --rounds 15 --tasks 100 [--services on]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import configure_home, median, prefect_session, spread  # noqa: E402

STALL_SECONDS = 1.0  # an empty flow run takes 0.06-0.1 s here; a retry after a 503 waits about 2 s


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="flows of tasks, each followed by an empty flow")
    parser.add_argument("--tasks", type=int, default=100, help="tasks in each flow of tasks")
    parser.add_argument("--services", choices=("off", "on"), default="off",
                        help="the temporary server's event persister and task-run recorder (off: as commands run)")
    args = parser.parse_args(argv)
    configure_home()
    from flows.prefect_server import QUIET_SERVICES

    if "PREFECT_API_URL" in os.environ:
        parser.error("unset PREFECT_API_URL: this measures the temporary server a command starts")
    if args.services == "on":
        os.environ.update({name: "true" for name in QUIET_SERVICES})
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    @task(cache_policy=NO_CACHE)
    def echo(value: int) -> int:
        return value

    @flow
    def many_tasks(n: int) -> int:
        return sum(future.result() for future in [echo.submit(i) for i in range(n)])

    @flow
    def empty() -> int:
        return 0

    seconds = []
    with prefect_session():
        for _ in range(args.rounds):
            many_tasks(args.tasks)
            start = time.perf_counter()
            empty()
            seconds.append(time.perf_counter() - start)
    stalls = sum(s > STALL_SECONDS for s in seconds)
    print(f"services {args.services}: the flow run after {args.tasks} tasks took over {STALL_SECONDS:g} s in "
          f"{stalls} of {args.rounds} rounds; median {median(seconds):.3f} s, {spread(seconds)} s")


if __name__ == "__main__":
    main()
