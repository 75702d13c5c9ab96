"""Real Prefect runs (prefect_test_harness) of daily-scoring and backfill on the bundled sample.

Each test has its own STOCKTREND_HOME (conftest), so SQLite and Parquet start empty.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prefect.testing.utilities import prefect_test_harness

import flows.daily_scoring as daily_module
from flows.backfill import backfill
from flows.daily_scoring import daily_scoring
from stocktrend import calendar
from stocktrend.checkpoint import load_checkpoint, predict_proba
from stocktrend.config import get_settings
from stocktrend.data import load_prices
from stocktrend.errors import DataSourceError, SourceUnavailableError, StorageError
from stocktrend.scoring import build_scoring_windows
from stocktrend.storage import PredictionStore, parquet_store
from stocktrend.validation import validate_prices

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "pretrained_models" / "best_model_v2.0.ckpt"


@pytest.fixture(scope="module", autouse=True)
def harness():
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    with prefect_test_harness(server_startup_timeout=300):
        yield


def _store() -> PredictionStore:
    return PredictionStore(get_settings().resolved_database_url)


def test_daily_scoring_scores_reports_and_writes_both_sinks() -> None:
    summary = daily_scoring(as_of="2013-03-01", universe="AAPL,MSFT,GOOG,NOPE,ba$d")
    assert summary["n_scored"] == 3
    assert "unknown ticker" in summary["failed"]["NOPE"]
    assert "malformed" in summary["failed"]["BA$D"]
    sql = _store().read_predictions(as_of="2013-03-01")
    assert sorted(sql["ticker"]) == ["AAPL", "GOOG", "MSFT"]
    # the flow's numbers are the model's: recompute them outside Prefect, from the raw sample
    clean, _ = validate_prices(load_prices("sample"))
    day = pd.DatetimeIndex(["2013-03-01"])
    X, index, _ = build_scoring_windows(
        clean, day, ["AAPL", "GOOG", "MSFT"], benchmark="^GSPC", seq_len=30
    )
    expected = pd.Series(predict_proba(load_checkpoint(MODEL), X)[:, 1], index=index["ticker"])
    np.testing.assert_allclose(
        sql.set_index("ticker")["prob_up"].loc[expected.index], expected, atol=1e-6
    )
    assert set(sql["model_version"]) == {"v2.0"}
    assert sql["flow_run_id"].notna().all()
    lake = parquet_store.read_predictions(get_settings().predictions_dir)
    merged = sql.merge(lake, on=["as_of_date", "ticker", "model_version"], suffixes=("", "_pq"))
    assert len(merged) == 3
    np.testing.assert_allclose(merged["prob_up"], merged["prob_up_pq"])
    run = _store().get_run(sql["flow_run_id"].iloc[0])
    assert run.status == "completed" and run.n_scored == 3 and run.n_failed == 2


def test_non_session_day_completes_without_writing() -> None:
    state = daily_scoring(as_of="2013-02-18", return_state=True)  # Presidents' Day
    assert state.is_completed()
    assert "not an NYSE session" in state.message
    assert _store().count() == 0


def test_rerunning_a_day_replaces_its_rows() -> None:
    daily_scoring(as_of="2013-02-28", universe="AAPL,MSFT,IBM")
    first = _store().read_predictions(as_of="2013-02-28")
    daily_scoring(as_of="2013-02-28", universe="AAPL,MSFT")
    second = _store().read_predictions(as_of="2013-02-28")
    assert sorted(second["ticker"]) == ["AAPL", "MSFT"]  # IBM's stale row is gone
    assert (second["created_at"] > first["created_at"].max()).all()
    lake = parquet_store.read_predictions(get_settings().predictions_dir)
    assert sorted(lake["ticker"]) == ["AAPL", "MSFT"]


def test_too_little_history_is_skipped_with_a_reason() -> None:
    summary = daily_scoring(as_of="2005-06-01", universe="GOOG,MSFT")
    assert summary["n_scored"] == 1
    assert "too little history" in summary["skipped"]["GOOG"]


def test_two_runs_of_the_same_day_at_once_do_not_duplicate() -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            daily_scoring(as_of="2013-01-15", universe="AAPL,MSFT,IBM,GOOG")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rows = _store().read_predictions(as_of="2013-01-15")
    assert len(rows) == 4 and rows["ticker"].is_unique
    assert len(parquet_store.read_predictions(get_settings().predictions_dir)) == 4


def test_source_down_fails_clearly_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(DataSourceError, match=r"does not exist|not found|no such"):
        daily_scoring(as_of="2013-03-01", source=f"file:{tmp_path / 'missing'}")
    assert _store().count() == 0
    [run] = _store().read_runs()
    assert run.status == "failed" and run.finished_at is not None
    assert "does not exist" in run.message or "not found" in run.message


def test_transient_source_errors_are_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    import tasks.scoring as scoring_tasks

    calls = {"n": 0}
    real = scoring_tasks.load_prices_with_report

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] < 3:
            raise SourceUnavailableError("timed out talking to the source")
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring_tasks, "load_prices_with_report", flaky)
    fast = scoring_tasks.load_prices_task.with_options(retry_delay_seconds=0)
    monkeypatch.setattr(daily_module, "load_prices_task", fast)
    summary = daily_scoring(as_of="2013-03-01", universe="AAPL")
    assert calls["n"] == 3 and summary["n_scored"] == 1


def test_database_down_fails_clearly_then_rerun_completes(monkeypatch: pytest.MonkeyPatch):
    import tasks.scoring as scoring_tasks

    monkeypatch.setattr(
        daily_module,
        "record_run_task",
        scoring_tasks.record_run_task.with_options(retries=0),
    )
    monkeypatch.setenv("STOCKTREND_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:1/x")
    with pytest.raises(StorageError, match=r"127\.0\.0\.1:1"):
        daily_scoring(as_of="2013-03-01", universe="AAPL")
    monkeypatch.delenv("STOCKTREND_DATABASE_URL")
    assert daily_scoring(as_of="2013-03-01", universe="AAPL")["n_scored"] == 1
    assert _store().count() == 1


def test_backfill_equals_daily_scoring_and_resumes() -> None:
    summary = backfill(start="2013-01-28", end="2013-02-05", universe="AAPL,MSFT,IBM")
    sessions = calendar.sessions("2013-01-28", "2013-02-05")
    assert summary["n_scored"] == 3 * len(sessions)
    assert summary["n_chunks"] == 2  # January and February
    backfilled = _store().read_predictions().set_index(["as_of_date", "ticker"])["prob_up"]

    for day in ("2013-01-28", "2013-02-05"):
        daily_scoring(as_of=day, universe="AAPL,MSFT,IBM")
    daily = _store().read_predictions(start="2013-01-28", end="2013-02-05")
    daily = daily.set_index(["as_of_date", "ticker"])["prob_up"]
    np.testing.assert_allclose(daily, backfilled.loc[daily.index], atol=1e-6)

    again = backfill(start="2013-01-28", end="2013-02-05", universe="AAPL,MSFT,IBM")
    assert again["n_chunks_skipped"] == 2 and again["n_scored"] == 0
    redo = backfill(start="2013-01-28", end="2013-02-05", universe="AAPL,MSFT,IBM", overwrite=True)
    assert redo["n_scored"] == 3 * len(sessions)
    assert _store().count() == 3 * len(sessions)


def _markers(home: Path) -> list[Path]:
    return list((home / "predictions" / "_backfill").glob("*/*.json"))


def test_kill_9_mid_backfill_then_rerun_completes(tmp_path: Path) -> None:
    """A real process killed with SIGKILL after its first chunk; the re-run finishes the rest."""
    home = tmp_path / "home"
    env = {**os.environ, "STOCKTREND_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    exe = shutil.which("stocktrend", path=str(Path(sys.executable).parent))
    cmd = [
        exe,
        "backfill",
        "--start",
        "2010-01-01",
        "--end",
        "2012-12-31",
        "--universe",
        "AAPL,GOOG,IBM,MSFT",
    ]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 180
    while not _markers(home) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(_markers(home))
    assert 1 <= done_before < 36, "the kill should land mid-backfill (36 monthly chunks)"

    finished = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert len(_markers(home)) == 36
    store = PredictionStore(f"sqlite:///{home / 'stocktrend.db'}")
    rows = store.read_predictions()
    expected = 4 * len(calendar.sessions("2010-01-01", "2012-12-31"))  # Sandy closures too
    assert len(rows) == expected
    assert not rows.duplicated(["as_of_date", "ticker", "model_version"]).any()
    lake = parquet_store.read_predictions(home / "predictions")
    assert len(lake) == expected


def test_backfill_reports_unknown_ticker_without_failing() -> None:
    summary = backfill(start="2013-02-25", end="2013-03-01", universe="AAPL,ZZZZ")
    assert summary["n_scored"] == 5
    assert "unknown ticker" in summary["failed"]["ZZZZ"]
