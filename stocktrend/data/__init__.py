"""Price data: one frame shape, three sources.

Sources (``load_prices(source, ...)``, also ``STOCKTREND_SOURCE``):

* ``sample``: real daily prices bundled with the package (AAPL, GOOG, IBM,
  MSFT, ^GSPC, ^IXIC; 2000-03-01..2013-03-01), for offline runs and tests;
  provenance in :func:`sample_provenance`.
* ``file:PATH``: a local file or directory, in one of these schemas (column
  names case-insensitive; ``adj close``/``adj_close`` optional and, when
  present, applied as the adjustment factor ``adj close / close`` to OHLC and
  inversely to volume):

  - a long CSV or Parquet: ``date, ticker, open, high, low, close, volume``;
  - a directory of per-ticker ``TICKER.csv``/``TICKER.parquet`` files in
    yfinance's export shape ``Date, Open, High, Low, Close, Adj Close, Volume``
    (the file name is the ticker: ``^GSPC.csv``);
  - a CSV/Parquet saved from ``yfinance.download(...)`` (header rows
    ``Price``/``Ticker``).

* ``yfinance``: Yahoo Finance, batched and retried, through an incremental
  Parquet cache under ``<home>/cache/prices/yfinance`` so a daily run fetches
  only the new sessions.

Every source returns the price frame described in :mod:`stocktrend.data.schema`:
columns ``date, ticker, open, high, low, close, volume``; ``date`` naive
datetime64[ns] session dates, ``ticker`` str, the rest float64 (adjusted
prices); sorted by ticker then date with a RangeIndex.
"""

from stocktrend.data.sample import SAMPLE_TICKERS, sample_provenance
from stocktrend.data.schema import (
    PRICE_COLUMNS,
    LoadResult,
    SourceReport,
    empty_prices,
    normalize_prices,
)
from stocktrend.data.sources import load_prices, load_prices_with_report, parse_source

__all__ = [
    "PRICE_COLUMNS",
    "SAMPLE_TICKERS",
    "LoadResult",
    "SourceReport",
    "empty_prices",
    "load_prices",
    "load_prices_with_report",
    "normalize_prices",
    "parse_source",
    "sample_provenance",
]
