"""Checkpoints: our format round-trips, seed files load safely, bad files fail clearly."""

from __future__ import annotations

import json
import os
import pathlib
import pickle
from collections import OrderedDict
from datetime import date
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import pytest
import torch
from tiny_configs import TOY as TINY

from stocktrend import CLASS_NAMES, SEED_CLASS_NAMES, __version__
from stocktrend.checkpoint import (
    ModelBundle,
    _seed_safe_globals,
    file_sha256,
    load_checkpoint,
    load_weights,
    predict_proba,
    read_feature_spec,
    save_checkpoint,
    write_feature_spec,
)
from stocktrend.errors import CheckpointError
from stocktrend.histograms import reference_histograms
from stocktrend.model import CNNBiLSTMModel, ModelConfig
from stocktrend.scaler import Scaler

SEED_TINY = TINY.model_copy(update={"transformer_ff": 1024})
"""The seed hard-wired the feed-forward width, so its hparams never state it."""
TINY_FEATURES = ["ret_1d", "ret_5d", "vol_20d", "rsi_14"]

SECTION_KEYS = {
    "format_version",
    "model_version",
    "feature_names",
    "scaler",
    "sequence_length",
    "horizon",
    "class_names",
    "seed_class_names",
    "training",
    "reference_histograms",
    "metrics",
    "code_version",
    "created_at",
}


# ----------------------------------------------------------------------------- helpers


def make_model(config: ModelConfig, seed: int = 0) -> CNNBiLSTMModel:
    """A model whose outputs depend visibly on its inputs, weights and BatchNorm statistics.

    A freshly initialised tiny net is nearly constant (probabilities equal to
    1e-5), which could hide a missing scaler; tripled weight matrices and
    non-identity BatchNorm statistics make every piece show in the outputs.
    """
    torch.manual_seed(seed)
    model = CNNBiLSTMModel(config)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                parameter.mul_(3.0)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.normal_(0.0, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.num_batches_tracked.fill_(7)
    return model.eval()


def make_scaler(n_features: int, seed: int = 0) -> Scaler:
    rng = np.random.default_rng(seed)
    return Scaler.fit(rng.normal(5.0, 3.0, size=(200, n_features)))


def raw_windows(n: int, config: ModelConfig, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(5.0, 3.0, size=(n, config.sequence_length, config.n_features))


def save_ours(
    path: Path,
    model: CNNBiLSTMModel,
    config: ModelConfig = TINY,
    features: list[str] | None = None,
    **overrides: Any,
) -> Path:
    features = features or TINY_FEATURES
    rows = np.random.default_rng(3).normal(size=(100, config.n_features))
    kwargs: dict[str, Any] = {
        "config": config,
        "feature_names": features,
        "scaler": make_scaler(config.n_features),
        "horizon": 10,
        "model_version": "v-test",
        "training": {"start": "2001-01-01", "end": "2008-12-31", "tickers": ["AAA", "BBB"]},
        "reference_histograms": reference_histograms(rows),
        "metrics": {"accuracy": 0.55, "auc": np.float64(0.57)},
    }
    kwargs.update(overrides)
    return save_checkpoint(path, model, **kwargs)


def logits(model: CNNBiLSTMModel, x: np.ndarray) -> torch.Tensor:
    with torch.inference_mode():
        return model.eval()(torch.as_tensor(x, dtype=torch.float32))


class _FakeWindowsPath(PureWindowsPath):
    """Pickles as ``pathlib.WindowsPath`` while patched in, as a Windows-written seed file would."""

    __module__ = "pathlib"
    __qualname__ = "WindowsPath"


def lightning_checkpoint(
    model: CNNBiLSTMModel, config: ModelConfig, *, prefix: bool, windows_paths: bool = False
) -> dict[str, Any]:
    """A checkpoint shaped exactly like the seed's Lightning training code wrote it."""
    batch = torch.randn(6, config.sequence_length, config.n_features)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=5e-3)
    torch.nn.functional.cross_entropy(model(batch), torch.tensor([0, 1] * 3)).backward()
    optimizer.step()
    one_cycle = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=100)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
        torch.optim.AdamW(model.parameters()), patience=5
    )
    model.eval()
    path_type = _FakeWindowsPath if windows_paths else pathlib.PosixPath
    root = "C:\\Users\\seed" if windows_paths else "/home/seed/project"
    hparams = {
        "task_type": "classification",
        **config.model_dump(exclude={"transformer_ff"}),
        "learning_rate": 1e-4,
        "weight_decay": 5e-3,
        "batch_size": 64,
        "max_epochs": 200,
        "early_stopping_patience": 15,
        "gradient_clip_val": 1.0,
        "accumulate_grad_batches": 1,
        "use_amp": False,
        "label_smoothing": 0.1,
        "train_split": 0.8,
        "val_split": 0.1,
        "test_split": 0.1,
        "local_test_samples": 100,
        "data_dir": path_type(root, "data"),
        "model_dir": path_type(root, "models"),
        "log_dir": path_type(root, "logs"),
    }
    state = model.state_dict()
    if prefix:
        state = OrderedDict((f"model.{key}", value) for key, value in state.items())
    score = torch.tensor(0.4948)
    return {
        "epoch": 143,
        "global_step": 51840,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": state,
        "loops": {
            "fit_loop": {
                "state_dict": {},
                "epoch_loop.state_dict": {"_batches_that_stepped": 51840},
                "epoch_progress": {
                    "total": {"ready": 144, "started": 144, "processed": 144, "completed": 143},
                    "current": {"ready": 144, "started": 144, "processed": 144, "completed": 143},
                },
            }
        },
        "callbacks": {
            "EarlyStopping{'monitor': 'val_loss', 'mode': 'min'}": {
                "wait_count": 3,
                "stopped_epoch": 0,
                "best_score": score,
                "patience": 15,
            },
            "ModelCheckpoint{'monitor': 'val_loss', 'mode': 'min'}": {
                "monitor": "val_loss",
                "best_model_score": score,
                "best_model_path": f"{root}/checkpoints/best.ckpt",
                "best_k_models": {f"{root}/checkpoints/best.ckpt": score},
                "kth_value": score,
                "dirpath": f"{root}/checkpoints",
                "last_model_path": "",
            },
        },
        "optimizer_states": [optimizer.state_dict()],
        "lr_schedulers": [one_cycle.state_dict(), plateau.state_dict()],
        "hparams_name": "config",
        "hyper_parameters": hparams,
    }


def save_lightning(path: Path, checkpoint: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Path:
    with monkeypatch.context() as patch:
        patch.setattr(pathlib, "WindowsPath", _FakeWindowsPath)
        torch.save(checkpoint, path)
    return path


# ----------------------------------------------------------------------------- our format


def test_round_trip_keeps_weights_and_scoring_context(tmp_path: Path) -> None:
    model = make_model(TINY)
    path = save_ours(
        tmp_path / "m.ckpt",
        model,
        training={"start": date(2001, 1, 1), "end": "2008-12-31", "data": Path("/d")},
    )
    bundle = load_checkpoint(path)
    assert isinstance(bundle, ModelBundle)
    assert not bundle.model.training
    assert bundle.config == TINY
    assert bundle.feature_names == tuple(TINY_FEATURES)
    np.testing.assert_array_equal(bundle.scaler.mean, make_scaler(4).mean)
    assert (bundle.sequence_length, bundle.horizon) == (8, 10)
    assert bundle.model_version == "v-test"
    assert bundle.path == path
    assert bundle.sha256 == file_sha256(path)
    assert bundle.metadata["training"]["start"] == "2001-01-01"
    assert bundle.metadata["training"]["data"] == "/d"
    x = raw_windows(5, TINY)
    assert torch.equal(logits(bundle.model, x), logits(model, x))


def test_our_checkpoint_loads_with_weights_only_and_nothing_allow_listed(tmp_path: Path) -> None:
    path = save_ours(tmp_path / "m.ckpt", make_model(TINY), epoch=4, global_step=99)
    assert not any("pathlib" in repr(g) for g in torch.serialization.get_safe_globals())
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["epoch"] == 4 and ckpt["global_step"] == 99
    assert isinstance(ckpt["pytorch-lightning_version"], str)
    assert ckpt["optimizer_states"] == [] and ckpt["lr_schedulers"] == []
    assert ckpt["hparams_name"] == "config"
    assert ModelConfig(**ckpt["hyper_parameters"]) == TINY
    section = ckpt["stocktrend"]
    assert set(section) == SECTION_KEYS
    assert section["format_version"] == 1
    assert section["feature_names"] == TINY_FEATURES
    assert section["class_names"] == list(CLASS_NAMES)
    assert section["seed_class_names"] == list(SEED_CLASS_NAMES)
    assert section["code_version"] == __version__
    assert section["metrics"]["auc"] == pytest.approx(0.57)
    assert type(section["metrics"]["auc"]) is float
    assert len(section["reference_histograms"]["edges"]) == 4
    json.dumps(section)  # plain types throughout


def test_training_state_round_trips_for_resuming(tmp_path: Path) -> None:
    model = make_model(TINY)
    optimizer = torch.optim.AdamW(model.parameters())
    model.train()
    model(torch.randn(4, 8, 4)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-3, total_steps=10)
    path = save_ours(
        tmp_path / "state.ckpt",
        model.eval(),
        optimizer_state=optimizer.state_dict(),
        scheduler_state=scheduler.state_dict(),
    )
    ckpt = torch.load(path, weights_only=True)
    torch.optim.AdamW(make_model(TINY).parameters()).load_state_dict(ckpt["optimizer_states"][0])
    assert ckpt["lr_schedulers"][0]["total_steps"] == 10


def test_full_size_checkpoint_loads_with_the_seed_recipe(tmp_path: Path) -> None:
    config = ModelConfig()
    model = make_model(config)
    features = [f"feature_{i:02d}" for i in range(50)]
    path = save_ours(tmp_path / "full.ckpt", model, config, features)
    # The seed's own loading code, verbatim in spirit, and safe: our files hold only
    # tensors and plain containers, so nothing needs allow-listing.
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    seed_model = CNNBiLSTMModel(ModelConfig())
    seed_model.load_state_dict(ckpt["state_dict"])
    x = raw_windows(3, config)
    assert torch.equal(logits(seed_model, x), logits(model, x))
    bundle = load_checkpoint(path)
    assert torch.equal(logits(bundle.model, x), logits(model, x))


def test_save_is_atomic_and_leaves_no_debris(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_ours(tmp_path / "m.ckpt", make_model(TINY))
    before = path.read_bytes()

    def broken_save(*_args: Any, **_kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_ours(path, make_model(TINY, seed=9))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ckpt"]


def test_save_validates_feature_counts(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="feature count mismatch"):
        save_ours(tmp_path / "m.ckpt", make_model(TINY), features=TINY_FEATURES[:3])
    with pytest.raises(ValueError, match="feature count mismatch"):
        save_ours(tmp_path / "m.ckpt", make_model(TINY), scaler=make_scaler(5))
    with pytest.raises(ValueError, match="cannot store"):
        save_ours(tmp_path / "m.ckpt", make_model(TINY), metrics={"bad": object()})
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- seed format


@pytest.mark.parametrize("prefix", [False, True])
def test_seed_lightning_checkpoint_loads_for_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefix: bool
) -> None:
    model = make_model(SEED_TINY)
    path = save_lightning(
        tmp_path / "best_model_v2.0.ckpt",
        lightning_checkpoint(model, SEED_TINY, prefix=prefix),
        monkeypatch,
    )
    with pytest.raises(pickle.UnpicklingError, match="PosixPath"):
        torch.load(path, weights_only=True)  # why the allow-list is needed at all
    allowed_before = set(torch.serialization.get_safe_globals())
    loaded, config = load_weights(path)
    assert config == SEED_TINY
    x = raw_windows(4, TINY)
    assert torch.equal(logits(loaded, x), logits(model, x))
    assert set(torch.serialization.get_safe_globals()) == allowed_before  # no leak


def test_seed_checkpoint_with_windows_paths_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = make_model(SEED_TINY)
    checkpoint = lightning_checkpoint(model, SEED_TINY, prefix=True, windows_paths=True)
    path = save_lightning(tmp_path / "win.ckpt", checkpoint, monkeypatch)
    assert b"WindowsPath" in path.read_bytes()
    loaded, _ = load_weights(path)
    x = raw_windows(2, TINY)
    assert torch.equal(logits(loaded, x), logits(model, x))


def test_seed_checkpoint_needs_a_feature_spec_to_score(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = make_model(SEED_TINY)
    path = save_lightning(
        tmp_path / "seed.ckpt", lightning_checkpoint(model, SEED_TINY, prefix=False), monkeypatch
    )
    with pytest.raises(CheckpointError, match="feature spec") as info:
        load_checkpoint(path)
    assert "load_weights" in str(info.value)

    scaler = make_scaler(4)
    spec = write_feature_spec(tmp_path / "spec.json", TINY_FEATURES, scaler, 8, None)
    bundle = load_checkpoint(path, feature_spec=spec)
    assert bundle.feature_names == tuple(TINY_FEATURES)
    assert (bundle.sequence_length, bundle.horizon, bundle.metadata) == (8, None, {})
    assert bundle.model_version == f"seed-{bundle.sha256[:12]}"
    x = raw_windows(5, TINY)
    expected = torch.softmax(logits(model, scaler.transform(x)), dim=1).numpy()
    np.testing.assert_allclose(predict_proba(bundle, x), expected, atol=1e-6)


def test_bare_state_dict_follows_the_same_feature_spec_rule(tmp_path: Path) -> None:
    config = ModelConfig()
    model = make_model(config)
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    loaded, loaded_config = load_weights(path)
    assert loaded_config == config
    x = raw_windows(2, config)
    assert torch.equal(logits(loaded, x), logits(model, x))
    with pytest.raises(CheckpointError, match="feature spec"):
        load_checkpoint(path)
    features = [f"f{i}" for i in range(50)]
    spec = write_feature_spec(tmp_path / "spec.json", features, make_scaler(50), 30, 10)
    bundle = load_checkpoint(path, feature_spec=spec)
    assert (bundle.sequence_length, bundle.horizon) == (30, 10)


def test_feature_spec_must_agree_with_our_checkpoint(tmp_path: Path) -> None:
    path = save_ours(tmp_path / "m.ckpt", make_model(TINY))
    good = write_feature_spec(tmp_path / "good.json", TINY_FEATURES, make_scaler(4), 8, 10)
    assert load_checkpoint(path, feature_spec=good).feature_names == tuple(TINY_FEATURES)
    reordered = list(reversed(TINY_FEATURES))
    stale = write_feature_spec(tmp_path / "stale.json", reordered, make_scaler(4), 8, 10)
    with pytest.raises(CheckpointError, match="disagrees"):
        load_checkpoint(path, feature_spec=stale)


def test_feature_spec_round_trips_and_rejects_bad_files(tmp_path: Path) -> None:
    scaler = make_scaler(4)
    spec = read_feature_spec(write_feature_spec(tmp_path / "s.json", TINY_FEATURES, scaler, 8, 5))
    assert spec["feature_names"] == TINY_FEATURES
    np.testing.assert_array_equal(spec["scaler"].std, scaler.std)
    assert (spec["sequence_length"], spec["horizon"]) == (8, 5)
    (tmp_path / "bad.json").write_text('{"feature_names": ["a"]}', encoding="utf-8")
    with pytest.raises(CheckpointError, match="scaler"):
        read_feature_spec(tmp_path / "bad.json")
    with pytest.raises(CheckpointError, match="not found"):
        read_feature_spec(tmp_path / "missing.json")


# ----------------------------------------------------------------------------- bad files


class _TouchOnUnpickle:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (self.marker,))


class _ShellOnUnpickle:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch '{self.marker}'",))


def test_payload_really_runs_when_unpickled_unsafely(tmp_path: Path) -> None:
    # Proves the malicious-pickle tests below would notice execution.
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(_TouchOnUnpickle(marker)))
    assert marker.exists()


@pytest.mark.parametrize(
    ("payload", "global_name"), [(_TouchOnUnpickle, "getattr"), (_ShellOnUnpickle, "system")]
)
def test_malicious_pickle_is_refused_and_not_executed(
    tmp_path: Path, payload: type, global_name: str
) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"x": payload(marker)}}, path)
    with pytest.raises(CheckpointError, match="disallowed global") as info:
        load_checkpoint(path)
    assert global_name in str(info.value)
    assert "nothing in it was executed" in str(info.value)
    assert not marker.exists()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.ckpt")


def test_truncated_file(tmp_path: Path) -> None:
    path = save_ours(tmp_path / "m.ckpt", make_model(TINY))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="truncated"):
        load_weights(path)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize(
    "writer",
    [
        lambda p: p.write_text("epoch,accuracy\n1,0.5\n", encoding="utf-8"),
        lambda p: p.write_bytes(pickle.dumps([1, 2, 3])),
        lambda p: p.write_bytes(pickle.dumps([1, 2, 3], protocol=2)),
    ],
    ids=["text", "plain-pickle", "plain-pickle-v2"],
)
def test_not_a_checkpoint(tmp_path: Path, writer: Any) -> None:
    path = tmp_path / "x.ckpt"
    writer(path)
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [[1, 2, 3], {"epoch": 3}, {"state_dict": {"a": 1}}])
def test_torch_file_that_is_not_a_model_checkpoint(tmp_path: Path, content: Any) -> None:
    path = tmp_path / "x.pt"
    torch.save(content, path)
    with pytest.raises(CheckpointError, match=r"not a model checkpoint|state_dict is not"):
        load_checkpoint(path)


def test_wrong_shapes_name_the_first_mismatching_key(tmp_path: Path) -> None:
    other = ModelConfig(**{**TINY.model_dump(), "cnn_filters_3": 16, "dense_hidden_2": 6})
    checkpoint = {
        "state_dict": make_model(other).state_dict(),
        "hyper_parameters": TINY.model_dump(),
    }
    path = tmp_path / "shapes.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError) as info:
        load_weights(path)
    message = str(info.value)
    assert "conv3.weight" in message
    assert "(16, 8, 3)" in message and "(8, 8, 3)" in message
    assert "fc2" not in message


def test_missing_and_unexpected_keys_are_listed(tmp_path: Path) -> None:
    no_transformer = ModelConfig(**{**TINY.model_dump(), "use_transformer": False})
    state = make_model(no_transformer).state_dict()
    state["extra.weight"] = torch.zeros(2)
    path = tmp_path / "keys.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": TINY.model_dump()}, path)
    with pytest.raises(CheckpointError) as info:
        load_weights(path)
    message = str(info.value)
    assert "missing keys: transformer.layers.0.self_attn.in_proj_weight" in message
    assert "unexpected keys: extra.weight" in message


def test_sha256_must_match_model_metadata(tmp_path: Path) -> None:
    path = save_ours(tmp_path / "m.ckpt", make_model(TINY))
    digest = file_sha256(path)
    meta = tmp_path / "model_metadata.json"
    meta.write_text(json.dumps({"checkpoint": {"file": "m.ckpt", "sha256": digest}}), "utf-8")
    assert load_checkpoint(path).sha256 == digest
    wrong = "0" * 64
    meta.write_text(json.dumps({"checkpoint": {"file": "m.ckpt", "sha256": wrong}}), "utf-8")
    with pytest.raises(CheckpointError, match=r"does not match model_metadata\.json") as info:
        load_checkpoint(path)
    assert f"expected {wrong}, got {digest}" in str(info.value)
    assert load_checkpoint(path, verify_metadata=False).sha256 == digest
    meta.write_text(json.dumps({"checkpoint": {"file": "other.ckpt", "sha256": wrong}}), "utf-8")
    assert load_checkpoint(path).sha256 == digest


# ----------------------------------------------------------------------------- scoring


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> ModelBundle:
    path = save_ours(tmp_path_factory.mktemp("ckpt") / "m.ckpt", make_model(TINY, seed=4))
    return load_checkpoint(path)


def test_predict_proba_applies_the_scaler(tiny_bundle: ModelBundle) -> None:
    x = raw_windows(9, TINY)
    probs = predict_proba(tiny_bundle, x)
    scaled = (x - tiny_bundle.scaler.mean) / tiny_bundle.scaler.std
    expected = torch.softmax(logits(tiny_bundle.model, scaled), dim=1).numpy()
    assert probs.dtype == np.float32 and probs.shape == (9, 2)
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    unscaled = torch.softmax(logits(tiny_bundle.model, x), dim=1).numpy()
    assert np.abs(probs - unscaled).max() > 0.05


def test_predict_proba_batches_consistently(tiny_bundle: ModelBundle) -> None:
    x = raw_windows(30, TINY, seed=7)
    small, large = predict_proba(tiny_bundle, x, batch_size=7), predict_proba(tiny_bundle, x)
    np.testing.assert_allclose(small, large, atol=1e-6, rtol=0)
    np.testing.assert_allclose(small.sum(axis=1), 1.0, atol=1e-6)


def test_predict_proba_restores_training_mode(tiny_bundle: ModelBundle) -> None:
    x = raw_windows(3, TINY)
    expected = predict_proba(tiny_bundle, x)
    tiny_bundle.model.train()
    try:
        np.testing.assert_allclose(predict_proba(tiny_bundle, x), expected, atol=1e-6)
        assert tiny_bundle.model.training
    finally:
        tiny_bundle.model.eval()


def test_predict_proba_edge_cases(tiny_bundle: ModelBundle) -> None:
    assert predict_proba(tiny_bundle, np.zeros((0, 8, 4))).shape == (0, 2)
    with pytest.raises(ValueError, match=r"\(N, 8, 4\)"):
        predict_proba(tiny_bundle, np.zeros((2, 7, 4)))
    with pytest.raises(ValueError, match=r"\(N, 8, 4\)"):
        predict_proba(tiny_bundle, np.zeros((2, 8, 5)))
    bad = raw_windows(2, TINY)
    bad[1, 3, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        predict_proba(tiny_bundle, bad)


def test_pure_paths_are_what_seed_hparams_become(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = lightning_checkpoint(make_model(SEED_TINY), SEED_TINY, prefix=False)
    path = save_lightning(tmp_path / "seed.ckpt", checkpoint, monkeypatch)
    allowed = _seed_safe_globals()  # exactly what load_checkpoint allow-lists, nothing more
    names = {name for _substitute, name in allowed}
    assert names == {
        f"{module}.{cls}"
        for module in ("pathlib", "pathlib._local")  # Python 3.13 pickles the second spelling
        for cls in ("PosixPath", "WindowsPath")
    }
    assert {substitute for substitute, _name in allowed} == {PurePosixPath, PureWindowsPath}
    with torch.serialization.safe_globals(allowed):
        raw = torch.load(path, weights_only=True)
    assert raw["hyper_parameters"]["data_dir"] == PurePosixPath("/home/seed/project/data")
