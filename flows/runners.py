"""Where a flow's submitted tasks run: a thread pool (default) or a Dask cluster.

Scaling out is configuration, not code. A deployed flow is re-imported from its
entrypoint in a fresh process on the worker, so the choice cannot be baked in
when the module is imported: :class:`SelectedTaskRunner` reads it when a run
*starts*, from that process's environment (set per work pool or per deployment
as job-variable ``env``), or from explicit arguments given by
:func:`with_task_runner`. Once entered it steps aside: the flow engine gets the
concrete Prefect runner (``ThreadPoolTaskRunner`` or prefect-dask's
``DaskTaskRunner``) and uses it natively.

=============================  ===========  =============================================
variable                       default      meaning
=============================  ===========  =============================================
``STOCKTREND_TASK_RUNNER``     ``threads``  ``threads`` or ``dask``
``STOCKTREND_DASK_ADDRESS``    unset        scheduler of an existing cluster
                                            (``tcp://host:8786``); unset with ``dask``:
                                            a temporary ``LocalCluster`` per flow run
``STOCKTREND_DASK_WORKERS``    unset        workers of that temporary cluster (Dask
                                            picks from the CPU count when unset)
``STOCKTREND_DASK_PROCESSES``  ``true``     worker processes (``false``: threads in the
                                            flow's process, cheap to start)
=============================  ===========  =============================================

Outputs do not depend on the choice: every task writes idempotently keyed rows,
so only where and when the tasks run changes.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from prefect import Flow
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from pydantic_settings import BaseSettings, SettingsConfigDict

from stocktrend.errors import ConfigError

RunnerChoice = Literal["threads", "dask"]
CHOICES: tuple[str, ...] = ("threads", "dask")

F = TypeVar("F", bound=Flow)


class RunnerSettings(BaseSettings):
    """The task-runner settings, read from ``STOCKTREND_*`` when a flow run starts."""

    model_config = SettingsConfigDict(env_prefix="STOCKTREND_", extra="ignore")

    task_runner: str = "threads"
    dask_address: str | None = None
    dask_workers: int | None = None
    dask_processes: bool = True


def build_task_runner(
    choice: str = "threads",
    address: str | None = None,
    *,
    n_workers: int | None = None,
    processes: bool = True,
) -> TaskRunner[Any]:
    """A fresh, not yet started Prefect task runner for ``choice``.

    With ``dask`` and no ``address``, the runner creates a ``LocalCluster`` on
    first submit and closes it with the run; its dashboard takes a free port
    (logged), since two runs on one machine would collide on Dask's fixed 8787.
    """
    choice = choice.strip().lower()
    if choice == "threads":
        return ThreadPoolTaskRunner()
    if choice == "dask":
        from prefect_dask import DaskTaskRunner

        if address:
            return DaskTaskRunner(address=address)
        cluster: dict[str, Any] = {"processes": processes, "dashboard_address": ":0"}
        if n_workers is not None:
            cluster["n_workers"] = n_workers
        return DaskTaskRunner(cluster_kwargs=cluster)
    raise ConfigError(
        f"unknown task runner {choice!r}",
        hint=f"set STOCKTREND_TASK_RUNNER to one of: {', '.join(CHOICES)}",
    )


class SelectedTaskRunner(TaskRunner[Any]):
    """A placeholder that becomes the configured runner when a flow run enters it.

    Arguments left ``None`` are read from :class:`RunnerSettings` at entry.
    ``__enter__`` returns the concrete runner, which Prefect's flow engine then
    keeps in the run context for every ``submit``; this object only forwards
    the exit (and, defensively, submit/map) to it.
    """

    def __init__(
        self,
        choice: str | None = None,
        address: str | None = None,
        *,
        n_workers: int | None = None,
        processes: bool | None = None,
    ) -> None:
        super().__init__()
        self.choice = choice
        self.address = address
        self.n_workers = n_workers
        self.processes = processes
        self._inner: TaskRunner[Any] | None = None

    def resolve(self) -> TaskRunner[Any]:
        """The concrete runner these arguments (or else the environment) ask for."""
        settings = RunnerSettings()
        choice = self.choice or settings.task_runner
        address = self.address or settings.dask_address
        return build_task_runner(
            choice,
            address,
            n_workers=self.n_workers if self.n_workers is not None else settings.dask_workers,
            processes=self.processes if self.processes is not None else settings.dask_processes,
        )

    def duplicate(self) -> SelectedTaskRunner:
        return type(self)(
            self.choice, self.address, n_workers=self.n_workers, processes=self.processes
        )

    def __enter__(self) -> TaskRunner[Any]:  # type: ignore[override]
        inner = self.resolve()
        entered = inner.__enter__()
        self._inner = inner
        super().__enter__()
        return entered

    def __exit__(self, *exc_info: Any) -> None:
        inner, self._inner = self._inner, None
        try:
            if inner is not None:
                inner.__exit__(*exc_info)
        finally:
            super().__exit__(*exc_info)

    def _entered(self) -> TaskRunner[Any]:
        if self._inner is None:
            raise RuntimeError("The task runner must be started before submitting work.")
        return self._inner

    def submit(self, task: Any, parameters: dict[str, Any], wait_for=None, dependencies=None):
        return self._entered().submit(task, parameters, wait_for, dependencies)

    def map(self, task: Any, parameters: dict[str, Any], wait_for=None):
        return self._entered().map(task, parameters, wait_for)


def with_task_runner(
    flow: F,
    choice: str = "threads",
    address: str | None = None,
    *,
    n_workers: int | None = None,
    processes: bool = True,
) -> F:
    """A copy of ``flow`` whose runs use ``choice`` whatever the environment says."""
    if choice.strip().lower() not in CHOICES:
        build_task_runner(choice)  # raises the ConfigError with the hint
    runner = SelectedTaskRunner(choice, address, n_workers=n_workers, processes=processes)
    return flow.with_options(task_runner=runner)  # type: ignore[return-value]
