"""Fine-tuning the champion on recent data, and the champion-vs-challenger decision.

Data plan, all in NYSE sessions, ending at the last as-of date ``L`` whose
label is known (``L + horizon`` is the last price)::

    ... train (T sessions) | purge h | val (V sessions) | purge h | holdout (H sessions, ends at L)

* train: fits the weights, starting from the champion's, with a low learning
  rate (default 5e-5) and few epochs, because the point is to adapt, not to
  relearn; ``full_retrain=True`` starts from fresh weights and refits the scaler;
* val: the purged validation tail, for early stopping only;
* holdout: the most recent labelled sessions, never used for fitting or early
  stopping. Champion and challenger are both scored on it.

Each purge gap is ``horizon`` sessions, so no label of one part resolves inside
the next (see :func:`stocktrend.windows.chronological_split`). The champion's
scaler is kept unless ``full_retrain``: changing it would change what every
weight means. The challenger's reference histograms are those of its own
training rows (the distribution it was last fitted to), so after a promotion the
data-drift check compares with what the new champion has seen; its reference
metrics are its holdout evaluation.

Promotion rule (:func:`decide_promotion`): promote only when the challenger is
better than the champion on the primary metric (log loss by default, or
accuracy) by at least ``margin`` (defaults 0.005 for log loss, 0.01 for
accuracy) **and** an exact McNemar test on the holdout does not find it
significantly worse (p < alpha with more champion-only hits than
challenger-only hits). When the holdout overlaps the champion's own training
period, the comparison favours the champion; the decision records that.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel, ConfigDict, Field

from stocktrend import calendar
from stocktrend.checkpoint import ModelBundle, predict_proba, save_checkpoint
from stocktrend.evaluation import Report, core_metrics, evaluate, mcnemar_exact, predict_class
from stocktrend.histograms import reference_histograms
from stocktrend.model import CNNBiLSTMModel
from stocktrend.pipeline import baselines_for, fit_record, headline_metrics
from stocktrend.scaler import Scaler
from stocktrend.training import (
    Dataset,
    ProgressCallback,
    TrainConfig,
    TrainResult,
    fit,
    last_day_features,
    new_model,
)
from stocktrend.workdir import load_array, load_frame, save_array, save_frame

__all__ = [
    "DEFAULT_MARGINS",
    "FineTuneConfig",
    "FineTunePlan",
    "PromotionDecision",
    "challenger_version",
    "decide_promotion",
    "fine_tune_model",
    "load_dataset",
    "plan_periods",
    "save_challenger",
    "save_dataset",
    "split_by_plan",
]

DEFAULT_MARGINS: dict[str, float] = {"log_loss": 0.005, "accuracy": 0.01}
"""How much better the challenger must be, per primary metric, when no margin is given."""


class FineTuneConfig(BaseModel):
    """Fine-tuning and promotion settings; defaults keep a CPU run of the 7.7M model short."""

    model_config = ConfigDict(frozen=True)

    learning_rate: float = Field(5e-5, gt=0)
    weight_decay: float = Field(5e-3, ge=0)
    batch_size: int = Field(128, ge=2)
    max_epochs: int = Field(3, ge=1)
    early_stopping_patience: int = Field(1, ge=1)
    train_sessions: int = Field(250, ge=10)
    val_sessions: int = Field(40, ge=5)
    holdout_sessions: int = Field(60, ge=5)
    primary_metric: Literal["log_loss", "accuracy"] = "log_loss"
    margin: float | None = Field(None, description="None: DEFAULT_MARGINS[primary_metric]")
    alpha: float = Field(0.05, gt=0, lt=1)
    full_retrain: bool = False
    seed: int = 42
    device: str = "auto"

    @property
    def effective_margin(self) -> float:
        return DEFAULT_MARGINS[self.primary_metric] if self.margin is None else self.margin

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            batch_size=self.batch_size,
            max_epochs=self.max_epochs,
            early_stopping_patience=self.early_stopping_patience,
            seed=self.seed,
            device=self.device,
        )


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class FineTunePlan:
    """Inclusive as-of boundaries of the three parts (purge gaps between them)."""

    train_start: pd.Timestamp
    train_end: pd.Timestamp
    val_start: pd.Timestamp
    val_end: pd.Timestamp
    holdout_start: pd.Timestamp
    holdout_end: pd.Timestamp
    horizon: int

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            k: str(v.date()) for k, v in asdict(self).items() if isinstance(v, pd.Timestamp)
        }
        out["horizon"] = self.horizon
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FineTunePlan:
        stamps = {k: pd.Timestamp(v) for k, v in data.items() if k != "horizon"}
        return cls(**stamps, horizon=int(data["horizon"]))


def plan_periods(last_labelled: pd.Timestamp, horizon: int, config: FineTuneConfig) -> FineTunePlan:
    """Boundaries counted back from ``last_labelled`` in sessions (see the module docstring)."""
    holdout_end = pd.Timestamp(last_labelled).normalize()
    holdout_start = calendar.session_offset(holdout_end, -(config.holdout_sessions - 1))
    val_end = calendar.session_offset(holdout_start, -(horizon + 1))
    val_start = calendar.session_offset(val_end, -(config.val_sessions - 1))
    train_end = calendar.session_offset(val_start, -(horizon + 1))
    train_start = calendar.session_offset(train_end, -(config.train_sessions - 1))
    return FineTunePlan(
        train_start, train_end, val_start, val_end, holdout_start, holdout_end, horizon
    )


def split_by_plan(data: Dataset, plan: FineTunePlan) -> tuple[Dataset, Dataset, Dataset]:
    """Train, validation and holdout windows; ``ValueError`` when a part is empty."""
    as_of = pd.DatetimeIndex(data.index["as_of_date"])
    parts = []
    for name, lo, hi in (
        ("training", plan.train_start, plan.train_end),
        ("validation", plan.val_start, plan.val_end),
        ("holdout", plan.holdout_start, plan.holdout_end),
    ):
        rows = np.flatnonzero((as_of >= lo) & (as_of <= hi))
        if len(rows) == 0:
            raise ValueError(f"the {name} part {lo.date()}..{hi.date()} holds no labelled windows")
        parts.append(data.subset(rows))
    return parts[0], parts[1], parts[2]


def save_dataset(data: Dataset, directory: Path, name: str) -> dict[str, str]:
    """Arrays as ``.npy`` (no pickle) and the index as Parquet, for passing between tasks."""
    return {
        "X": save_array(data.X, directory / f"{name}_X.npy"),
        "y": save_array(data.y, directory / f"{name}_y.npy"),
        "forward_return": save_array(data.forward_return, directory / f"{name}_fwd.npy"),
        "past_return": save_array(data.past_return, directory / f"{name}_past.npy"),
        "index": save_frame(data.index, directory / f"{name}_index.parquet"),
    }


def load_dataset(paths: Mapping[str, str]) -> Dataset:
    return Dataset(
        X=load_array(paths["X"]),
        y=load_array(paths["y"]),
        forward_return=load_array(paths["forward_return"]),
        past_return=load_array(paths["past_return"]),
        index=load_frame(paths["index"]),
    )


# --------------------------------------------------------------------------- training


def fine_tune_model(
    champion: ModelBundle,
    train: Dataset,
    val: Dataset,
    config: FineTuneConfig,
    *,
    progress: ProgressCallback | None = None,
) -> tuple[CNNBiLSTMModel, Scaler, TrainResult]:
    """Train a copy of the champion (or fresh weights) and return the best by validation loss.

    The champion bundle is not modified.
    """
    if config.full_retrain:
        scaler = Scaler.fit(train.X)
        model = new_model(champion.config, config.seed)
    else:
        scaler = champion.scaler
        model = copy.deepcopy(champion.model)
    result = fit(
        model, (train.X, train.y), (val.X, val.y), scaler, config.train_config(), progress=progress
    )
    model.load_state_dict(result.best_state_dict)
    model.eval()
    return model.cpu(), scaler, result


def predict_with(model: CNNBiLSTMModel, scaler: Scaler, X: np.ndarray) -> np.ndarray:
    """P(up) of an unsaved model, through the same path scoring uses."""
    bundle = ModelBundle(
        model=model,
        config=model.config,
        feature_names=tuple(str(i) for i in range(model.config.n_features)),
        scaler=scaler,
        sequence_length=model.config.sequence_length,
        horizon=None,
    )
    return predict_proba(bundle, X)[:, 1].astype(np.float64)


def challenger_version(parent: str, data_end: pd.Timestamp, taken: Collection[str]) -> str:
    """``<root>-ft<YYYYMMDD>`` (root: the parent without earlier ``-ft`` suffixes), made unique."""
    root = parent.split("-ft", 1)[0]
    name = f"{root}-ft{pd.Timestamp(data_end):%Y%m%d}"
    candidate, k = name, 2
    while candidate in taken:
        candidate, k = f"{name}.{k}", k + 1
    return candidate


def holdout_report(
    y: np.ndarray, p_up: np.ndarray, holdout: Dataset, train: Dataset, name: str
) -> Report:
    """The standard out-of-sample report on the holdout, with baselines fitted on ``train``."""
    return evaluate(
        y,
        p_up,
        holdout.forward_return,
        holdout.index,
        baselines=baselines_for(train, holdout),
        name=name,
    )


def save_challenger(
    path: Path,
    model: CNNBiLSTMModel,
    *,
    scaler: Scaler,
    champion: ModelBundle,
    version: str,
    plan: FineTunePlan,
    config: FineTuneConfig,
    result: TrainResult,
    train: Dataset,
    report: Report,
    mean_p_up: float,
    benchmark: str,
) -> Path:
    """Write the challenger checkpoint: lineage, plan, history, histograms, holdout metrics."""
    training = {
        "kind": "full_retrain" if config.full_retrain else "fine_tune",
        "parent_version": champion.model_version,
        "parent_sha256": champion.sha256,
        "data_period": {"start": plan.train_start, "end": plan.train_end},
        "plan": plan.to_dict(),
        "fine_tune_config": config.model_dump(),
        **fit_record(train, result, benchmark),
        "torch": str(torch.__version__),
    }
    metrics = headline_metrics(report)
    metrics["prediction"] = {
        "mean_p_up": mean_p_up,
        "bullish_share": float(np.mean(predict_class(report.samples.p_up))),
    }
    return save_checkpoint(
        path,
        model,
        config=model.config,
        feature_names=champion.feature_names,
        scaler=scaler,
        horizon=int(champion.horizon or plan.horizon),
        model_version=version,
        training=training,
        reference_histograms=reference_histograms(last_day_features(train.X)),
        metrics=metrics,
        epoch=result.best_epoch,
        global_step=result.global_step,
    )


# --------------------------------------------------------------------------- decision


@dataclass(frozen=True)
class PromotionDecision:
    """Whether to promote, why, and every number the reason rests on."""

    promote: bool
    reason: str
    primary_metric: str
    margin: float
    improvement: float
    n: int
    champion: dict[str, float | None]
    challenger: dict[str, float | None]
    mcnemar: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _figures(y: np.ndarray, p: np.ndarray) -> dict[str, float | None]:
    m = core_metrics(y, p)
    return {"accuracy": m.accuracy, "log_loss": m.log_loss, "brier": m.brier, "roc_auc": m.roc_auc}


def decide_promotion(
    y: Sequence[int] | np.ndarray,
    p_champion: Sequence[float] | np.ndarray,
    p_challenger: Sequence[float] | np.ndarray,
    *,
    primary_metric: str = "log_loss",
    margin: float | None = None,
    alpha: float = 0.05,
) -> PromotionDecision:
    """Apply the promotion rule (module docstring) to holdout labels and both models' P(up)."""
    if primary_metric not in DEFAULT_MARGINS:
        raise ValueError(f"primary_metric must be one of {sorted(DEFAULT_MARGINS)}")
    margin = DEFAULT_MARGINS[primary_metric] if margin is None else float(margin)
    y_arr = np.asarray(y, dtype=np.int64)
    champ_p = np.asarray(p_champion, dtype=np.float64)
    chall_p = np.asarray(p_challenger, dtype=np.float64)
    if not len(y_arr) == len(champ_p) == len(chall_p) or len(y_arr) == 0:
        raise ValueError("y and both probability arrays must be non-empty and equally long")
    champion, challenger = _figures(y_arr, champ_p), _figures(y_arr, chall_p)
    if primary_metric == "log_loss":
        improvement = float(champion["log_loss"] - challenger["log_loss"])
    else:
        improvement = float(challenger["accuracy"] - champion["accuracy"])
    b, c, p_value = mcnemar_exact(predict_class(chall_p) == y_arr, predict_class(champ_p) == y_arr)
    worse = p_value < alpha and c > b
    mcnemar = {
        "challenger_only_correct": b,
        "champion_only_correct": c,
        "p_value": p_value,
        "alpha": alpha,
        "challenger_worse": worse,
    }
    better = improvement > 0 and improvement >= margin
    reason = _reason(better, worse, primary_metric, improvement, margin, champion, challenger)
    reason += f" (McNemar p={p_value:.3g}: challenger-only hits {b}, champion-only hits {c})"
    return PromotionDecision(
        promote=better and not worse,
        reason=reason,
        primary_metric=primary_metric,
        margin=margin,
        improvement=improvement,
        n=len(y_arr),
        champion=champion,
        challenger=challenger,
        mcnemar=mcnemar,
    )


def _reason(
    better: bool,
    worse: bool,
    metric: str,
    improvement: float,
    margin: float,
    champion: Mapping[str, Any],
    challenger: Mapping[str, Any],
) -> str:
    figures = (
        f"{metric.replace('_', ' ')} challenger {challenger[metric]:.4f} vs champion "
        f"{champion[metric]:.4f}"
    )
    if worse:
        return f"kept the champion: McNemar finds the challenger significantly worse; {figures}"
    if not better:
        return (
            f"kept the champion: improvement {improvement:+.4f} is below the margin "
            f"{margin:g}; {figures}"
        )
    return f"promoted: better by {improvement:+.4f} (margin {margin:g}); {figures}"
