"""Real Prefect runs (prefect_test_harness) of evaluate-drift and fine-tune on the bundled sample.

The champion in these scenarios is a tiny model trained on 2004-2005 (one epoch,
seconds on a CPU) and tested on 2007-01-03..2007-03-29 (60 sessions), so that:

* calm: evaluated on 2007-04-13 its trailing window *is* its test period, so its
  accuracy equals its reference accuracy by construction (the test cannot
  reject), and 2007-Q1 features look like 2004-2005 ones (PSI share ~0.5 < 0.8);
* drift: evaluated on 2008-12-31, the crash quarter's features are far from the
  2004-2005 reference (PSI share ~0.9 >= 0.8), whatever the weights: the data
  rule fires deterministically, and fine-tuning runs as a subflow.

Each test has its own STOCKTREND_HOME (conftest): an empty registry and database.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.testing.utilities import prefect_test_harness
from tiny_configs import SAMPLE as TINY

import tasks.drift as drift_tasks
import tasks.fine_tune as fine_tune_tasks
from flows.daily_scoring import daily_scoring
from flows.evaluate_drift import evaluate_drift
from flows.fine_tune import fine_tune
from stocktrend import calendar, registry
from stocktrend.checkpoint import file_sha256, load_checkpoint
from stocktrend.config import get_settings
from stocktrend.pipeline import Periods, train_model
from stocktrend.scoring import score_sessions
from stocktrend.storage import PredictionStore
from stocktrend.storage.evaluations import read_evaluations, read_parquet_evaluations
from stocktrend.storage.outcomes import read_outcomes
from stocktrend.training import TrainConfig
from stocktrend.validation import validate_prices

TICKERS = ["AAPL", "GOOG", "IBM", "MSFT", "^GSPC", "^IXIC"]
VERSION = "tiny-2005"
CALM = ("2007-01-03", "2007-04-13")  # 60 test sessions to 2007-03-29, then 10 pending
DRIFT = ("2008-09-22", "2008-12-31")
SMALL_FINE_TUNE = {
    "max_epochs": 1,
    "train_sessions": 120,
    "val_sessions": 20,
    "holdout_sessions": 40,
}


@pytest.fixture(scope="module", autouse=True)
def harness():
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def prices(sample_prices: pd.DataFrame) -> pd.DataFrame:
    clean, _ = validate_prices(sample_prices[sample_prices["date"] <= "2009-03-31"])
    return clean


@pytest.fixture(scope="module")
def tiny_champion(prices: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "tiny.ckpt"
    train_model(
        prices[prices["date"] <= CALM[1]],
        out,
        periods=Periods("2004-01-01", "2005-12-30", "2006-12-29", "2007-03-29"),
        benchmark="^GSPC",
        horizon=10,
        seq_len=30,
        model_version=VERSION,
        model_config=TINY,
        train_config=TrainConfig(max_epochs=1, learning_rate=3e-3, batch_size=128),
    )
    return out


def _install(checkpoint: Path) -> Path:
    """Register the tiny model and make it champion (v2.0 is registered first, on first use)."""
    settings = get_settings()
    entry = registry.register_version(checkpoint, settings)
    registry.promote(entry.version, settings, reason="test scenario")
    return entry.path


def _seed_predictions(prices: pd.DataFrame, model_path: Path, first: str, last: str) -> int:
    """What daily scoring would have stored for the champion over these sessions."""
    bundle = load_checkpoint(model_path)
    result = score_sessions(
        prices[prices["date"] <= last],
        bundle,
        calendar.sessions(first, last),
        TICKERS,
        benchmark="^GSPC",
    )
    return PredictionStore(get_settings().resolved_database_url).upsert_predictions(
        result.predictions
    )


def _check_outcomes(prices: pd.DataFrame, summary: dict[str, Any], n_expected: int) -> None:
    """Every resolved prediction has its outcome row, computed from the closes h sessions apart."""
    stored = read_outcomes(get_settings())
    assert summary["n_outcomes_recorded"] == len(stored) == n_expected
    close = prices.set_index(["date", "ticker"])["close"]
    for row in stored.sample(20, random_state=0).itertuples():
        later = calendar.session_offset(row.as_of_date, int(row.horizon))
        assert row.resolve_date == later
        start, end = close[(row.as_of_date, row.ticker)], close[(later, row.ticker)]
        assert row.realised_return == pytest.approx(end / start - 1.0, rel=1e-12)
        assert row.outcome == int(end > start)


def _artifact_keys(*keys: str) -> set[str]:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=list(keys)))
        )
    return {a.key for a in found}


def test_scoring_with_champion_records_the_registry_version_and_sha(tiny_champion: Path) -> None:
    settings = get_settings()
    path = _install(tiny_champion)
    summary = daily_scoring(as_of="2007-04-13", universe="AAPL,MSFT", model="champion")
    assert summary["model_version"] == VERSION
    rows = PredictionStore(settings.resolved_database_url).read_predictions()
    assert set(rows["model_version"]) == {VERSION}
    assert set(rows["model_sha256"]) == {file_sha256(path)}
    registry.rollback(settings, reason="back to the pretrained model")
    daily_scoring(as_of="2007-04-13", universe="AAPL,MSFT", model="champion")
    rows = PredictionStore(settings.resolved_database_url).read_predictions(model_version="v2.0")
    assert len(rows) == 2
    assert set(rows["model_sha256"]) == {registry.get_version("v2.0", settings).sha256}


def test_calm_period_is_not_drift_and_starts_nothing(
    tiny_champion: Path, prices: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _install(tiny_champion)
    made = _seed_predictions(prices, path, *CALM)
    events: list[Any] = []
    monkeypatch.setattr(drift_tasks, "emit_event", lambda **kw: events.append(kw))
    summary = evaluate_drift(as_of=CALM[1])
    assert summary["decision"] == "no_drift", summary["rule"]
    assert summary["rules_fired"] == [] and summary["fine_tune"] is None and events == []
    # predictions whose 10-session horizon has not passed by 2007-04-13 are not counted
    assert made == 70 * len(TICKERS)
    assert summary["n_pending"] == 10 * len(TICKERS)
    assert summary["n_resolved"] == 60 * len(TICKERS)
    [row] = read_evaluations(get_settings()).to_dict("records")
    assert str(row["window_start"]) == "2007-01-03" and str(row["window_end"]) == "2007-03-29"
    # the window is the model's own test period: same accuracy as its reference figures
    assert row["accuracy"] == pytest.approx(row["reference_accuracy"], abs=1e-9)
    assert row["report"]["accuracy_test"]["rejected"] is False
    assert row["share_drifted"] < 0.8
    assert len(read_parquet_evaluations(get_settings())) == 1
    _check_outcomes(prices, summary, n_expected=60 * len(TICKERS))
    assert [v.version for v in registry.list_versions(get_settings())] == ["v2.0", VERSION]
    keys = {"drift-verdict", "drift-psi", "drift-plot-psi", "drift-plots"}
    assert _artifact_keys(*keys) == keys


def test_drift_is_detected_emits_the_event_and_fine_tunes(
    tiny_champion: Path, prices: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = get_settings()
    path = _install(tiny_champion)
    _seed_predictions(prices, path, *DRIFT)
    events: list[dict[str, Any]] = []
    real_emit = drift_tasks.emit_event

    def recording_emit(**kwargs: Any):
        events.append(kwargs)
        return real_emit(**kwargs)

    monkeypatch.setattr(drift_tasks, "emit_event", recording_emit)
    summary = evaluate_drift(as_of=DRIFT[1], fine_tune_options=SMALL_FINE_TUNE)
    assert summary["decision"] == "drift" and "data" in summary["rules_fired"]
    [event] = events
    assert summary["event_id"]  # the harness's server took the event
    assert event["event"] == "stocktrend.drift.detected"
    assert event["resource"]["prefect.resource.id"] == f"stocktrend.model.{VERSION}"
    assert event["payload"]["share_drifted"] >= 0.8 and event["payload"]["as_of"] == DRIFT[1]
    assert "mkt_vol_20" in event["payload"]["drifted_features"]

    tuned = summary["fine_tune"]
    assert tuned["parent"] == VERSION and tuned["trigger"]["decision"] == "drift"
    plan = tuned["plan"]
    assert plan["holdout_end"] == str(calendar.session_offset(DRIFT[1], -10).date())
    challenger = registry.get_version(tuned["challenger"], settings)
    assert challenger.parent_version == VERSION
    assert challenger.decision["reason"] == tuned["decision"]["reason"]
    champion = registry.aliases(settings)["champion"]
    assert tuned["champion_now"] == champion
    if tuned["promoted"]:
        assert champion == challenger.version and challenger.status == "champion"
    else:
        assert champion == VERSION and challenger.status == "rejected"
    # the challenger's scaler is the champion's (no full retrain asked for)
    before, after = load_checkpoint(path), load_checkpoint(challenger.path)
    assert (before.scaler.mean == after.scaler.mean).all()
    assert after.metadata["training"]["parent_sha256"] == before.sha256
    [row] = read_evaluations(settings).to_dict("records")
    assert row["decision"] == "drift"
    assert _artifact_keys("fine-tune-decision") == {"fine-tune-decision"}


def test_a_worse_challenger_is_not_promoted(
    tiny_champion: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A challenger made worse on purpose: its output layer calls everything bullish, surely."""
    settings = get_settings()
    path = _install(tiny_champion)
    real = fine_tune_tasks.fine_tune_model

    def sabotaged(*args: Any, **kwargs: Any):
        model, scaler, result = real(*args, **kwargs)
        with torch.no_grad():
            model.fc4.weight.zero_()
            model.fc4.bias.copy_(torch.tensor([-20.0, 20.0]))
        return model, scaler, result

    monkeypatch.setattr(fine_tune_tasks, "fine_tune_model", sabotaged)
    summary = fine_tune(as_of="2007-06-29", **SMALL_FINE_TUNE)
    assert not summary["promoted"] and summary["champion_now"] == VERSION
    assert (
        summary["decision"]["challenger"]["log_loss"] > summary["decision"]["champion"]["log_loss"]
    )
    assert summary["decision"]["reason"].startswith("kept the champion")
    assert registry.resolve_alias("champion", settings) == path
    rejected = registry.get_version(summary["challenger"], settings)
    assert rejected.status == "rejected" and rejected.parent_version == VERSION
    assert rejected.decision["action"] == "reject"


def test_crash_between_challenger_and_alias_keeps_the_old_champion(
    tiny_champion: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = get_settings()
    path = _install(tiny_champion)
    real_decide = fine_tune_tasks.decide_promotion

    def always_promote(*args: Any, **kwargs: Any):
        return dataclasses.replace(real_decide(*args, **kwargs), promote=True, reason="forced")

    real_move = registry._move_alias

    def crash(conn: Any, alias: str, version: str, expected: str | None) -> None:
        if alias == registry.CHAMPION:  # the challenger alias may move; the champion's never does
            raise RuntimeError("worker killed before the alias moved")
        real_move(conn, alias, version, expected)

    monkeypatch.setattr(fine_tune_tasks, "decide_promotion", always_promote)
    monkeypatch.setattr(registry, "_move_alias", crash)
    with pytest.raises(RuntimeError, match="worker killed"):
        fine_tune(as_of="2007-06-29", **SMALL_FINE_TUNE)
    assert registry.resolve_alias("champion", settings) == path
    [challenger] = [v for v in registry.list_versions(settings) if v.parent_version == VERSION]
    assert challenger.status == "challenger" and challenger.path.is_file()
    assert registry.aliases(settings) == {"champion": VERSION, "challenger": challenger.version}
    assert registry.alias_history(settings)[-1].version == VERSION
