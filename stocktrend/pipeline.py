"""End-to-end model jobs composed from the library: train from prices, evaluate a checkpoint.

Both the CLI (``stocktrend train``, ``stocktrend evaluate``, ``stocktrend demo``)
and the fine-tuning flow call these, so the pretrained model's published
figures are reproduced by exactly the code that produced them.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from stocktrend import __version__
from stocktrend.checkpoint import (
    ModelBundle,
    file_sha256,
    load_checkpoint,
    predict_proba,
    save_checkpoint,
)
from stocktrend.evaluation import (
    Report,
    evaluate,
    logistic_baseline,
    majority_baseline,
    momentum_baseline,
)
from stocktrend.features import FEATURE_NAMES
from stocktrend.histograms import reference_histograms
from stocktrend.model import ModelConfig, count_parameters
from stocktrend.scaler import Scaler
from stocktrend.training import (
    Dataset,
    ProgressCallback,
    TrainConfig,
    TrainResult,
    build_dataset,
    fit,
    last_day_features,
    new_model,
    split_dataset,
)


@dataclass(frozen=True)
class Periods:
    """Chronological boundaries (inclusive as-of dates); purge gaps are applied on top."""

    train_start: str = "2001-01-01"
    train_end: str = "2008-12-31"
    val_end: str = "2010-12-31"
    test_end: str = "2013-02-28"

    def to_dict(self) -> dict[str, str]:
        return dict(self.__dict__)


@dataclass
class TrainedModel:
    checkpoint: Path
    result: TrainResult
    report: Report
    split: dict[str, Any]
    seconds: float


def prepare(
    prices: pd.DataFrame, periods: Periods, *, benchmark: str, horizon: int, seq_len: int
) -> tuple[Dataset, Dataset, Dataset, dict[str, Any]]:
    """Labelled windows split into train / validation / test with purge gaps."""
    data = build_dataset(prices, benchmark=benchmark, horizon=horizon, seq_len=seq_len)
    in_range = np.flatnonzero(
        pd.DatetimeIndex(data.index["as_of_date"]) >= pd.Timestamp(periods.train_start)
    )
    data = data.subset(in_range)
    train, val, test, split = split_dataset(
        data, periods.train_end, periods.val_end, horizon, test_end=periods.test_end
    )
    for name, part in (("train", train), ("validation", val), ("test", test)):
        if len(part) == 0:
            raise ValueError(f"the {name} period holds no labelled windows: check the dates")
    return train, val, test, split.describe()


def baselines_for(train: Dataset, test: Dataset) -> dict[str, np.ndarray]:
    """P(up) of the three reference predictors on the test windows, fitted on training only."""
    return {
        "majority": majority_baseline(train.y, len(test)),
        "momentum": momentum_baseline(test.past_return),
        "logistic": logistic_baseline(
            last_day_features(train.X), train.y, last_day_features(test.X)
        ),
    }


def train_model(
    prices: pd.DataFrame,
    out: Path,
    *,
    periods: Periods,
    benchmark: str,
    horizon: int,
    seq_len: int,
    model_version: str,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    progress: ProgressCallback | None = None,
    resume_from: Path | None = None,
    state_out: Path | None = None,
) -> TrainedModel:
    """Train, evaluate on the held-out test period, and write the checkpoint to ``out``.

    ``out`` gets the best weights without optimiser state (what scoring needs);
    ``state_out``, when given, gets the same plus optimiser and scheduler state
    so that ``resume_from`` can continue an interrupted run.
    """
    started = time.perf_counter()
    model_config = model_config or ModelConfig(sequence_length=seq_len)
    train_config = train_config or TrainConfig()
    train, val, test, split = prepare(
        prices, periods, benchmark=benchmark, horizon=horizon, seq_len=seq_len
    )
    scaler = Scaler.fit(train.X)
    model = new_model(model_config, train_config.seed)
    resume = None
    if resume_from is not None:
        resume = torch.load(resume_from, map_location="cpu", weights_only=True)
        model.load_state_dict(resume["state_dict"])
    result = fit(
        model,
        (train.X, train.y),
        (val.X, val.y),
        scaler,
        train_config,
        progress=progress,
        resume=resume,
    )
    model.load_state_dict(result.best_state_dict)
    model.eval()

    p_up = _predict_with(model, scaler, test.X, seq_len)
    report = evaluate(
        test.y,
        p_up,
        test.forward_return,
        test.index,
        baselines=baselines_for(train, test),
    )
    training_info = {
        "periods": periods.to_dict(),
        "split": split,
        **fit_record(train, result, benchmark),
        "train_config": train_config.model_dump(),
        "hardware": _hardware(),
    }
    common = dict(
        config=model_config,
        feature_names=list(FEATURE_NAMES),
        scaler=scaler,
        horizon=horizon,
        model_version=model_version,
        training=training_info,
        reference_histograms=reference_histograms(last_day_features(train.X)),
        metrics=headline_metrics(report),
        epoch=result.best_epoch,
        global_step=result.global_step,
    )
    save_checkpoint(out, model, **common)
    if state_out is not None:
        save_checkpoint(
            state_out,
            model,
            **{**common, "epoch": result.last_epoch},
            optimizer_state=result.optimizer_state,
            scheduler_state=result.scheduler_state,
        )
    return TrainedModel(
        checkpoint=out,
        result=result,
        report=report,
        split=split,
        seconds=time.perf_counter() - started,
    )


def _predict_with(
    model: torch.nn.Module, scaler: Scaler, X: np.ndarray, seq_len: int
) -> np.ndarray:
    bundle = ModelBundle(
        model=model,
        config=model.config,
        feature_names=tuple(FEATURE_NAMES),
        scaler=scaler,
        sequence_length=seq_len,
        horizon=0,
        metadata={},
        path=None,
        sha256=None,
    )
    return predict_proba(bundle, X)[:, 1]


def evaluate_checkpoint(
    bundle: ModelBundle,
    prices: pd.DataFrame,
    *,
    periods: Periods,
    benchmark: str,
) -> tuple[Report, Dataset, np.ndarray]:
    """Re-run the test-period evaluation of a checkpoint with its own horizon and scaler."""
    train, _val, test, _split = prepare(
        prices,
        periods,
        benchmark=benchmark,
        horizon=bundle.horizon,
        seq_len=bundle.sequence_length,
    )
    p_up = predict_proba(bundle, test.X)[:, 1]
    report = evaluate(
        test.y, p_up, test.forward_return, test.index, baselines=baselines_for(train, test)
    )
    return report, test, p_up


def fit_record(train: Dataset, result: TrainResult, benchmark: str) -> dict[str, Any]:
    """How a model was fitted, as its checkpoint records it (full training and fine-tuning)."""
    return {
        "tickers": sorted(pd.unique(train.index["ticker"]).tolist()),
        "benchmark": benchmark,
        "class_counts_train": np.bincount(train.y, minlength=2).tolist(),
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "best_val_loss": result.best_val_loss,
        "train_seconds": round(result.seconds, 1),
        "history": [h.__dict__ for h in result.history],
    }


def headline_metrics(report: Report) -> dict[str, Any]:
    """The few figures that travel in the checkpoint and in model_metadata.json."""
    data = report.to_dict()
    keep = ("n_samples", "period", "model", "baselines", "significance")
    return {key: data[key] for key in keep if key in data}


def _hardware() -> dict[str, Any]:
    return {
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "cpu_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "torch": str(torch.__version__),
        "python": platform.python_version(),
    }


def write_model_metadata(
    checkpoint: Path,
    *,
    command: str,
    report: Report,
    wall_seconds: float,
    out: Path | None = None,
) -> Path:
    """``model_metadata.json`` beside the checkpoint, in the seed's field groups plus sha256."""
    bundle = load_checkpoint(checkpoint, verify_metadata=False)
    meta = bundle.metadata
    training = meta.get("training", {})
    report_dict = report.to_dict()
    config = bundle.config.model_dump()
    document = {
        "model_name": "stocktrend CNN-BiLSTM-Transformer",
        "version": bundle.model_version,
        "checkpoint": {
            "file": checkpoint.name,
            "sha256": file_sha256(checkpoint),
            "size_bytes": checkpoint.stat().st_size,
            "contains_optimizer_state": False,
            "format": "Lightning-compatible dict + 'stocktrend' section; "
            "loads with torch.load(weights_only=True)",
        },
        "performance": {
            "evaluated_on": "held-out test period (never used for training, early stopping "
            "or any fitted statistic)",
            **{k: report_dict.get(k) for k in ("n_samples", "period", "model", "baselines")},
            "significance": report_dict.get("significance"),
        },
        "training_details": {
            "command": command,
            "wall_seconds": round(wall_seconds, 1),
            "best_epoch": training.get("best_epoch"),
            "epochs_run": training.get("epochs_run"),
            "stopped_early": training.get("stopped_early"),
            "best_val_loss": training.get("best_val_loss"),
            "hardware": training.get("hardware"),
            "framework": f"PyTorch {torch.__version__} (plain loop, no Lightning)",
            "code_version": __version__,
        },
        "architecture": {
            "type": "CNN-BiLSTM-Transformer",
            "parameters": count_parameters(bundle.model),
            "input_shape": [None, bundle.sequence_length, len(bundle.feature_names)],
            "output": "logits (batch, 2): class 0 bearish (Bajista), 1 bullish (Alcista)",
            "layers": config,
        },
        "hyperparameters": {**config, **training.get("train_config", {})},
        "dataset": {
            "source": "bundled sample (stocktrend/data/sample_prices.parquet)",
            "tickers": training.get("tickers"),
            "periods": training.get("periods"),
            "split": training.get("split"),
            "horizon_sessions": bundle.horizon,
            "label": f"1 (bullish) if close(t+{bundle.horizon}) > close(t) else 0 (bearish)",
            "class_counts_train": training.get("class_counts_train"),
        },
        "features": list(bundle.feature_names),
        "baselines": report_dict.get("baselines"),
    }
    target = out or checkpoint.with_name("model_metadata.json")
    target.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return target
