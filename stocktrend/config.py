"""Typed settings, read from ``STOCKTREND_*`` environment variables.

Nothing here runs at import time: call :func:`get_settings` (or build
:class:`Settings` yourself) where the values are needed, so tests can point
``STOCKTREND_HOME`` at a temporary directory before anything touches the disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

EngineName = Literal["reference", "auto", "bf16", "onnx", "int8", "int8-conv", "torch-int8"]
"""Inference engines (see :mod:`stocktrend.inference`); spelled out here so reading the
settings never imports torch. A test checks it against ``inference.ENGINE_NAMES``."""


def _default_home() -> Path:
    return Path.home() / ".stocktrend"


class Settings(BaseSettings):
    """Everything a run needs to know about its environment."""

    model_config = SettingsConfigDict(env_prefix="STOCKTREND_", extra="ignore")

    home: Path = Field(
        default_factory=_default_home,
        description="Root for caches, prediction datasets, models and the default SQLite file.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default is a SQLite file under `home`.",
    )
    source: str = Field(
        default="sample",
        description="Price source: 'sample', 'file:PATH' or 'yfinance'.",
    )
    benchmark: str = Field(
        default="^GSPC", description="Market benchmark ticker for context features."
    )
    horizon: int = Field(default=10, ge=1, le=250, description="Label horizon in sessions.")
    seq_len: int = Field(default=30, ge=2, le=500, description="Sessions per model window.")
    model: str = Field(
        default="pretrained_models/best_model_v2.0.ckpt",
        description="Checkpoint path, or 'champion' once the model registry holds one.",
    )
    batch_size: int | None = Field(
        default=None,
        ge=1,
        description="Windows per forward pass when scoring; default: the engine's measured best.",
    )
    engine: EngineName = Field(
        default="reference",
        description=(
            "Inference engine for scoring. 'reference' (float32, bit-exact and independent of "
            "batching) is the default; 'auto' picks the fastest engine that passes parity here."
        ),
    )
    engine_threads: int | None = Field(
        default=None, ge=1, description="CPU threads of the ONNX Runtime engines; default: all."
    )
    engine_cache_dir: Path | None = Field(
        default=None,
        description=(
            "Where ONNX/int8 exports and auto's choice are cached (per checkpoint sha256); "
            "default `home`/cache/engines. Point workers at one shared, prebuilt cache to skip "
            "the first-use export."
        ),
    )
    yfinance_batch_size: int = Field(default=100, ge=1, le=500)
    yfinance_max_retries: int = Field(default=4, ge=0)

    @field_validator("home")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return Path(value).expanduser()

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to ``sqlite:///<home>/stocktrend.db``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'stocktrend.db'}"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def engines_dir(self) -> Path:
        return (
            Path(self.engine_cache_dir).expanduser()
            if self.engine_cache_dir
            else (self.cache_dir / "engines")
        )

    @property
    def predictions_dir(self) -> Path:
        return self.home / "predictions"


def get_settings(**overrides: object) -> Settings:
    """Read settings from the environment, with explicit overrides taking precedence."""
    return Settings(**overrides)  # type: ignore[arg-type]
