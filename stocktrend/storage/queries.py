"""The SQL the README shows, kept here so the test suite runs every snippet.

Database queries are plain SQL that runs unchanged on SQLite and PostgreSQL
(``:ticker`` is a bind parameter: ``sqlalchemy.text(TICKER_HISTORY)``). The
DuckDB queries read the Parquet dataset directly; ``$glob`` is
:func:`duckdb_glob` of the dataset root, bound as a parameter so a path with
a quote in it cannot break the query::

    import duckdb
    duckdb.execute(DUCKDB_LATEST_PER_TICKER, {"glob": duckdb_glob(root)}).df()

``hive_types`` pins the partition columns' types: left to DuckDB's inference,
a dataset whose model versions are all digits would give ``model_version``
as ``BIGINT``.

"Latest" means, per ticker, the newest ``as_of_date``; ties (two model
versions scored the same day) go to the newest ``created_at``, then the
highest ``model_version``, which is what ``PredictionStore.latest_per_ticker``
returns too.
"""

from __future__ import annotations

import os
from pathlib import Path

LATEST_PER_TICKER = """
SELECT as_of_date, ticker, prob_up, predicted_class, label, horizon, model_version, created_at
FROM (
    SELECT p.*,
           ROW_NUMBER() OVER (
               PARTITION BY ticker
               ORDER BY as_of_date DESC, created_at DESC, model_version DESC
           ) AS recency
    FROM predictions AS p
) AS ranked
WHERE recency = 1
ORDER BY ticker
"""
"""Each ticker's newest prediction, any model version."""

TICKER_HISTORY = """
SELECT as_of_date, model_version, prob_up, predicted_class, label, horizon
FROM predictions
WHERE ticker = :ticker
ORDER BY as_of_date, model_version
"""
"""Every prediction made for one ticker, oldest first."""

HIT_RATE_BY_TICKER = """
SELECT p.model_version,
       p.ticker,
       COUNT(*) AS n_resolved,
       AVG(CASE WHEN p.predicted_class = o.outcome THEN 1.0 ELSE 0.0 END) AS hit_rate,
       AVG(o.outcome * 1.0) AS always_bullish_rate,
       AVG(CASE WHEN p.predicted_class = o.outcome THEN 1.0 ELSE 0.0 END)
           - AVG(o.outcome * 1.0) AS edge_vs_always_bullish,
       MIN(p.as_of_date) AS first_day,
       MAX(p.as_of_date) AS last_day
FROM predictions AS p
JOIN outcomes AS o
  ON o.as_of_date = p.as_of_date AND o.ticker = p.ticker AND o.horizon = p.horizon
GROUP BY p.model_version, p.ticker
HAVING COUNT(*) >= :min_resolved
ORDER BY p.model_version, hit_rate DESC, p.ticker
"""
"""Realised hit rate per model and ticker, next to the always-bullish baseline's.

Only resolved predictions count (``outcomes`` holds a row once the horizon has
passed); ``:min_resolved`` drops tickers with too few to mean anything.
"""

_DUCKDB_SOURCE = """read_parquet(
    $glob,
    hive_partitioning = true,
    hive_types = {'as_of_date': DATE, 'model_version': VARCHAR}
)"""

DUCKDB_LATEST_PER_TICKER = f"""
SELECT as_of_date, ticker, prob_up, predicted_class, label, horizon, model_version, created_at
FROM {_DUCKDB_SOURCE}
QUALIFY ROW_NUMBER() OVER (
    PARTITION BY ticker
    ORDER BY as_of_date DESC, created_at DESC, model_version DESC
) = 1
ORDER BY ticker
"""
""":data:`LATEST_PER_TICKER` over the Parquet dataset."""

DUCKDB_TICKER_HISTORY = f"""
SELECT as_of_date, model_version, prob_up, predicted_class, label, horizon
FROM {_DUCKDB_SOURCE}
WHERE ticker = $ticker
ORDER BY as_of_date, model_version
"""
""":data:`TICKER_HISTORY` over the Parquet dataset."""

SQL_QUERIES: dict[str, str] = {
    "latest_per_ticker": LATEST_PER_TICKER,
    "ticker_history": TICKER_HISTORY,
}
DUCKDB_QUERIES: dict[str, str] = {
    "latest_per_ticker": DUCKDB_LATEST_PER_TICKER,
    "ticker_history": DUCKDB_TICKER_HISTORY,
}


def duckdb_glob(root: str | os.PathLike[str]) -> str:
    """The glob DuckDB needs for the dataset at ``root``: every partition file, nothing else."""
    return str(Path(root) / "**" / "*.parquet")
