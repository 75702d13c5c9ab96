"""Shared fixtures: the bundled real sample, loaded straight from the committed file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

SAMPLE = Path(__file__).resolve().parents[1] / "stocktrend" / "data" / "sample_prices.parquet"


@pytest.fixture(scope="session")
def sample_prices() -> pd.DataFrame:
    """All six real series, 2000-03-01..2013-03-01, in the price-frame contract's dtypes."""
    frame = pd.read_parquet(SAMPLE)
    frame["volume"] = frame["volume"].astype("float64")
    frame["date"] = frame["date"].astype("datetime64[ns]")
    frame["ticker"] = frame["ticker"].astype(str)
    return frame


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Every test gets its own STOCKTREND_HOME, so nothing reads or writes ~/.stocktrend."""
    monkeypatch.setenv("STOCKTREND_HOME", str(tmp_path_factory.mktemp("home")))
