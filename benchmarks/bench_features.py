"""Features + windows end to end on 500 tickers x 2,520 sessions.

Run: ``.venv/bin/python benchmarks/bench_features.py [--tickers 500] [--sessions 2520]``.
Prints ticker-days per second, the time against the 20 s target on 2 cores,
and peak RSS. No assertion on time: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import resource
import time

from universe import replicated_universe

from stocktrend.features import build_features
from stocktrend.validation import validate_prices
from stocktrend.windows import make_windows

TARGET_SECONDS = 20.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickers", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=2520)
    args = parser.parse_args()

    prices = replicated_universe(args.tickers, args.sessions)
    ticker_days = len(prices)
    print(
        f"universe: {args.tickers} tickers + ^GSPC x {args.sessions} sessions "
        f"= {ticker_days:,} ticker-days"
    )
    t0 = time.perf_counter()
    clean, report = validate_prices(prices)
    print(f"validate: {time.perf_counter() - t0:.2f} s ({len(report.issues)} issue(s))")
    # Round 1 pays the first touch of ~6.7 GB of fresh memory for the windows (slow on VMs,
    # see touch_seconds below); round 2 reuses the freed pages: the compute cost alone.
    for label in ("round 1 (cold memory)", "round 2 (warm memory)"):
        timings = {}
        t1 = time.perf_counter()
        features = build_features(clean)
        timings["features"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        X, _index = make_windows(features, seq_len=30)
        timings["windows"] = time.perf_counter() - t2
        total = timings["features"] + timings["windows"]
        print(f"{label}: windows {X.shape} ({X.nbytes / 1e9:.2f} GB)")
        for name, seconds in timings.items():
            print(f"  {name:<9} {seconds:7.2f} s  {ticker_days / seconds:12,.0f} ticker-days/s")
        print(
            f"  features+windows {total:.2f} s -> {ticker_days / total:,.0f} ticker-days/s; "
            f"target {TARGET_SECONDS:.0f} s: ratio {total / TARGET_SECONDS:.2f} (<= 1 meets it)"
        )
        nbytes = X.nbytes
        del X, features
    print(f"first touch of {nbytes / 1e9:.2f} GB fresh memory: {touch_seconds(nbytes):.2f} s")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")


def touch_seconds(nbytes: int) -> float:
    """What the machine charges for faulting in this much new memory, for context."""
    import numpy as np

    started = time.perf_counter()
    block = np.empty(nbytes // 4, dtype=np.float32)
    block[::1024] = 1.0
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
