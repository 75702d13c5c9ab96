"""Per-feature reference histograms of the training rows, stored in the checkpoint.

Drift monitoring compares the feature distribution seen at scoring time with
the one the model was trained on. Keeping the training-side histogram inside
the checkpoint means the comparison needs nothing but the checkpoint, and
computing both sides with :func:`bin_counts` guarantees the same binning rule.

Binning rule, per feature: edges are the training deciles (for ``n_bins=10``);
a value ``x`` falls into bin ``i`` when ``edges[i] <= x < edges[i + 1]``,
except that the first bin extends to -inf and the last to +inf, so scoring-time
values outside the training range still land somewhere (the outermost bins are
exactly where drift shows first). Non-finite values are not counted.

Everything returned is plain Python lists, which ``torch.load(weights_only=True)``
and JSON both accept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["bin_counts", "reference_histograms"]


def reference_histograms(rows: np.ndarray, n_bins: int = 10) -> dict[str, list]:
    """Quantile edges and training counts per feature for rows ``(M, F)``.

    Returns ``{"edges": F lists of n_bins + 1 floats, "counts": F lists of n_bins ints}``.
    Tied quantiles (discrete or constant features) are nudged up by the smallest
    representable step so the edges are strictly increasing; the resulting
    near-empty bins are harmless because both sides are binned identically.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    data = _as_rows(rows)
    edges = [_quantile_edges(data[:, j], n_bins, j) for j in range(data.shape[1])]
    counts = bin_counts(data, edges)
    return {"edges": [e.tolist() for e in edges], "counts": counts.tolist()}


def bin_counts(rows: np.ndarray, edges: Sequence[Sequence[float]]) -> np.ndarray:
    """Count rows ``(M, F)`` per bin of each feature's ``edges``: int64 array ``(F, n_bins)``."""
    data = _as_rows(rows)
    edge_arrays = [np.asarray(e, dtype=np.float64) for e in edges]
    if len(edge_arrays) != data.shape[1]:
        raise ValueError(f"edges cover {len(edge_arrays)} features, rows have {data.shape[1]}")
    n_edges = {e.shape for e in edge_arrays}
    if len(n_edges) != 1 or len(next(iter(n_edges))) != 1 or next(iter(n_edges))[0] < 2:
        raise ValueError("every feature needs a flat list of the same number (>= 2) of edges")
    n_bins = edge_arrays[0].shape[0] - 1
    out = np.zeros((data.shape[1], n_bins), dtype=np.int64)
    for j, feature_edges in enumerate(edge_arrays):
        column = data[:, j]
        column = column[np.isfinite(column)]
        # Only the inner edges decide the bin: the outer bins are open-ended.
        index = np.searchsorted(feature_edges[1:-1], column, side="right")
        out[j] = np.bincount(index, minlength=n_bins)
    return out


def _as_rows(rows: np.ndarray) -> np.ndarray:
    data = np.asarray(rows, dtype=np.float64)
    if data.ndim != 2:
        raise ValueError(f"expected rows of shape (M, F), got shape {data.shape}")
    return data


def _quantile_edges(column: np.ndarray, n_bins: int, feature: int) -> np.ndarray:
    finite = column[np.isfinite(column)]
    if finite.size == 0:
        raise ValueError(f"feature {feature} has no finite training values")
    edges = np.quantile(finite, np.linspace(0.0, 1.0, n_bins + 1))
    for i in range(1, edges.shape[0]):
        if edges[i] <= edges[i - 1]:
            edges[i] = np.nextafter(edges[i - 1], np.inf)
    return edges
