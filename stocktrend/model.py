"""The CNN-BiLSTM-Transformer classifier, laid out exactly like the seed's model.

Why the layout is fixed: the seed project shipped a pretrained checkpoint whose
``state_dict`` we want to load with ``strict=True``, and our own checkpoints
must load with the seed's recipe (``CNNBiLSTMModel(ModelConfig())`` then
``load_state_dict``). Module names, registration order and shapes therefore
follow ``seed_model_contract.json`` (a copy lives in ``tests/data/``): 96
``state_dict`` keys and 7,665,731 parameters with the default config.

Layout, input ``(batch, T, F)`` with T = 30 days and F = 50 features::

    transpose -> (batch, F, T)
    conv1..conv5  Conv1d(kernel 5, padding 'same'), channels F->128->256->256->256->256,
                  each followed by bn1..bn5, ReLU, Dropout
    transpose -> (batch, T, 256)
    lstm          bidirectional, 3 layers, hidden 256 -> (batch, T, 512)
    transformer   1 encoder layer, d_model 512, 4 heads, feed-forward 1024 (optional)
    attention     Linear(512, 1), softmax over time, weighted sum -> (batch, 512)
    fc1..fc3      512->256->128->64, each followed by bn_fc1..bn_fc3, ReLU, Dropout
    fc4           64 -> n_classes logits

Output class 0 is bearish (the seed's "Bajista"), class 1 is bullish ("Alcista");
see :data:`stocktrend.CLASS_NAMES` and :data:`stocktrend.SEED_CLASS_NAMES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

__all__ = ["CNNBiLSTMModel", "ModelConfig", "count_parameters"]


class ModelConfig(BaseModel):
    """Architecture hyper-parameters, named as the seed's ``hyper_parameters`` name them.

    Keeping the seed's names lets a seed checkpoint's ``hyper_parameters`` be read
    directly (:meth:`from_hparams`). Defaults are the contract, so ``ModelConfig()``
    is the seed model; smaller values exist for tests and experiments.
    ``transformer_ff`` is not in the seed's hparams (it hard-wired 1024).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    sequence_length: int = Field(30, ge=1)
    n_features: int = Field(50, ge=1)
    n_classes: int = Field(2, ge=2)
    cnn_filters_1: int = Field(128, ge=1)
    cnn_filters_2: int = Field(256, ge=1)
    cnn_filters_3: int = Field(256, ge=1)
    cnn_filters_4: int = Field(256, ge=1)
    cnn_filters_5: int = Field(256, ge=1)
    cnn_kernel_size: int = Field(5, ge=1)
    cnn_dropout: float = Field(0.3, ge=0.0, lt=1.0)
    lstm_hidden_size: int = Field(256, ge=1)
    lstm_num_layers: int = Field(3, ge=1)
    lstm_dropout: float = Field(0.3, ge=0.0, lt=1.0)
    use_transformer: bool = True
    transformer_heads: int = Field(4, ge=1)
    transformer_layers: int = Field(1, ge=1)
    transformer_ff: int = Field(1024, ge=1)
    dense_hidden_1: int = Field(256, ge=1)
    dense_hidden_2: int = Field(128, ge=1)
    dense_hidden_3: int = Field(64, ge=1)
    dense_dropout: float = Field(0.35, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ModelConfig:
        # Multi-head attention splits the BiLSTM output evenly across heads.
        width = 2 * self.lstm_hidden_size
        if self.use_transformer and width % self.transformer_heads:
            raise ValueError(
                f"transformer_heads ({self.transformer_heads}) must divide "
                f"2 * lstm_hidden_size ({width})"
            )
        return self

    @classmethod
    def from_hparams(cls, hparams: Mapping[str, Any]) -> ModelConfig:
        """Build from a checkpoint's ``hyper_parameters``, ignoring non-architecture keys.

        The seed's hparams also hold training settings and directory paths that
        have no bearing on the weights' shapes.
        """
        known = {key: value for key, value in hparams.items() if key in cls.model_fields}
        return cls(**known)

    @property
    def cnn_filters(self) -> tuple[int, int, int, int, int]:
        return (
            self.cnn_filters_1,
            self.cnn_filters_2,
            self.cnn_filters_3,
            self.cnn_filters_4,
            self.cnn_filters_5,
        )

    @property
    def dense_hidden(self) -> tuple[int, int, int]:
        return (self.dense_hidden_1, self.dense_hidden_2, self.dense_hidden_3)


class CNNBiLSTMModel(nn.Module):
    """Seed-compatible classifier: ``(batch, T, F)`` float32 -> ``(batch, n_classes)`` logits.

    Sub-modules are registered in contract order (conv1, bn1, conv2, bn2, ...,
    lstm, transformer, attention, fc1, bn_fc1, ..., fc4) because ``state_dict``
    key order follows registration order. Dropout layers hold no parameters, so
    sharing one per block does not change the ``state_dict``.
    Class 0 = bearish (Bajista), class 1 = bullish (Alcista).
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else ModelConfig()
        cfg = self.config
        self._register_cnn(cfg)
        self.lstm = nn.LSTM(
            input_size=cfg.cnn_filters_5,
            hidden_size=cfg.lstm_hidden_size,
            num_layers=cfg.lstm_num_layers,
            batch_first=True,
            bidirectional=True,
            # torch warns about inter-layer dropout on a single layer, where it is a no-op.
            dropout=cfg.lstm_dropout if cfg.lstm_num_layers > 1 else 0.0,
        )
        width = 2 * cfg.lstm_hidden_size
        if cfg.use_transformer:
            layer = nn.TransformerEncoderLayer(
                d_model=width,
                nhead=cfg.transformer_heads,
                dim_feedforward=cfg.transformer_ff,
                # The seed hard-wired 0.3; the recurrent block's rate is the nearest knob.
                dropout=cfg.lstm_dropout,
                batch_first=True,
            )
            self.transformer = nn.TransformerEncoder(
                layer, num_layers=cfg.transformer_layers, enable_nested_tensor=False
            )
        self.attention = nn.Linear(width, 1)
        self._register_dense(cfg, width)

    def _register_cnn(self, cfg: ModelConfig) -> None:
        in_channels = cfg.n_features
        for i, out_channels in enumerate(cfg.cnn_filters, start=1):
            conv = nn.Conv1d(in_channels, out_channels, cfg.cnn_kernel_size, padding="same")
            setattr(self, f"conv{i}", conv)
            setattr(self, f"bn{i}", nn.BatchNorm1d(out_channels))
            in_channels = out_channels
        self.cnn_drop = nn.Dropout(cfg.cnn_dropout)

    def _register_dense(self, cfg: ModelConfig, width: int) -> None:
        in_features = width
        for i, out_features in enumerate(cfg.dense_hidden, start=1):
            setattr(self, f"fc{i}", nn.Linear(in_features, out_features))
            setattr(self, f"bn_fc{i}", nn.BatchNorm1d(out_features))
            in_features = out_features
        self.fc4 = nn.Linear(in_features, cfg.n_classes)
        self.dense_drop = nn.Dropout(cfg.dense_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(1, 2)
        for i in range(1, 6):
            conv: nn.Conv1d = getattr(self, f"conv{i}")
            bn: nn.BatchNorm1d = getattr(self, f"bn{i}")
            x = self.cnn_drop(torch.relu(bn(conv(x))))
        x = x.transpose(1, 2)
        x, _ = self.lstm(x)
        if self.config.use_transformer:
            x = self.transformer(x)
        weights = torch.softmax(self.attention(x), dim=1)
        x = (weights * x).sum(dim=1)
        for i in range(1, 4):
            fc: nn.Linear = getattr(self, f"fc{i}")
            bn_fc: nn.BatchNorm1d = getattr(self, f"bn_fc{i}")
            x = self.dense_drop(torch.relu(bn_fc(fc(x))))
        return self.fc4(x)


def count_parameters(model: nn.Module) -> int:
    """All parameters, trainable or not (the contract's 7,665,731 counts them all)."""
    return sum(p.numel() for p in model.parameters())
