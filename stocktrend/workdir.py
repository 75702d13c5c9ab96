"""Per-run scratch files, so Prefect passes paths between tasks instead of DataFrames.

Prefect keeps task results in its result store and UI; a 500-ticker price
frame or a (N, 30, 50) window array does not belong there. Each flow run gets
``STOCKTREND_HOME/runs/<run id>/``; tasks write Parquet / ``.npy`` files into it
and return their paths plus small summaries. The directory is removed when the
run succeeds and kept for inspection when it fails.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import numpy as np
import pandas as pd


def run_dir(home: Path, run_id: str | None) -> Path:
    path = Path(home) / "runs" / (run_id or f"local-{uuid.uuid4().hex[:12]}")
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_frame(frame: pd.DataFrame, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return str(path)


def load_frame(path: str | Path) -> pd.DataFrame:
    return pd.read_parquet(path)


def save_array(array: np.ndarray, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, array, allow_pickle=False)
    return str(path)


def load_array(path: str | Path) -> np.ndarray:
    return np.load(path, allow_pickle=False)


def remove_run_dir(path: str | Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
