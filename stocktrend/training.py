"""Training: a plain PyTorch loop with the seed's optimiser settings, minus its leaks.

What is kept from the seed: AdamW (lr 1e-4, weight decay 5e-3), label
smoothing 0.1, gradient clipping at 1.0, early stopping on validation loss.
What is changed, and why:

* class imbalance is handled with class weights in the loss, not by
  oversampling windows (the seed oversampled before splitting, which put
  copies of training windows in its test set);
* the scaler and the drift reference histograms are fitted on training
  windows only, and travel inside the checkpoint;
* splits are chronological with a purge gap of ``horizon`` sessions
  (:func:`stocktrend.windows.chronological_split`).

The loop is deterministic for a given seed on a given machine, reports
progress through a callback (the CLI draws a rich bar, flows publish Prefect
artifacts), uses CUDA when present, and can resume from a checkpoint that
carries optimiser and scheduler state.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from stocktrend.features import FEATURE_NAMES, build_features
from stocktrend.model import CNNBiLSTMModel, ModelConfig
from stocktrend.scaler import Scaler
from stocktrend.windows import (
    Split,
    chronological_split,
    forward_returns,
    lookup,
    make_labels,
    make_windows,
)


class TrainConfig(BaseModel):
    """Optimisation settings; defaults are the seed's where it had them."""

    model_config = ConfigDict(frozen=True)

    learning_rate: float = Field(1e-4, gt=0)
    weight_decay: float = Field(5e-3, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    gradient_clip_val: float = Field(1.0, gt=0)
    batch_size: int = Field(128, ge=1)
    max_epochs: int = Field(30, ge=1)
    early_stopping_patience: int = Field(5, ge=1)
    lr_patience: int = Field(2, ge=1, description="ReduceLROnPlateau patience (epochs)")
    lr_factor: float = Field(0.5, gt=0, lt=1)
    seed: int = 42
    device: str = Field("auto", description="'auto' (CUDA when present), 'cpu' or 'cuda'")


@dataclass
class Dataset:
    """Windows with everything training and evaluation need, aligned row by row."""

    X: np.ndarray
    y: np.ndarray
    forward_return: np.ndarray
    past_return: np.ndarray
    index: pd.DataFrame

    def subset(self, rows: np.ndarray) -> Dataset:
        return Dataset(
            X=self.X[rows],
            y=self.y[rows],
            forward_return=self.forward_return[rows],
            past_return=self.past_return[rows],
            index=self.index.iloc[rows].reset_index(drop=True),
        )

    def __len__(self) -> int:
        return len(self.y)


def build_dataset(
    prices: pd.DataFrame, *, benchmark: str, horizon: int, seq_len: int, labelled_only: bool = True
) -> Dataset:
    """Features, windows, labels, forward and trailing returns for every window in ``prices``.

    ``past_return`` is the trailing ``horizon``-session return known at t (what the
    momentum baseline uses); ``forward_return`` is the realised return the label
    is the sign of.
    """
    features = build_features(prices, benchmark=benchmark)
    X, index = make_windows(features, seq_len=seq_len)
    labels = lookup(make_labels(prices, horizon), index)
    fwd = lookup(forward_returns(prices, horizon), index)
    past = lookup(_trailing_returns(prices, horizon), index)
    if labelled_only:
        keep = np.flatnonzero(~np.isnan(labels))
        X, index, labels, fwd, past = X[keep], index.iloc[keep], labels[keep], fwd[keep], past[keep]
    return Dataset(
        X=X,
        y=np.nan_to_num(labels, nan=-1).astype(np.int64),
        forward_return=fwd,
        past_return=past,
        index=index.reset_index(drop=True),
    )


def _trailing_returns(prices: pd.DataFrame, horizon: int) -> pd.Series:
    frame = prices[["date", "ticker", "close"]].sort_values(["ticker", "date"])
    past = frame.groupby("ticker", sort=False)["close"].shift(horizon)
    index = pd.MultiIndex.from_arrays(
        [frame["date"].to_numpy(), frame["ticker"].to_numpy()], names=["date", "ticker"]
    )
    return pd.Series((frame["close"] / past - 1.0).to_numpy(), index=index)


def split_dataset(
    data: Dataset, train_end: str, val_end: str, horizon: int, test_end: str | None = None
) -> tuple[Dataset, Dataset, Dataset, Split]:
    split = chronological_split(data.index, train_end, val_end, horizon, test_end=test_end)
    return data.subset(split.train), data.subset(split.val), data.subset(split.test), split


def class_weights(y: np.ndarray, n_classes: int = 2) -> np.ndarray:
    """Inverse-frequency weights (n / (k * count)), the loss-side answer to imbalance."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    if (counts == 0).any():
        raise ValueError(f"training labels lack a class: counts {counts.tolist()}")
    return len(y) / (n_classes * counts)


@dataclass
class EpochStats:
    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    learning_rate: float
    seconds: float


@dataclass
class TrainResult:
    """The best weights (by validation loss) and the state needed to resume."""

    best_state_dict: dict[str, torch.Tensor]
    best_epoch: int
    best_val_loss: float
    history: list[EpochStats]
    last_epoch: int
    global_step: int
    optimizer_state: dict[str, Any]
    scheduler_state: dict[str, Any]
    stopped_early: bool
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


ProgressCallback = Callable[[str, dict[str, Any]], None]
"""Called as ``callback(event, payload)`` with events 'start', 'batch', 'epoch', 'end'."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def fit(
    model: nn.Module,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    scaler: Scaler,
    config: TrainConfig,
    *,
    progress: ProgressCallback | None = None,
    resume: dict[str, Any] | None = None,
) -> TrainResult:
    """Train ``model`` in place and return the best weights by validation loss.

    ``train`` and ``val`` are raw windows and labels; ``scaler`` (fitted on the
    training windows by the caller) is applied here, batch by batch, exactly as
    scoring will apply it. ``resume`` is a checkpoint dict holding
    ``optimizer_states``, ``lr_schedulers``, ``epoch`` and ``global_step``.
    """
    notify = progress or (lambda _event, _payload: None)
    device = resolve_device(config.device)
    _seed_everything(config.seed)
    model.to(device)

    X_train, y_train = train
    X_val, y_val = val
    weights = torch.tensor(class_weights(y_train), dtype=torch.float32, device=device)
    loss_fn = nn.CrossEntropyLoss(weight=weights, label_smoothing=config.label_smoothing)
    eval_loss_fn = nn.CrossEntropyLoss(weight=weights)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="min", factor=config.lr_factor, patience=config.lr_patience
    )
    start_epoch, global_step = 0, 0
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer_states"][0])
        scheduler.load_state_dict(resume["lr_schedulers"][0])
        start_epoch, global_step = int(resume["epoch"]) + 1, int(resume["global_step"])

    X_val_t = torch.from_numpy(scaler.transform(X_val))
    y_val_t = torch.from_numpy(y_val.astype(np.int64))
    rng = np.random.default_rng(config.seed + start_epoch)
    n_batches = math.ceil(len(y_train) / config.batch_size)
    notify("start", {"epochs": config.max_epochs, "batches_per_epoch": n_batches})

    history: list[EpochStats] = []
    best = (math.inf, -1, copy.deepcopy(model.state_dict()))
    bad_epochs, stopped_early, t0 = 0, False, time.perf_counter()
    epoch = start_epoch - 1
    for epoch in range(start_epoch, config.max_epochs):
        started = time.perf_counter()
        model.train()
        order = rng.permutation(len(y_train))
        running = 0.0
        for b in range(n_batches):
            rows = np.sort(order[b * config.batch_size : (b + 1) * config.batch_size])
            if len(rows) < 2:  # BatchNorm needs two samples in training mode
                continue
            xb = torch.from_numpy(scaler.transform(X_train[rows])).to(device)
            yb = torch.from_numpy(y_train[rows].astype(np.int64)).to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.gradient_clip_val)
            optimizer.step()
            global_step += 1
            running += float(loss.detach()) * len(rows)
            notify("batch", {"epoch": epoch, "batch": b + 1, "loss": float(loss.detach())})

        val_loss, val_acc = _evaluate(model, X_val_t, y_val_t, eval_loss_fn, device)
        scheduler.step(val_loss)
        stats = EpochStats(
            epoch=epoch,
            train_loss=running / len(y_train),
            val_loss=val_loss,
            val_accuracy=val_acc,
            learning_rate=optimizer.param_groups[0]["lr"],
            seconds=time.perf_counter() - started,
        )
        history.append(stats)
        notify("epoch", stats.__dict__)
        if val_loss < best[0] - 1e-6:
            best = (val_loss, epoch, copy.deepcopy(model.state_dict()))
            bad_epochs = 0
        else:
            bad_epochs += 1
            if bad_epochs >= config.early_stopping_patience:
                stopped_early = True
                break

    model.load_state_dict(best[2])
    model.eval()
    result = TrainResult(
        best_state_dict={k: v.detach().cpu() for k, v in best[2].items()},
        best_epoch=best[1],
        best_val_loss=best[0],
        history=history,
        last_epoch=epoch,
        global_step=global_step,
        optimizer_state=optimizer.state_dict(),
        scheduler_state=scheduler.state_dict(),
        stopped_early=stopped_early,
        seconds=time.perf_counter() - t0,
    )
    notify("end", {"best_epoch": result.best_epoch, "best_val_loss": result.best_val_loss})
    return result


@torch.inference_mode()
def _evaluate(
    model: nn.Module, X: torch.Tensor, y: torch.Tensor, loss_fn: nn.Module, device: torch.device
) -> tuple[float, float]:
    model.eval()
    total, correct, n = 0.0, 0, len(y)
    for start in range(0, n, 512):
        xb, yb = X[start : start + 512].to(device), y[start : start + 512].to(device)
        logits = model(xb)
        total += float(loss_fn(logits, yb)) * len(yb)
        correct += int((logits.argmax(dim=1) == yb).sum())
    return total / max(n, 1), correct / max(n, 1)


def new_model(config: ModelConfig, seed: int) -> CNNBiLSTMModel:
    """A freshly initialised model; seeding first makes the initial weights reproducible."""
    _seed_everything(seed)
    return CNNBiLSTMModel(config)


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def last_day_features(X: np.ndarray) -> np.ndarray:
    """The feature row of each window's as-of date: one row per (ticker, date)."""
    return X[:, -1, :]


__all__ = [
    "FEATURE_NAMES",
    "Dataset",
    "EpochStats",
    "TrainConfig",
    "TrainResult",
    "build_dataset",
    "class_weights",
    "fit",
    "last_day_features",
    "new_model",
    "split_dataset",
]
