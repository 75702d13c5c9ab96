"""Realised outcomes in SQL (``outcomes``, migration 4): what happened after each prediction.

An outcome belongs to ``(as_of_date, ticker, horizon)``, not to a model: did
the close ``horizon`` sessions later end above the close on ``as_of_date``? It
is a fact about prices, so every model version that predicted that day and
ticker is scored against the same row. Analysts join it with ``predictions``
for hit rates (:data:`stocktrend.storage.queries.HIT_RATE_BY_TICKER`).

Rows are written by the evaluate-drift flow only once resolved (the horizon
has passed and both closes are known), upserted on the key in one
transaction: a re-run rewrites the same rows, and a price correction in the
source replaces the old figure.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import sqlalchemy as sa

from stocktrend.config import Settings
from stocktrend.storage.engine import upsert_insert
from stocktrend.storage.migrations import migrated_connection
from stocktrend.storage.sql_store import CHUNK_ROWS, OUTCOME_COLUMNS, outcomes

__all__ = ["OUTCOME_KEY", "outcome_rows", "read_outcomes", "record_outcomes"]

OUTCOME_KEY: tuple[str, ...] = ("as_of_date", "ticker", "horizon")


def outcome_rows(resolved: pd.DataFrame, recorded_at: datetime | None = None) -> pd.DataFrame:
    """Outcome rows from :func:`stocktrend.drift.resolve_outcomes`' frame: resolved ones only.

    Pending predictions (horizon not yet passed, or a close missing) carry no
    outcome and are left out, so a later run records them once they resolve.
    """
    done = resolved.loc[resolved["resolved"].to_numpy(dtype=bool)]
    frame = pd.DataFrame(
        {
            "as_of_date": pd.to_datetime(done["as_of_date"]).dt.normalize(),
            "ticker": done["ticker"].astype(str),
            "horizon": done["horizon"].astype(np.int64),
            "resolve_date": pd.to_datetime(done["resolve_date"]).dt.normalize(),
            "realised_return": done["realised_return"].astype(np.float64),
            "outcome": done["outcome"].astype(np.int64),
        }
    )
    frame["recorded_at"] = pd.Timestamp(recorded_at or datetime.now(UTC)).tz_convert("UTC")
    frame = frame.drop_duplicates(list(OUTCOME_KEY), keep="last")
    return frame.sort_values(list(OUTCOME_KEY), ignore_index=True)


def record_outcomes(frame: pd.DataFrame, settings: Settings) -> int:
    """Upsert outcome rows (see :func:`outcome_rows`) in one transaction; returns the count."""
    missing = [name for name in OUTCOME_COLUMNS if name not in frame.columns]
    if missing:
        raise ValueError(f"outcome rows lack {', '.join(missing)}")
    if frame.duplicated(list(OUTCOME_KEY)).any():
        raise ValueError("outcome rows repeat an (as_of_date, ticker, horizon) key")
    if not frame["outcome"].isin([0, 1]).all():
        raise ValueError("outcome must be 0 (bearish) or 1 (bullish)")
    rows = _bind(frame)
    url = settings.resolved_database_url
    with migrated_connection(url, "record outcomes", write=True) as conn:
        stmt = upsert_insert(conn, outcomes)
        stmt = stmt.on_conflict_do_update(
            index_elements=list(OUTCOME_KEY),
            set_={n: stmt.excluded[n] for n in OUTCOME_COLUMNS if n not in OUTCOME_KEY},
        )
        for begin in range(0, len(rows), CHUNK_ROWS):
            conn.execute(stmt, rows[begin : begin + CHUNK_ROWS])
    return len(rows)


def _bind(frame: pd.DataFrame) -> list[dict[str, object]]:
    """Plain Python values in key order (same lock order for concurrent writers)."""
    ordered = frame.sort_values(list(OUTCOME_KEY), ignore_index=True)
    stamps = pd.to_datetime(ordered["recorded_at"], utc=True)
    return [
        {
            "as_of_date": day.date(),
            "ticker": str(ticker),
            "horizon": int(horizon),
            "resolve_date": resolve.date(),
            "realised_return": float(ret),
            "outcome": int(outcome),
            "recorded_at": stamp.to_pydatetime(),
        }
        for day, ticker, horizon, resolve, ret, outcome, stamp in zip(
            pd.to_datetime(ordered["as_of_date"]),
            ordered["ticker"],
            ordered["horizon"],
            pd.to_datetime(ordered["resolve_date"]),
            ordered["realised_return"],
            ordered["outcome"],
            stamps,
            strict=True,
        )
    ]


def read_outcomes(settings: Settings, ticker: str | None = None) -> pd.DataFrame:
    """Stored outcomes, in key order (dates as pandas timestamps)."""
    query = sa.select(outcomes).order_by(*(outcomes.c[n] for n in OUTCOME_KEY))
    if ticker is not None:
        query = query.where(outcomes.c.ticker == ticker)
    url = settings.resolved_database_url
    with migrated_connection(url, "read outcomes", write=False) as conn:
        rows = conn.execute(query).mappings().all()
    frame = pd.DataFrame([dict(r) for r in rows], columns=list(OUTCOME_COLUMNS))
    for name in ("as_of_date", "resolve_date"):
        frame[name] = pd.to_datetime(frame[name])
    return frame
