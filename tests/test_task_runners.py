"""Scale-out: the same flows on a 2-worker Dask LocalCluster write exactly what threads write.

Each run gets its own STOCKTREND_HOME, so the SQLite store and the Parquet
dataset of the threads run and of the Dask run are compared row by row.
Worker *processes* are used on purpose: they are what a real cluster does
(tasks and their arguments pickled, settings carried by the environment), and
a thread-only cluster would hide a task that only works in the flow's process.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from distributed import LocalCluster
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.testing.utilities import prefect_test_harness

from flows.backfill import backfill
from flows.daily_scoring import daily_scoring
from flows.runners import SelectedTaskRunner, build_task_runner, with_task_runner
from stocktrend import calendar
from stocktrend.config import get_settings
from stocktrend.errors import ConfigError
from stocktrend.storage import PredictionStore, parquet_store

KEY = ["as_of_date", "ticker", "model_version"]
VARYING = ["created_at", "flow_run_id"]
"""Columns that name the run that wrote a row, so they differ between any two runs."""


@pytest.fixture(scope="module", autouse=True)
def harness():
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with prefect_test_harness(server_startup_timeout=120):
        yield


def _stores() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Both sinks of the current STOCKTREND_HOME, minus run-identity columns, sorted by key."""
    settings = get_settings()
    sql = PredictionStore(settings.resolved_database_url).read_predictions()
    lake = parquet_store.read_predictions(settings.predictions_dir)
    return tuple(  # type: ignore[return-value]
        frame.drop(columns=VARYING).sort_values(KEY, ignore_index=True) for frame in (sql, lake)
    )


def _run_in_home(
    home: Path, monkeypatch: pytest.MonkeyPatch, run: Callable[[], object]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    monkeypatch.setenv("STOCKTREND_HOME", str(home))
    run()
    return _stores()


def test_dask_cluster_writes_exactly_what_threads_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Backfill (4 chunks fanned out) then a daily run, once per runner; every row compared.

    The Dask runs connect to an existing cluster by address, as production does.
    Its workers are started after STOCKTREND_HOME points at the Dask run's home:
    workers read their settings from their own environment, like real ones.
    """
    args = {"start": "2013-01-02", "end": "2013-02-28", "universe": "AAPL,GOOG,IBM,MSFT"}

    def scenario(flow_backfill, flow_daily) -> Callable[[], None]:
        def run() -> None:
            summary = flow_backfill(**args, ticker_batch=2)
            assert summary["n_chunks"] == 4 and not summary["failed"]
            assert flow_daily(as_of="2013-03-01", universe="AAPL,IBM,MSFT")["n_scored"] == 3

        return run

    threads = _run_in_home(tmp_path / "threads", monkeypatch, scenario(backfill, daily_scoring))

    def on_cluster() -> None:
        with LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster:
            address = cluster.scheduler_address
            scenario(
                with_task_runner(backfill, "dask", address),
                with_task_runner(daily_scoring, "dask", address),
            )()

    dask = _run_in_home(tmp_path / "dask", monkeypatch, on_cluster)
    for by_threads, by_dask in zip(threads, dask, strict=True):
        assert len(by_threads) == 4 * len(calendar.sessions(args["start"], args["end"])) + 3
        pd.testing.assert_frame_equal(by_threads, by_dask, check_exact=True)


def test_temporary_local_cluster_per_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``dask`` without an address: a LocalCluster made for the run and closed with it."""
    daily = with_task_runner(daily_scoring, "dask", n_workers=2, processes=False)
    by_dask = _run_in_home(tmp_path / "dask", monkeypatch, lambda: daily(as_of="2013-03-01"))
    threads = _run_in_home(
        tmp_path / "threads", monkeypatch, lambda: daily_scoring(as_of="2013-03-01")
    )
    for by_threads, by_temp in zip(threads, by_dask, strict=True):
        assert len(by_threads) == 4
        pd.testing.assert_frame_equal(by_threads, by_temp, check_exact=True)


def test_runner_is_chosen_from_the_environment_when_a_run_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for flow in (daily_scoring, backfill):  # the deployed flows choose per run
        assert isinstance(flow.task_runner, SelectedTaskRunner)
    monkeypatch.delenv("STOCKTREND_TASK_RUNNER", raising=False)
    assert isinstance(SelectedTaskRunner().resolve(), ThreadPoolTaskRunner)
    monkeypatch.setenv("STOCKTREND_TASK_RUNNER", "dask")
    monkeypatch.setenv("STOCKTREND_DASK_ADDRESS", "tcp://10.0.0.5:8786")
    chosen = SelectedTaskRunner().resolve()
    assert type(chosen).__name__ == "DaskTaskRunner" and chosen.address == "tcp://10.0.0.5:8786"
    explicit = SelectedTaskRunner("threads").resolve()  # arguments beat the environment
    assert isinstance(explicit, ThreadPoolTaskRunner)


def test_unknown_runner_is_a_clear_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown task runner 'ray'"):
        build_task_runner("ray")
    with pytest.raises(ConfigError, match="STOCKTREND_TASK_RUNNER"):
        with_task_runner(daily_scoring, "ray")
