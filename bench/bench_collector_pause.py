"""What pausing Python's cycle collector around bulk steps (`store.bulk.collector_paused`) saves: ingest of N items
into a fresh SQLite file, and one route flow over them, each run alternately with the pause and with the collector
left on, in one process, so that both arms share the machine's state (the reference is the arm without the pause).

    python bench/bench_collector_pause.py [--n 200000] [--repeat 4]
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import types
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import configure_home, prefect_session, print_table, timed  # noqa: E402
from bench_ingest_route import items_file, remove_database, write_items  # noqa: E402

# the arm without the pause: the same code, with the collector's switch made a no-op
COLLECTOR_ON = types.SimpleNamespace(isenabled=gc.isenabled, disable=lambda: None, enable=lambda: None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=4, help="runs of each arm, alternating")
    args = parser.parse_args(argv)
    home = configure_home()
    path = write_items(items_file(home, args.n), args.n)
    import store.bulk as bulk
    from flows.route import route_flow
    from sqlalchemy import create_engine
    from store.db import migrate
    from store.ingest import ingest_file
    from store.policies import active_policy
    from store.settings import get_settings

    ingested, routing = home / "collector-ingest.db", home / "collector-route.db"
    seconds: dict[tuple[str, str], list[float]] = {}
    with prefect_session():
        for attempt in range(2 * args.repeat):
            arm = "paused" if attempt % 2 else "collector on"
            bulk.gc = gc if arm == "paused" else COLLECTOR_ON  # type: ignore[attr-defined]
            remove_database(ingested)
            migrate(f"sqlite:///{ingested}")
            engine = create_engine(f"sqlite:///{ingested}")
            active_policy(engine)
            took, summary = timed(lambda: ingest_file(engine, path))
            engine.dispose()
            if summary.accepted != args.n:
                raise RuntimeError(f"ingest accepted {summary.accepted} of {args.n}")
            seconds.setdefault(("ingest", arm), []).append(took)
            remove_database(routing)
            shutil.copy(ingested, routing)
            settings = get_settings().variant(database_url=f"sqlite:///{routing}")
            took, routed = timed(lambda: route_flow(settings=settings))
            if routed["routed"] != args.n:
                raise RuntimeError(f"route routed {routed['routed']} of {args.n}")
            seconds.setdefault(("route", arm), []).append(took)
    bulk.gc = gc  # type: ignore[attr-defined]
    for step in ("ingest", "route"):
        print_table(f"{step} of {args.n:,} items on SQLite, with and without the pause", [
            (f"{step}, collector left on (reference)", seconds[(step, "collector on")], None),
            (f"{step}, collector paused in bulk steps", seconds[(step, "paused")], None),
        ], seconds[(step, "collector on")], notes=[
            f"Reference: the same {step} with the collector left on; the arms alternate in one process, "
            f"{args.repeat} runs each; ratio = median with the pause / median without."])
    remove_database(ingested)
    remove_database(routing)


if __name__ == "__main__":
    main()
