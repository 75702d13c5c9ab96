"""The model must match the seed's architecture contract key for key, or seed weights won't load."""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import pydantic
import pytest
import torch
from tiny_configs import TOY as TINY
from torch import nn

from stocktrend.model import CNNBiLSTMModel, ModelConfig, count_parameters

CONTRACT_PATH = Path(__file__).parent / "data" / "seed_model_contract.json"


@pytest.fixture(scope="module")
def contract() -> dict:
    return json.loads(CONTRACT_PATH.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def full_model() -> CNNBiLSTMModel:
    torch.manual_seed(0)
    return CNNBiLSTMModel(ModelConfig()).eval()


def test_state_dict_keys_shapes_and_dtypes_follow_the_contract(
    contract: dict, full_model: CNNBiLSTMModel
) -> None:
    expected = [(e["key"], tuple(e["shape"]), e["dtype"]) for e in contract["state_dict"]]
    actual = [
        (key, tuple(value.shape), str(value.dtype).removeprefix("torch."))
        for key, value in full_model.state_dict().items()
    ]
    assert len(actual) == 96
    assert actual == expected


def test_parameter_count_is_the_contract(contract: dict, full_model: CNNBiLSTMModel) -> None:
    assert count_parameters(full_model) == contract["parameter_count"] == 7_665_731


def test_module_names_and_types(full_model: CNNBiLSTMModel) -> None:
    modules = dict(full_model.named_children())
    for i, channels in enumerate((128, 256, 256, 256, 256), start=1):
        conv = modules[f"conv{i}"]
        assert isinstance(conv, nn.Conv1d)
        assert conv.out_channels == channels
        assert conv.kernel_size == (5,)
        assert conv.padding == "same"
        assert isinstance(modules[f"bn{i}"], nn.BatchNorm1d)
    lstm = modules["lstm"]
    assert isinstance(lstm, nn.LSTM)
    assert (lstm.input_size, lstm.hidden_size, lstm.num_layers) == (256, 256, 3)
    assert lstm.bidirectional and lstm.batch_first
    assert lstm.dropout == pytest.approx(0.3)
    transformer = modules["transformer"]
    assert isinstance(transformer, nn.TransformerEncoder)
    assert len(transformer.layers) == 1
    layer = transformer.layers[0]
    assert layer.self_attn.num_heads == 4
    assert layer.self_attn.batch_first
    assert layer.linear1.out_features == 1024
    attention = modules["attention"]
    assert isinstance(attention, nn.Linear)
    assert (attention.in_features, attention.out_features) == (512, 1)
    for i, (n_in, n_out) in enumerate(((512, 256), (256, 128), (128, 64), (64, 2)), start=1):
        fc = modules[f"fc{i}"]
        assert isinstance(fc, nn.Linear)
        assert (fc.in_features, fc.out_features) == (n_in, n_out)
    for i in range(1, 4):
        assert isinstance(modules[f"bn_fc{i}"], nn.BatchNorm1d)


def test_full_model_maps_windows_to_two_logits(full_model: CNNBiLSTMModel) -> None:
    with torch.inference_mode():
        out = full_model(torch.randn(3, 30, 50))
    assert out.shape == (3, 2)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


def test_tiny_config_trains_and_predicts() -> None:
    torch.manual_seed(1)
    model = CNNBiLSTMModel(TINY)
    x = torch.randn(5, TINY.sequence_length, TINY.n_features)
    loss = nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 0, 1, 1]))
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model.eval()(x).shape == (5, 2)


def test_other_sequence_lengths_and_class_counts_work() -> None:
    config = TINY.model_copy(update={"sequence_length": 13, "n_classes": 3})
    model = CNNBiLSTMModel(ModelConfig(**config.model_dump())).eval()
    assert model(torch.randn(2, 13, TINY.n_features)).shape == (2, 3)


def test_eval_mode_is_deterministic_and_train_mode_is_not() -> None:
    torch.manual_seed(2)
    model = CNNBiLSTMModel(TINY)
    x = torch.randn(6, TINY.sequence_length, TINY.n_features)
    model.eval()
    with torch.inference_mode():
        first, second = model(x), model(x)
    assert torch.equal(first, second)
    model.train()
    torch.manual_seed(3)
    noisy = model(x)
    torch.manual_seed(4)
    assert not torch.allclose(noisy, model(x))


def test_eval_outputs_do_not_depend_on_the_batch() -> None:
    torch.manual_seed(5)
    model = CNNBiLSTMModel(TINY).eval()
    x = torch.randn(6, TINY.sequence_length, TINY.n_features)
    with torch.inference_mode():
        together = model(x)
        alone = torch.cat([model(x[i : i + 1]) for i in range(6)])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-6)


def test_without_transformer_the_block_and_its_keys_are_absent() -> None:
    config = ModelConfig(**{**TINY.model_dump(), "use_transformer": False})
    model = CNNBiLSTMModel(config).eval()
    assert not any(key.startswith("transformer.") for key in model.state_dict())
    assert "transformer" not in dict(model.named_children())
    assert model(torch.randn(2, 8, 4)).shape == (2, 2)


def test_from_hparams_ignores_training_fields_and_paths() -> None:
    hparams = {
        **TINY.model_dump(exclude={"transformer_ff"}),
        "task_type": "classification",
        "learning_rate": 1e-4,
        "batch_size": 64,
        "data_dir": PurePosixPath("/data"),
        "log_dir": PurePosixPath("/logs"),
    }
    config = ModelConfig.from_hparams(hparams)
    assert config == TINY.model_copy(update={"transformer_ff": 1024})


def test_defaults_are_the_contract_and_config_is_frozen() -> None:
    config = ModelConfig()
    assert (config.sequence_length, config.n_features, config.n_classes) == (30, 50, 2)
    assert config.cnn_filters == (128, 256, 256, 256, 256)
    assert config.dense_hidden == (256, 128, 64)
    with pytest.raises(pydantic.ValidationError):
        config.n_features = 10  # type: ignore[misc]


def test_config_rejects_heads_that_do_not_divide_the_width() -> None:
    with pytest.raises(pydantic.ValidationError, match="transformer_heads"):
        ModelConfig(lstm_hidden_size=5, transformer_heads=4)
    with pytest.raises(pydantic.ValidationError):
        ModelConfig(unknown_field=1)  # type: ignore[call-arg]
