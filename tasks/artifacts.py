"""Prefect artifacts for scoring runs: summary, extremes table, failure report, progress."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect import task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from stocktrend.reporting import extremes_table, failure_table, run_summary_markdown
from stocktrend.workdir import load_frame


@task(name="publish-artifacts")
def publish_artifacts(summary: dict[str, Any], predictions_path: str | None) -> None:
    key = summary["flow"]
    create_markdown_artifact(
        run_summary_markdown(summary), key=f"{key}-summary", description="Run summary"
    )
    if predictions_path:
        rows = extremes_table(load_frame(predictions_path))
        if rows:
            create_table_artifact(
                rows, key=f"{key}-extremes", description="Most bullish and bearish tickers, P(up)"
            )
    create_table_artifact(
        failure_table(summary.get("failed", {}), summary.get("skipped", {})),
        key=f"{key}-failures",
        description="Tickers not scored, and why",
    )


def start_progress(key: str, description: str) -> UUID:
    return create_progress_artifact(0.0, key=key, description=description)


def set_progress(artifact_id: UUID | None, fraction: float) -> None:
    if artifact_id is not None:
        update_progress_artifact(artifact_id, round(100.0 * fraction, 1))
