"""Prefect tasks for backfills: features once per ticker batch, then one task per chunk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task

from stocktrend.backfill import Chunk, mark_done
from stocktrend.checkpoint import load_checkpoint
from stocktrend.config import get_settings
from stocktrend.features import build_features
from stocktrend.scoring import score_windows, windows_for_sessions
from stocktrend.sinks import write_both
from stocktrend.workdir import load_frame, save_frame
from tasks.engines import shared_engine


@task(name="describe-model")
def describe_model(model_path: str) -> dict[str, Any]:
    bundle = load_checkpoint(model_path)
    return {
        "model_version": bundle.model_version,
        "model_sha256": bundle.sha256,
        "sequence_length": bundle.sequence_length,
        "horizon": bundle.horizon,
    }


@task(name="batch-features")
def batch_features_task(prices_path: str, benchmark: str, workdir: str, tag: str) -> str:
    """Features for one ticker batch over the whole backfill range, computed once."""
    features = build_features(load_frame(prices_path), benchmark=benchmark)
    return save_frame(features.reset_index(), Path(workdir) / f"features-{tag}.parquet")


@task(name="score-chunk", retries=1, retry_delay_seconds=5)
def score_chunk_task(
    chunk: Chunk,
    features_path: str,
    prices_path: str,
    model_path: str,
    engine: str,
    batch_size: int | None,
    flow_run_id: str | None,
) -> dict[str, Any]:
    """Windows, scores and both sinks for one chunk; its marker is written last."""
    settings = get_settings()
    bundle, scorer = shared_engine(model_path, engine, batch_size)
    features = load_frame(features_path).set_index(["date", "ticker"])
    X, index, skipped = windows_for_sessions(
        features,
        load_frame(prices_path),
        pd.DatetimeIndex(chunk.sessions),
        list(chunk.tickers),
        seq_len=bundle.sequence_length,
    )
    predictions = score_windows(bundle, X, index, engine=scorer, flow_run_id=flow_run_id)
    write_both(predictions, settings, mode="upsert")
    summary = {"n_scored": len(predictions), "skipped": skipped}
    mark_done(settings.predictions_dir, bundle.model_version, chunk, summary)
    return summary
