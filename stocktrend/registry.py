"""Model registry (champion / challenger aliases). Placeholder until the registry lands."""

from __future__ import annotations

from pathlib import Path

from stocktrend.config import Settings
from stocktrend.errors import ConfigError


def resolve_alias(alias: str, settings: Settings) -> Path:
    raise ConfigError(
        f"model alias {alias!r} needs the model registry, which this version does not have yet",
        hint="pass --model PATH to a checkpoint, e.g. pretrained_models/best_model_v2.0.ckpt",
    )
