"""The shipped pretrained model: integrity, contents, and reproducible published figures."""

from __future__ import annotations

import json
import re
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


def test_demo_reproduces_the_published_figures_exactly(metadata: dict) -> None:
    """`stocktrend demo` re-scores the 3,198 test windows: the published matrix, cell by cell."""
    result = CliRunner().invoke(app, ["demo", "--model", str(CKPT)], terminal_width=120)
    assert result.exit_code == 0, result.output
    assert "Confusion Matrix:" in result.output
    rows = {
        match.group(1): [int(match.group(2)), int(match.group(3))]
        for match in re.finditer(r"^(Bajista|Alcista)\s+(\d+)\s+(\d+)\s", result.output, re.M)
    }
    published = metadata["performance"]["model"]
    assert [rows["Bajista"], rows["Alcista"]] == published["confusion_matrix"]
    n = sum(map(sum, published["confusion_matrix"]))
    correct = rows["Bajista"][0] + rows["Alcista"][1]
    assert n == 3198 and correct / n == pytest.approx(published["accuracy"], abs=1e-12)
