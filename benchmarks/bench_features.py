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
    timings = {}
    t0 = time.perf_counter()
    clean, report = validate_prices(prices)
    timings["validate"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    features = build_features(clean)
    timings["features"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    X, _index = make_windows(features, seq_len=30)
    timings["windows"] = time.perf_counter() - t2
    total = timings["features"] + timings["windows"]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(
        f"universe: {args.tickers} tickers + ^GSPC x {args.sessions} sessions "
        f"= {ticker_days:,} ticker-days"
    )
    print(f"validation issues: {len(report.issues)}; windows: {X.shape} ({X.nbytes / 1e9:.2f} GB)")
    for name, seconds in timings.items():
        print(f"  {name:<9} {seconds:7.2f} s  {ticker_days / seconds:12,.0f} ticker-days/s")
    print(f"features+windows: {total:.2f} s  -> {ticker_days / total:,.0f} ticker-days/s")
    print(f"target {TARGET_SECONDS:.0f} s: ratio {total / TARGET_SECONDS:.2f} (<= 1.0 meets it)")
    print(f"peak RSS: {peak_mb:,.0f} MB")


if __name__ == "__main__":
    main()
