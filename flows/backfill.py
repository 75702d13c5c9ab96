"""`backfill`: score every session in a date range, resumably, in chunks.

Chunks are (period x ticker batch). Features are built once per ticker batch
for the whole range; each chunk then cuts its windows, scores them, upserts
both sinks and only then writes its done-marker. A re-run skips marked chunks
(unless ``overwrite``), so a crashed or killed backfill resumes where it
stopped and never duplicates rows. Output equals daily scoring of each session.
Chunks fan out on the task runner chosen by `flows.runners` (threads by
default, or a Dask cluster); the output does not depend on it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.futures import as_completed
from prefect.runtime import flow_run

from flows.daily_scoring import DEFAULT_UNIVERSE
from flows.hooks import record_failure
from flows.runners import SelectedTaskRunner
from stocktrend import calendar
from stocktrend.backfill import clear_marks, is_done, plan_chunks
from stocktrend.config import EngineName, get_settings
from stocktrend.errors import ConfigError
from stocktrend.models import resolve_model
from stocktrend.scoring import (
    history_start,
    parse_universe,
    require_benchmark,
    split_valid_tickers,
)
from stocktrend.workdir import remove_run_dir, run_dir
from tasks.artifacts import publish_artifacts, set_progress, start_progress
from tasks.backfill import batch_features_task, describe_model, score_chunk_task
from tasks.scoring import (
    load_prices_task,
    prepare_engine_task,
    record_run_task,
    validate_task,
)


@flow(
    name="backfill",
    log_prints=True,
    task_runner=SelectedTaskRunner(),
    on_failure=[record_failure],
    on_crashed=[record_failure],
)
def backfill(
    start: str,
    end: str,
    universe: str | list[str] | None = None,
    source: str | None = None,
    model: str | None = None,
    overwrite: bool = False,
    ticker_batch: int = 100,
    period: str = "M",
    batch_size: int | None = None,
    engine: EngineName | None = None,
) -> dict[str, Any]:
    """Score every NYSE session in [start, end] for `universe` with `model`.

    `engine` (default `STOCKTREND_ENGINE`, itself `reference`) is settled once,
    before chunks fan out. With an int8 engine a window's P(up) depends, within
    the parity tolerance, on the windows it is batched with, so it can differ
    from daily scoring in the third decimal; `reference` reproduces it exactly.
    """
    logger = get_run_logger()
    settings = get_settings()
    source = source or settings.source
    sessions = calendar.sessions(start, end)
    if len(sessions) == 0:
        raise ConfigError(f"no NYSE sessions between {start} and {end}")
    requested = parse_universe(universe, DEFAULT_UNIVERSE)
    tickers, malformed = split_valid_tickers(requested)
    model_path = str(resolve_model(model or settings.model, settings))
    info = describe_model(model_path)
    version = info["model_version"]
    batch_size = batch_size or settings.batch_size
    run_id = str(flow_run.id) if flow_run.id else None
    workdir = str(run_dir(settings.home, run_id))
    root = settings.predictions_dir

    chunks = plan_chunks(sessions, tickers, batch_size=ticker_batch, period=period)
    if overwrite:
        clear_marks(root, version, chunks)
    pending = [c for c in chunks if not is_done(root, version, c)]
    logger.info(f"{len(chunks)} chunks, {len(chunks) - len(pending)} already done")
    run = {
        "flow_run_id": run_id or workdir.rsplit("/", 1)[-1],
        "flow_name": "backfill",
        "parameters": {
            "start": start,
            "end": end,
            "universe": requested,
            "source": source,
            "model": model_path,
            "overwrite": overwrite,
            "engine": engine or settings.engine,
        },
        "started_at": datetime.now(UTC),
        "status": "running",
        "model_version": version,
        "model_sha256": info["model_sha256"],
    }
    record_run_task(run)
    chosen = prepare_engine_task(model_path, engine or settings.engine, batch_size)
    run["parameters"]["engine"] = chosen["engine"]
    progress = start_progress("backfill-progress", f"{start}..{end}, {len(tickers)} tickers")
    set_progress(progress, (len(chunks) - len(pending)) / max(len(chunks), 1))

    failed: dict[str, str] = dict(malformed)
    futures = []
    batches: dict[tuple[str, ...], list] = {}
    for chunk in pending:
        batches.setdefault(chunk.tickers, []).append(chunk)
    for number, (batch, batch_chunks) in enumerate(batches.items()):
        first = min(c.first for c in batch_chunks)
        last = max(c.last for c in batch_chunks)
        loaded = load_prices_task(
            source,
            sorted(set(batch) | {settings.benchmark}),
            str(history_start(first).date()),
            str(last.date()),
            f"{workdir}/batch-{number}",
        )
        valid = validate_task(loaded["path"], f"{workdir}/batch-{number}")
        require_benchmark({**loaded["failed"], **valid["dropped"]}, settings.benchmark)
        failed.update(
            {t: r for t, r in {**loaded["failed"], **valid["dropped"]}.items() if t in batch}
        )
        features = batch_features_task(valid["path"], settings.benchmark, workdir, str(number))
        futures += [
            score_chunk_task.submit(
                chunk,
                features,
                valid["path"],
                model_path,
                chosen["engine"],
                batch_size,
                run_id,
            )
            for chunk in batch_chunks
        ]

    n_scored, skipped, finished = 0, {}, len(chunks) - len(pending)
    for future in as_completed(futures):
        result = future.result()
        n_scored += result["n_scored"]
        skipped.update({t: r for t, r in result["skipped"].items() if t not in failed})
        finished += 1
        set_progress(progress, finished / max(len(chunks), 1))

    summary = {
        "flow": "backfill",
        "period": f"{sessions[0].date()}..{sessions[-1].date()}",
        "source": source,
        "model_version": version,
        "model_sha256": info["model_sha256"],
        "engine": chosen["engine"],
        "engine_description": chosen["description"],
        "n_universe": len(requested),
        "n_sessions": len(sessions),
        "n_chunks": len(chunks),
        "n_chunks_skipped": len(chunks) - len(pending),
        "n_scored": n_scored,
        "skipped": skipped,
        "failed": failed,
    }
    publish_artifacts(summary, None)
    record_run_task(
        {
            **run,
            "finished_at": datetime.now(UTC),
            "status": "completed",
            "n_scored": n_scored,
            "n_skipped": len(skipped),
            "n_failed": len(failed),
            "message": f"{n_scored} scored in {len(pending)} chunks; "
            f"{len(chunks) - len(pending)} chunks already done",
        }
    )
    remove_run_dir(workdir)
    return summary
