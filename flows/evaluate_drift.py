"""`evaluate-drift`: is the champion drifting? Decide, record, and start fine-tuning if so.

Per run: resolve the model (default the ``champion`` alias, once, at the start),
read its stored predictions, join them with the realised outcomes of the
prices (only predictions whose horizon has passed by ``as_of`` count), compare
the trailing window with the checkpoint's reference figures, compute PSI per
feature on the latest sessions, and decide (rules: :mod:`stocktrend.drift`).
Writes the realised outcome of every resolved prediction to the SQL
``outcomes`` table (for analysts' hit-rate queries), one row to the SQL
``evaluations`` table and one Parquet file under
``$STOCKTREND_HOME/evaluations/``, and publishes artifacts: ``drift-verdict``
(markdown with the numbers and the rule that fired), ``drift-psi`` (table),
``drift-plot-*`` image artifacts (PNG as base64 data URLs: accuracy over time
with the reference line, calibration, PSI bars) and ``drift-plots`` (the same
images embedded in markdown).

On drift it emits a Prefect event, for automations and deployment triggers::

    event:    "stocktrend.drift.detected"
    resource: {"prefect.resource.id": "stocktrend.model.<version>",
               "prefect.resource.name": "<version>",
               "stocktrend.model.sha256": "<sha256>"}
    payload:  {"model_version", "model_sha256", "as_of" (YYYY-MM-DD), "decision": "drift",
               "rules_fired": ["accuracy" and/or "data"], "rule": text,
               "window": {"start", "end"}, "n_resolved" (in the window), "n_pending",
               "accuracy", "reference_accuracy",
               "p_value", "alpha", "share_drifted", "drifted_share_threshold",
               "drifted_features": [up to 10 names], "mean_p_up", "bullish_share"}

The fine-tune deployment's trigger would be, e.g.::

    DeploymentEventTrigger(
        expect={"stocktrend.drift.detected"},
        match={"prefect.resource.id": "stocktrend.model.*"},
        parameters={"as_of": "{{ event.payload.as_of }}", "trigger": "{{ event.payload }}"},
    )

(Prefect 3 renders a single-expression template through ``tojson``, so
``trigger`` arrives as a dict.)

With ``fine_tune_on_drift=True`` (the default, for runs without a server: tests,
the CLI) this flow also calls ``fine-tune`` directly as a subflow, but only when
the evaluated version is still the champion. A deployment whose drift event
starts the fine-tune deployment must set ``fine_tune_on_drift=False``, or
fine-tuning would run twice. No drift: nothing is emitted or started.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from flows.fine_tune import evaluation_day, fine_tune
from stocktrend import calendar, registry
from stocktrend.config import get_settings
from stocktrend.drift import DRIFT, DriftConfig
from stocktrend.models import resolve_model
from stocktrend.scoring import history_start, parse_universe, require_benchmark
from stocktrend.workdir import remove_run_dir, run_dir
from tasks.drift import (
    describe_model_task,
    drift_report_task,
    emit_drift_event,
    load_predictions_task,
    new_evaluation_id,
    publish_drift_artifacts,
    record_evaluation_task,
    record_outcomes_task,
)
from tasks.scoring import load_prices_task, validate_task


@flow(name="evaluate-drift", log_prints=True)
def evaluate_drift(
    as_of: str | None = None,
    model: str = "champion",
    source: str | None = None,
    universe: str | list[str] | None = None,
    window_sessions: int = 60,
    alpha: float = 0.05,
    min_samples: int = 100,
    drifted_share_threshold: float = 0.8,
    fine_tune_on_drift: bool = True,
    fine_tune_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate `model` as of `as_of` (default: the last completed session)."""
    logger = get_run_logger()
    settings = get_settings()
    source = source or settings.source
    config = DriftConfig(
        window_sessions=window_sessions,
        alpha=alpha,
        min_samples=min_samples,
        drifted_share_threshold=drifted_share_threshold,
    )
    day = evaluation_day(as_of)
    model_path = str(resolve_model(model, settings))
    info = describe_model_task(model_path)
    run_id = str(flow_run.id) if flow_run.id else None
    workdir = str(run_dir(settings.home, run_id))

    lookback = 3 * window_sessions + info["horizon"]
    start = calendar.session_offset(day, -lookback)
    predictions = load_predictions_task(
        info["model_version"], str(start.date()), str(day.date()), workdir
    )
    tickers = parse_universe(universe, predictions["tickers"])
    wanted = sorted(set(tickers) | {settings.benchmark})
    first = min(start, calendar.session_offset(day, -window_sessions))
    loaded = load_prices_task(
        source, wanted, str(history_start(first).date()), str(day.date()), workdir
    )
    valid = validate_task(loaded["path"], workdir)
    require_benchmark({**loaded["failed"], **valid["dropped"]}, settings.benchmark)
    usable = [t for t in tickers if t not in loaded["failed"] and t not in valid["dropped"]]
    result = drift_report_task(
        predictions["path"],
        valid["path"],
        model_path,
        str(day.date()),
        config.model_dump(),
        usable,
        settings.benchmark,
        workdir,
    )
    recorded = record_outcomes_task(predictions["path"], valid["path"], str(day.date()))
    evaluation_id = new_evaluation_id()
    record_evaluation_task(result, evaluation_id, run_id)
    publish_drift_artifacts(result)
    report = result["report"]
    logger.info(f"{report['decision']}: {report['rule']}")

    summary: dict[str, Any] = {
        "flow": "evaluate-drift",
        "evaluation_id": evaluation_id,
        "as_of": report["as_of"],
        "model_version": info["model_version"],
        "model_sha256": info["model_sha256"],
        "decision": report["decision"],
        "rules_fired": report["rules_fired"],
        "rule": report["rule"],
        "n_resolved": report["metrics"].get("n", 0),
        "n_pending": report["n_pending"],
        "n_outcomes_recorded": recorded["recorded"],
        "share_drifted": report["share_drifted"],
        "event_id": None,
        "fine_tune": None,
    }
    if report["decision"] == DRIFT:
        summary["event_id"] = emit_drift_event(result["evidence"])
        summary["fine_tune"] = _maybe_fine_tune(
            fine_tune_on_drift, info, day, source, result["evidence"], fine_tune_options or {}
        )
    remove_run_dir(workdir)
    return summary


def _maybe_fine_tune(
    enabled: bool,
    info: dict[str, Any],
    day: Any,
    source: str,
    evidence: dict[str, Any],
    options: dict[str, Any],
) -> dict[str, Any] | str:
    """Run `fine-tune` as a subflow when asked and when the drifting model is the champion."""
    if not enabled:
        return "not started here (fine_tune_on_drift=False: the event trigger starts it)"
    champion = registry.aliases(get_settings()).get(registry.CHAMPION)
    if champion != info["model_version"]:
        return f"not started: {info['model_version']} is not the champion ({champion})"
    return fine_tune(as_of=str(day.date()), source=source, trigger=evidence, **options)
