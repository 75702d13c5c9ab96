"""Daily scoring and backfill on a 500-ticker universe (renamed, perturbed copies of the sample).

Run: ``.venv/bin/python benchmarks/bench_scoring.py [--tickers 500] [--backfill-months 3]
[--engine auto]``

1. Daily scoring of one session from a local file source, timed stage by stage through the
   same library calls the flow's tasks make (load, validate, features+windows, score, write
   SQLite + Parquet), then the whole `daily-scoring` flow end to end (Prefect's temporary
   server is started before timing by a warm-up flow run, so its start-up is excluded).
2. The `backfill` flow over 500 tickers x N months: predictions per second, first with the
   `reference` engine (before), then again (``overwrite``) with ``--engine`` (after; default
   `auto`, whose choice is settled and its exports built before timing starts).

Targets on 2 cores: daily scoring <= 15 s without server start. Everything runs under a
temporary STOCKTREND_HOME. No assertions: this prints measurements.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import pandas as pd
from universe import replicated_universe

DAILY_TARGET_S = 15.0


def _stage(timings: dict[str, float], name: str, started: float) -> float:
    now = time.perf_counter()
    timings[name] = now - started
    return now


def daily_stages(
    source: str, tickers: list[str], day: pd.Timestamp, engine: str
) -> dict[str, float]:
    from stocktrend.checkpoint import load_checkpoint
    from stocktrend.config import get_settings
    from stocktrend.data import load_prices_with_report
    from stocktrend.inference import load_engine
    from stocktrend.models import resolve_model
    from stocktrend.scoring import build_scoring_windows, history_start, score_windows
    from stocktrend.sinks import write_both
    from stocktrend.validation import validate_prices

    settings = get_settings()
    timings: dict[str, float] = {}
    t = time.perf_counter()
    prices, _ = load_prices_with_report(
        source, [*tickers, settings.benchmark], history_start(day), day
    )
    t = _stage(timings, "load", t)
    clean, _ = validate_prices(prices)
    t = _stage(timings, "validate", t)
    X, index, _skipped = build_scoring_windows(
        clean, [day], tickers, benchmark=settings.benchmark, seq_len=settings.seq_len
    )
    t = _stage(timings, "features+windows", t)
    bundle = load_checkpoint(resolve_model(settings.model, settings))
    with load_engine(bundle, engine, cache_dir=settings.engines_dir) as scorer:
        predictions = score_windows(bundle, X, index, engine=scorer)
    t = _stage(timings, f"score ({scorer.name})", t)
    write_both(
        predictions, settings, mode="replace_day", day=day, model_version=bundle.model_version
    )
    _stage(timings, "write", t)
    timings["windows"] = len(index)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickers", type=int, default=500)
    parser.add_argument("--backfill-months", type=int, default=3)
    parser.add_argument("--engine", default="auto", help="the 'after' engine (see --help of score)")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="stocktrend-bench-"))
    os.environ["STOCKTREND_HOME"] = str(home)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

    universe = replicated_universe(args.tickers)
    lake = home / "universe.parquet"
    universe.to_parquet(lake, index=False)
    source = f"file:{lake}"
    tickers = sorted(t for t in universe["ticker"].unique() if t != "^GSPC")
    day = universe["date"].max()
    print(f"universe: {len(tickers)} tickers, {len(universe):,} price rows, file source {lake}")

    stages = daily_stages(source, tickers, day, "reference")
    total = sum(v for k, v in stages.items() if k != "windows")
    print(f"\ndaily scoring of {day.date()} ({int(stages['windows'])} windows), library path:")
    for name, seconds in stages.items():
        if name != "windows":
            print(f"  {name:<17} {seconds:6.2f} s")
    print(
        f"  {'total':<17} {total:6.2f} s  (target {DAILY_TARGET_S:.0f} s: ratio "
        f"{total / DAILY_TARGET_S:.2f})"
    )

    from flows.backfill import backfill
    from flows.daily_scoring import daily_scoring

    daily_scoring(as_of=str(day.date()), universe=tickers[:1], source=source)  # server warm-up
    t = time.perf_counter()
    summary = daily_scoring(as_of=str(day.date()), universe=tickers, source=source)
    flow_seconds = time.perf_counter() - t
    print(
        f"\ndaily-scoring flow end to end (server already up): {flow_seconds:.2f} s for "
        f"{summary['n_scored']} predictions (target ratio {flow_seconds / DAILY_TARGET_S:.2f})"
    )

    end = day
    start = (end - pd.DateOffset(months=args.backfill_months)) + pd.Timedelta(days=1)
    _settle_engine(args.engine)
    for label, engine in (("before", "reference"), ("after", args.engine)):
        t = time.perf_counter()
        result = backfill(
            start=str(start.date()),
            end=str(end.date()),
            universe=tickers,
            source=source,
            engine=engine,
            overwrite=True,
        )
        seconds = time.perf_counter() - t
        print(
            f"\nbackfill flow {label} ({result['engine']}) {result['period']} x {len(tickers)} "
            f"tickers: {result['n_scored']:,} predictions in {seconds:.1f} s = "
            f"{result['n_scored'] / seconds:,.0f} predictions/s ({result['n_chunks']} chunks)"
        )
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")
    print(f"(scratch home left at {home})")


def _settle_engine(engine: str) -> None:
    """Build the engine's exports (and auto's choice) untimed, as a worker's first run does."""
    from stocktrend.checkpoint import load_checkpoint
    from stocktrend.config import get_settings
    from stocktrend.inference import engine_summary, load_engine
    from stocktrend.models import resolve_model

    settings = get_settings()
    bundle = load_checkpoint(resolve_model(settings.model, settings))
    t = time.perf_counter()
    with load_engine(bundle, engine, cache_dir=settings.engines_dir) as chosen:
        print(f"\nengine {engine}: {engine_summary(chosen)['description']}", end="")
    print(f" (settled in {time.perf_counter() - t:.1f} s, untimed)")


if __name__ == "__main__":
    main()
