"""``file:PATH``: prices from a local file or directory, for offline and custom data.

Accepted shapes (column names are case-insensitive; ``adj close``,
``adj_close`` and ``Adj Close`` are the same column):

1. A long table, CSV or Parquet: ``date, ticker, open, high, low, close,
   volume`` and optionally ``adj close``.
2. A directory of per-ticker files, ``<TICKER>.csv`` (also ``.csv.gz``) or
   ``<TICKER>.parquet``, in yfinance's export shape ``Date, Open, High, Low,
   Close, [Adj Close,] Volume``. The file name is the ticker (``^GSPC.csv``;
   URL-quoted names such as ``%5EGSPC.parquet`` are unquoted).
3. A CSV or Parquet saved straight from ``yfinance.download(...)``, with its two
   header rows ``Price`` / ``Ticker`` (as a single file or one per ticker in a
   directory).

When ``adj close`` is present, open/high/low/close are scaled by
``adj close / close`` and volume by its inverse, so every source yields
split-and-dividend adjusted prices. Files are recognised by content (Parquet's
``PAR1`` magic), not by extension.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote

import pandas as pd

from stocktrend.data.schema import (
    apply_adj_close,
    empty_prices,
    normalize_prices,
    preview,
    select_tickers,
    unique_tickers,
)
from stocktrend.data.yahoo import frame_from_download, tickers_in_download
from stocktrend.errors import DataSourceError, PriceValidationError

ACCEPTED_SCHEMAS: tuple[str, ...] = (
    "a long CSV/Parquet with date, ticker, open, high, low, close, volume [, adj close]",
    "a directory of per-ticker files TICKER.csv or TICKER.parquet with "
    "Date, Open, High, Low, Close, [Adj Close,] Volume",
    "a CSV/Parquet saved from yfinance.download() (header rows Price / Ticker)",
)
ACCEPTED_HINT = "file:PATH accepts " + "; or ".join(ACCEPTED_SCHEMAS)

_SUFFIXES = (".csv.gz", ".csv", ".parquet", ".pq")
_PARQUET_MAGIC = b"PAR1"
_FIELDS = ("date", "open", "high", "low", "close", "volume")


def load_file_source(
    path: str | Path, tickers: Sequence[str] | None = None
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Prices for ``tickers`` (None: all) from ``path``, plus ``{ticker: reason}`` for absentees.

    Raises :class:`DataSourceError` when the path is missing, unreadable or
    has none of the accepted shapes; the message names the file and columns.
    """
    where = Path(path).expanduser()
    tickers = unique_tickers(tickers) if tickers is not None else None
    if not where.exists():
        raise DataSourceError(f"price path not found: {where}", hint=ACCEPTED_HINT)
    if where.is_dir():
        return _load_directory(where, tickers)
    return select_tickers(read_price_file(where), tickers, where.name)


def read_price_file(path: Path, ticker: str | None = None) -> pd.DataFrame:
    """One file as a price frame; ``ticker`` names it when the file does not say.

    A file that names its own ticker(s) keeps them unless ``ticker`` is given
    and the file holds exactly one, which is then renamed to ``ticker`` (a
    per-ticker file saved from yfinance says e.g. ``AAPL`` in its header).
    """
    raw = _read_raw(path)
    try:
        if isinstance(raw.columns, pd.MultiIndex):
            prices, _ = frame_from_download(raw, tickers_in_download(raw))
        else:
            prices = _flat_to_prices(raw, path, ticker)
    except PriceValidationError as exc:
        raise DataSourceError(f"{path}: {exc.args[0]}", hint=exc.hint) from exc
    return _rename_single(prices, ticker, path) if ticker is not None else prices


def _read_raw(path: Path) -> pd.DataFrame:
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
        if magic == _PARQUET_MAGIC:
            return pd.read_parquet(path)
        if _has_yfinance_header(path):
            return pd.read_csv(path, header=[0, 1], index_col=0)
        return pd.read_csv(path)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise DataSourceError(
            f"cannot read {path}: {type(exc).__name__}: {exc}", hint=ACCEPTED_HINT
        ) from exc


def _has_yfinance_header(path: Path) -> bool:
    """True for ``yfinance.download().to_csv()`` output: rows ``Price,...`` and ``Ticker,...``."""
    try:
        head = pd.read_csv(path, header=None, nrows=2, usecols=[0], dtype="str")
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return False
    first = {str(v).strip().lower() for v in head.iloc[:, 0].tolist()}
    return first == {"price", "ticker"}


def _canonical(name: object) -> str:
    text = re.sub(r"[\s_]+", " ", str(name).strip().lower())
    return {"adjclose": "adj close", "adjusted close": "adj close", "datetime": "date"}.get(
        text, text
    )


def _flat_to_prices(raw: pd.DataFrame, path: Path, ticker: str | None) -> pd.DataFrame:
    frame = raw
    index_name = _canonical(frame.index.name) if frame.index.name is not None else ""
    if index_name == "date" and not any(_canonical(c) == "date" for c in frame.columns):
        frame = frame.reset_index()  # Parquet written from a Date-indexed frame
    frame = frame.set_axis([_canonical(c) for c in frame.columns], axis=1)
    frame = frame.loc[:, ~frame.columns.duplicated()]
    required = list(_FIELDS) if ticker is not None else ["date", "ticker", *_FIELDS[1:]]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataSourceError(
            f"{path} is missing columns: {', '.join(missing)} "
            f"(found: {preview([str(c) for c in raw.columns], limit=12)})",
            hint=ACCEPTED_HINT,
        )
    if "ticker" not in frame.columns:
        frame = frame.assign(ticker=ticker)
    if "adj close" in frame.columns:
        has_adj = pd.to_numeric(frame["adj close"], errors="coerce").notna().any()
        frame = apply_adj_close(frame) if has_adj else frame.drop(columns=["adj close"])
    return normalize_prices(frame)


def _rename_single(prices: pd.DataFrame, ticker: str, path: Path) -> pd.DataFrame:
    found = prices["ticker"].unique().tolist()
    if len(found) <= 1:
        return prices.assign(ticker=ticker) if found else prices
    if ticker in found:
        return prices[prices["ticker"] == ticker].reset_index(drop=True)
    raise DataSourceError(
        f"{path} holds several tickers ({preview(found)}) but none is {ticker}",
        hint="a directory holds one file per ticker, named after it",
    )


def _load_directory(
    directory: Path, tickers: Sequence[str] | None
) -> tuple[pd.DataFrame, dict[str, str]]:
    files = _ticker_files(directory)
    if not files:
        raise DataSourceError(f"no .csv or .parquet price files in {directory}", hint=ACCEPTED_HINT)
    wanted = list(files) if tickers is None else [t for t in tickers if t in files]
    frames = [read_price_file(files[t], ticker=t) for t in wanted]
    frames = [f for f in frames if not f.empty]
    prices = normalize_prices(pd.concat(frames, ignore_index=True)) if frames else empty_prices()
    have = preview(sorted(files))
    absent = [t for t in tickers or [] if t not in files]
    failed = {t: f"unknown ticker: not in {directory.name}/ (has {have})" for t in absent}
    return prices, failed


def _ticker_files(directory: Path) -> dict[str, Path]:
    """``{TICKER: file}`` for the price files directly inside ``directory``."""
    files: dict[str, Path] = {}
    for entry in sorted(directory.iterdir()):
        suffix = next((s for s in _SUFFIXES if entry.name.lower().endswith(s)), None)
        if suffix is None or not entry.is_file() or entry.name.startswith("."):
            continue
        ticker = unquote(entry.name[: -len(suffix)]).strip().upper()
        if ticker in files:
            raise DataSourceError(
                f"two files for {ticker} in {directory}: {files[ticker].name}, {entry.name}",
                hint="keep one file per ticker",
            )
        files[ticker] = entry
    return files
