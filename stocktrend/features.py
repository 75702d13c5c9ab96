"""The 50 model features, computed for every ticker at once.

Every feature is *scale-free* (a return, a ratio, a z-score, a bounded
oscillator or a calendar encoding), so one scaler fitted on the training
windows serves all tickers, and every feature is *causal*: its value at
session t uses only rows dated <= t (the closing auction of t included,
nothing after it).

How: prices are pivoted into panels (sessions x tickers) and every rolling or
exponential statistic runs down each column independently. A column's value at
row t therefore depends only on that column's rows <= t, which makes the
causality property exact (bit-identical) rather than approximate, and keeps
one ticker's data from leaking into another's through shared accumulators.
The benchmark (``^GSPC`` by default) is one more column of the same panels.

Warm-up: the longest look-back is 250 sessions (``pos_range_250``), so the
first ``WARMUP_SESSIONS - 1`` rows of each ticker are dropped. After it, a
valid price frame (see :mod:`stocktrend.validation`) yields no NaN or inf,
zero-volume days included; any non-finite value that still appears (e.g. from
unvalidated input) is kept as NaN so that windows containing it are skipped.

Definitions (c, o, h, l, v = close, open, high, low, volume of the ticker;
r = log(c_t / c_{t-1}); m = the benchmark; SMA/EMA/std over the window given;
"Wilder" = EMA with alpha = 1/n):

==========================  =====================================================  ======
name                        formula                                                window
==========================  =====================================================  ======
ret_1 .. ret_120            log(c_t / c_{t-k}) for k = 1, 5, 10, 20, 60, 120       k
body                        (c - o) / o                                            1
hl_range                    log(h / l)                                             1
upper_shadow                (h - max(o, c)) / o                                    1
lower_shadow                (min(o, c) - l) / o                                    1
close_loc                   (c - l) / (h - l); 0.5 when h == l                     1
gap                         log(o_t / c_{t-1})                                     2
vol_5, vol_20, vol_60       std(r) over k sessions                                 k
parkinson_20                sqrt(mean(log(h/l)^2) / (4 log 2))                     20
atr_14                      Wilder(true range, 14) / c                             14
vol_ratio_5_60              vol_5 / vol_60 - 1                                     60
ma_ratio_20/60/200          c / SMA(c, k) - 1                                      k
ema_ratio_12                c / EMA(c, 12) - 1                                     12
ma_cross_20_60              SMA(c, 20) / SMA(c, 60) - 1                            60
macd                        (EMA(c, 12) - EMA(c, 26)) / c                          26
macd_signal                 EMA(macd, 9)                                           34
macd_hist                   macd - macd_signal                                     34
rsi_14                      Wilder RSI / 100 (0.5 when flat)                       14
stoch_k_14                  (c - min(l, 14)) / (max(h, 14) - min(l, 14))           14
stoch_d_3                   SMA(stoch_k_14, 3)                                     16
williams_r_28               (max(h, 28) - c) / (max(h, 28) - min(l, 28))           28
cci_20                      (tp - SMA(tp, 20)) / (0.015 * std(tp, 20)) / 100,      20
                            tp = (h + l + c) / 3 (std in place of mean deviation)
mfi_14                      money flow index / 100 (0.5 when no volume)            14
bb_pctb_20                  (c - (SMA - 2 sd)) / (4 sd), sd = std(c, 20)           20
bb_width_20                 4 sd / SMA(c, 20)                                      20
volume_z_20                 z-score of log(1 + v) over 20 (0 when constant)        20
volume_ratio_5_20           log((SMA(v, 5) + 1) / (SMA(v, 20) + 1))                20
volume_ratio_1_60           log((v + 1) / (SMA(v, 60) + 1))                        60
signed_volume_20            sum(sign(r) v) / sum(v) over 20 (0 when no volume)     20
pos_range_20/250            (c - min(l, k)) / (max(h, k) - min(l, k))              k
mkt_ret_1, mkt_ret_20       benchmark log return over 1 and 20 sessions            20
mkt_vol_20                  std(r_m) over 20                                       20
beta_60                     cov(r, r_m) / var(r_m) over 60                         60
corr_60                     corr(r, r_m) over 60 (0 when either is flat)           60
rel_strength_20             ret_20 - mkt_ret_20                                    20
dow_sin, dow_cos            day of week (Mon=0..Fri=4) on a 5-day circle           0
month_sin, month_cos        month on a 12-month circle                             0
==========================  =====================================================  ======
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

WARMUP_SESSIONS = 250
"""Rows a ticker needs before its first complete feature row (longest look-back)."""

FEATURE_FAMILIES: dict[str, tuple[str, ...]] = {
    "returns": ("ret_1", "ret_5", "ret_10", "ret_20", "ret_60", "ret_120"),
    "candle": ("body", "hl_range", "upper_shadow", "lower_shadow", "close_loc", "gap"),
    "volatility": ("vol_5", "vol_20", "vol_60", "parkinson_20", "atr_14", "vol_ratio_5_60"),
    "trend": (
        "ma_ratio_20",
        "ma_ratio_60",
        "ma_ratio_200",
        "ema_ratio_12",
        "ma_cross_20_60",
        "macd",
        "macd_signal",
        "macd_hist",
    ),
    "oscillators": ("rsi_14", "stoch_k_14", "stoch_d_3", "williams_r_28", "cci_20", "mfi_14"),
    "bollinger": ("bb_pctb_20", "bb_width_20"),
    "volume": ("volume_z_20", "volume_ratio_5_20", "volume_ratio_1_60", "signed_volume_20"),
    "range": ("pos_range_20", "pos_range_250"),
    "market": ("mkt_ret_1", "mkt_ret_20", "mkt_vol_20", "beta_60", "corr_60", "rel_strength_20"),
    "calendar": ("dow_sin", "dow_cos", "month_sin", "month_cos"),
}

FEATURE_NAMES: tuple[str, ...] = tuple(n for names in FEATURE_FAMILIES.values() for n in names)
"""The 50 feature names, in the order the model consumes them."""

if len(FEATURE_NAMES) != 50 or len(set(FEATURE_NAMES)) != 50:
    raise RuntimeError("FEATURE_NAMES must hold 50 distinct names")  # the model contract


Panel = pd.DataFrame
"""Sessions (rows) x tickers (columns)."""


def build_features(prices: pd.DataFrame, benchmark: str = "^GSPC") -> pd.DataFrame:
    """Compute :data:`FEATURE_NAMES` for every (date, ticker) row past the warm-up.

    ``prices`` is a validated long price frame (``date, ticker, open, high, low,
    close, volume``) that includes the benchmark ticker. Returns float32 features
    indexed by (date, ticker), rows sorted by ticker then date (the layout
    :func:`stocktrend.windows.make_windows` reads without a copy).
    """
    _check_input(prices, benchmark)
    panels = _pivot(prices)
    values = np.full(
        (len(panels["close"].index), len(panels["close"].columns), len(FEATURE_NAMES)),
        np.nan,
        dtype=np.float32,
    )
    for position, (name, panel) in enumerate(_compute(panels, benchmark)):
        if name != FEATURE_NAMES[position]:
            raise RuntimeError(f"feature {name!r} computed out of order")  # a programming error
        values[:, :, position] = panel.to_numpy(dtype=np.float64)
    return _to_long(values, prices, panels["close"])


def _check_input(prices: pd.DataFrame, benchmark: str) -> None:
    missing = {"date", "ticker", "open", "high", "low", "close", "volume"} - set(prices.columns)
    if missing:
        raise ValueError(f"price frame lacks columns {sorted(missing)}")
    if not (prices["ticker"] == benchmark).any():
        raise ValueError(
            f"benchmark {benchmark!r} is not in the price frame; market-context features need "
            "it (load it with the universe, or set STOCKTREND_BENCHMARK)"
        )


def _pivot(prices: pd.DataFrame) -> dict[str, Panel]:
    frame = prices.sort_values(["ticker", "date"])
    return {
        field: frame.pivot(index="date", columns="ticker", values=field).astype("float64")
        for field in ("open", "high", "low", "close", "volume")
    }


def _to_long(values: np.ndarray, prices: pd.DataFrame, template: Panel) -> pd.DataFrame:
    """Gather the computed panel cells back to the input's own rows, warm-up dropped."""
    frame = prices[["date", "ticker"]].sort_values(["ticker", "date"], kind="stable")
    position_in_ticker = frame.groupby("ticker", sort=False).cumcount().to_numpy()
    frame = frame[position_in_ticker >= WARMUP_SESSIONS - 1]
    date_idx = template.index.get_indexer(frame["date"])
    ticker_idx = template.columns.get_indexer(frame["ticker"])
    rows = values[date_idx, ticker_idx, :]
    rows[~np.isfinite(rows)] = np.nan
    index = pd.MultiIndex.from_arrays(
        [frame["date"].to_numpy(), frame["ticker"].to_numpy()], names=["date", "ticker"]
    )
    return pd.DataFrame(rows, index=index, columns=list(FEATURE_NAMES))


# --- building blocks (column-wise, causal) ------------------------------------------


def _sma(x: Panel, n: int) -> Panel:
    return x.rolling(n, min_periods=n).mean()


def _std(x: Panel, n: int) -> Panel:
    return x.rolling(n, min_periods=n).std(ddof=1)


def _ema(x: Panel, span: int) -> Panel:
    return x.ewm(span=span, adjust=False, min_periods=span).mean()


def _wilder(x: Panel, n: int) -> Panel:
    return x.ewm(alpha=1.0 / n, adjust=False, min_periods=n).mean()


def _ratio(num: Panel, den: Panel, when_undefined: float) -> Panel:
    """num / den, with a neutral value where den is 0 (flat price or no volume)."""
    out = num / den.where(den != 0)
    return out.where(den != 0, when_undefined).where(num.notna() & den.notna())


def _range_position(c: Panel, h: Panel, low: Panel, n: int) -> Panel:
    lowest = low.rolling(n, min_periods=n).min()
    highest = h.rolling(n, min_periods=n).max()
    return _ratio(c - lowest, highest - lowest, 0.5)


def _corr(a: Panel, b: Panel, n: int) -> Panel:
    cov = a.rolling(n, min_periods=n).cov(b)
    sd = _std(a, n) * _std(b, n)
    return _ratio(cov, sd, 0.0).clip(-1.0, 1.0)


def _broadcast(series: pd.Series, like: Panel) -> Panel:
    return pd.DataFrame(
        np.repeat(series.to_numpy()[:, None], like.shape[1], axis=1),
        index=like.index,
        columns=like.columns,
    )


# --- the features, in FEATURE_NAMES order --------------------------------------------


def _compute(p: dict[str, Panel], benchmark: str):
    """Yield (name, panel) in :data:`FEATURE_NAMES` order."""
    o, h, low, c, v = p["open"], p["high"], p["low"], p["close"], p["volume"]
    log_c = np.log(c)
    r = log_c.diff()

    for k in (1, 5, 10, 20, 60, 120):
        yield f"ret_{k}", log_c - log_c.shift(k)

    yield "body", (c - o) / o
    yield "hl_range", np.log(h / low)
    yield "upper_shadow", (h - np.maximum(o, c)) / o
    yield "lower_shadow", (np.minimum(o, c) - low) / o
    yield "close_loc", _ratio(c - low, h - low, 0.5)
    yield "gap", np.log(o / c.shift(1))

    vol_5, vol_60 = _std(r, 5), _std(r, 60)
    yield "vol_5", vol_5
    yield "vol_20", _std(r, 20)
    yield "vol_60", vol_60
    yield "parkinson_20", np.sqrt(_sma(np.log(h / low) ** 2, 20) / (4.0 * np.log(2.0)))
    prev_c = c.shift(1)
    true_range = np.maximum(h, prev_c) - np.minimum(low, prev_c)
    yield "atr_14", _wilder(true_range.where(prev_c.notna()), 14) / c
    yield "vol_ratio_5_60", _ratio(vol_5, vol_60, 1.0) - 1.0

    sma_20, sma_60 = _sma(c, 20), _sma(c, 60)
    yield "ma_ratio_20", c / sma_20 - 1.0
    yield "ma_ratio_60", c / sma_60 - 1.0
    yield "ma_ratio_200", c / _sma(c, 200) - 1.0
    ema_12, ema_26 = _ema(c, 12), _ema(c, 26)
    yield "ema_ratio_12", c / ema_12 - 1.0
    yield "ma_cross_20_60", sma_20 / sma_60 - 1.0
    macd = (ema_12 - ema_26) / c
    signal = _ema(macd, 9)
    yield "macd", macd
    yield "macd_signal", signal
    yield "macd_hist", macd - signal

    change = c.diff()
    gain = _wilder(change.clip(lower=0.0), 14)
    loss = _wilder((-change).clip(lower=0.0), 14)
    yield "rsi_14", _ratio(gain, gain + loss, 0.5)
    stoch_k = _range_position(c, h, low, 14)
    yield "stoch_k_14", stoch_k
    yield "stoch_d_3", _sma(stoch_k, 3)
    yield "williams_r_28", 1.0 - _range_position(c, h, low, 28)
    typical = (h + low + c) / 3.0
    yield "cci_20", _ratio(typical - _sma(typical, 20), 0.015 * _std(typical, 20), 0.0) / 100.0
    flow = typical * v
    tp_change = typical.diff()
    up_flow = _sum(flow.where(tp_change > 0, 0.0).where(tp_change.notna()), 14)
    down_flow = _sum(flow.where(tp_change < 0, 0.0).where(tp_change.notna()), 14)
    yield "mfi_14", _ratio(up_flow, up_flow + down_flow, 0.5)

    sd_20 = _std(c, 20)
    yield "bb_pctb_20", _ratio(c - (sma_20 - 2.0 * sd_20), 4.0 * sd_20, 0.5)
    yield "bb_width_20", 4.0 * sd_20 / sma_20

    log_v = np.log1p(v)
    yield "volume_z_20", _ratio(log_v - _sma(log_v, 20), _std(log_v, 20), 0.0)
    yield "volume_ratio_5_20", np.log((_sma(v, 5) + 1.0) / (_sma(v, 20) + 1.0))
    yield "volume_ratio_1_60", np.log((v + 1.0) / (_sma(v, 60) + 1.0))
    yield "signed_volume_20", _ratio(_sum(np.sign(r) * v, 20), _sum(v.where(r.notna()), 20), 0.0)

    yield "pos_range_20", _range_position(c, h, low, 20)
    yield "pos_range_250", _range_position(c, h, low, WARMUP_SESSIONS)

    r_m = _broadcast(r[benchmark], r)
    log_m = _broadcast(log_c[benchmark], r)
    mkt_ret_20 = log_m - log_m.shift(20)
    yield "mkt_ret_1", r_m
    yield "mkt_ret_20", mkt_ret_20
    yield "mkt_vol_20", _std(r_m, 20)
    cov = r.rolling(60, min_periods=60).cov(r_m)
    yield "beta_60", _ratio(cov, _std(r_m, 60) ** 2, 0.0)
    yield "corr_60", _corr(r, r_m, 60)
    yield "rel_strength_20", (log_c - log_c.shift(20)) - mkt_ret_20

    yield from _calendar(c)


def _sum(x: Panel, n: int) -> Panel:
    return x.rolling(n, min_periods=n).sum()


def _calendar(like: Panel):
    dates = pd.DatetimeIndex(like.index)
    encodings: dict[str, Callable[[pd.DatetimeIndex], np.ndarray]] = {
        "dow_sin": lambda d: np.sin(2 * np.pi * d.dayofweek.to_numpy() / 5.0),
        "dow_cos": lambda d: np.cos(2 * np.pi * d.dayofweek.to_numpy() / 5.0),
        "month_sin": lambda d: np.sin(2 * np.pi * (d.month.to_numpy() - 1) / 12.0),
        "month_cos": lambda d: np.cos(2 * np.pi * (d.month.to_numpy() - 1) / 12.0),
    }
    present = like.notna()
    for name, encode in encodings.items():
        yield name, _broadcast(pd.Series(encode(dates), index=like.index), like).where(present)
