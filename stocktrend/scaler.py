"""Per-feature standardisation fitted on training windows only.

The scaler is part of the model: it is fitted once on the training split and
stored inside the checkpoint as two plain float lists, so scoring always
applies exactly the statistics the weights were trained against and never
re-fits on data it is about to score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_MIN_STD = 1e-8


@dataclass(frozen=True)
class Scaler:
    """z = (x - mean) / std per feature; ``mean`` and ``std`` are float64 arrays of shape (F,)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray) -> Scaler:
        """Fit on windows ``(N, T, F)`` or rows ``(M, F)``; constant features get std 1."""
        rows = np.asarray(X, dtype=np.float64).reshape(-1, np.shape(X)[-1])
        if rows.shape[0] == 0:
            raise ValueError("cannot fit a scaler on zero rows")
        mean = rows.mean(axis=0)
        std = rows.std(axis=0)
        std = np.where(std < _MIN_STD, 1.0, std)
        return cls(mean=mean, std=std)

    @property
    def n_features(self) -> int:
        return int(self.mean.shape[0])

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Scale the last axis; returns float32 (what the model consumes)."""
        X = np.asarray(X)
        if X.shape[-1] != self.n_features:
            raise ValueError(f"scaler expects {self.n_features} features, got {X.shape[-1]}")
        out = (X.astype(np.float32) - self.mean.astype(np.float32)) / self.std.astype(np.float32)
        return out.astype(np.float32, copy=False)

    def to_dict(self) -> dict[str, list[float]]:
        """Plain lists, safe for ``torch.load(weights_only=True)`` and JSON."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, list[float]]) -> Scaler:
        mean = np.asarray(data["mean"], dtype=np.float64)
        std = np.asarray(data["std"], dtype=np.float64)
        if mean.shape != std.shape or mean.ndim != 1:
            raise ValueError(f"scaler mean/std shapes differ: {mean.shape} vs {std.shape}")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std)) and np.all(std > 0)):
            raise ValueError("scaler holds non-finite values or non-positive std")
        return cls(mean=mean, std=std)
