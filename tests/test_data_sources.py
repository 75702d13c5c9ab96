"""``load_prices`` over the bundled sample and local files (no network)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from stocktrend.data import (
    PRICE_COLUMNS,
    SAMPLE_TICKERS,
    empty_prices,
    load_prices,
    load_prices_with_report,
    normalize_prices,
    sample_provenance,
)
from stocktrend.errors import ConfigError, DataSourceError

CONTRACT_DTYPES = {
    "date": "datetime64[ns]",
    "ticker": "str",
    "open": "float64",
    "high": "float64",
    "low": "float64",
    "close": "float64",
    "volume": "float64",
}


def assert_contract(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == list(PRICE_COLUMNS)
    assert {c: str(t) for c, t in frame.dtypes.items()} == CONTRACT_DTYPES
    assert frame["date"].dt.tz is None
    assert isinstance(frame.index, pd.RangeIndex) and frame.index.start == 0
    ordered = frame.sort_values(["ticker", "date"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(frame, ordered)


def window(prices: pd.DataFrame, tickers, start, end) -> pd.DataFrame:
    mask = prices["ticker"].isin(tickers) & prices["date"].between(start, end)
    return prices[mask].reset_index(drop=True)


# --------------------------------------------------------------------------- sample


def test_sample_schema_and_tickers(sample_prices):
    prices = load_prices("sample")
    assert_contract(prices)
    assert tuple(sorted(prices["ticker"].unique())) == tuple(sorted(SAMPLE_TICKERS))
    pd.testing.assert_frame_equal(prices, sample_prices)


def test_empty_prices_follows_the_contract():
    assert_contract(empty_prices())
    assert_contract(normalize_prices(empty_prices()))


def test_sample_filters_tickers_and_inclusive_dates(sample_prices):
    prices = load_prices("sample", ["msft", "^GSPC", "MSFT"], "2010-01-04", "2010-12-31")
    assert_contract(prices)
    assert sorted(prices["ticker"].unique()) == ["MSFT", "^GSPC"]
    assert prices["date"].min() == pd.Timestamp("2010-01-04")
    assert prices["date"].max() == pd.Timestamp("2010-12-31")
    pd.testing.assert_frame_equal(
        prices, window(sample_prices, ["MSFT", "^GSPC"], "2010-01-04", "2010-12-31")
    )


def test_sample_unknown_ticker_is_reported_not_raised(caplog):
    prices, report = load_prices_with_report("sample", ["AAPL", "NOPE"], "2012-01-01", "2012-12-31")
    assert report.requested == ["AAPL", "NOPE"] and report.loaded == ["AAPL"]
    assert report.failed["NOPE"].startswith("unknown ticker: not in sample (has AAPL, GOOG")
    assert set(prices["ticker"]) == {"AAPL"}

    with caplog.at_level(logging.WARNING, logger="stocktrend.data"):
        load_prices("sample", ["AAPL", "NOPE"], "2012-01-01", "2012-12-31")
    assert "NOPE" in caplog.text


def test_sample_ticker_without_rows_in_range_is_explained():
    _, report = load_prices_with_report("sample", ["AAPL", "GOOG"], "2001-01-01", "2001-12-31")
    assert report.loaded == ["AAPL"]
    assert "has 2004-08-19..2013-03-01" in report.failed["GOOG"]


def test_nothing_loaded_raises_with_hint():
    with pytest.raises(DataSourceError) as info:
        load_prices("sample", ["NOPE"])
    assert "NOPE" in str(info.value) and "^GSPC" in (info.value.hint or "")


def test_sample_provenance_is_bundled():
    provenance = sample_provenance()
    assert provenance["tickers"] == sorted(SAMPLE_TICKERS)
    assert {s["package"] for s in provenance["sources"]} == {"bokeh-sampledata", "arch"}
    assert all(len(s["sha256"]) == 64 for s in provenance["sources"])


@pytest.mark.parametrize(
    ("source", "tickers", "start", "end", "match"),
    [
        ("nasdaq", None, None, None, "unknown price source"),
        ("file:", None, None, None, "needs a path"),
        ("sample", [], None, None, "no tickers"),
        ("sample", None, "2012-02-01", "2012-01-01", "after end"),
    ],
)
def test_bad_arguments_are_config_errors(source, tickers, start, end, match):
    with pytest.raises(ConfigError, match=match) as info:
        load_prices(source, tickers, start, end)
    if source == "nasdaq":
        assert all(form in str(info.value) for form in ("sample", "file:PATH", "yfinance"))


# --------------------------------------------------------------------------- files


@pytest.fixture
def subset(sample_prices) -> pd.DataFrame:
    return window(sample_prices, ["AAPL", "IBM", "^GSPC"], "2011-01-03", "2011-06-30")


def test_long_csv_with_any_case_columns(subset, tmp_path):
    path = tmp_path / "prices.csv"
    subset.rename(columns=str.title).to_csv(path, index=False)
    prices = load_prices(f"file:{path}")
    assert_contract(prices)
    pd.testing.assert_frame_equal(prices, subset, rtol=1e-12)


def test_long_parquet_filtered(subset, tmp_path):
    path = tmp_path / "prices.parquet"
    subset.sample(frac=1.0, random_state=0).to_parquet(path)  # order must not matter
    prices = load_prices(f"file:{path}", ["ibm"], "2011-02-01", "2011-02-28")
    pd.testing.assert_frame_equal(prices, window(subset, ["IBM"], "2011-02-01", "2011-02-28"))


def test_long_csv_adj_close_adjusts_prices_and_volume(tmp_path):
    path = tmp_path / "raw.csv"
    path.write_text(
        "Date,Ticker,Open,High,Low,Close,Adj_Close,Volume\n"
        "2012-01-03,XYZ,10,12,9,11,5.5,100\n"
        "2012-01-04,XYZ,11,11,11,11,11,50\n"
    )
    prices = load_prices(f"file:{path}")
    assert prices[["open", "high", "low", "close", "volume"]].to_numpy().tolist() == [
        [5.0, 6.0, 4.5, 5.5, 200.0],
        [11.0, 11.0, 11.0, 11.0, 50.0],
    ]


def write_yfinance_exports(prices: pd.DataFrame, directory: Path) -> None:
    """Per-ticker CSVs as yfinance exports them: raw OHLCV plus Adj Close.

    The raw series undo a made-up adjustment factor (0.5 before 2011-03-15, a
    'split', times a small dividend drift), so loading must re-apply it.
    """
    directory.mkdir()
    for ticker, rows in prices.groupby("ticker"):
        factor = np.where(rows["date"] < "2011-03-15", 0.5, 1.0) * np.linspace(0.97, 1.0, len(rows))
        export = pd.DataFrame(
            {
                "Date": rows["date"].dt.strftime("%Y-%m-%d"),
                "Open": rows["open"] / factor,
                "High": rows["high"] / factor,
                "Low": rows["low"] / factor,
                "Close": rows["close"] / factor,
                "Adj Close": rows["close"],
                "Volume": rows["volume"] * factor,
            }
        )
        export.to_csv(directory / f"{ticker}.csv", index=False)


def test_directory_of_yfinance_exports(subset, tmp_path):
    write_yfinance_exports(subset, tmp_path / "exports")
    assert (tmp_path / "exports" / "^GSPC.csv").exists()
    prices, report = load_prices_with_report(f"file:{tmp_path / 'exports'}", ["AAPL", "^GSPC", "X"])
    assert_contract(prices)
    assert report.loaded == ["AAPL", "^GSPC"]
    assert report.failed["X"].startswith("unknown ticker: not in exports/ (has AAPL, IBM, ^GSPC)")
    pd.testing.assert_frame_equal(prices, window(subset, ["AAPL", "^GSPC"], "2000", "2020"))


def test_directory_quoted_names_and_parquet(subset, tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    gspc = window(subset, ["^GSPC"], "2011", "2012")
    gspc.drop(columns="ticker").rename(columns=str.title).to_parquet(folder / "%5EGSPC.parquet")
    prices = load_prices(f"file:{folder}")
    pd.testing.assert_frame_equal(prices, gspc)


def test_csv_saved_from_yfinance_download(subset, tmp_path):
    """``yf.download([...]).to_csv()`` writes two header rows (Price, Ticker) and a Date row."""
    fields = ["close", "high", "low", "open", "volume"]
    wide = subset.pivot(index="date", columns="ticker", values=fields)
    wide.columns = pd.MultiIndex.from_tuples(
        [(f.title(), t) for f, t in wide.columns], names=["Price", "Ticker"]
    )
    wide.index = wide.index.rename("Date")
    path = tmp_path / "download.csv"
    wide.to_csv(path)
    assert path.read_text().splitlines()[1].startswith("Ticker,")
    prices = load_prices(f"file:{path}")
    pd.testing.assert_frame_equal(prices, subset, rtol=1e-12)


def test_dates_with_mixed_utc_offsets(tmp_path):
    """``history().to_csv()`` writes midnight New York with -05:00 / -04:00 offsets."""
    path = tmp_path / "offsets.csv"
    path.write_text(
        "date,ticker,open,high,low,close,volume\n"
        "2012-03-09 00:00:00-05:00,XYZ,1,1,1,1,1\n"
        "2012-03-12 00:00:00-04:00,XYZ,2,2,2,2,2\n"
    )
    prices = load_prices(f"file:{path}")
    assert prices["date"].tolist() == [pd.Timestamp("2012-03-09"), pd.Timestamp("2012-03-12")]


def test_missing_columns_are_named(subset, tmp_path):
    path = tmp_path / "bad.csv"
    subset.drop(columns=["volume", "low"]).to_csv(path, index=False)
    with pytest.raises(DataSourceError) as info:
        load_prices(f"file:{path}")
    message = str(info.value)
    assert "missing columns: low, volume" in message
    assert "bad.csv" in message
    assert "date, ticker, open, high, low, close, volume" in message  # the accepted schema
    assert "TICKER.csv" in message


def test_missing_and_unreadable_paths(tmp_path):
    with pytest.raises(DataSourceError, match="not found"):
        load_prices(f"file:{tmp_path / 'nowhere.csv'}")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 definitely not parquet")
    with pytest.raises(DataSourceError, match="cannot read"):
        load_prices(f"file:{broken}")
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(DataSourceError, match=r"no \.csv or \.parquet"):
        load_prices(f"file:{empty_dir}")


def test_unparseable_dates_are_an_error(tmp_path):
    path = tmp_path / "dates.csv"
    path.write_text("date,ticker,open,high,low,close,volume\nyesterday,XYZ,1,1,1,1,1\n")
    with pytest.raises(DataSourceError, match="cannot be parsed"):
        load_prices(f"file:{path}")


def test_duplicate_and_empty_rows_in_a_file_reach_validation(subset, tmp_path):
    """A vendor file's bad rows are reported by validation, not silently repaired on load."""
    from stocktrend.validation import validate_prices

    bad = subset.copy()
    aapl = bad.index[bad["ticker"] == "AAPL"]
    bad = pd.concat([bad, bad.loc[aapl[10:11]]], ignore_index=True)  # duplicate one AAPL day
    bad.loc[bad.index[bad["ticker"] == "IBM"][5], ["open", "high", "low", "close"]] = np.nan
    path = tmp_path / "dump.csv"
    bad.to_csv(path, index=False)
    loaded = load_prices(f"file:{path}")
    assert len(loaded) == len(bad)
    clean, report = validate_prices(loaded)
    assert "more than one row on" in report.dropped_tickers["AAPL"]
    assert "NaN" in report.dropped_tickers["IBM"]
    assert set(clean["ticker"]) == {"^GSPC"}
