"""Scoring: from validated prices and a model bundle to prediction records.

The flows call these functions and only these; everything they decide (which
tickers can be scored on a session, why the others cannot, what a prediction
row holds) lives here so it is testable without Prefect.

Daily scoring and backfill share one path: :func:`score_sessions` builds the
features once per ticker for the whole requested range and cuts windows for
every requested session, so backfilling N sessions costs one feature pass, not
N. Daily scoring is the one-session case.

Exponentially weighted features (EMA, MACD, ATR, RSI) depend, in principle, on
all history loaded; :data:`LOOKBACK_SESSIONS` of history makes the truncation
error ((1 - alpha)^n, at most (25/27)^600 ~ 1e-20) far below float32
resolution, so a day scored alone and the same day inside a backfill agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from stocktrend import CLASS_NAMES, calendar
from stocktrend.checkpoint import ModelBundle, predict_proba
from stocktrend.errors import DataSourceError
from stocktrend.features import WARMUP_SESSIONS, build_features
from stocktrend.windows import make_windows

if TYPE_CHECKING:  # the engines pull in ONNX Runtime; scoring only needs their interface
    from stocktrend.inference import Engine

DEFAULT_BATCH_SIZE = 256
"""Windows per forward pass of the reference path when none is configured."""

LOOKBACK_SESSIONS = 600
"""Sessions of history loaded before the first scored session."""

TICKER_PATTERN = re.compile(r"^\^?[A-Z0-9.=-]{1,15}$")

PREDICTION_COLUMNS = (
    "as_of_date",
    "ticker",
    "prob_up",
    "predicted_class",
    "label",
    "horizon",
    "model_version",
    "model_sha256",
    "flow_run_id",
    "created_at",
)


@dataclass
class ScoreResult:
    """Predictions plus, for every requested ticker that got none, the reason."""

    predictions: pd.DataFrame
    skipped: dict[str, str] = field(default_factory=dict)
    """ticker -> why it could not be scored (too little history, no price that day, ...)."""
    failed: dict[str, str] = field(default_factory=dict)
    """ticker -> why its data could not be used (unknown ticker, source error, bad prices)."""

    @property
    def n_scored(self) -> int:
        return len(self.predictions)


def parse_universe(spec: str | Path | list[str] | None, default: list[str]) -> list[str]:
    """Tickers from a comma-separated string, a list, or a file (one per line or a CSV column).

    Symbols are upper-cased and de-duplicated in order; validity is checked
    separately (:func:`split_valid_tickers`) so a bad symbol is reported, not fatal.
    """
    if spec is None or spec == "" or spec == []:
        items = list(default)
    elif isinstance(spec, list | tuple):
        items = [str(t) for t in spec]
    elif Path(str(spec)).is_file():
        items = _read_universe_file(Path(str(spec)))
    else:
        items = str(spec).split(",")
    seen: dict[str, None] = {}
    for item in items:
        ticker = item.strip().upper()
        if ticker:
            seen.setdefault(ticker, None)
    return list(seen)


def _read_universe_file(path: Path) -> list[str]:
    text = path.read_text()
    if path.suffix.lower() == ".csv":
        frame = pd.read_csv(path)
        column = next((c for c in frame.columns if c.lower() in ("ticker", "symbol")), None)
        if column is None:
            raise ValueError(f"{path}: a universe CSV needs a 'ticker' or 'symbol' column")
        return frame[column].astype(str).tolist()
    lines = (line.split("#", 1)[0] for line in text.splitlines())
    return [token for line in lines for token in line.replace(",", " ").split()]


def split_valid_tickers(tickers: list[str]) -> tuple[list[str], dict[str, str]]:
    """Keep well-formed symbols; report the others with the rule they break."""
    good = [t for t in tickers if TICKER_PATTERN.match(t)]
    bad = {
        t: f"malformed ticker symbol {t!r} (expected {TICKER_PATTERN.pattern})"
        for t in tickers
        if not TICKER_PATTERN.match(t)
    }
    return good, bad


def require_benchmark(failed: dict[str, str], benchmark: str) -> None:
    """Stop the run when the benchmark is missing: every ticker's market features need it."""
    if benchmark in failed:
        raise DataSourceError(
            f"benchmark {benchmark} could not be used: {failed[benchmark]}",
            hint="every ticker's market-context features need it; fix the source or set "
            "STOCKTREND_BENCHMARK",
        )


def history_start(first_session: pd.Timestamp, lookback: int = LOOKBACK_SESSIONS) -> pd.Timestamp:
    """The first date to load so that ``first_session`` has ``lookback`` sessions behind it."""
    return calendar.session_offset(first_session, -lookback)


def build_scoring_windows(
    prices: pd.DataFrame,
    sessions: list[pd.Timestamp] | pd.DatetimeIndex,
    tickers: list[str],
    *,
    benchmark: str,
    seq_len: int,
) -> tuple[np.ndarray, pd.DataFrame, dict[str, str]]:
    """Windows ending on ``sessions`` for ``tickers``, and why the missing ones are missing.

    ``prices`` must be validated and include ``benchmark`` (its returns feed the
    market-context features); the benchmark gets windows only when it is in
    ``tickers``.
    """
    features = build_features(prices, benchmark=benchmark)
    return windows_for_sessions(features, prices, sessions, tickers, seq_len=seq_len)


def windows_for_sessions(
    features: pd.DataFrame,
    prices: pd.DataFrame,
    sessions: list[pd.Timestamp] | pd.DatetimeIndex,
    tickers: list[str],
    *,
    seq_len: int,
) -> tuple[np.ndarray, pd.DataFrame, dict[str, str]]:
    """Cut windows for some sessions out of features built once for a longer range.

    This is how a backfill builds features once per ticker batch and still
    scores (and writes) one period at a time, with bounded memory.
    """
    sessions = pd.DatetimeIndex(sessions).as_unit("ns")
    dates = features.index.get_level_values("date")
    in_range = (dates >= sessions.min() - pd.Timedelta(days=2 * seq_len + 10)) & (
        dates <= sessions.max()
    )
    wanted = features[in_range & features.index.get_level_values("ticker").isin(tickers)]
    X, index = make_windows(wanted, as_of_dates=sessions, seq_len=seq_len)
    skipped = explain_unscored(prices, index, tickers, sessions, seq_len)
    return X, index, skipped


def score_windows(
    bundle: ModelBundle,
    X: np.ndarray,
    index: pd.DataFrame,
    *,
    engine: Engine | None = None,
    batch_size: int | None = None,
    flow_run_id: str | None = None,
    created_at: datetime | None = None,
) -> pd.DataFrame:
    """Prediction records for raw windows (the bundle's scaler is applied, never refitted).

    ``engine`` (from :func:`stocktrend.inference.load_engine`, which also sets
    its chunk size) computes the probabilities when given; it must serve this
    very checkpoint. Without one the float32 reference does, ``batch_size``
    windows per forward pass, and its results do not depend on how windows are
    batched. The int8 engines' do, by less than their parity tolerance: they
    quantise activations per slice (a chunk split across ONNX Runtime workers),
    so chunk size and thread count both matter; see :mod:`stocktrend.inference`.
    """
    if engine is not None and batch_size is not None:
        raise ValueError("batch_size belongs to the engine: pass it to load_engine instead")
    if len(X) == 0:
        p_up = np.empty(0, dtype=np.float32)
    elif engine is None:
        p_up = predict_proba(bundle, X, batch_size=batch_size or DEFAULT_BATCH_SIZE)[:, 1]
    else:
        _check_engine_serves(engine, bundle)
        p_up = engine.predict_proba(X)[:, 1]
    return prediction_frame(index, p_up, bundle, flow_run_id=flow_run_id, created_at=created_at)


def _check_engine_serves(engine: Engine, bundle: ModelBundle) -> None:
    """Refuse to label one checkpoint's rows with the scores of another."""
    served = engine.bundle
    if served is bundle:
        return
    if (served.sha256 or "") != (bundle.sha256 or "") or served.model_version != (
        bundle.model_version
    ):
        raise ValueError(
            f"engine {engine.name} serves model {served.model_version} "
            f"({(served.sha256 or '?')[:12]}), not {bundle.model_version} "
            f"({(bundle.sha256 or '?')[:12]})"
        )


def score_sessions(
    prices: pd.DataFrame,
    bundle: ModelBundle,
    sessions: list[pd.Timestamp] | pd.DatetimeIndex,
    tickers: list[str],
    *,
    benchmark: str,
    engine: Engine | None = None,
    batch_size: int | None = None,
    flow_run_id: str | None = None,
    created_at: datetime | None = None,
) -> ScoreResult:
    """Predict every (ticker, session) that has a complete window; explain the rest."""
    X, index, skipped = build_scoring_windows(
        prices, sessions, tickers, benchmark=benchmark, seq_len=bundle.sequence_length
    )
    frame = score_windows(
        bundle,
        X,
        index,
        engine=engine,
        batch_size=batch_size,
        flow_run_id=flow_run_id,
        created_at=created_at,
    )
    return ScoreResult(predictions=frame, skipped=skipped)


def prediction_frame(
    index: pd.DataFrame,
    p_up: np.ndarray,
    bundle: ModelBundle,
    *,
    flow_run_id: str | None = None,
    created_at: datetime | None = None,
) -> pd.DataFrame:
    """Prediction records (see :data:`PREDICTION_COLUMNS`) for scored windows."""
    predicted = (np.asarray(p_up) > 0.5).astype(np.int64)
    stamp = pd.Timestamp(created_at or datetime.now(UTC)).tz_convert("UTC")
    frame = pd.DataFrame(
        {
            "as_of_date": pd.DatetimeIndex(index["as_of_date"]).as_unit("ns"),
            "ticker": index["ticker"].astype(str).to_numpy(),
            "prob_up": np.asarray(p_up, dtype=np.float64),
            "predicted_class": predicted,
            "label": np.asarray(CLASS_NAMES, dtype=object)[predicted],
            "horizon": int(bundle.horizon or 0),
            "model_version": bundle.model_version,
            "model_sha256": bundle.sha256 or "",
            "flow_run_id": flow_run_id,
            "created_at": stamp,
        }
    )
    frame["label"] = frame["label"].astype(str)
    return frame.sort_values(["as_of_date", "ticker"], ignore_index=True)


def explain_unscored(
    prices: pd.DataFrame,
    index: pd.DataFrame,
    tickers: list[str],
    sessions: pd.DatetimeIndex,
    seq_len: int,
) -> dict[str, str]:
    """Why each requested ticker lacks a prediction on some requested session.

    Only tickers with at least one missing (ticker, session) are listed; the
    reason names the first missing session.
    """
    needed = WARMUP_SESSIONS - 1 + seq_len
    scored = index.groupby("ticker")["as_of_date"].apply(set).to_dict()
    by_ticker = {t: g["date"] for t, g in prices.groupby("ticker")}
    reasons: dict[str, str] = {}
    for ticker in tickers:
        done = scored.get(ticker, set())
        missing = [d for d in sessions if d not in done]
        if not missing:
            continue
        day = missing[0]
        dates = by_ticker.get(ticker)
        count = f" ({len(missing)} of {len(sessions)} sessions)" if len(sessions) > 1 else ""
        if dates is None or dates.empty:
            reasons[ticker] = "no prices loaded"
        elif day not in set(dates):
            last = dates.max().date()
            reasons[ticker] = f"no price on {day.date()} (last price {last}){count}"
        else:
            have = int((dates <= day).sum())
            if have < needed:
                reasons[ticker] = (
                    f"too little history on {day.date()}: {have} sessions, needs {needed} "
                    f"({WARMUP_SESSIONS} warm-up + {seq_len}-session window){count}"
                )
            else:
                reasons[ticker] = f"window for {day.date()} spans a gap or invalid values{count}"
    return reasons


def top_and_bottom(predictions: pd.DataFrame, n: int = 10) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Most bullish and most bearish rows of the latest session, for the run artifact."""
    if predictions.empty:
        return predictions, predictions
    latest = predictions[predictions["as_of_date"] == predictions["as_of_date"].max()]
    columns = ["ticker", "as_of_date", "prob_up", "label"]
    ranked = latest.sort_values(["prob_up", "ticker"], ascending=[False, True])[columns]
    return ranked.head(n), ranked.tail(n).iloc[::-1]
