"""Where the flows' batch tasks run: threads in the flow's process (the default), or a Dask cluster.

Every flow that fans out over batches (score, calibrate, route, select) is declared with `BATCH_RUNNER`, which
Prefect duplicates at the start of each flow run; the duplicate runs the batch tasks where the flow run's
`settings` parameter says (the environment's settings when it is None), chosen at the first task it is given:

- ``task_runner="threads"`` (default; ``SLUICE_TASK_RUNNER``): Prefect's thread pool, ``batch_threads`` tasks at
  once (``SLUICE_BATCH_THREADS``; unset, 1 on a SQLite store and 4 on a database server: see
  ``store.settings.default_batch_threads``), each using one connection of the store's pool at a time: the pool
  holds that many and the flow's own (``store.db.pool_size_for``), so no task waits for a connection;
- ``task_runner="dask"``: prefect-dask's `DaskTaskRunner`, on the scheduler at ``dask_address`` (a real cluster; its
  workers need this project installed and a store they all reach: PostgreSQL), or, without an address, a
  `LocalCluster` of ``dask_workers`` single-threaded worker processes listening on 127.0.0.1 only, no dashboard.
  The local cluster is started once per process and kept for the next flows (its workers' imports cost seconds
  each start); it closes when the process exits, or when the worker count changes. Batch tasks are given the
  flow's settings as an argument, so a worker reads no settings of its own and one cluster serves any store.

`sluice --task-runner dask [--dask-address tcp://host:8786]` sets the same for one command. A batch is sized so
that a task is seconds of work (20,000 items or 1,000 segments for routing): Prefect's and Dask's per-task
overhead (tens of milliseconds) stays a small share of it; `bench/bench_cycle_scale.py` measures it.
"""

from __future__ import annotations

import atexit
from contextlib import ExitStack
from types import TracebackType
from typing import Any

from prefect.context import FlowRunContext
from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from store.settings import SluiceSettings, settings_or_environment

__all__ = [
    "BATCH_RUNNER", "FlowSettingsRunner", "SettingsTaskRunner", "close_local_cluster", "configured_task_runner",
    "local_cluster_address",
]


def configured_task_runner(settings: SluiceSettings | None = None) -> TaskRunner:
    """A fresh task runner as `settings` (the environment's when None) say (see the module docstring)."""
    settings = settings_or_environment(settings)
    if settings.task_runner == "threads":
        # bounded: Prefect's default is a thread per task submitted (hundreds for a large store), all queueing
        # for the few connections of the store's pool; `engine_for` sizes the pool to this many tasks
        return ThreadPoolTaskRunner(max_workers=settings.resolved_batch_threads)
    from distributed import get_worker
    from prefect_dask import DaskTaskRunner

    try:
        get_worker()  # inside a Dask worker, Prefect re-enters the flow's runner for a task's context: its client
        return DaskTaskRunner()  # is created only if that task submits tasks, so it must not start a cluster
    except ValueError:
        pass
    return DaskTaskRunner(address=settings.dask_address or local_cluster_address(settings.dask_workers))


_local: dict[int, Any] = {}


def local_cluster_address(workers: int) -> str:
    """The scheduler address of this process's local Dask cluster of `workers` workers, started on first use."""
    if workers not in _local:
        close_local_cluster()
        from distributed import LocalCluster

        _local[workers] = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None)
    return _local[workers].scheduler_address


def close_local_cluster() -> None:
    """Stop this process's local Dask cluster, if one runs (its worker processes with it)."""
    while _local:
        _, cluster = _local.popitem()
        cluster.close()


atexit.register(close_local_cluster)


class SettingsTaskRunner(TaskRunner[PrefectFuture[Any]]):
    """Stands in the flow decorator and is never run itself: each flow run's duplicate is a `FlowSettingsRunner`."""

    def duplicate(self) -> TaskRunner[PrefectFuture[Any]]:  # type: ignore[override]
        return FlowSettingsRunner()

    def submit(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - duplicate() is what runs
        raise RuntimeError("SettingsTaskRunner only stands in a flow's declaration; its duplicate runs the tasks")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SettingsTaskRunner)

    __hash__ = object.__hash__


BATCH_RUNNER = SettingsTaskRunner()


class FlowSettingsRunner(TaskRunner[PrefectFuture[Any]]):
    """One flow run's task runner: at the first task submitted, the runner its `settings` parameter names
    (`configured_task_runner`), started then and used for the rest of the run. Prefect enters a flow's runner
    before the run's parameters are in its context, hence the wait; a run that submits nothing starts nothing
    (nor does the copy Prefect enters on a Dask worker for a task's context)."""

    def __init__(self) -> None:
        super().__init__()
        self._runner: TaskRunner | None = None
        self._stack = ExitStack()

    def duplicate(self) -> FlowSettingsRunner:
        return FlowSettingsRunner()

    def _flow_settings(self) -> SluiceSettings | None:
        context = FlowRunContext.get()
        if context is None or context.task_runner is not self:
            return None
        assert context.parameters is not None  # a flow run's context always holds its parameters
        value = context.parameters.get("settings")
        return value if isinstance(value, SluiceSettings) else None

    def runner(self) -> TaskRunner:
        """The runner the flow run's settings name, started on first use."""
        if not self._started:
            raise RuntimeError("The task runner must be started before submitting work.")
        if self._runner is None:
            self._runner = self._stack.enter_context(configured_task_runner(self._flow_settings()))
        return self._runner

    def submit(self, task: Any, parameters: Any, wait_for: Any = None, dependencies: Any = None) -> Any:
        return self.runner().submit(task, parameters, wait_for=wait_for, dependencies=dependencies)

    def map(self, task: Any, parameters: Any, wait_for: Any = None) -> Any:
        return self.runner().map(task, parameters, wait_for=wait_for)

    def cancel_all(self) -> None:
        if self._runner is not None and hasattr(self._runner, "cancel_all"):
            self._runner.cancel_all()

    def __exit__(self, exc_type: type[BaseException] | None, exc_value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        try:
            self._stack.__exit__(exc_type, exc_value, traceback)
        finally:
            self._runner = None
            super().__exit__(exc_type, exc_value, traceback)
