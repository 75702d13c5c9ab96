"""Which checkpoint a run uses: a path, or (once the registry exists) an alias like `champion`."""

from __future__ import annotations

from pathlib import Path

from stocktrend.config import Settings
from stocktrend.errors import CheckpointError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
"""The source tree; relative model paths fall back to it so workers can run from anywhere."""

ALIASES = ("champion", "challenger")


def resolve_model(spec: str | Path, settings: Settings) -> Path:
    """An existing checkpoint path for ``spec``; aliases are resolved by the model registry."""
    text = str(spec)
    if text in ALIASES:
        from stocktrend import registry  # the registry owns aliases

        return registry.resolve_alias(text, settings)
    path = Path(text).expanduser()
    candidates = [path] if path.is_absolute() else [Path.cwd() / path, PROJECT_ROOT / path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise CheckpointError(
        f"no checkpoint at {text}",
        hint="pass --model PATH (or set STOCKTREND_MODEL), or train one with `stocktrend train`",
    )
