"""A large synthetic-but-realistic universe for benchmarks: renamed, perturbed copies of the sample.

Each copy takes one real series from the bundled sample and adds small i.i.d.
noise to its daily log returns (so no two tickers are identical and caches or
dedupe cannot cheat), keeping the candle shape and the real volume profile.
The benchmark ``^GSPC`` is kept as it is.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stocktrend.data import load_prices

BASES = ("AAPL", "IBM", "MSFT", "^IXIC")


def replicated_universe(n_tickers: int, n_sessions: int = 2520, seed: int = 0) -> pd.DataFrame:
    """``n_tickers`` perturbed copies plus ``^GSPC``, ``n_sessions`` each, ending 2013-03-01."""
    sample = load_prices("sample")
    rng = np.random.default_rng(seed)
    frames = [_last(sample, "^GSPC", n_sessions)]
    for i in range(n_tickers):
        base = _last(sample, BASES[i % len(BASES)], n_sessions)
        frames.append(_perturb(base, f"T{i:04d}", rng))
    return pd.concat(frames, ignore_index=True)


def _last(sample: pd.DataFrame, ticker: str, n: int) -> pd.DataFrame:
    return sample[sample["ticker"] == ticker].tail(n).reset_index(drop=True)


def _perturb(frame: pd.DataFrame, ticker: str, rng: np.random.Generator) -> pd.DataFrame:
    noise = rng.normal(0.0, 0.004, size=len(frame))
    noise[0] = 0.0
    factor = np.exp(np.cumsum(noise))
    out = frame.copy()
    for column in ("open", "high", "low", "close"):
        out[column] = frame[column] * factor
    out["volume"] = np.round(frame["volume"] * rng.uniform(0.5, 1.5))
    out["ticker"] = ticker
    return out
