"""What the benchmarks share: medians, a table with ratios, a fresh Sluice home, one quiet Prefect API."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BENCH_HOME = Path(os.environ.get("SLUICE_BENCH_HOME", Path(tempfile.gettempdir()) / "sluice-bench"))


def configure_home() -> Path:
    """Sluice (and Prefect's temporary server) under the benchmark's own folder, before `flows` is imported.

    PREFECT_HOME stays between runs, so the temporary server's database is migrated only once.
    """
    BENCH_HOME.mkdir(parents=True, exist_ok=True)
    os.environ["SLUICE_HOME"] = str(BENCH_HOME)
    os.environ.setdefault("PREFECT_HOME", str(BENCH_HOME / "prefect"))
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    return BENCH_HOME


@contextmanager
def prefect_session() -> Iterator[None]:
    """One temporary Prefect API for the whole run, heartbeat off (as `sluice` commands run flows)."""
    from flows.cli import prefect_quietly

    with prefect_quietly():
        yield


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> str:
    return f"{min(values):.2f}–{max(values):.2f}"


def print_table(title: str, rows: Sequence[tuple[str, list[float], float | str | None]], reference: list[float],
                notes: Sequence[str] = ()) -> None:
    """Rows of (what, seconds per repeat, target ratio (a number means "≤", or the text to show) or None);
    ratios are medians over the reference's median."""
    from rich.console import Console
    from rich.table import Table

    ref = median(reference)
    table = Table(title=title, title_justify="left")
    for column in ("measurement", "median s", "min–max s", "repeats", "ratio vs reference", "target"):
        table.add_column(column, justify="left" if column == "measurement" else "right")
    for name, seconds, target in rows:
        ratio = median(seconds) / ref
        table.add_row(name, f"{median(seconds):.2f}", spread(seconds), str(len(seconds)), f"{ratio:.2f}×",
                      "" if target is None else target if isinstance(target, str) else f"≤ {target:g}×")
    console = Console(width=None if sys.stdout.isatty() else 140)
    console.print(table)
    for note in notes:
        console.print(note)


def verdict(name: str, ratio: float, target: float, *, strict: bool = False) -> bool:
    met = ratio < target if strict else ratio <= target
    print(f"{'PASS' if met else 'MISS'}: {name} ratio {ratio:.2f}× {'<' if strict else '≤'} {target:g}×")
    return met


def read_results(paths: list[Path]) -> list[dict]:
    """The JSON-lines records of the result files that exist (a resumable benchmark's runs so far)."""
    import json

    rows = []
    for path in paths:
        if path.exists():
            rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows
