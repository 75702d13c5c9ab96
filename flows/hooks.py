"""Flow state hooks: keep the `runs` table honest when a run fails or crashes.

Without them a failed run's row would say ``running`` forever, and an analyst
querying `runs` could not tell a dead run from a slow one. The hook marks the
row ``failed`` with Prefect's message; if the database is what failed, it logs
that it could not, and the Prefect UI remains the record.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from stocktrend.config import get_settings
from stocktrend.errors import StorageError
from stocktrend.storage import PredictionStore

logger = logging.getLogger(__name__)

MESSAGE_LIMIT = 2000


def record_failure(_flow: Any, flow_run: Any, state: Any) -> None:
    """Mark the run's row failed (if the run got as far as recording one)."""
    run_id = str(flow_run.id)
    try:
        with PredictionStore(get_settings().resolved_database_url) as store:
            current = store.get_run(run_id)
            if current is None or current.status not in ("running",):
                return
            message = f"{state.type.value.lower()}: {state.message or 'no message'}"
            store.record_run(
                replace(
                    current,
                    status="failed",
                    finished_at=datetime.now(UTC),
                    message=message[:MESSAGE_LIMIT],
                )
            )
    except StorageError as exc:
        logger.warning("could not mark run %s failed in the runs table: %s", run_id, exc)
