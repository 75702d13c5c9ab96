"""Drift evaluations: one row per run, in SQL (``evaluations``, migration 3) and in Parquet.

SQL is the record analysts and dashboards query; the Parquet copy (one file per
evaluation under ``$STOCKTREND_HOME/evaluations/``, all columns inside the file
so ``pandas.read_parquet(dir)`` or DuckDB's ``read_parquet('dir/*.parquet')``
read the lot) keeps the history next to the prediction dataset. SQL is written
first; both writes are keyed by ``evaluation_id``, so a retried task rewrites
the same row and the same file rather than adding a second one.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

from stocktrend.atomic import atomic_write
from stocktrend.config import Settings
from stocktrend.storage.engine import upsert_insert
from stocktrend.storage.migrations import migrated_connection
from stocktrend.storage.sql_store import EVALUATION_COLUMNS, evaluations

__all__ = ["evaluations_dir", "read_evaluations", "read_parquet_evaluations", "record_evaluation"]


def evaluations_dir(settings: Settings) -> Path:
    return settings.home / "evaluations"


def _checked(row: dict[str, Any]) -> dict[str, Any]:
    missing = [name for name in EVALUATION_COLUMNS if name not in row]
    if missing:
        raise ValueError(f"evaluation row lacks {', '.join(missing)}")
    stamp = row["evaluated_at"]
    if not isinstance(stamp, datetime) or stamp.tzinfo is None:
        raise ValueError("evaluated_at must be a timezone-aware datetime")
    for name in ("as_of_date", "window_start", "window_end"):
        if row[name] is not None and not isinstance(row[name], date):
            row = {**row, name: date.fromisoformat(str(row[name])[:10])}
    return {name: row[name] for name in EVALUATION_COLUMNS}


def record_evaluation(row: dict[str, Any], settings: Settings) -> Path:
    """Upsert the row in SQL, then write its Parquet file; returns the file's path."""
    clean = _checked(row)
    with migrated_connection(
        settings.resolved_database_url, "record the evaluation", write=True
    ) as conn:
        stmt = upsert_insert(conn, evaluations).values(clean)
        stmt = stmt.on_conflict_do_update(
            index_elements=["evaluation_id"],
            set_={n: stmt.excluded[n] for n in EVALUATION_COLUMNS if n != "evaluation_id"},
        )
        conn.execute(stmt)
    return _write_parquet(clean, evaluations_dir(settings))


def _write_parquet(row: dict[str, Any], directory: Path) -> Path:
    frame = pd.DataFrame([{**row, "report": json.dumps(row["report"], default=str)}])
    for name in ("as_of_date", "window_start", "window_end"):
        frame[name] = pd.to_datetime(frame[name])
    frame["evaluated_at"] = pd.to_datetime(frame["evaluated_at"], utc=True)
    target = directory / f"{row['as_of_date']:%Y-%m-%d}_{row['evaluation_id']}.parquet"
    return atomic_write(target, lambda handle: frame.to_parquet(handle, index=False))


def read_evaluations(settings: Settings, model_version: str | None = None) -> pd.DataFrame:
    """Stored evaluations from SQL, oldest first (``report`` as a dict)."""
    query = sa.select(evaluations).order_by(evaluations.c.evaluated_at, evaluations.c.evaluation_id)
    if model_version is not None:
        query = query.where(evaluations.c.model_version == model_version)
    url = settings.resolved_database_url
    with migrated_connection(url, "read evaluations", write=False) as conn:
        rows = conn.execute(query).mappings().all()
    return pd.DataFrame([dict(r) for r in rows], columns=list(EVALUATION_COLUMNS))


def read_parquet_evaluations(settings: Settings) -> pd.DataFrame:
    """Every evaluation file under ``$STOCKTREND_HOME/evaluations`` (empty frame if none)."""
    files = sorted(evaluations_dir(settings).glob("*.parquet"))
    if not files:
        return pd.DataFrame(columns=list(EVALUATION_COLUMNS))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
