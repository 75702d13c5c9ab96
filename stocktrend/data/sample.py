"""The bundled sample: real daily prices that ship inside the package.

It lets every command (and every test) run offline. The file is built by
``scripts/build_sample_data.py``, which records where the numbers came from in
the Parquet schema metadata; :func:`sample_provenance` reads that back so a
report can cite it.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from stocktrend.data.schema import normalize_prices

SAMPLE_FILE = "sample_prices.parquet"
PROVENANCE_KEY = b"stocktrend.provenance"

SAMPLE_TICKERS: tuple[str, ...] = ("AAPL", "GOOG", "IBM", "MSFT", "^GSPC", "^IXIC")
"""Tickers in the sample (a test checks this against the file)."""

SAMPLE_PERIOD: tuple[str, str] = ("2000-03-01", "2013-03-01")
"""First and last date in the sample (GOOG starts at its 2004-08-19 listing)."""


def _read_table() -> pa.Table:
    ref = resources.files("stocktrend.data").joinpath(SAMPLE_FILE)
    with resources.as_file(ref) as path:
        return pq.read_table(path)


def read_sample() -> pd.DataFrame:
    """All sample rows as a price frame (read on every call: ~18k rows, a few ms)."""
    return normalize_prices(_read_table().to_pandas())


def sample_provenance() -> dict[str, Any]:
    """The provenance record stored with the sample (sources, versions, checksums)."""
    ref = resources.files("stocktrend.data").joinpath(SAMPLE_FILE)
    with resources.as_file(ref) as path:
        metadata = pq.read_schema(path).metadata or {}
    raw = metadata.get(PROVENANCE_KEY)
    if raw is None:
        return {}
    return json.loads(raw)
