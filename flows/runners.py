"""Where the flows' batch tasks run: threads in the flow's process (the default), or a Dask cluster.

Every flow that fans out over batches (score, calibrate, route, select) is declared with `BATCH_RUNNER`, which
Prefect duplicates at the start of each flow run; the duplicate is the runner the settings name *then*:

- ``SLUICE_TASK_RUNNER=threads`` (default): Prefect's thread pool;
- ``SLUICE_TASK_RUNNER=dask``: prefect-dask's `DaskTaskRunner`, on the scheduler at ``SLUICE_DASK_ADDRESS`` (a real
  cluster; its workers need this project installed, the SLUICE_* settings and a store they all reach: PostgreSQL),
  or, without an address, a `LocalCluster` of ``SLUICE_DASK_WORKERS`` single-threaded worker processes started for
  the run, listening on 127.0.0.1 only, no dashboard.

`sluice --task-runner dask [--dask-address tcp://host:8786]` sets the same for one command. A batch is sized so
that a task is seconds of work (20,000 items or 1,000 segments for routing): Prefect's and Dask's per-task
overhead (tens of milliseconds) stays a small share of it; `bench/bench_cycle_scale.py` measures it.
"""

from __future__ import annotations

from typing import Any

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from store.settings import get_settings

__all__ = ["BATCH_RUNNER", "SettingsTaskRunner", "configured_task_runner"]


def configured_task_runner() -> TaskRunner:
    """A fresh task runner as the current settings say (see the module docstring)."""
    settings = get_settings()
    if settings.task_runner == "threads":
        return ThreadPoolTaskRunner()
    from prefect_dask import DaskTaskRunner

    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster", cluster_kwargs={
        "n_workers": settings.dask_workers, "threads_per_worker": 1, "processes": True, "host": "127.0.0.1",
        "dashboard_address": None,
    })


class SettingsTaskRunner(TaskRunner):
    """Stands in the flow decorator and is never run itself: each flow run's duplicate is
    `configured_task_runner()`, so a settings change reaches the next run of an already imported flow."""

    def duplicate(self) -> TaskRunner:  # type: ignore[override]
        return configured_task_runner()

    def submit(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - duplicate() is what runs
        raise RuntimeError("SettingsTaskRunner only stands in a flow's declaration; its duplicate runs the tasks")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SettingsTaskRunner)

    __hash__ = object.__hash__


BATCH_RUNNER = SettingsTaskRunner()
