"""Where predictions live: a Parquet dataset for analysis, a SQL database for serving.

Both stores take frames in the record contract of
:mod:`stocktrend.storage.records` and give them back in it. Nothing here
touches the disk or the network at import time.
"""

from __future__ import annotations

from stocktrend.storage.engine import make_engine
from stocktrend.storage.migrations import MIGRATIONS, Migration, migrate, schema_version
from stocktrend.storage.parquet_store import (
    existing_partitions,
    open_dataset,
    partition_dir,
    partitioning,
    tickers_in_partition,
    write_predictions,
)
from stocktrend.storage.parquet_store import read_predictions as read_parquet_predictions
from stocktrend.storage.parquet_store import replace_day as replace_parquet_day
from stocktrend.storage.records import (
    LABELS,
    PREDICTION_COLUMNS,
    PREDICTION_DTYPES,
    PREDICTION_KEY,
    empty_predictions,
    validate_predictions,
)
from stocktrend.storage.sql_store import RUN_STATUSES, PredictionStore, RunRecord

__all__ = [
    "LABELS",
    "MIGRATIONS",
    "PREDICTION_COLUMNS",
    "PREDICTION_DTYPES",
    "PREDICTION_KEY",
    "RUN_STATUSES",
    "Migration",
    "PredictionStore",
    "RunRecord",
    "empty_predictions",
    "existing_partitions",
    "make_engine",
    "migrate",
    "open_dataset",
    "partition_dir",
    "partitioning",
    "read_parquet_predictions",
    "replace_parquet_day",
    "schema_version",
    "tickers_in_partition",
    "validate_predictions",
    "write_predictions",
]
