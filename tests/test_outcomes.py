"""Realised outcomes (SQL `outcomes`) and the README's hit-rate query, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from prediction_samples import prediction_frame

from stocktrend.config import Settings
from stocktrend.drift import resolve_outcomes
from stocktrend.storage import queries
from stocktrend.storage.outcomes import outcome_rows, read_outcomes, record_outcomes
from stocktrend.storage.sql_store import PredictionStore

pytest_plugins = ["db_fixtures"]

DAYS = pd.bdate_range("2024-03-04", periods=6)
STAMP = datetime(2024, 4, 1, 22, 0, tzinfo=UTC)


def _outcomes(days: pd.DatetimeIndex, tickers: list[str], seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    index = pd.MultiIndex.from_product([days, tickers], names=["as_of_date", "ticker"])
    returns = rng.normal(0.0, 0.03, size=len(index))
    return pd.DataFrame(
        {
            "as_of_date": index.get_level_values(0),
            "ticker": index.get_level_values(1),
            "horizon": 10,
            "resolve_date": index.get_level_values(0) + pd.offsets.BDay(10),
            "realised_return": returns,
            "outcome": (returns > 0).astype(np.int64),
            "recorded_at": pd.Timestamp(STAMP),
        }
    )


def test_record_is_an_idempotent_upsert(db_url: str) -> None:
    settings = Settings(database_url=db_url)
    rows = _outcomes(DAYS, ["AAPL", "MSFT"], seed=1)
    assert record_outcomes(rows, settings) == len(rows)
    assert record_outcomes(rows, settings) == len(rows)
    stored = read_outcomes(settings)
    assert len(stored) == len(rows)
    corrected = rows.copy()
    corrected["realised_return"] = -corrected["realised_return"]  # a price correction upstream
    corrected["outcome"] = 1 - corrected["outcome"]
    record_outcomes(corrected, settings)
    again = read_outcomes(settings, ticker="MSFT")
    expected = corrected[corrected["ticker"] == "MSFT"].reset_index(drop=True)
    np.testing.assert_allclose(again["realised_return"], expected["realised_return"])
    assert list(again["outcome"]) == list(expected["outcome"])
    assert list(again["resolve_date"]) == list(expected["resolve_date"])
    assert (again["recorded_at"] == pd.Timestamp(STAMP)).all()


def test_bad_rows_are_refused_whole(db_url: str) -> None:
    settings = Settings(database_url=db_url)
    rows = _outcomes(DAYS[:2], ["AAPL"], seed=2)
    with pytest.raises(ValueError, match="0 \\(bearish\\) or 1"):
        record_outcomes(rows.assign(outcome=2), settings)
    with pytest.raises(ValueError, match="repeat"):
        record_outcomes(pd.concat([rows, rows]), settings)
    with pytest.raises(ValueError, match="lack realised_return"):
        record_outcomes(rows.drop(columns="realised_return"), settings)
    assert read_outcomes(settings).empty


def test_readme_hit_rate_query(db_url: str) -> None:
    settings = Settings(database_url=db_url)
    tickers = ["AAPL", "GOOG", "MSFT"]
    with PredictionStore(db_url) as store:
        store.upsert_predictions(prediction_frame(DAYS, tickers, seed=3))
        store.upsert_predictions(prediction_frame(DAYS, ["MSFT"], model_version="v2.1", seed=4))
        # the last two days are still pending: no outcome row, so they must not count
        record_outcomes(_outcomes(DAYS[:4], tickers, seed=5), settings)
        with store.engine.connect() as conn:
            result = conn.execute(sa.text(queries.HIT_RATE_BY_TICKER), {"min_resolved": 1})
            got = pd.DataFrame(result.mappings().all())
        predictions = store.read_predictions()

    joined = predictions.merge(read_outcomes(settings), on=["as_of_date", "ticker", "horizon"])
    joined["hit"] = (joined["predicted_class"] == joined["outcome"]).astype(float)
    expected = joined.groupby(["model_version", "ticker"]).agg(
        n_resolved=("hit", "size"), hit_rate=("hit", "mean"), bullish=("outcome", "mean")
    )
    got = got.set_index(["model_version", "ticker"]).loc[expected.index]
    assert list(got["n_resolved"]) == [4] * len(expected) == list(expected["n_resolved"])
    np.testing.assert_allclose(got["hit_rate"].astype(float), expected["hit_rate"])
    np.testing.assert_allclose(got["always_bullish_rate"].astype(float), expected["bullish"])
    np.testing.assert_allclose(
        got["edge_vs_always_bullish"].astype(float), expected["hit_rate"] - expected["bullish"]
    )
    assert set(expected.index) == {("v2.0", t) for t in tickers} | {("v2.1", "MSFT")}

    with PredictionStore(db_url) as store, store.engine.connect() as conn:
        none = conn.execute(sa.text(queries.HIT_RATE_BY_TICKER), {"min_resolved": 5}).all()
    assert none == []


def test_outcome_rows_keep_only_resolved_predictions(sample_prices: pd.DataFrame) -> None:
    days = pd.DatetimeIndex(["2013-02-01", "2013-02-14", "2013-02-15", "2013-03-01"])
    made = prediction_frame(days, ["AAPL", "IBM"])
    resolved = resolve_outcomes(made, sample_prices, "2013-03-01")
    rows = outcome_rows(resolved, recorded_at=STAMP)
    # 2013-02-14 + 10 sessions = 2013-03-01 (Presidents' Day is a holiday): resolved that day;
    # 2013-02-15 and 2013-03-01 resolve after the data ends
    assert sorted(set(rows["as_of_date"].dt.strftime("%Y-%m-%d"))) == ["2013-02-01", "2013-02-14"]
    aapl = sample_prices[sample_prices["ticker"] == "AAPL"].set_index("date")["close"]
    first = rows[(rows["ticker"] == "AAPL") & (rows["as_of_date"] == "2013-02-14")].iloc[0]
    assert first["resolve_date"] == pd.Timestamp("2013-03-01")
    change = aapl[pd.Timestamp("2013-03-01")] / aapl[pd.Timestamp("2013-02-14")] - 1.0
    assert first["realised_return"] == pytest.approx(change)
    assert first["outcome"] == int(change > 0)


def test_readme_shows_the_tested_hit_rate_query() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    shown = queries.HIT_RATE_BY_TICKER.strip().replace(":min_resolved", "20") + ";"
    assert shown in readme
