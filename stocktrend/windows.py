"""Model windows, labels and purged chronological splits.

A window for (ticker, t) is the ``seq_len`` consecutive NYSE sessions ending at
t, each a row of the 50 features; the label for (ticker, t) looks ``horizon``
sessions ahead. Windows therefore only ever see data known at the close of t,
and labels only the future, which is why splits must leave a purge gap: the
last training label must resolve before the first validation window starts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from stocktrend import calendar


def make_windows(
    features: pd.DataFrame,
    as_of_dates: pd.DatetimeIndex | list | None = None,
    seq_len: int = 30,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Cut ``features`` (from :func:`~stocktrend.features.build_features`) into windows.

    Returns ``X`` float32 ``(N, seq_len, F)`` and ``index`` with columns
    ``[ticker, as_of_date]``, one row per window, ordered by ticker then date.
    A window is skipped when it spans a missing session (a gap in the ticker's
    history) or holds a NaN; the counts are in ``index.attrs["skipped"]``.
    With ``as_of_dates`` only windows ending on those dates are built.
    """
    frame = _ticker_major(features)
    # pandas hands a single-dtype frame back column-major; windows need row-major rows.
    values = np.ascontiguousarray(frame.to_numpy(dtype=np.float32))
    dates = frame.index.get_level_values("date").to_numpy()
    tickers = frame.index.get_level_values("ticker").to_numpy()
    n_rows, n_features = values.shape
    empty_index = pd.DataFrame(
        {"ticker": pd.Series([], dtype="str"), "as_of_date": pd.Series([], dtype="datetime64[ns]")}
    )
    if n_rows < seq_len:
        empty_index.attrs["skipped"] = {"gap": 0, "nan": 0}
        return np.empty((0, seq_len, n_features), dtype=np.float32), empty_index

    ends = np.arange(seq_len - 1, n_rows)
    starts = ends - (seq_len - 1)
    same_ticker = tickers[starts] == tickers[ends]
    wanted = same_ticker
    if as_of_dates is not None:
        targets = pd.DatetimeIndex(as_of_dates).as_unit("ns").to_numpy()
        wanted = wanted & np.isin(dates[ends], targets)

    session_pos = _session_positions(dates)
    contiguous = (session_pos[ends] - session_pos[starts]) == seq_len - 1
    bad_rows = np.concatenate([[0], np.cumsum(~np.isfinite(values).all(axis=1))])
    finite = (bad_rows[ends + 1] - bad_rows[starts]) == 0

    keep = wanted & contiguous & finite
    skipped = {
        "gap": int((wanted & ~contiguous).sum()),
        "nan": int((wanted & contiguous & ~finite).sum()),
    }
    # With C-ordered rows, window i is the contiguous block values[i : i + seq_len]; the
    # gather through this zero-copy view is one block copy per window, already laid out
    # C-contiguously as (N, seq_len, F) (ascontiguousarray is then a no-op safeguard).
    view = sliding_window_view(values, seq_len, axis=0).transpose(0, 2, 1)
    X = np.ascontiguousarray(view[starts[keep]])
    index = pd.DataFrame(
        {"ticker": tickers[ends[keep]], "as_of_date": pd.DatetimeIndex(dates[ends[keep]])}
    )
    index.attrs["skipped"] = skipped
    return X, index


def _ticker_major(features: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by (ticker, date); a no-op for build_features output."""
    tickers = features.index.get_level_values("ticker")
    dates = features.index.get_level_values("date")
    order = np.lexsort((dates.to_numpy(), tickers.to_numpy()))
    if np.array_equal(order, np.arange(len(order))):
        return features
    return features.iloc[order]


def _session_positions(dates: np.ndarray) -> np.ndarray:
    """Position of each date in the NYSE calendar, so gaps show as jumps > 1.

    Dates that are not sessions get -10**9 offsets so no window spans them.
    """
    if len(dates) == 0:
        return np.empty(0, dtype=np.int64)
    unique = pd.DatetimeIndex(np.unique(dates))
    all_sessions = calendar.sessions(unique.min(), unique.max())
    pos = all_sessions.get_indexer(pd.DatetimeIndex(dates))
    return np.where(pos >= 0, pos, -(10**9) - np.arange(len(pos))).astype(np.int64)


def forward_returns(prices: pd.DataFrame, horizon: int = 10) -> pd.Series:
    """Simple return close(t + h) / close(t) - 1 over ``horizon`` sessions, per ticker.

    Indexed by (date, ticker); NaN where t + h is not in the data yet. Rows are
    assumed to be consecutive sessions per ticker (what validation guarantees).
    """
    frame = prices[["date", "ticker", "close"]].sort_values(["ticker", "date"])
    future = frame.groupby("ticker", sort=False)["close"].shift(-horizon)
    values = (future / frame["close"] - 1.0).to_numpy()
    index = pd.MultiIndex.from_arrays(
        [frame["date"].to_numpy(), frame["ticker"].to_numpy()], names=["date", "ticker"]
    )
    return pd.Series(values, index=index, name=f"fwd_ret_{horizon}")


def make_labels(prices: pd.DataFrame, horizon: int = 10) -> pd.Series:
    """1.0 when close(t + h) > close(t) (bullish, "Alcista"), 0.0 otherwise (bearish).

    NaN where t + h has not happened yet, so unresolved rows can never be
    mistaken for bearish ones. Indexed by (date, ticker).
    """
    fwd = forward_returns(prices, horizon)
    labels = (fwd > 0).astype("float64").where(fwd.notna())
    return labels.rename(f"label_{horizon}")


def lookup(series: pd.Series, index: pd.DataFrame) -> np.ndarray:
    """Values of a (date, ticker) series for each window in ``index`` (NaN if absent)."""
    keys = pd.MultiIndex.from_arrays(
        [pd.DatetimeIndex(index["as_of_date"]), index["ticker"].to_numpy()],
        names=["date", "ticker"],
    )
    return series.reindex(keys).to_numpy(dtype=np.float64)


@dataclass(frozen=True)
class Split:
    """Positions (into a window index) of the train, validation and test windows."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    train_last: pd.Timestamp
    val_first: pd.Timestamp
    val_last: pd.Timestamp
    test_first: pd.Timestamp
    horizon: int

    def describe(self) -> dict[str, object]:
        return {
            "train_windows": len(self.train),
            "val_windows": len(self.val),
            "test_windows": len(self.test),
            "train_as_of_last": str(self.train_last.date()),
            "val_as_of": [str(self.val_first.date()), str(self.val_last.date())],
            "test_as_of_first": str(self.test_first.date()),
            "purge_sessions": self.horizon,
        }


def chronological_split(
    index: pd.DataFrame,
    train_end: str | pd.Timestamp,
    val_end: str | pd.Timestamp,
    horizon: int = 10,
    test_end: str | pd.Timestamp | None = None,
) -> Split:
    """Split windows by as-of date with a purge of ``horizon`` sessions before each boundary.

    Training windows end at least ``horizon`` sessions before ``train_end`` so
    that their labels (t + horizon) resolve on or before it; validation windows
    start after ``train_end`` and likewise stop ``horizon`` sessions before
    ``val_end``; test windows start after ``val_end``. Between the last as-of
    date of one part and the first of the next there are therefore at least
    ``horizon`` sessions, and no label period overlaps the next part.
    """
    train_end, val_end = pd.Timestamp(train_end), pd.Timestamp(val_end)
    if val_end <= train_end:
        raise ValueError(f"val_end {val_end.date()} must be after train_end {train_end.date()}")
    train_cut = calendar.session_offset(train_end, -horizon)
    val_cut = calendar.session_offset(val_end, -horizon)
    as_of = pd.DatetimeIndex(index["as_of_date"])
    train = np.flatnonzero(as_of <= train_cut)
    val = np.flatnonzero((as_of > train_end) & (as_of <= val_cut))
    test_mask = as_of > val_end
    if test_end is not None:
        test_mask &= as_of <= pd.Timestamp(test_end)
    test = np.flatnonzero(test_mask)
    return Split(
        train=train,
        val=val,
        test=test,
        train_last=train_cut,
        val_first=calendar.session_offset(train_end, 1),
        val_last=val_cut,
        test_first=calendar.session_offset(val_end, 1),
        horizon=horizon,
    )
