"""Plausible prediction rows for the storage tests, shared by the SQL and Parquet suites."""

from __future__ import annotations

import numpy as np
import pandas as pd

from stocktrend.storage.records import LABELS

TICKERS = ("AAPL", "AMZN", "BRK-B", "GOOG", "JPM", "MSFT", "NVDA", "XOM")


def prediction_frame(
    days: pd.DatetimeIndex | list[str],
    tickers: tuple[str, ...] | list[str] = TICKERS,
    *,
    model_version: str = "v2.0",
    seed: int = 0,
    flow_run_id: str | None = "run-0001",
) -> pd.DataFrame:
    """Plausible scored rows: one per (day, ticker), scored 22:15 UTC after that session."""
    rng = np.random.default_rng(seed)
    index = pd.MultiIndex.from_product([pd.DatetimeIndex(days), list(tickers)])
    prob = rng.beta(5, 5, size=len(index)).round(6)
    klass = (prob >= 0.5).astype("int64")
    days_col = index.get_level_values(0)
    frame = pd.DataFrame(
        {
            "as_of_date": days_col,
            "ticker": index.get_level_values(1),
            "prob_up": prob,
            "predicted_class": klass,
            "label": [LABELS[k] for k in klass],
            "horizon": 10,
            "model_version": model_version,
            "model_sha256": f"{seed:064x}",
            "flow_run_id": flow_run_id,
            "created_at": (days_col + pd.Timedelta(hours=22, minutes=15, microseconds=seed))
            .tz_localize("UTC")
            .as_unit("us"),
        }
    )
    if flow_run_id is not None and len(frame):
        frame.loc[frame["ticker"] == tickers[0], "flow_run_id"] = None  # a CLI re-score
    return frame
