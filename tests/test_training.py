"""Training loop and train/evaluate pipeline on a slice of the real sample with a tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tiny_configs import SAMPLE as TINY

from stocktrend.checkpoint import load_checkpoint
from stocktrend.pipeline import Periods, evaluate_checkpoint, train_model
from stocktrend.scaler import Scaler
from stocktrend.training import (
    TrainConfig,
    build_dataset,
    class_weights,
    fit,
    new_model,
    split_dataset,
)

PERIODS = Periods(
    train_start="2002-01-01", train_end="2004-06-30", val_end="2004-12-31", test_end="2005-06-30"
)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models gain nothing from a second thread, and OpenMP spinning under a busy
    machine makes them much slower; restore the default afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def prices(sample_prices: pd.DataFrame) -> pd.DataFrame:
    keep = sample_prices["ticker"].isin(["MSFT", "^GSPC"])
    return sample_prices[keep & (sample_prices["date"] <= "2005-07-31")].reset_index(drop=True)


@pytest.fixture(scope="module")
def parts(prices: pd.DataFrame):
    data = build_dataset(prices, benchmark="^GSPC", horizon=10, seq_len=30)
    return split_dataset(data, "2004-06-30", "2004-12-31", 10, test_end="2005-06-30")


def test_class_weights_balance_the_loss() -> None:
    weights = class_weights(np.array([0, 0, 0, 1]))
    np.testing.assert_allclose(weights, [4 / 6, 4 / 2])
    with pytest.raises(ValueError, match="lack a class"):
        class_weights(np.array([1, 1, 1]))


def test_loss_falls_and_training_is_deterministic(parts) -> None:
    train, val, _test, _split = parts
    scaler = Scaler.fit(train.X)
    config = TrainConfig(
        max_epochs=4, learning_rate=3e-3, batch_size=64, early_stopping_patience=10
    )
    first = fit(new_model(TINY, 7), (train.X, train.y), (val.X, val.y), scaler, config)
    losses = [h.train_loss for h in first.history]
    assert losses[-1] < losses[0], losses
    again = fit(new_model(TINY, 7), (train.X, train.y), (val.X, val.y), scaler, config)
    for key, tensor in first.best_state_dict.items():
        assert torch.equal(tensor, again.best_state_dict[key]), key


def test_early_stopping_keeps_the_best_epoch(parts) -> None:
    train, val, _test, _split = parts
    config = TrainConfig(
        max_epochs=12, learning_rate=3e-2, batch_size=64, early_stopping_patience=2
    )
    result = fit(
        new_model(TINY, 7), (train.X, train.y), (val.X, val.y), Scaler.fit(train.X), config
    )
    best = min(h.val_loss for h in result.history)
    assert result.best_val_loss == pytest.approx(best)
    assert result.history[result.best_epoch].val_loss == pytest.approx(best)
    # seeded, and a learning rate this high overfits the tiny model within a few epochs
    assert result.stopped_early and len(result.history) < config.max_epochs
    assert len(result.history) - 1 - result.best_epoch == config.early_stopping_patience


def test_train_model_writes_a_checkpoint_that_reproduces_its_report(
    prices: pd.DataFrame, tmp_path: Path
) -> None:
    out, state = tmp_path / "tiny.ckpt", tmp_path / "tiny_state.ckpt"
    trained = train_model(
        prices,
        out,
        periods=PERIODS,
        benchmark="^GSPC",
        horizon=10,
        seq_len=30,
        model_version="tiny-test",
        model_config=TINY,
        train_config=TrainConfig(max_epochs=2, learning_rate=3e-3, batch_size=64),
        state_out=state,
    )
    # plain weights_only load, nothing allow-listed; no optimizer state in the scoring file
    raw = torch.load(out, weights_only=True)
    assert (
        raw["optimizer_states"] == [] and torch.load(state, weights_only=True)["optimizer_states"]
    )
    bundle = load_checkpoint(out)
    section = bundle.metadata
    assert section["training"]["split"]["purge_sessions"] == 10
    assert len(section["reference_histograms"]["counts"]) == 50
    # scaler statistics come from the training windows only
    data = build_dataset(prices, benchmark="^GSPC", horizon=10, seq_len=30)
    keep = np.flatnonzero(pd.DatetimeIndex(data.index["as_of_date"]) >= "2002-01-01")
    train, *_ = split_dataset(data.subset(keep), "2004-06-30", "2004-12-31", 10, "2005-06-30")
    np.testing.assert_allclose(bundle.scaler.mean, Scaler.fit(train.X).mean)

    report, test, _p = evaluate_checkpoint(bundle, prices, periods=PERIODS, benchmark="^GSPC")
    assert report.model.accuracy == pytest.approx(trained.report.model.accuracy, abs=1e-12)
    assert pd.DatetimeIndex(test.index["as_of_date"]).min() > pd.Timestamp("2004-12-31")
    assert set(report.baselines) == {"majority", "momentum", "logistic"}

    resumed = train_model(
        prices,
        tmp_path / "resumed.ckpt",
        periods=PERIODS,
        benchmark="^GSPC",
        horizon=10,
        seq_len=30,
        model_version="tiny-test",
        model_config=TINY,
        train_config=TrainConfig(max_epochs=3, learning_rate=3e-3, batch_size=64),
        resume_from=state,
    )
    assert [h.epoch for h in resumed.result.history] == [2]
