"""The shipped pretrained model: integrity, contents, and reproducible published figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from stocktrend.checkpoint import file_sha256, load_checkpoint
from stocktrend.cli import app
from stocktrend.features import FEATURE_NAMES
from stocktrend.model import count_parameters

ROOT = Path(__file__).resolve().parents[1] / "pretrained_models"
CKPT = ROOT / "best_model_v2.0.ckpt"


@pytest.fixture(scope="module")
def metadata() -> dict:
    return json.loads((ROOT / "model_metadata.json").read_text())


def test_metadata_pins_the_checkpoint(metadata: dict) -> None:
    assert metadata["checkpoint"]["file"] == CKPT.name
    assert metadata["checkpoint"]["sha256"] == file_sha256(CKPT)
    assert metadata["checkpoint"]["size_bytes"] == CKPT.stat().st_size
    for group in ("performance", "training_details", "architecture", "hyperparameters", "dataset"):
        assert group in metadata, group
    assert metadata["features"] == list(FEATURE_NAMES)
    assert set(metadata["baselines"]) == {"majority", "momentum", "logistic"}


def test_checkpoint_is_plain_weights_with_its_scoring_context() -> None:
    raw = torch.load(CKPT, weights_only=True, map_location="cpu")  # nothing allow-listed
    assert raw["optimizer_states"] == [] and raw["lr_schedulers"] == []
    bundle = load_checkpoint(CKPT)
    assert count_parameters(bundle.model) == 7_665_731
    assert bundle.feature_names == FEATURE_NAMES
    assert bundle.sequence_length == 30 and bundle.horizon == 10
    assert bundle.model_version == "v2.0"
    hist = bundle.metadata["reference_histograms"]
    assert len(hist["edges"]) == 50 and all(len(e) == 11 for e in hist["edges"])
    periods = bundle.metadata["training"]["periods"]
    assert periods["train_end"] < periods["val_end"] < periods["test_end"]


def test_demo_reproduces_the_published_accuracy(metadata: dict) -> None:
    result = CliRunner().invoke(app, ["demo", "--model", str(CKPT)], terminal_width=120)
    assert result.exit_code == 0, result.output
    published = metadata["performance"]["model"]["accuracy"]
    assert "Confusion Matrix:" in result.output and "Bajista" in result.output
    line = next(x for x in result.output.splitlines() if x.startswith("Overall Accuracy:"))
    measured = float(line.split(":")[1].strip().rstrip("%")) / 100
    assert measured == pytest.approx(published, abs=0.005)
    cm = metadata["performance"]["model"]["confusion_matrix"]
    assert f"{cm[0][0]}" in result.output and f"{cm[1][1]}" in result.output
