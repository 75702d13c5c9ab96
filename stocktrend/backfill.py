"""Backfill planning: chunks of (period x ticker batch), and which of them are done.

A backfill over years and hundreds of tickers is cut into chunks so that it
can show progress, fan out across workers, and resume after a crash: each
chunk is written to both sinks and only then marked done with a small marker
file under ``<predictions root>/_backfill/`` (a ``_`` prefix, so Parquet
readers ignore it). A re-run skips marked chunks unless ``overwrite`` is set;
an interrupted chunk has no marker and is simply redone, and because both
sinks upsert, redoing it never duplicates rows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from stocktrend.atomic import atomic_write_text


@dataclass(frozen=True)
class Chunk:
    """One unit of backfill work: a ticker batch over the sessions of one period."""

    period: str
    sessions: tuple[pd.Timestamp, ...]
    tickers: tuple[str, ...]

    @property
    def first(self) -> pd.Timestamp:
        return self.sessions[0]

    @property
    def last(self) -> pd.Timestamp:
        return self.sessions[-1]

    def key(self, model_version: str) -> str:
        digest = hashlib.sha256(
            json.dumps(
                [model_version, [str(s.date()) for s in self.sessions], self.tickers]
            ).encode()
        ).hexdigest()[:16]
        return f"{self.period}-{digest}"


def plan_chunks(
    sessions: pd.DatetimeIndex, tickers: list[str], *, batch_size: int = 100, period: str = "M"
) -> list[Chunk]:
    """Chunks ordered by ticker batch, then period (each batch's features are built once)."""
    if len(sessions) == 0 or not tickers:
        return []
    labels = pd.DatetimeIndex(sessions).to_period(period).astype(str)
    groups: dict[str, list[pd.Timestamp]] = {}
    for label, day in zip(labels, sessions, strict=True):
        groups.setdefault(label, []).append(pd.Timestamp(day))
    batches = [tuple(tickers[i : i + batch_size]) for i in range(0, len(tickers), batch_size)]
    return [
        Chunk(period=label, sessions=tuple(days), tickers=batch)
        for batch in batches
        for label, days in groups.items()
    ]


def _marker(root: Path, model_version: str, chunk: Chunk) -> Path:
    safe_version = "".join(c if c.isalnum() or c in "._-" else "_" for c in model_version)
    return Path(root) / "_backfill" / safe_version / f"{chunk.key(model_version)}.json"


def is_done(root: Path, model_version: str, chunk: Chunk) -> bool:
    return _marker(root, model_version, chunk).exists()


def mark_done(root: Path, model_version: str, chunk: Chunk, summary: dict) -> Path:
    """Write the chunk's marker atomically (temp file + rename) after both sinks committed."""
    payload = {
        "period": chunk.period,
        "first": str(chunk.first.date()),
        "last": str(chunk.last.date()),
        "tickers": list(chunk.tickers),
        **summary,
    }
    return atomic_write_text(_marker(root, model_version, chunk), json.dumps(payload, default=str))


def clear_marks(root: Path, model_version: str, chunks: list[Chunk]) -> None:
    for chunk in chunks:
        _marker(root, model_version, chunk).unlink(missing_ok=True)
