"""Windows, labels and purged splits on the real sample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from stocktrend import calendar
from stocktrend.features import FEATURE_NAMES, build_features
from stocktrend.scaler import Scaler
from stocktrend.windows import (
    chronological_split,
    forward_returns,
    lookup,
    make_labels,
    make_windows,
)


@pytest.fixture(scope="module")
def features(sample_prices: pd.DataFrame) -> pd.DataFrame:
    return build_features(sample_prices)


def test_windows_shape_dtype_order(features: pd.DataFrame) -> None:
    X, index = make_windows(features, seq_len=30)
    assert X.dtype == np.float32 and X.flags.c_contiguous
    assert X.shape == (len(index), 30, len(FEATURE_NAMES))
    assert list(index.columns) == ["ticker", "as_of_date"]
    # ordered by ticker, then as-of date; one window per feature row past the first 29
    assert index.equals(index.sort_values(["ticker", "as_of_date"]).reset_index(drop=True))
    expected = features.groupby(level="ticker").size() - 29
    assert index.groupby("ticker").size().to_dict() == expected.to_dict()
    assert index.attrs["skipped"] == {"gap": 0, "nan": 0}


def test_one_window_equals_a_hand_slice(features: pd.DataFrame) -> None:
    X, index = make_windows(features, seq_len=30)
    row = index.index[(index["ticker"] == "GOOG") & (index["as_of_date"] == "2010-06-15")][0]
    goog = features.xs("GOOG", level="ticker")
    end = goog.index.get_loc(pd.Timestamp("2010-06-15"))
    hand = goog.iloc[end - 29 : end + 1].to_numpy(dtype=np.float32)
    assert np.array_equal(X[row], hand)
    assert goog.index[end - 29] == calendar.session_offset("2010-06-15", -29)


def test_as_of_dates_select_windows(features: pd.DataFrame) -> None:
    X, index = make_windows(features, as_of_dates=["2013-03-01", "2004-08-20"])
    per_day = index.groupby("as_of_date")["ticker"].apply(sorted).to_dict()
    everyone = ["AAPL", "GOOG", "IBM", "MSFT", "^GSPC", "^IXIC"]
    assert per_day[pd.Timestamp("2013-03-01")] == everyone
    assert per_day[pd.Timestamp("2004-08-20")] == [t for t in everyone if t != "GOOG"]  # too new
    assert X.shape == (11, 30, 50)


def test_windows_spanning_a_gap_are_skipped_and_counted(sample_prices: pd.DataFrame) -> None:
    gap_day = pd.Timestamp("2012-06-01")
    prices = sample_prices[
        ~((sample_prices["ticker"] == "IBM") & (sample_prices["date"] == gap_day))
    ]
    X, index = make_windows(build_features(prices), seq_len=30)
    ibm = index[index["ticker"] == "IBM"]["as_of_date"]
    after = calendar.sessions(gap_day, "2013-03-01")
    # no IBM window ends within 29 sessions after the hole, or contains a NaN look-back
    assert not ibm.isin(after[:29]).any()
    assert index.attrs["skipped"]["gap"] == 29
    assert index.attrs["skipped"]["nan"] > 0
    assert np.isfinite(X).all()


def test_labels_on_a_hand_computed_example() -> None:
    dates = calendar.sessions("2012-01-03", "2012-01-11")  # 7 sessions
    close = [10.0, 11.0, 10.5, 10.5, 12.0, 9.0, 9.5]
    prices = pd.DataFrame({"date": dates, "ticker": "X", "close": close})
    labels = make_labels(prices, horizon=2).xs("X", level="ticker")
    # t=0: 10.5 > 10 -> 1; t=1: 10.5 > 11 -> 0; t=2: 12 > 10.5 -> 1; t=3: 9 > 10.5 -> 0;
    # t=4: 9.5 > 12 -> 0; the last two have no t+2 yet -> NaN (never "bearish").
    expected = [1.0, 0.0, 1.0, 0.0, 0.0, np.nan, np.nan]
    np.testing.assert_array_equal(labels.to_numpy(), expected)
    fwd = forward_returns(prices, horizon=2).xs("X", level="ticker")
    assert fwd.iloc[0] == pytest.approx(0.05)


def test_labels_align_with_windows(sample_prices: pd.DataFrame, features: pd.DataFrame) -> None:
    _, index = make_windows(features, as_of_dates=["2011-05-02"])
    labels = lookup(make_labels(sample_prices, 10), index)
    msft = sample_prices[sample_prices["ticker"] == "MSFT"].set_index("date")["close"]
    ahead = calendar.session_offset("2011-05-02", 10)
    expected = float(msft.loc[ahead] > msft.loc["2011-05-02"])
    assert labels[index["ticker"].tolist().index("MSFT")] == expected


def test_split_leaves_a_purge_gap(features: pd.DataFrame) -> None:
    _, index = make_windows(features)
    split = chronological_split(index, "2008-12-31", "2010-12-31", horizon=10)
    as_of = pd.DatetimeIndex(index["as_of_date"])
    sessions = calendar.sessions("2000-01-01", "2013-12-31")

    def gap(a: pd.Timestamp, b: pd.Timestamp) -> int:
        return sessions.get_loc(b) - sessions.get_loc(a)

    last_train, first_val = as_of[split.train].max(), as_of[split.val].min()
    last_val, first_test = as_of[split.val].max(), as_of[split.test].min()
    assert gap(last_train, first_val) >= 10 and gap(last_val, first_test) >= 10
    # every training label resolves on or before train_end
    assert calendar.session_offset(last_train, 10) <= pd.Timestamp("2008-12-31")
    assert calendar.session_offset(last_val, 10) <= pd.Timestamp("2010-12-31")
    assert not set(split.train) & set(split.val) and not set(split.val) & set(split.test)


def test_scaler_sees_training_rows_only(features: pd.DataFrame) -> None:
    X, index = make_windows(features)
    split = chronological_split(index, "2008-12-31", "2010-12-31", horizon=10)
    fitted = Scaler.fit(X[split.train])
    poisoned = X.copy()
    poisoned[split.test] += 1000.0  # a scaler that looked at test windows would move
    again = Scaler.fit(poisoned[split.train])
    np.testing.assert_array_equal(fitted.mean, again.mean)
    assert not np.allclose(Scaler.fit(poisoned).mean, fitted.mean)
    restored = Scaler.from_dict(fitted.to_dict())
    np.testing.assert_array_equal(restored.transform(X[:3]), fitted.transform(X[:3]))
