"""Prefect tasks for the evaluate-drift flow: thin wrappers over `stocktrend.drift` and stores."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import task
from prefect.artifacts import (
    create_image_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.events import emit_event

from stocktrend.checkpoint import load_checkpoint
from stocktrend.config import get_settings
from stocktrend.drift import DriftConfig, ModelReference, build_report, resolve_outcomes
from stocktrend.storage import PredictionStore
from stocktrend.storage.evaluations import record_evaluation
from stocktrend.storage.outcomes import outcome_rows, record_outcomes
from stocktrend.workdir import load_frame, save_frame

DRIFT_EVENT = "stocktrend.drift.detected"


@task(name="describe-model")
def describe_model_task(model_path: str) -> dict[str, Any]:
    bundle = load_checkpoint(model_path)
    return {
        "path": model_path,
        "model_version": bundle.model_version,
        "model_sha256": bundle.sha256,
        "horizon": int(bundle.horizon or get_settings().horizon),
    }


@task(name="load-predictions", retries=2, retry_delay_seconds=3)
def load_predictions_task(model_version: str, start: str, end: str, workdir: str) -> dict[str, Any]:
    """This version's stored predictions in [start, end], saved for the next task."""
    store = PredictionStore(get_settings().resolved_database_url)
    frame = store.read_predictions(start=start, end=end, model_version=model_version)
    return {
        "path": save_frame(frame, Path(workdir) / "predictions.parquet"),
        "n": len(frame),
        "tickers": sorted(set(frame["ticker"])),
    }


@task(name="drift-report")
def drift_report_task(
    predictions_path: str,
    prices_path: str,
    model_path: str,
    as_of: str,
    config: dict[str, Any],
    tickers: list[str],
    benchmark: str,
    workdir: str,
) -> dict[str, Any]:
    """Build the report; return its dict, markdown, evidence, PSI table and plot files."""
    bundle = load_checkpoint(model_path)
    report = build_report(
        load_frame(predictions_path),
        load_frame(prices_path),
        ModelReference.from_metadata(bundle.metadata, str(bundle.sha256)),
        as_of,
        benchmark=benchmark,
        config=DriftConfig(**config),
        tickers=tickers,
    )
    plots = report.save_plots(Path(workdir) / "plots")
    return {
        "report": report.to_dict(),
        "markdown": report.to_markdown(),
        "evidence": report.evidence(),
        "psi_table": report.psi_table(),
        "plots": {p.stem: str(p) for p in plots},
    }


def evaluation_row(
    result: dict[str, Any], evaluation_id: str, flow_run_id: str | None
) -> dict[str, Any]:
    """The ``evaluations`` row for a report dict."""
    report = result["report"]
    metrics, test = report["metrics"], report["accuracy_test"]
    return {
        "evaluation_id": evaluation_id,
        "flow_run_id": flow_run_id,
        "evaluated_at": datetime.now(UTC),
        "as_of_date": report["as_of"],
        "model_version": report["model_version"],
        "model_sha256": report["model_sha256"],
        "window_start": report["window_start"],
        "window_end": report["window_end"],
        "n_sessions": report["window_sessions"],
        "n_resolved": metrics.get("n", 0),
        "n_pending": report["n_pending"],
        "accuracy": metrics.get("accuracy"),
        "roc_auc": metrics.get("roc_auc"),
        "brier": metrics.get("brier"),
        "log_loss": metrics.get("log_loss"),
        "reference_accuracy": test["reference_accuracy"],
        "p_value": test["p_value"],
        "share_drifted": report["share_drifted"],
        "mean_p_up": report["prediction_drift"]["mean_p_up"],
        "bullish_share": report["prediction_drift"]["bullish_share"],
        "decision": report["decision"],
        "rule": report["rule"],
        "report": report,
    }


@task(name="record-evaluation", retries=2, retry_delay_seconds=3)
def record_evaluation_task(
    result: dict[str, Any], evaluation_id: str, flow_run_id: str | None
) -> dict[str, str]:
    """One row in SQL ``evaluations`` and one Parquet file, keyed by ``evaluation_id``."""
    row = evaluation_row(result, evaluation_id, flow_run_id)
    path = record_evaluation(row, get_settings())
    return {"evaluation_id": evaluation_id, "parquet": str(path)}


@task(name="record-outcomes", retries=2, retry_delay_seconds=3)
def record_outcomes_task(predictions_path: str, prices_path: str, as_of: str) -> dict[str, int]:
    """Upsert the realised outcome of every prediction resolved by ``as_of`` (SQL `outcomes`)."""
    resolved = resolve_outcomes(load_frame(predictions_path), load_frame(prices_path), as_of)
    rows = outcome_rows(resolved)
    return {"recorded": record_outcomes(rows, get_settings()), "pending": len(resolved) - len(rows)}


def _data_url(path: str) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


@task(name="publish-drift-artifacts")
def publish_drift_artifacts(result: dict[str, Any]) -> None:
    """Markdown verdict, PSI table, and the PNG plots (image artifacts with data URLs)."""
    create_markdown_artifact(result["markdown"], key="drift-verdict", description="Verdict")
    create_table_artifact(result["psi_table"], key="drift-psi", description="PSI per feature")
    images = []
    for name, path in result["plots"].items():
        url = _data_url(path)
        key = "drift-plot-" + name.replace("_", "-")
        create_image_artifact(url, key=key, description=name.replace("_", " "))
        images.append(f"### {name.replace('_', ' ')}\n\n![{name}]({url})\n")
    create_markdown_artifact("\n".join(images), key="drift-plots", description="Plots")


@task(name="emit-drift-event")
def emit_drift_event(evidence: dict[str, Any]) -> str | None:
    """Emit ``stocktrend.drift.detected`` for the model version; returns the event id."""
    version = str(evidence["model_version"])
    event = emit_event(
        event=DRIFT_EVENT,
        resource={
            "prefect.resource.id": f"stocktrend.model.{version}",
            "prefect.resource.name": version,
            "stocktrend.model.sha256": str(evidence.get("model_sha256")),
        },
        payload=json.loads(json.dumps(evidence, default=str)),
    )
    return None if event is None else str(event.id)


def new_evaluation_id() -> str:
    return str(uuid.uuid4())
