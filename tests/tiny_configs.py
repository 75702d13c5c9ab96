"""Tiny model configurations shared by the tests: same architecture, a few thousand weights.

``TOY`` takes synthetic windows of 8 sessions x 4 features (checkpoint and model
tests); ``SAMPLE`` takes the real 30 x 50 windows of the bundled sample, and
trains on them in seconds (training, drift and fine-tuning tests).
"""

from __future__ import annotations

from stocktrend.model import ModelConfig

TOY = ModelConfig(
    sequence_length=8,
    n_features=4,
    cnn_filters_1=8,
    cnn_filters_2=8,
    cnn_filters_3=8,
    cnn_filters_4=8,
    cnn_filters_5=8,
    cnn_kernel_size=3,
    lstm_hidden_size=8,
    lstm_num_layers=2,
    transformer_heads=2,
    transformer_ff=16,
    dense_hidden_1=8,
    dense_hidden_2=8,
    dense_hidden_3=4,
)

SAMPLE = ModelConfig(
    cnn_filters_1=8,
    cnn_filters_2=8,
    cnn_filters_3=8,
    cnn_filters_4=8,
    cnn_filters_5=8,
    lstm_hidden_size=8,
    lstm_num_layers=1,
    transformer_heads=2,
    transformer_ff=16,
    dense_hidden_1=16,
    dense_hidden_2=8,
    dense_hidden_3=8,
)
