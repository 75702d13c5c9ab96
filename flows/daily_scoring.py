"""`daily-scoring`: score one NYSE session for a universe and write both prediction stores.

Scheduled weekdays after the close; holidays end Completed with a message.
Re-running a session replaces that session's rows for the model (both sinks),
so a retry or a manual re-run is always safe.
Submitted tasks (the two sink writes) run on the task runner chosen by
`flows.runners` (threads by default, or Dask).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed

from flows.hooks import record_failure
from flows.runners import SelectedTaskRunner
from stocktrend.config import EngineName, get_settings
from stocktrend.models import resolve_model
from stocktrend.scoring import (
    history_start,
    parse_universe,
    require_benchmark,
    split_valid_tickers,
)
from stocktrend.workdir import remove_run_dir, run_dir
from tasks.artifacts import publish_artifacts
from tasks.scoring import (
    build_windows_task,
    load_prices_task,
    prepare_engine_task,
    record_run_task,
    resolve_session,
    score_task,
    validate_task,
    write_parquet_task,
    write_sql_task,
)

DEFAULT_UNIVERSE = ["AAPL", "GOOG", "IBM", "MSFT"]
"""The bundled sample's stocks (its indexes are the benchmark and a second market series)."""


def _scheduled_time() -> datetime | None:
    scheduled = flow_run.scheduled_start_time
    return None if scheduled is None else datetime.fromisoformat(str(scheduled))


@flow(
    name="daily-scoring",
    log_prints=True,
    task_runner=SelectedTaskRunner(),
    on_failure=[record_failure],
    on_crashed=[record_failure],
)
def daily_scoring(
    as_of: str | None = None,
    universe: str | list[str] | None = None,
    source: str | None = None,
    model: str | None = None,
    batch_size: int | None = None,
    engine: EngineName | None = None,
) -> dict[str, Any]:
    """Score `as_of` (default: last session completed at the scheduled time) for `universe`.

    `engine` (default `STOCKTREND_ENGINE`, itself `reference`) picks the inference
    engine; `auto` uses the fastest one that passes parity on the worker's CPU.
    """
    logger = get_run_logger()
    settings = get_settings()
    source = source or settings.source
    resolved = resolve_session(as_of, _scheduled_time())
    if resolved["session"] is None:
        logger.info(resolved["message"])
        return Completed(message=resolved["message"])
    day = resolved["session"]

    requested = parse_universe(universe, DEFAULT_UNIVERSE)
    tickers, malformed = split_valid_tickers(requested)
    model_path = str(resolve_model(model or settings.model, settings))
    batch_size = batch_size or settings.batch_size
    run_id = str(flow_run.id) if flow_run.id else None
    workdir = str(run_dir(settings.home, run_id))
    run = {
        "flow_run_id": run_id or workdir.rsplit("/", 1)[-1],
        "flow_name": "daily-scoring",
        "parameters": {
            "as_of": day,
            "universe": requested,
            "source": source,
            "model": model_path,
            "engine": engine or settings.engine,
        },
        "started_at": datetime.now(UTC),
        "status": "running",
    }
    record_run_task(run)

    start = str(history_start(pd.Timestamp(day)).date())
    wanted = sorted(set(tickers) | {settings.benchmark})
    loaded = load_prices_task(source, wanted, start, day, workdir)
    valid = validate_task(loaded["path"], workdir)
    require_benchmark({**loaded["failed"], **valid["dropped"]}, settings.benchmark)
    windows = build_windows_task(
        valid["path"], [day], tickers, settings.benchmark, settings.seq_len, workdir
    )
    chosen = prepare_engine_task(model_path, engine or settings.engine, batch_size)
    run["parameters"]["engine"] = chosen["engine"]
    scored = score_task(windows, model_path, chosen["engine"], batch_size, run_id, workdir)
    version = scored["model_version"]
    sql = write_sql_task.submit(scored["path"], "replace_day", day, version)
    parquet = write_parquet_task.submit(scored["path"], "replace_day", day, version)
    sql.result(), parquet.result()

    failed = {**malformed, **loaded["failed"], **valid["dropped"]}
    skipped = {t: r for t, r in windows["skipped"].items() if t not in failed}
    summary = {
        "flow": "daily-scoring",
        "period": day,
        "session": day,
        "source": source,
        "model_version": version,
        "model_sha256": scored["model_sha256"],
        "engine": chosen["engine"],
        "engine_description": chosen["description"],
        "n_universe": len(requested),
        "n_scored": scored["n"],
        "skipped": skipped,
        "failed": failed,
        "predictions_path": scored["path"],
    }
    publish_artifacts(summary, scored["path"])
    record_run_task(
        {
            **run,
            "finished_at": datetime.now(UTC),
            "status": "completed",
            "n_scored": scored["n"],
            "n_skipped": len(skipped),
            "n_failed": len(failed),
            "model_version": version,
            "model_sha256": scored["model_sha256"],
            "message": f"{scored['n']} scored, {len(skipped)} skipped, {len(failed)} failed",
        }
    )
    remove_run_dir(workdir)
    summary.pop("predictions_path")
    return summary
