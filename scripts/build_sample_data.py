"""Regenerate ``stocktrend/data/sample_prices.parquet`` from data that PyPI packages carry.

The bundled sample is real market data, not synthetic, so that tests and the
pretrained model see the fat tails, gaps and regime changes of actual prices.
It is built from two packages that are installed *only* for this script:

* ``bokeh-sampledata`` -> ``bokeh_sampledata/_data/stocks.csv.gz``: AAPL, MSFT,
  IBM (2000-03-01..2013-03-01) and GOOG (from 2004-08-19), with Adj Close.
* ``arch`` -> ``arch/data/sp500/sp500.csv.gz`` (^GSPC) and
  ``arch/data/nasdaq/nasdaq.csv.gz`` (^IXIC).

Stocks are split-and-dividend adjusted with the usual ratio ``Adj Close / Close``
applied to open, high, low and close, and its inverse to volume (so that
dollar volume is unchanged). Index levels need no adjustment. FB is skipped:
196 sessions are too few for a 260-session warm-up.

Usage::

    python -m venv /tmp/sample-venv
    /tmp/sample-venv/bin/pip install bokeh-sampledata arch pandas pyarrow
    /tmp/sample-venv/bin/python scripts/build_sample_data.py

or point at the CSVs directly with ``--stocks``, ``--sp500`` and ``--nasdaq``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

START, END = "2000-03-01", "2013-03-01"
STOCKS = ("AAPL", "GOOG", "IBM", "MSFT")
OUT = Path(__file__).resolve().parents[1] / "stocktrend" / "data" / "sample_prices.parquet"


def _package_file(package: str, relative: str) -> Path:
    """Locate a data file inside an installed package without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"package {package!r} is not installed; pip install it or pass the path")
    return Path(next(iter(spec.submodule_search_locations))) / relative


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown (path given)"


def load_stocks(path: Path) -> pd.DataFrame:
    raw = pd.read_csv(path, parse_dates=["Date"])
    raw = raw[raw["Ticker"].isin(STOCKS)]
    factor = raw["Adj Close"] / raw["Close"]
    return pd.DataFrame(
        {
            "date": raw["Date"],
            "ticker": raw["Ticker"],
            "open": raw["Open"] * factor,
            "high": raw["High"] * factor,
            "low": raw["Low"] * factor,
            "close": raw["Adj Close"],
            "volume": (raw["Volume"] / factor).round(),
        }
    )


def load_index(path: Path, ticker: str) -> pd.DataFrame:
    raw = pd.read_csv(path)
    return pd.DataFrame(
        {
            "date": pd.to_datetime(raw["Date"], format="%m/%d/%Y"),
            "ticker": ticker,
            "open": raw["Open"],
            "high": raw["High"],
            "low": raw["Low"],
            "close": raw["Close"],
            "volume": raw["Volume"].astype(float),
        }
    )


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stocks", type=Path)
    parser.add_argument("--sp500", type=Path)
    parser.add_argument("--nasdaq", type=Path)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    stocks = args.stocks or _package_file("bokeh_sampledata", "_data/stocks.csv.gz")
    sp500 = args.sp500 or _package_file("arch", "data/sp500/sp500.csv.gz")
    nasdaq = args.nasdaq or _package_file("arch", "data/nasdaq/nasdaq.csv.gz")

    frame = pd.concat(
        [load_stocks(stocks), load_index(sp500, "^GSPC"), load_index(nasdaq, "^IXIC")],
        ignore_index=True,
    )
    frame = frame[(frame["date"] >= START) & (frame["date"] <= END)]
    frame = frame.sort_values(["ticker", "date"]).reset_index(drop=True)
    frame["volume"] = frame["volume"].astype("int64")

    provenance = {
        "description": "Real daily OHLCV, split-and-dividend adjusted (Adj Close / Close).",
        "period": [START, END],
        "tickers": sorted(frame["ticker"].unique().tolist()),
        "sources": [
            {
                "package": "bokeh-sampledata",
                "version": _version("bokeh-sampledata"),
                "file": "bokeh_sampledata/_data/stocks.csv.gz",
                "sha256": sha256(stocks),
                "tickers": list(STOCKS),
            },
            {
                "package": "arch",
                "version": _version("arch"),
                "file": "arch/data/sp500/sp500.csv.gz",
                "sha256": sha256(sp500),
                "tickers": ["^GSPC"],
            },
            {
                "package": "arch",
                "version": _version("arch"),
                "file": "arch/data/nasdaq/nasdaq.csv.gz",
                "sha256": sha256(nasdaq),
                "tickers": ["^IXIC"],
            },
        ],
        "adjustment": "open/high/low/close *= AdjClose/Close; volume /= AdjClose/Close",
        "built_by": "scripts/build_sample_data.py",
    }
    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[b"stocktrend.provenance"] = json.dumps(provenance).encode()
    table = table.replace_schema_metadata(meta)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, args.out, compression="zstd", compression_level=19)
    counts = frame.groupby("ticker")["date"].agg(["min", "max", "count"])
    print(counts.to_string())
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    main()
