"""The inference engine inside scoring: settings, the library call, real flow runs and the CLI.

The flows run for real (prefect_test_harness) on the bundled sample with the
pretrained checkpoint. One engine cache is shared by the module through
``STOCKTREND_ENGINE_CACHE_DIR`` and seeded once by an ``auto`` measurement on a
slice of the bundled test windows, so the flows load cached exports and reuse
that choice instead of re-measuring (what a production worker does after its
first run).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import get_args

import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.testing.utilities import prefect_test_harness
from pydantic import ValidationError
from typer.testing import CliRunner

from flows.backfill import backfill
from flows.daily_scoring import daily_scoring
from stocktrend.checkpoint import load_checkpoint, predict_proba
from stocktrend.cli import app
from stocktrend.config import EngineName, Settings, get_settings
from stocktrend.inference import (
    ENGINE_NAMES,
    PARITY_MAX_ABS_DIFF,
    bundled_test_windows,
    engine_summary,
    load_engine,
)
from stocktrend.reporting import run_summary_markdown
from stocktrend.scoring import build_scoring_windows, score_windows
from stocktrend.storage import PredictionStore
from stocktrend.validation import validate_prices

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "pretrained_models" / "best_model_v2.0.ckpt"
UNIVERSE = "AAPL,GOOG,IBM,MSFT"


@pytest.fixture(scope="module")
def bundle():
    return load_checkpoint(MODEL)


@pytest.fixture(scope="module")
def engine_cache(tmp_path_factory: pytest.TempPathFactory, bundle) -> Iterator[dict[str, object]]:
    """A shared engine cache holding every export and auto's choice for the pretrained model."""
    cache = tmp_path_factory.mktemp("engine-cache")
    windows = bundled_test_windows()[::10]  # 320 windows: enough to rank, quick to run
    with load_engine(bundle, "auto", cache_dir=cache, parity_windows=windows) as chosen:
        seeded = {"dir": cache, "auto": chosen.name, "summary": engine_summary(chosen)}
    yield seeded


@pytest.fixture(autouse=True)
def _shared_cache(engine_cache: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKTREND_ENGINE_CACHE_DIR", str(engine_cache["dir"]))


@pytest.fixture(scope="module")
def harness() -> Iterator[None]:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with prefect_test_harness(server_startup_timeout=300):
        yield


def _store() -> PredictionStore:
    return PredictionStore(get_settings().resolved_database_url)


# --------------------------------------------------------------------------- settings


def test_engine_names_in_settings_match_the_engines() -> None:
    assert set(get_args(EngineName)) == set(ENGINE_NAMES)


def test_engine_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert Settings().engine == "reference"  # the default never depends on batching
    monkeypatch.setenv("STOCKTREND_ENGINE", "int8-conv")
    monkeypatch.setenv("STOCKTREND_ENGINE_THREADS", "1")
    monkeypatch.setenv("STOCKTREND_ENGINE_CACHE_DIR", str(tmp_path))
    settings = Settings()
    assert (settings.engine, settings.engine_threads) == ("int8-conv", 1)
    assert settings.engines_dir == tmp_path
    monkeypatch.delenv("STOCKTREND_ENGINE_CACHE_DIR")
    assert Settings().engines_dir == Settings().home / "cache" / "engines"
    monkeypatch.setenv("STOCKTREND_ENGINE", "tpu")
    with pytest.raises(ValidationError, match="engine"):
        Settings()


# --------------------------------------------------------------------------- library


@pytest.fixture(scope="module")
def march_windows(sample_prices: pd.DataFrame, bundle):
    clean, _ = validate_prices(sample_prices)
    sessions = pd.DatetimeIndex(pd.bdate_range("2013-02-01", "2013-03-01"))
    X, index, _ = build_scoring_windows(
        clean, sessions, ["AAPL", "GOOG", "IBM", "MSFT"], benchmark="^GSPC", seq_len=30
    )
    return X, index


def test_reference_engine_rows_equal_the_plain_path(bundle, march_windows) -> None:
    X, index = march_windows
    plain = score_windows(bundle, X, index)
    with load_engine(bundle, "reference") as engine:
        via_engine = score_windows(bundle, X, index, engine=engine)
    assert len(plain) == len(X) > 60
    pd.testing.assert_frame_equal(
        plain.drop(columns="created_at"), via_engine.drop(columns="created_at")
    )


def test_int8_engine_rows_stay_within_parity(bundle, march_windows, engine_cache) -> None:
    X, index = march_windows
    reference = predict_proba(bundle, X)[:, 1]
    with load_engine(bundle, "int8-conv", cache_dir=engine_cache["dir"]) as engine:
        rows = score_windows(bundle, X, index, engine=engine)
    order = rows.set_index(["as_of_date", "ticker"])["prob_up"]
    expected = pd.Series(
        reference,
        index=pd.MultiIndex.from_arrays(
            [pd.DatetimeIndex(index["as_of_date"]), index["ticker"]],
            names=["as_of_date", "ticker"],
        ),
    )
    diff = (order - expected.loc[order.index]).abs()
    assert 0 < diff.max() <= PARITY_MAX_ABS_DIFF  # different arithmetic, same function


def test_an_engine_for_another_checkpoint_is_refused(bundle, march_windows) -> None:
    X, index = march_windows
    with load_engine(bundle, "reference") as engine, pytest.raises(ValueError, match="belongs"):
        score_windows(bundle, X, index, engine=engine, batch_size=64)
    other = dataclasses.replace(bundle, sha256="0" * 64)
    with load_engine(other, "reference") as engine, pytest.raises(ValueError, match="serves model"):
        score_windows(bundle, X, index, engine=engine)


def test_engine_summary_says_what_ran_and_why(bundle, engine_cache) -> None:
    with load_engine(bundle, "reference") as engine:
        configured = engine_summary(engine)
    assert configured["chosen_by"] == "configuration" and not configured["cached_choice"]
    assert configured["description"] == "reference, chunks of 256 (float32 reference)"
    with load_engine(bundle, "auto", cache_dir=engine_cache["dir"]) as engine:
        cached = engine_summary(engine)  # read back from the record the fixture wrote
    assert cached["engine"] == engine_cache["auto"] and cached["chosen_by"] == "auto"
    assert cached["cached_choice"] and not engine_cache["summary"]["cached_choice"]
    assert cached["parity"] == engine_cache["summary"]["parity"]
    assert cached["parity"]["argmax_agreement"] >= 0.995
    markdown = run_summary_markdown(
        {"flow": "daily-scoring", "period": "2013-03-01", "engine_description": "int8, x"}
    )
    assert "- engine: int8, x" in markdown


# --------------------------------------------------------------------------- flows


def _artifact_markdown(key: str) -> str:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    return str(found[0].data)


@pytest.mark.usefixtures("harness")
def test_daily_scoring_with_an_int8_engine_then_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOCKTREND_ENGINE", "int8")  # the setting, overridden by the argument
    summary = daily_scoring(as_of="2013-03-01", universe=UNIVERSE, engine="int8-conv")
    assert summary["engine"] == "int8-conv" and summary["n_scored"] == 4
    assert "max |dP(up)|" not in summary["engine_description"]  # configured, not measured
    int8 = _store().read_predictions(as_of="2013-03-01").set_index("ticker")["prob_up"]
    run = _store().get_run(_store().read_predictions(as_of="2013-03-01")["flow_run_id"].iloc[0])
    assert run.parameters["engine"] == "int8-conv"
    assert "- engine: int8-conv, chunks of 32" in _artifact_markdown("daily-scoring-summary")

    monkeypatch.delenv("STOCKTREND_ENGINE")
    again = daily_scoring(as_of="2013-03-01", universe=UNIVERSE)
    assert again["engine"] == "reference"
    reference = _store().read_predictions(as_of="2013-03-01").set_index("ticker")["prob_up"]
    assert len(reference) == 4  # the re-run replaced the int8 rows
    assert 0 < (int8 - reference).abs().max() <= PARITY_MAX_ABS_DIFF  # int8 really ran


@pytest.mark.usefixtures("harness")
def test_backfill_with_auto_uses_the_cached_choice(engine_cache) -> None:
    summary = backfill(start="2013-02-19", end="2013-03-01", universe=UNIVERSE, engine="auto")
    assert summary["engine"] == engine_cache["auto"]
    assert "chosen by auto (cached choice)" in summary["engine_description"]  # not re-measured
    [run] = _store().read_runs()
    assert run.parameters["engine"] == engine_cache["auto"] and run.status == "completed"
    assert summary["n_scored"] == 4 * 9 and summary["failed"] == {}
    rows = _store().read_predictions()
    assert len(rows) == 36 and rows["prob_up"].between(0, 1).all()
    markdown = _artifact_markdown("backfill-summary")
    assert f"- engine: {summary['engine_description']}" in markdown


def test_cli_refuses_an_unknown_engine_before_running_anything() -> None:
    result = CliRunner().invoke(app, ["score", "--as-of", "2013-03-01", "--engine", "tpu"])
    assert result.exit_code != 0
    assert "unknown engine 'tpu'" in result.output
    assert _store().count() == 0
