"""Where the flows' batch tasks run: threads in the flow's process (the default), or a Dask cluster.

Every flow that fans out over batches (score, calibrate, route, select) is declared with `BATCH_RUNNER`, which
Prefect duplicates at the start of each flow run; the duplicate is the runner the settings name *then*:

- ``SLUICE_TASK_RUNNER=threads`` (default): Prefect's thread pool;
- ``SLUICE_TASK_RUNNER=dask``: prefect-dask's `DaskTaskRunner`, on the scheduler at ``SLUICE_DASK_ADDRESS`` (a real
  cluster; its workers need this project installed, the SLUICE_* settings and a store they all reach: PostgreSQL),
  or, without an address, a `LocalCluster` of ``SLUICE_DASK_WORKERS`` single-threaded worker processes listening
  on 127.0.0.1 only, no dashboard. The local cluster is started once per process and store and kept for the next
  flows (its workers' imports cost seconds each start); it closes when the process exits, or when the store or
  the worker count changes (workers read the settings they were started with).

`sluice --task-runner dask [--dask-address tcp://host:8786]` sets the same for one command. A batch is sized so
that a task is seconds of work (20,000 items or 1,000 segments for routing): Prefect's and Dask's per-task
overhead (tens of milliseconds) stays a small share of it; `bench/bench_cycle_scale.py` measures it.
"""

from __future__ import annotations

import atexit
from typing import Any

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from store.settings import get_settings

__all__ = [
    "BATCH_RUNNER", "SettingsTaskRunner", "close_local_cluster", "configured_task_runner", "local_cluster_address",
]


def configured_task_runner() -> TaskRunner:
    """A fresh task runner as the current settings say (see the module docstring)."""
    settings = get_settings()
    if settings.task_runner == "threads":
        return ThreadPoolTaskRunner()
    from distributed import get_worker
    from prefect_dask import DaskTaskRunner

    try:
        get_worker()  # inside a Dask worker, Prefect re-enters the flow's runner for a task's context: its client
        return DaskTaskRunner()  # is created only if that task submits tasks, so it must not start a cluster
    except ValueError:
        pass
    return DaskTaskRunner(address=settings.dask_address or local_cluster_address())


_local: dict[tuple[str, str, int], Any] = {}


def local_cluster_address() -> str:
    """The scheduler address of this process's local Dask cluster for the current store, started on first use."""
    settings = get_settings()
    key = (settings.resolved_database_url, str(settings.resolved_home), settings.dask_workers)
    if key not in _local:
        close_local_cluster()
        from distributed import LocalCluster

        _local[key] = LocalCluster(n_workers=settings.dask_workers, threads_per_worker=1, processes=True,
                                   host="127.0.0.1", dashboard_address=None)
    return _local[key].scheduler_address


def close_local_cluster() -> None:
    """Stop this process's local Dask cluster, if one runs (its worker processes with it)."""
    while _local:
        _, cluster = _local.popitem()
        cluster.close()


atexit.register(close_local_cluster)


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
