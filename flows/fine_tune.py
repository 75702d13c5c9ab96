"""`fine-tune`: adapt the champion to recent data, and promote the result only if it earns it.

Steps: resolve the champion alias (once, at the start), load prices up to
``as_of``, build labelled windows up to the last session whose label is known,
split them into train / purged validation tail / most recent holdout
(:mod:`stocktrend.finetune`), fine-tune from the champion's weights, score
champion and challenger on the same holdout, register the challenger (files,
then its ``model_versions`` row with its parent; alias ``challenger``), then
either promote it (one transaction) or record why not. Every decision is in
``model_versions.decision`` and in the ``fine-tune-decision`` artifact.

Started by ``evaluate-drift`` as a subflow, or by its deployment's
``DeploymentEventTrigger`` on ``stocktrend.drift.detected`` (``trigger`` then
carries the event payload).
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.daily_scoring import DEFAULT_UNIVERSE
from stocktrend import calendar
from stocktrend.config import get_settings
from stocktrend.finetune import FineTuneConfig
from stocktrend.models import resolve_model
from stocktrend.scoring import history_start, parse_universe, require_benchmark
from stocktrend.workdir import remove_run_dir, run_dir
from tasks.fine_tune import (
    apply_decision_task,
    compare_task,
    describe_champion_task,
    name_challenger_task,
    prepare_data_task,
    publish_fine_tune_artifacts,
    register_challenger_task,
    train_challenger_task,
)
from tasks.scoring import load_prices_task, validate_task


def evaluation_day(as_of: str | None) -> pd.Timestamp:
    """``as_of`` rolled back to a session; default the last completed session."""
    if as_of is None:
        return calendar.last_completed_session()
    return calendar.previous_sessions(as_of, 1)[-1]


def _prices_start(day: pd.Timestamp, config: FineTuneConfig, horizon: int) -> str:
    sessions = config.train_sessions + config.val_sessions + config.holdout_sessions
    first = calendar.session_offset(day, -(sessions + 3 * (horizon + 1)))
    return str(history_start(first).date())


@flow(name="fine-tune", log_prints=True)
def fine_tune(
    as_of: str | None = None,
    source: str | None = None,
    universe: str | list[str] | None = None,
    learning_rate: float = 5e-5,
    max_epochs: int = 3,
    train_sessions: int = 250,
    val_sessions: int = 40,
    holdout_sessions: int = 60,
    primary_metric: str = "log_loss",
    margin: float | None = None,
    alpha: float = 0.05,
    full_retrain: bool = False,
    trigger: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fine-tune the champion on data up to `as_of`; promote the challenger only if it wins."""
    logger = get_run_logger()
    settings = get_settings()
    source = source or settings.source
    config = FineTuneConfig(
        learning_rate=learning_rate,
        max_epochs=max_epochs,
        train_sessions=train_sessions,
        val_sessions=val_sessions,
        holdout_sessions=holdout_sessions,
        primary_metric=primary_metric,
        margin=margin,
        alpha=alpha,
        full_retrain=full_retrain,
    )
    champion_path = str(resolve_model("champion", settings))
    champion = describe_champion_task(champion_path)
    day = evaluation_day(as_of)
    tickers = parse_universe(universe, champion["tickers"] or DEFAULT_UNIVERSE)
    run_id = str(flow_run.id) if flow_run.id else None
    workdir = str(run_dir(settings.home, run_id))

    wanted = sorted(set(tickers) | {settings.benchmark})
    start = _prices_start(day, config, champion["horizon"])
    loaded = load_prices_task(source, wanted, start, str(day.date()), workdir)
    valid = validate_task(loaded["path"], workdir)
    require_benchmark({**loaded["failed"], **valid["dropped"]}, settings.benchmark)
    data = prepare_data_task(
        valid["path"],
        tickers,
        settings.benchmark,
        champion["horizon"],
        champion["sequence_length"],
        config.model_dump(),
        workdir,
    )
    plan = data["plan"]
    logger.info(f"plan {plan}, windows {data['counts']}")
    version = name_challenger_task(champion["model_version"], plan["train_end"])
    trained = train_challenger_task(
        champion_path, data, config.model_dump(), version, settings.benchmark, workdir
    )
    decision = compare_task(champion_path, trained["path"], data["holdout"], config.model_dump())
    register_challenger_task(trained["path"], champion["model_version"], decision)
    outcome = apply_decision_task(version, champion["model_version"], decision)

    parent_end = champion["data_end"]
    summary = {
        "flow": "fine-tune",
        "as_of": str(day.date()),
        "parent": champion["model_version"],
        "parent_sha256": champion["model_sha256"],
        "challenger": version,
        "promoted": bool(decision["promote"]),
        "champion_now": outcome["champion_now"],
        "decision": decision,
        "plan": plan,
        "counts": data["counts"],
        "epochs_run": trained["epochs_run"],
        "best_epoch": trained["best_epoch"],
        "train_seconds": trained["train_seconds"],
        "holdout_overlaps_parent_training": bool(
            parent_end and pd.Timestamp(plan["holdout_start"]) <= pd.Timestamp(parent_end)
        ),
        "trigger": trigger,
    }
    publish_fine_tune_artifacts(summary, trained["history"])
    logger.info(decision["reason"])
    remove_run_dir(workdir)
    return summary
