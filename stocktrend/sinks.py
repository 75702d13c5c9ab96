"""Writing predictions to both stores in the order that makes resumption safe.

SQL first, Parquet second: a chunk whose Parquet partition exists has always
committed to SQL too, and a crash between the two is repaired by re-running,
because both writes are idempotent (upsert by (as_of_date, ticker, model_version)).
"""

from __future__ import annotations

import pandas as pd

from stocktrend.config import Settings
from stocktrend.storage import PredictionStore, parquet_store


def write_both(
    predictions: pd.DataFrame,
    settings: Settings,
    *,
    mode: str = "upsert",
    day: pd.Timestamp | None = None,
    model_version: str | None = None,
) -> dict[str, int]:
    """``upsert`` merges rows by key; ``replace_day`` makes (day, model) equal ``predictions``."""
    store = PredictionStore(settings.resolved_database_url)
    if mode == "replace_day":
        if day is None or model_version is None:
            raise ValueError("replace_day needs the day and the model version")
        store.replace_day(pd.Timestamp(day), model_version, predictions)
        parquet_store.replace_day(
            settings.predictions_dir, pd.Timestamp(day), model_version, predictions
        )
    elif mode == "upsert":
        if predictions.empty:
            return {"rows": 0}
        store.upsert_predictions(predictions)
        parquet_store.write_predictions(settings.predictions_dir, predictions)
    else:
        raise ValueError(f"unknown write mode {mode!r}")
    return {"rows": len(predictions)}
