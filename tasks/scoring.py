"""Prefect tasks for scoring: thin wrappers that move files between `stocktrend` calls.

Every task takes and returns paths and small dicts (never DataFrames), so
Prefect's result store and UI hold summaries, not data. Source I/O is retried
with exponential backoff and jitter; storage writes are retried too, because
a database restart or a lock timeout is worth a second try.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.tasks import exponential_backoff

from stocktrend import calendar
from stocktrend.checkpoint import load_checkpoint
from stocktrend.config import get_settings
from stocktrend.data import load_prices_with_report
from stocktrend.errors import SourceUnavailableError, StorageError
from stocktrend.inference import engine_summary
from stocktrend.scoring import build_scoring_windows, score_windows
from stocktrend.storage import PredictionStore, RunRecord, parquet_store
from stocktrend.validation import validate_prices
from stocktrend.workdir import load_array, load_frame, save_array, save_frame
from tasks.engines import open_engine, shared_engine


def _retry_on(*kinds: type[BaseException]):
    """A Prefect retry condition: retry only for these exception types."""

    def condition(_task, _task_run, state) -> bool:
        try:
            state.result()
        except kinds:
            return True
        except Exception:
            return False
        return False

    return condition


@task(name="resolve-session")
def resolve_session(as_of: str | None, scheduled: datetime | None = None) -> dict[str, Any]:
    """The session to score: ``as_of`` if given, else the last one completed at schedule time."""
    if as_of:
        day = pd.Timestamp(as_of).normalize()
        if not calendar.is_session(day):
            return {
                "session": None,
                "message": f"{day.date()} is not an NYSE session; nothing to do",
            }
        return {"session": str(day.date()), "message": "as requested"}
    moment = scheduled or datetime.now(UTC)
    day = calendar.last_completed_session(moment)
    return {
        "session": str(day.date()),
        "message": f"last session completed at {moment.isoformat()}",
    }


@task(
    name="load-prices",
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=5),
    retry_jitter_factor=0.5,
    retry_condition_fn=_retry_on(SourceUnavailableError, TimeoutError, ConnectionError),
)
def load_prices_task(
    source: str, tickers: list[str], start: str, end: str, workdir: str
) -> dict[str, Any]:
    prices, report = load_prices_with_report(source, tickers, start, end)
    path = save_frame(prices, Path(workdir) / "prices.parquet")
    get_run_logger().info(report.summary())
    return {"path": path, "rows": len(prices), "failed": report.failed, "stale": report.stale}


@task(name="validate-prices")
def validate_task(prices_path: str, workdir: str) -> dict[str, Any]:
    clean, report = validate_prices(load_frame(prices_path))
    path = save_frame(clean, Path(workdir) / "prices_valid.parquet")
    logger = get_run_logger()
    for issue in report.warnings:
        logger.warning(issue.message)
    return {
        "path": path,
        "dropped": report.dropped_tickers,
        "warnings": [i.message for i in report.warnings],
    }


@task(name="build-windows")
def build_windows_task(
    prices_path: str,
    sessions: list[str],
    tickers: list[str],
    benchmark: str,
    seq_len: int,
    workdir: str,
    tag: str = "",
) -> dict[str, Any]:
    X, index, skipped = build_scoring_windows(
        load_frame(prices_path),
        pd.DatetimeIndex(sessions),
        tickers,
        benchmark=benchmark,
        seq_len=seq_len,
    )
    base = Path(workdir)
    return {
        "X": save_array(X, base / f"windows{tag}.npy"),
        "index": save_frame(index, base / f"windows_index{tag}.parquet"),
        "n_windows": len(index),
        "skipped": skipped,
    }


@task(name="prepare-engine")
def prepare_engine_task(model_path: str, engine: str, batch_size: int | None) -> dict[str, Any]:
    """Settle the engine once per run, before any scoring task starts.

    ``auto`` measures every engine the first time it meets a checkpoint on a
    machine (then reuses the cached choice), and the ONNX engines export and
    quantise the checkpoint on first use; doing both here means parallel
    scoring tasks never race to measure or export. Returns the concrete engine
    name the scoring tasks then load, with the figures behind the choice.
    """
    with open_engine(load_checkpoint(model_path), engine, batch_size) as chosen:
        summary = engine_summary(chosen)
    get_run_logger().info(f"engine {engine} -> {summary['engine']}: {summary['description']}")
    return summary


@task(name="score-windows")
def score_task(
    windows: dict[str, Any],
    model_path: str,
    engine: str,
    batch_size: int | None,
    flow_run_id: str | None,
    workdir: str,
    tag: str = "",
) -> dict[str, Any]:
    bundle, scorer = shared_engine(model_path, engine, batch_size)
    predictions = score_windows(
        bundle,
        load_array(windows["X"]),
        load_frame(windows["index"]),
        engine=scorer,
        flow_run_id=flow_run_id,
    )
    return {
        "path": save_frame(predictions, Path(workdir) / f"predictions{tag}.parquet"),
        "n": len(predictions),
        "model_version": bundle.model_version,
        "model_sha256": bundle.sha256,
    }


@task(
    name="write-sql",
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=3),
    retry_condition_fn=_retry_on(StorageError),
)
def write_sql_task(
    predictions_path: str, mode: str, day: str | None = None, model_version: str | None = None
) -> dict[str, Any]:
    """Upsert (backfill) or replace a whole day (daily scoring), in one transaction."""
    store = PredictionStore(get_settings().resolved_database_url)
    frame = load_frame(predictions_path)
    if mode == "replace_day":
        store.replace_day(pd.Timestamp(day), model_version, frame)
    else:
        store.upsert_predictions(frame)
    return {"rows": len(frame)}


@task(name="write-parquet", retries=2, retry_delay_seconds=2)
def write_parquet_task(
    predictions_path: str, mode: str, day: str | None = None, model_version: str | None = None
) -> dict[str, Any]:
    root = get_settings().predictions_dir
    frame = load_frame(predictions_path)
    if mode == "replace_day":
        parquet_store.replace_day(root, pd.Timestamp(day), model_version, frame)
    else:
        parquet_store.write_predictions(root, frame)
    return {"rows": len(frame), "root": str(root)}


@task(
    name="record-run", retries=2, retry_delay_seconds=3, retry_condition_fn=_retry_on(StorageError)
)
def record_run_task(run: dict[str, Any]) -> None:
    """Upsert the run's row in the `runs` table (started, then finished with counts)."""
    PredictionStore(get_settings().resolved_database_url).record_run(RunRecord(**run))
