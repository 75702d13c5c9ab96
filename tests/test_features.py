"""Features: the 50-name contract, finiteness on real data, and exact causality."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stocktrend.features import FEATURE_NAMES, WARMUP_SESSIONS, build_features
from stocktrend.windows import make_windows


@pytest.fixture(scope="module")
def small(sample_prices: pd.DataFrame) -> pd.DataFrame:
    """Three real series over four years: enough for warm-up plus windows, fast to rebuild."""
    keep = sample_prices["ticker"].isin(["MSFT", "IBM", "^GSPC"])
    span = (sample_prices["date"] >= "2003-01-01") & (sample_prices["date"] <= "2006-12-31")
    return sample_prices[keep & span].reset_index(drop=True)


def _documented_names(doc: str) -> list[str]:
    """Expand the first column of the module docstring's feature table into feature names.

    Spellings used there: ``a, b``; ``base_20/60/200``; ``ret_1 .. ret_120`` with
    the k values listed in its formula (``k = 1, 5, ...``). Continuation lines
    have an empty first column.
    """
    lines = doc.splitlines()
    rules = [i for i, line in enumerate(lines) if line.startswith("=====")]
    names: list[str] = []
    for line in lines[rules[1] + 1 : rules[2]]:
        cell, rest = line[:28].strip(), line[28:]
        if not cell:
            continue
        if ".." in cell:
            first = cell.split("..")[0].strip()
            base = first.rsplit("_", 1)[0] + "_"
            ks = re.search(r"k = ([\d, ]+)", rest).group(1)
            names += [base + k.strip() for k in ks.split(",")]
        elif "/" in cell:
            head, *more = cell.split("/")
            base, first = head.rsplit("_", 1)
            names += [f"{base}_{k}" for k in (first, *more)]
        else:
            names += [part.strip() for part in cell.split(",")]
    return names


def test_fifty_documented_names() -> None:
    import stocktrend.features as module

    documented = _documented_names(module.__doc__)
    assert len(documented) == len(set(documented)) == 50
    assert set(documented) == set(FEATURE_NAMES)


def test_sample_features_are_finite_after_warmup(sample_prices: pd.DataFrame) -> None:
    feats = build_features(sample_prices)
    assert list(feats.columns) == list(FEATURE_NAMES)
    assert feats.index.names == ["date", "ticker"]
    assert (feats.dtypes == np.float32).all()
    assert np.isfinite(feats.to_numpy()).all()
    rows = sample_prices.groupby("ticker").size()
    assert (feats.groupby(level="ticker").size() == rows - (WARMUP_SESSIONS - 1)).all()


def test_zero_volume_day_stays_finite(small: pd.DataFrame) -> None:
    prices = small.copy()
    day = prices.index[(prices["ticker"] == "MSFT") & (prices["date"] == "2006-06-01")]
    prices.loc[day, "volume"] = 0.0
    feats = build_features(prices)
    assert np.isfinite(feats.to_numpy()).all()


def test_flat_prices_give_neutral_oscillators(small: pd.DataFrame) -> None:
    prices = small.copy()
    flat = prices["ticker"] == "IBM"
    for column in ("open", "high", "low", "close"):
        prices.loc[flat, column] = 100.0
    feats = build_features(prices).xs("IBM", level="ticker")
    assert np.isfinite(feats.to_numpy()).all()
    assert (feats["rsi_14"] == 0.5).all() and (feats["close_loc"] == 0.5).all()
    assert (feats["ret_20"] == 0.0).all()


def test_hand_computed_values(small: pd.DataFrame) -> None:
    feats = build_features(small).xs("MSFT", level="ticker")
    msft = small[small["ticker"] == "MSFT"].set_index("date")
    day = feats.index[100]
    pos = msft.index.get_loc(day)
    close = msft["close"]
    assert feats.loc[day, "ret_5"] == pytest.approx(np.log(close.iloc[pos] / close.iloc[pos - 5]))
    sma20 = close.iloc[pos - 19 : pos + 1].mean()
    assert feats.loc[day, "ma_ratio_20"] == pytest.approx(close.iloc[pos] / sma20 - 1, rel=1e-5)
    r = np.log(close).diff()
    assert feats.loc[day, "vol_20"] == pytest.approx(r.iloc[pos - 19 : pos + 1].std(), rel=1e-5)
    gspc = small[small["ticker"] == "^GSPC"].set_index("date")["close"]
    assert feats.loc[day, "mkt_ret_1"] == pytest.approx(
        np.log(gspc.loc[day] / gspc.shift(1).loc[day])
    )


def test_missing_benchmark_is_a_clear_error(small: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="benchmark '\\^GSPC' is not in the price frame"):
        build_features(small[small["ticker"] != "^GSPC"])


def _rows_up_to(frame: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    return frame[frame.index.get_level_values("date") <= cutoff]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cut=st.integers(min_value=WARMUP_SESSIONS + 40, max_value=900),
    mode=st.sampled_from(["truncate", "perturb", "delete"]),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_future_prices_never_change_the_past(small: pd.DataFrame, cut: int, mode: str, seed: int):
    """Change or delete any prices after t: features and windows at dates <= t are bit-identical."""
    dates = np.sort(small["date"].unique())
    cutoff = pd.Timestamp(dates[cut])
    after = small["date"] > cutoff
    rng = np.random.default_rng(seed)
    changed = small.copy()
    if mode == "truncate":
        changed = changed[~after]
    elif mode == "perturb":
        factor = np.exp(rng.normal(0.0, 0.05, size=int(after.sum())))
        for column in ("open", "high", "low", "close"):
            changed.loc[after, column] = changed.loc[after, column] * factor
        changed.loc[after, "volume"] = changed.loc[after, "volume"] * rng.uniform(0, 3, after.sum())
    else:  # delete a random subset of future rows, gaps included
        drop = after & (rng.random(len(changed)) < 0.3)
        changed = changed[~drop]

    base = _rows_up_to(build_features(small), cutoff)
    other = _rows_up_to(build_features(changed), cutoff)
    pd.testing.assert_frame_equal(base, other, check_exact=True)

    as_of = pd.DatetimeIndex(dates[cut - 5 : cut + 1])
    X1, i1 = make_windows(base, as_of_dates=as_of)
    X2, i2 = make_windows(other, as_of_dates=as_of)
    assert len(i1) > 0
    pd.testing.assert_frame_equal(i1, i2)
    assert np.array_equal(X1, X2)
