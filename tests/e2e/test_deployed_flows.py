"""Deployed flows on a real stack: prefect.yaml -> server on PostgreSQL -> process workers.

Runs go through the same path as production: `prefect deploy` from
deployments/prefect.yaml, a run created on the server, a `prefect worker`
process picking it up and starting the flow in its own process, predictions
written to PostgreSQL. The fault tests kill and restart real processes.

The tests share one stack (conftest) and run in file order: the killed
backfill's crash window (45 s) elapses while the two-worker test uses the
pool, and the crash is checked after it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
import yaml
from prefect_stack import POOL, PREFECT_YAML, REPO, PrefectWorker, Stack, wait_until

from stocktrend import calendar
from stocktrend.checkpoint import load_checkpoint, predict_proba
from stocktrend.data import load_prices
from stocktrend.scoring import build_scoring_windows
from stocktrend.storage import PredictionStore, parquet_store
from stocktrend.validation import validate_prices

MODEL = REPO / "pretrained_models" / "best_model_v2.0.ckpt"

KEY = ["as_of_date", "ticker", "model_version"]


@pytest.fixture(scope="module")
def store(prefect_stack: Stack) -> Iterator[PredictionStore]:
    """The workers' prediction store (a fresh PostgreSQL schema), read from the test."""
    with PredictionStore(prefect_stack.predictions_url) as opened:
        yield opened


def _yaml_specs() -> dict[str, dict]:
    return {d["name"]: d for d in yaml.safe_load(PREFECT_YAML.read_text())["deployments"]}


def _running_spans(stack: Stack, run_ids: list[str]) -> list[tuple[datetime, datetime]]:
    spans = []
    for run_id in run_ids:
        run = stack.api.flow_run(run_id)
        spans.append(
            (datetime.fromisoformat(run["start_time"]), datetime.fromisoformat(run["end_time"]))
        )
    return sorted(spans)


def test_deployments_are_registered_as_declared(prefect_stack: Stack) -> None:
    """Schedules, triggers, concurrency limits, tags and pool, as prefect.yaml says."""
    assert "daily-scoring" in prefect_stack.deployed and "backfill" in prefect_stack.deployed
    specs = _yaml_specs()
    assert set(specs) == {"daily-scoring", "evaluate-drift", "fine-tune", "backfill"}
    automations = {a["name"]: a for a in prefect_stack.api.automations()}
    for name in prefect_stack.deployed:
        spec = specs[name]
        deployment = prefect_stack.api.deployment(name, name)
        assert deployment["work_pool_name"] == POOL
        assert set(deployment["tags"]) == set(spec["tags"])
        assert deployment["global_concurrency_limit"]["limit"] == 1
        assert deployment["concurrency_options"]["collision_strategy"] == "ENQUEUE"
        declared = [(s["cron"], s["timezone"]) for s in spec.get("schedules") or []]
        registered = [
            (s["schedule"]["cron"], s["schedule"]["timezone"])
            for s in deployment["schedules"]
            if s["active"]
        ]
        assert registered == declared, name
        assert deployment["parameters"] == spec.get("parameters", {}), name
        for trigger in spec.get("triggers", []):
            automation = automations[trigger["name"]]
            assert automation["trigger"]["expect"] == ["stocktrend.drift.detected"]
            assert automation["actions"][0]["deployment_id"] == deployment["id"]
    assert "crash-flow-runs-without-heartbeat" in automations


def test_daily_scoring_through_a_worker_lands_in_postgres(
    prefect_stack: Stack, completed_daily_run: str, store: PredictionStore
) -> None:
    run = prefect_stack.api.flow_run(completed_daily_run)
    assert run["state"]["type"] == "COMPLETED"
    assert (
        run["deployment_id"] == prefect_stack.api.deployment("daily-scoring", "daily-scoring")["id"]
    )
    rows = store.read_predictions(as_of="2013-03-01")
    assert sorted(rows["ticker"]) == ["AAPL", "GOOG", "IBM", "MSFT"]
    assert set(rows["flow_run_id"]) == {completed_daily_run}
    # what the worker wrote is the model's output for those windows, recomputed here
    clean, _ = validate_prices(load_prices("sample"))
    day = pd.DatetimeIndex(["2013-03-01"])
    X, index, _ = build_scoring_windows(
        clean, day, sorted(rows["ticker"]), benchmark="^GSPC", seq_len=30
    )
    expected = predict_proba(load_checkpoint(MODEL), X)[:, 1]
    stored = rows.set_index("ticker")["prob_up"].loc[index["ticker"]]
    np.testing.assert_allclose(stored.to_numpy(), expected, atol=1e-6)
    assert store.get_run(completed_daily_run).status == "completed"
    keys = {a["key"] for a in prefect_stack.api.artifacts(completed_daily_run)}
    assert {"daily-scoring-summary", "daily-scoring-extremes", "daily-scoring-failures"} <= keys


def _markers(home: Path) -> list[Path]:
    return list((home / "predictions" / "_backfill").glob("*/*.json"))


BACKFILL = {"start": "2011-01-01", "end": "2012-12-31", "universe": "AAPL,MSFT"}
BACKFILL_CHUNKS = 24  # monthly


@pytest.fixture(scope="module")
def killed_backfill(prefect_stack: Stack, worker: PrefectWorker) -> str:
    """A backfill run whose worker (and flow process) got SIGKILL mid-run.

    Crash detection takes a heartbeat window (45 s here): the next test
    restarts the worker and uses the pool meanwhile, then the crash is checked.
    """
    run_id = prefect_stack.run_deployment("backfill", BACKFILL)
    prefect_stack.api.wait_for_state(run_id, {"RUNNING"}, timeout=120)
    home = prefect_stack.stocktrend_home
    wait_until(lambda: _markers(home), 120, "the first backfill chunk", interval=0.1)
    worker.kill()
    done_at_kill = len(_markers(home))
    assert 1 <= done_at_kill < BACKFILL_CHUNKS, "the kill should land mid-backfill"
    return run_id


def test_worker_killed_mid_run_leaves_the_run_running_until_detected(
    prefect_stack: Stack, killed_backfill: str
) -> None:
    """Nobody is left to report the run: the server still believes it is Running."""
    assert prefect_stack.api.state_type(killed_backfill) == "RUNNING"


def test_two_workers_on_one_pool_score_a_day_once(
    prefect_stack: Stack, worker: PrefectWorker, store: PredictionStore
) -> None:
    """Two workers poll the pool; two runs for the same day each run once, one at a time.

    The killed worker is restarted here, under its name, alongside a second one.
    """
    second = prefect_stack.new_worker("worker-2")
    prefect_stack.start_workers(*([] if worker.alive else [worker]), second)
    assert {worker.name, second.name} <= prefect_stack.api.online_workers(POOL)
    runs = [
        prefect_stack.run_deployment("daily-scoring", {"as_of": "2013-02-28"}) for _ in range(2)
    ]
    for run_id in runs:
        prefect_stack.api.wait_for_state(run_id, {"COMPLETED"}, timeout=240)

    for run_id in runs:  # each run was started by exactly one worker, once
        history = prefect_stack.api.state_history(run_id)
        assert [s["type"] for s in history].count("RUNNING") == 1
        name = prefect_stack.api.flow_run(run_id)["name"]
        started = sum(
            w.log_path.read_text().count(f"Flow run '{name}' submitted to infrastructure")
            for w in (worker, second)
        )
        assert started == 1  # the other worker's claim, if any, was refused by the server
    (_, first_end), (second_start, _) = _running_spans(prefect_stack, runs)
    assert first_end <= second_start, "the concurrency limit must keep daily runs apart"

    rows = store.read_predictions(as_of="2013-02-28")
    assert sorted(rows["ticker"]) == ["AAPL", "GOOG", "IBM", "MSFT"]
    assert rows["flow_run_id"].nunique() == 1 and rows["flow_run_id"].iloc[0] in runs
    assert not rows.duplicated(KEY).any()
    second.stop()


def test_killed_run_is_marked_crashed_and_a_rerun_completes_without_duplicates(
    prefect_stack: Stack, worker: PrefectWorker, killed_backfill: str, store: PredictionStore
) -> None:
    if not worker.alive:
        prefect_stack.start_workers(worker)  # restarted (if the test above did not run)
    crashed = prefect_stack.api.wait_for_state(killed_backfill, {"CRASHED"}, timeout=150)
    assert "heartbeat" in crashed["state"]["message"].lower()

    rerun_id = prefect_stack.run_deployment("backfill", BACKFILL)
    prefect_stack.api.wait_for_state(rerun_id, {"COMPLETED"}, timeout=240)
    home = prefect_stack.stocktrend_home
    assert len(_markers(home)) == BACKFILL_CHUNKS

    start, end = BACKFILL["start"], BACKFILL["end"]
    expected = 2 * len(calendar.sessions(start, end))
    rows = store.read_predictions(start=start, end=end)
    assert len(rows) == expected
    assert not rows.duplicated(KEY).any()
    assert set(rows["flow_run_id"]) == {killed_backfill, rerun_id}  # killed run's chunks kept
    lake = parquet_store.read_predictions(home / "predictions", start=start, end=end)
    assert len(lake) == expected and not lake.duplicated(KEY).any()


def test_server_restart_keeps_schedules_active(prefect_stack: Stack, worker: PrefectWorker) -> None:
    server, api = prefect_stack.server, prefect_stack.api
    server.stop()
    assert not server.healthy()
    server.start_and_wait()

    deployment = api.deployment("daily-scoring", "daily-scoring")
    assert not deployment["paused"]
    assert [s["active"] for s in deployment["schedules"]] == [True]

    def upcoming() -> list[dict]:
        body = {
            "deployments": {"id": {"any_": [deployment["id"]]}},
            "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
            "sort": "EXPECTED_START_TIME_ASC",
            "limit": 5,
        }
        return api.flow_runs(body)

    runs = wait_until(upcoming, 90, "scheduled daily-scoring runs after the restart")
    new_york = ZoneInfo("America/New_York")
    for run in runs:
        when = datetime.fromisoformat(run["expected_start_time"]).astimezone(new_york)
        assert when.weekday() < 5 and (when.hour, when.minute) == (17, 30)
    wait_until(lambda: worker.name in api.online_workers(POOL), 60, "the worker to reconnect")


def test_drift_event_starts_a_fine_tune_run(prefect_stack: Stack, worker: PrefectWorker) -> None:
    """`stocktrend.drift.detected` for a model -> a fine-tune run with the event's as_of.

    The run is checked, not executed (fine-tuning itself is the drift tests'
    business), so the worker is stopped first; this is the last test here.
    """
    assert "fine-tune" in prefect_stack.deployed
    worker.stop()
    payload = {"model_version": "v2.0", "as_of": "2013-03-01", "decision": "drift"}
    event = {
        "id": str(uuid.uuid4()),
        "occurred": datetime.now(UTC).isoformat(),
        "event": "stocktrend.drift.detected",
        "resource": {
            "prefect.resource.id": "stocktrend.model.v2.0",
            "prefect.resource.name": "v2.0",
        },
        "related": [],
        "payload": payload,
    }
    prefect_stack.api.http.post("/events", json=[event]).raise_for_status()
    fine_tune = prefect_stack.api.deployment("fine-tune", "fine-tune")
    body = {"deployments": {"id": {"any_": [fine_tune["id"]]}}}
    runs = wait_until(lambda: prefect_stack.api.flow_runs(body), 60, "a fine-tune run")
    assert len(runs) == 1
    assert runs[0]["parameters"] == {"as_of": "2013-03-01", "trigger": payload}
    prefect_stack.api.http.delete(f"/flow_runs/{runs[0]['id']}").raise_for_status()
