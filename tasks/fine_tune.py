"""Prefect tasks for the fine-tune flow: thin wrappers over `stocktrend.finetune` and the registry.

Tasks pass file paths and small dicts; the datasets travel as ``.npy`` files in
the run's scratch directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from stocktrend import registry
from stocktrend.checkpoint import load_checkpoint, predict_proba
from stocktrend.config import get_settings
from stocktrend.finetune import (
    FineTuneConfig,
    FineTunePlan,
    challenger_version,
    decide_promotion,
    fine_tune_model,
    holdout_report,
    load_dataset,
    plan_periods,
    predict_with,
    save_challenger,
    save_dataset,
    split_by_plan,
)
from stocktrend.training import build_dataset
from stocktrend.workdir import load_frame


@task(name="describe-champion")
def describe_champion_task(model_path: str) -> dict[str, Any]:
    bundle = load_checkpoint(model_path)
    training = bundle.metadata.get("training") or {}
    return {
        "path": model_path,
        "model_version": bundle.model_version,
        "model_sha256": bundle.sha256,
        "horizon": int(bundle.horizon or get_settings().horizon),
        "sequence_length": bundle.sequence_length,
        "tickers": list(training.get("tickers") or []),
        "data_end": (training.get("data_period") or {}).get("end")
        or (training.get("periods") or {}).get("train_end"),
    }


@task(name="prepare-fine-tune-data")
def prepare_data_task(
    prices_path: str,
    tickers: list[str],
    benchmark: str,
    horizon: int,
    seq_len: int,
    config: dict[str, Any],
    workdir: str,
) -> dict[str, Any]:
    """Labelled windows up to the last known label, split into train / val / holdout."""
    cfg = FineTuneConfig(**config)
    data = build_dataset(
        load_frame(prices_path), benchmark=benchmark, horizon=horizon, seq_len=seq_len
    )
    keep = np.flatnonzero(data.index["ticker"].isin(tickers).to_numpy())
    data = data.subset(keep)
    if len(data) == 0:
        raise ValueError(f"no labelled windows for {', '.join(tickers)}")
    last = pd.DatetimeIndex(data.index["as_of_date"]).max()
    plan = plan_periods(last, horizon, cfg)
    train, val, holdout = split_by_plan(data, plan)
    base = Path(workdir) / "fine_tune_data"
    return {
        "plan": plan.to_dict(),
        "counts": {"train": len(train), "val": len(val), "holdout": len(holdout)},
        "train": save_dataset(train, base, "train"),
        "val": save_dataset(val, base, "val"),
        "holdout": save_dataset(holdout, base, "holdout"),
    }


@task(name="name-challenger")
def name_challenger_task(parent_version: str, data_end: str) -> str:
    taken = {v.version for v in registry.list_versions(get_settings())}
    return challenger_version(parent_version, pd.Timestamp(data_end), taken)


@task(name="train-challenger")
def train_challenger_task(
    champion_path: str,
    data: dict[str, Any],
    config: dict[str, Any],
    version: str,
    benchmark: str,
    workdir: str,
) -> dict[str, Any]:
    """Fine-tune, evaluate on the holdout, write the challenger checkpoint (not registered)."""
    logger = get_run_logger()
    cfg = FineTuneConfig(**config)
    champion = load_checkpoint(champion_path)
    train, val, holdout = (load_dataset(data[k]) for k in ("train", "val", "holdout"))

    def progress(event: str, payload: dict[str, Any]) -> None:
        if event == "epoch":
            logger.info(
                f"epoch {payload['epoch']}: train {payload['train_loss']:.4f} "
                f"val {payload['val_loss']:.4f} acc {payload['val_accuracy']:.3f}"
            )

    model, scaler, result = fine_tune_model(champion, train, val, cfg, progress=progress)
    p_up = predict_with(model, scaler, holdout.X)
    report = holdout_report(holdout.y, p_up, holdout, train, name=version)
    path = save_challenger(
        Path(workdir) / f"{version}.ckpt",
        model,
        scaler=scaler,
        champion=champion,
        version=version,
        plan=FineTunePlan.from_dict(data["plan"]),
        config=cfg,
        result=result,
        train=train,
        report=report,
        mean_p_up=float(np.mean(p_up)),
        benchmark=benchmark,
    )
    return {
        "path": str(path),
        "version": version,
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "train_seconds": round(result.seconds, 1),
        "history": [
            {k: round(v, 5) if isinstance(v, float) else v for k, v in h.__dict__.items()}
            for h in result.history
        ],
    }


@task(name="compare-on-holdout")
def compare_task(
    champion_path: str, challenger_path: str, holdout: dict[str, str], config: dict[str, Any]
) -> dict[str, Any]:
    """Score both models on the same holdout windows and apply the promotion rule."""
    cfg = FineTuneConfig(**config)
    data = load_dataset(holdout)
    p_champion = predict_proba(load_checkpoint(champion_path), data.X)[:, 1]
    p_challenger = predict_proba(load_checkpoint(challenger_path), data.X)[:, 1]
    decision = decide_promotion(
        data.y,
        p_champion,
        p_challenger,
        primary_metric=cfg.primary_metric,
        margin=cfg.margin,
        alpha=cfg.alpha,
    )
    return decision.to_dict()


@task(name="register-challenger")
def register_challenger_task(
    challenger_path: str, parent_version: str, decision: dict[str, Any]
) -> dict[str, Any]:
    """Files in place and the row written (status challenger) before any alias moves."""
    settings = get_settings()
    entry = registry.register_version(
        challenger_path,
        settings,
        parent_version=parent_version,
        status="challenger",
        decision={"proposed": decision},
    )
    registry.set_alias(registry.CHALLENGER, entry.version, settings, reason="fine-tune")
    return entry.to_dict()


@task(name="apply-decision")
def apply_decision_task(version: str, parent: str, decision: dict[str, Any]) -> dict[str, Any]:
    """Promote (one transaction) or record the rejection; either way the row says why.

    The promotion only happens while ``parent`` (the champion it was compared
    with) is still the champion.
    """
    settings = get_settings()
    if decision["promote"]:
        registry.promote(
            version, settings, reason=decision["reason"], decision=decision, replacing=parent
        )
    else:
        registry.record_decision(
            version, settings, status="rejected", decision={"action": "reject", **decision}
        )
    return {"champion_now": registry.aliases(settings).get(registry.CHAMPION)}


def decision_markdown(summary: dict[str, Any]) -> str:
    """The fine-tune verdict as a person reads it in the Prefect UI."""
    d = summary["decision"]
    rows = [
        f"| {m} | {_fmt(d['challenger'].get(m))} | {_fmt(d['champion'].get(m))} |"
        for m in ("log_loss", "accuracy", "brier", "roc_auc")
    ]
    plan = summary["plan"]
    overlap = summary.get("holdout_overlaps_parent_training")
    lines = [
        f"# fine-tune: {summary['challenger']} {'PROMOTED' if d['promote'] else 'not promoted'}",
        "",
        f"**Decision:** {d['reason']}",
        "",
        f"- parent (champion at start): `{summary['parent']}` sha256 "
        f"`{str(summary['parent_sha256'])[:16]}…`",
        f"- champion now: `{summary['champion_now']}`",
        f"- train {plan['train_start']}..{plan['train_end']}, validation "
        f"{plan['val_start']}..{plan['val_end']}, holdout {plan['holdout_start']}.."
        f"{plan['holdout_end']} (purge {plan['horizon']} sessions between parts)",
        f"- windows: {summary['counts']}; epochs run {summary['epochs_run']}, best epoch "
        f"{summary['best_epoch']}, {summary['train_seconds']} s",
        f"- primary metric {d['primary_metric']}, margin {d['margin']:g}, McNemar alpha "
        f"{d['mcnemar']['alpha']:g}",
    ]
    if overlap:
        lines.append(
            "- note: the holdout overlaps the parent's own training period, which favours the "
            "champion"
        )
    if summary.get("trigger"):
        lines.append(f"- triggered by: {summary['trigger'].get('rule', summary['trigger'])}")
    lines += [
        "",
        f"Holdout (n={d['n']}):",
        "",
        "| metric | challenger | champion |",
        "|---|---|---|",
        *rows,
        "",
    ]
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


@task(name="publish-fine-tune-artifacts")
def publish_fine_tune_artifacts(summary: dict[str, Any], history: list[dict[str, Any]]) -> None:
    create_markdown_artifact(
        decision_markdown(summary), key="fine-tune-decision", description="Promotion decision"
    )
    if history:
        create_table_artifact(history, key="fine-tune-history", description="Epochs")
