"""Fast batch inference on CPU: one :class:`Engine` interface over several back-ends.

Why this exists: a backfill scores millions of windows, and the plain float32 eager
forward (:func:`stocktrend.checkpoint.predict_proba`, "the reference") spends most
of its time in small recurrent matrix products and framework overhead. The
engines below compute the same function faster; :func:`load_engine` with
``engine="auto"`` picks the fastest one that *reproduces the reference on this
machine*, and never one that does not.

Engines (:data:`ENGINE_NAMES`):

``reference``
    The checkpoint's module, float32, eager; bit-for-bit what ``predict_proba`` returns.
``bf16``
    The same module under CPU autocast to bfloat16 (oneDNN's AVX512-BF16 kernels).
``onnx``
    :class:`InferenceNet` (scaler inside, BatchNorm folded, convs as MatMuls,
    encoder spelled out, softmax inside) exported with ``torch.onnx.export`` and
    run by ONNX Runtime in float32, each chunk split across single-threaded
    workers (:class:`_OrtRunner`).
``int8``
    That graph with ONNX Runtime's dynamic int8 quantisation of the LSTM and of
    the encoder's q/k/v and feed-forward products (:data:`INT8_RECIPES`). The
    encoder's output projection, the attention pooling and the dense head stay
    float32: quantised alone, each moved more predictions across 0.5 than the
    parity budget allows, and together they are < 5% of the FLOPs.
``int8-conv``
    ``int8`` plus the three widest convs (per-channel weights): faster, with a
    larger (still passing) parity error on the pretrained model.
``torch-int8``
    :class:`InferenceNet` with ``torch.ao`` dynamic int8 quantisation of the LSTM
    (fbgemm). The stock ``TransformerEncoder`` breaks under ``quantize_dynamic``
    (its fast path reads ``.weight`` of the swapped-in quantised linears);
    :class:`InferenceNet` spells the encoder out, so it does not.

``torch.compile`` is not an engine: on this model it took ~30 s to compile and
ran no faster than eager (inductor leaves the LSTM to aten; the rest is GEMMs
already in oneDNN/MKL). ``benchmarks/bench_inference.py --compile`` still times it.

Parity (:func:`check_parity`) is measured against the reference on the bundled
test windows with the checkpoint being served: argmax agreement >= 99.5%,
max |P(up) difference| <= 0.02, and two runs bit-identical.

Results are reproducible for the same input, ``batch_size`` and threads,
including when streamed (:meth:`Engine.predict_proba_iter` re-chunks its input
to the same boundaries as :meth:`Engine.predict_proba`). The int8 engines
quantise activations per slice (each chunk is split into one slice per ONNX
Runtime worker), so a window's probabilities depend (far inside the parity
tolerance) on the other windows of its slice; the float engines do not depend
on their neighbours beyond float rounding.

Files: exports are cached per checkpoint sha256 under
``<cache_dir>/<sha256[:16]>/`` and ``auto``'s decision under
``<cache_dir>/auto/``, where ``cache_dir`` defaults to
``$STOCKTREND_HOME/cache/engines``. All writes are atomic (temp file and
``os.replace``), so concurrent workers never read half-written files. There is no
module-level mutable state: every cache is a file, every choice an argument.
"""

from __future__ import annotations

import ast
import copy
import fnmatch
import hashlib
import json
import logging
import os
import platform
import queue
import tempfile
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from stocktrend import __version__
from stocktrend.atomic import atomic_write_bytes
from stocktrend.checkpoint import ModelBundle, load_checkpoint
from stocktrend.model import CNNBiLSTMModel
from stocktrend.scaler import Scaler

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "ENGINE_FACTORIES",
    "ENGINE_NAMES",
    "INT8_RECIPES",
    "ORT_BATCH_SIZE",
    "PARITY_MAX_ABS_DIFF",
    "PARITY_MIN_AGREEMENT",
    "Engine",
    "EngineOptions",
    "InferenceNet",
    "Int8Recipe",
    "ParityReport",
    "Selection",
    "bundled_test_windows",
    "cached_export",
    "check_parity",
    "cpu_description",
    "engine_from_onnx",
    "engine_summary",
    "export_onnx",
    "load_engine",
    "parity_figures",
    "quantize_onnx_int8",
    "quantize_torch_int8",
    "select_engine",
]

logger = logging.getLogger(__name__)

PARITY_MIN_AGREEMENT = 0.995
"""Share of windows whose predicted class must match the reference."""

PARITY_MAX_ABS_DIFF = 0.02
"""Largest tolerated |P(up) - reference P(up)| on any window."""

DEFAULT_BATCH_SIZE = 256
"""Windows per forward pass for the torch engines unless told otherwise."""

ORT_BATCH_SIZE = 32
"""Windows per chunk for the ONNX Runtime engines unless told otherwise.

Measured on 2 cores: int8 scores ~1.5x more windows/s in chunks of 16-32 (8-16
per worker, whose activations stay in L2) than in chunks of 256; float ONNX
peaks at 32 as well. Only throughput changes: chunks are cut the same way in
one-shot and streamed scoring.
"""


EXPORT_FORMAT = 1
"""Bump when :class:`InferenceNet` or the export recipe changes, so caches are rebuilt."""

INPUT_NAME = "windows"
OUTPUT_NAME = "probabilities"
_ONNX_FOLD_LIMIT = 1 << 26  # fold the LSTM's gate-reordered weights into constants

Runner = Callable[[np.ndarray], np.ndarray]
"""Raw float32 windows ``(n, T, F)`` -> probabilities ``(n, C)``; one chunk at a time."""


@dataclass(frozen=True)
class Int8Recipe:
    """:class:`InferenceNet` modules (``fnmatch`` patterns) that get int8 weights.

    Per-tensor for the LSTM: ONNX Runtime's per-channel LSTM quantisation
    measured 1.7x the mean error on the pretrained model. Per-channel for the
    convs, where it measured the smaller error.
    """

    per_tensor: tuple[str, ...]
    per_channel: tuple[str, ...] = ()


_INT8_CORE = ("lstm", "encoder.*.qkv", "encoder.*.ff1", "encoder.*.ff2")

INT8_RECIPES: Mapping[str, Int8Recipe] = MappingProxyType(
    {
        "int8": Int8Recipe(per_tensor=_INT8_CORE),
        # conv1 (50 inputs, <1% of FLOPs) and conv2 stay float: quantising them
        # roughly doubled the argmax flips for a few percent of speed.
        "int8-conv": Int8Recipe(
            per_tensor=_INT8_CORE, per_channel=("convs.2.proj", "convs.3.proj", "convs.4.proj")
        ),
    }
)
"""The int8 engines' quantisation recipes, by engine name (read-only)."""


# --------------------------------------------------------------------------- the network


def _fold_batchnorm(
    weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm1d
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights of ``bn(layer(x))`` as a single layer: eval statistics are constants."""
    assert bn.running_var is not None and bn.running_mean is not None
    scale = bn.running_var.add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    folded_bias = shift if bias is None else bias * scale + shift
    return weight * scale.reshape((-1,) + (1,) * (weight.dim() - 1)), folded_bias


class _ConvAsMatMul(nn.Module):
    """``Conv1d(padding='same')`` + folded BatchNorm as one matrix product over stacked shifts.

    Works on ``(batch, T, C)`` so the CNN needs no transposes, and turns each conv
    into a MatMul that ONNX Runtime can quantise to int8 (its int8 Conv kernel
    is slower than its float one; its int8 MatMul is about 3x faster).
    ``proj.weight[o, k * C + c] == conv.weight[o, c, k]``.
    """

    def __init__(self, conv: nn.Conv1d, bn: nn.BatchNorm1d) -> None:
        super().__init__()
        if conv.padding != "same" or conv.stride != (1,) or conv.dilation != (1,):
            raise ValueError("InferenceNet expects stride-1, undilated 'same' convolutions")
        self.kernel = conv.kernel_size[0]
        self.left = (self.kernel - 1) // 2  # torch's split of 'same' padding
        self.right = self.kernel - 1 - self.left
        weight, bias = _fold_batchnorm(conv.weight, conv.bias, bn)
        flat = weight.permute(0, 2, 1).reshape(conv.out_channels, -1)
        self.proj = _linear_like(flat, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = x.shape[1]
        padded = F.pad(x, (0, 0, self.left, self.right))
        shifts = [padded[:, k : k + steps] for k in range(self.kernel)]
        return self.proj(torch.cat(shifts, dim=2))


def _folded_linear(linear: nn.Linear, bn: nn.BatchNorm1d) -> nn.Linear:
    out = nn.Linear(linear.in_features, linear.out_features)
    weight, bias = _fold_batchnorm(linear.weight, linear.bias, bn)
    out.weight.copy_(weight)
    out.bias.copy_(bias)
    return out


def _linear_like(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    out = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    out.weight.copy_(weight)
    if bias is not None:
        out.bias.copy_(bias)
    return out


class _EncoderLayer(nn.Module):
    """``nn.TransformerEncoderLayer`` (post-norm, ReLU, eval) written as plain ops.

    Plain ops export to ONNX as ordinary MatMuls, and their ``nn.Linear``
    children can be swapped for quantised ones, neither of which holds for the
    fused fast path.
    """

    def __init__(self, layer: nn.TransformerEncoderLayer) -> None:
        super().__init__()
        if layer.norm_first or layer.activation_relu_or_gelu != 1:
            raise ValueError("InferenceNet supports post-norm ReLU encoder layers only")
        attn = layer.self_attn
        self.heads = attn.num_heads
        self.qkv = _linear_like(attn.in_proj_weight, attn.in_proj_bias)
        self.out = _linear_like(attn.out_proj.weight, attn.out_proj.bias)
        self.ff1 = _linear_like(layer.linear1.weight, layer.linear1.bias)
        self.ff2 = _linear_like(layer.linear2.weight, layer.linear2.bias)
        self.norm1 = copy.deepcopy(layer.norm1)
        self.norm2 = copy.deepcopy(layer.norm2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, steps, width = x.shape
        qkv = self.qkv(x).reshape(batch, steps, 3, self.heads, width // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attended = F.scaled_dot_product_attention(q, k, v)
        x = self.norm1(x + self.out(attended.transpose(1, 2).reshape(batch, steps, width)))
        return self.norm2(x + self.ff2(torch.relu(self.ff1(x))))


class InferenceNet(nn.Module):
    """The checkpoint's network as one inference function: raw windows -> probabilities.

    Same maths as ``softmax(model(scaler.transform(x)))`` in eval mode, rearranged so
    that back-ends can run it fast: the scaler is the first op (so exported files
    take raw windows, like ``predict_proba``), BatchNorm is folded into the conv
    and dense weights, each conv is one MatMul (:class:`_ConvAsMatMul`), the
    encoder is spelled out (:class:`_EncoderLayer`) and the softmax is the last op.
    Weights are copies; the source model is not touched.
    """

    def __init__(self, model: CNNBiLSTMModel, scaler: Scaler) -> None:
        super().__init__()
        cfg = model.config
        with torch.no_grad():
            self.register_buffer("mean", torch.tensor(scaler.mean, dtype=torch.float32))
            self.register_buffer("std", torch.tensor(scaler.std, dtype=torch.float32))
            self.convs = nn.ModuleList(
                _ConvAsMatMul(getattr(model, f"conv{i}"), getattr(model, f"bn{i}"))
                for i in range(1, 6)
            )
            self.lstm = copy.deepcopy(model.lstm)
            layers = model.transformer.layers if cfg.use_transformer else []
            self.encoder = nn.ModuleList(_EncoderLayer(layer) for layer in layers)
            self.attention = copy.deepcopy(model.attention)
            self.dense = nn.ModuleList(
                _folded_linear(getattr(model, f"fc{i}"), getattr(model, f"bn_fc{i}"))
                for i in range(1, 4)
            )
            self.head = copy.deepcopy(model.fc4)
        self.eval()

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        x = (windows - self.mean) / self.std
        for conv in self.convs:
            x = torch.relu(conv(x))
        x, _ = self.lstm(x)
        for layer in self.encoder:
            x = layer(x)
        weights = torch.softmax(self.attention(x), dim=1)
        x = (weights * x).sum(dim=1)
        for linear in self.dense:
            x = torch.relu(linear(x))
        return torch.softmax(self.head(x), dim=1)


# --------------------------------------------------------------------------- engine


@dataclass(frozen=True)
class EngineOptions:
    """How an engine is built: chunk size, ONNX Runtime threads, where exports are cached.

    ``threads`` is the CPU budget of the ONNX Runtime engines (default: the CPUs
    this process may use), split into ``workers`` parallel slices of
    ``threads // workers`` intra-op threads each. Torch engines use torch's own
    thread setting, which is process-wide (``torch.set_num_threads``); this
    module never changes it.
    """

    batch_size: int | None = None
    threads: int | None = None
    workers: int | None = None
    cache_dir: Path | None = None

    def __post_init__(self) -> None:
        for name in ("batch_size", "threads", "workers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")

    def chunk(self, default: int) -> int:
        """The chunk size: the one asked for, else the engine's measured best."""
        return self.batch_size or default

    @property
    def resolved_threads(self) -> int:
        return self.threads or _available_cpus()

    @property
    def resolved_workers(self) -> int:
        """ONNX Runtime slices scored in parallel; default one per thread (measured best)."""
        return min(self.workers or self.resolved_threads, self.resolved_threads)

    @property
    def resolved_cache_dir(self) -> Path:
        if self.cache_dir is not None:
            return Path(self.cache_dir)
        from stocktrend.config import get_settings

        return get_settings().engines_dir


class Engine:
    """Raw windows in, class probabilities out, in chunks of ``batch_size`` windows.

    Takes exactly what :func:`stocktrend.checkpoint.predict_proba` takes (raw,
    unscaled float windows ``(N, T, F)``) and returns ``(N, n_classes)`` float32.
    Working memory is bounded by the chunk size, whatever N is.
    """

    def __init__(
        self,
        name: str,
        bundle: ModelBundle,
        runner: Runner,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        details: Mapping[str, Any] | None = None,
        close: Callable[[], None] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.name = name
        self.bundle = bundle
        self.batch_size = batch_size
        self.details: dict[str, Any] = dict(details or {})
        self._runner = runner
        # Worker threads (if any) go when the engine does, even if close() is never called.
        self._finalizer = weakref.finalize(self, close) if close is not None else None
        self._shape = (bundle.sequence_length, len(bundle.feature_names))
        self._n_classes = bundle.config.n_classes

    def __repr__(self) -> str:
        return f"Engine(name={self.name!r}, batch_size={self.batch_size})"

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the engine's worker threads (idempotent); it must not be used afterwards."""
        if self._finalizer is not None:
            self._finalizer()

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Probabilities for all windows of ``X``, computed ``batch_size`` at a time.

        ``X`` is validated chunk by chunk before anything is scored, so a bad
        window fails fast and no temporary the size of ``X`` is ever made.
        """
        windows = self._checked_shape(X)
        n = windows.shape[0]
        for start in range(0, n, self.batch_size):
            self._check_finite(windows[start : start + self.batch_size], offset=start)
        out = np.empty((n, self._n_classes), dtype=np.float32)
        for start in range(0, n, self.batch_size):
            stop = start + self.batch_size
            out[start:stop] = self._run(windows[start:stop])
        return out

    def predict_proba_iter(
        self, batches: Iterable[np.ndarray], *, prefetch: int = 0
    ) -> Iterator[np.ndarray]:
        """One probability array per input batch, for inputs too large to hold at once.

        Input batches may have any size; they are re-cut into chunks of
        ``batch_size`` so the result equals :meth:`predict_proba` on their
        concatenation, bit for bit. At most one chunk plus one input batch is held.
        ``prefetch > 0`` pulls that many batches ahead on a background thread, so
        building the next windows overlaps scoring the current ones.
        """
        prefetcher = _Prefetcher(batches, prefetch) if prefetch > 0 else None
        source = prefetcher if prefetcher is not None else iter(batches)
        rechunker = _Rechunker(self.batch_size, self._n_classes)
        try:
            for batch in source:
                windows = self._checked_shape(batch)
                self._check_finite(windows)
                rechunker.push(windows)
                rechunker.run_full(self._run)
                yield from rechunker.pop_complete()
            rechunker.run_rest(self._run)
            yield from rechunker.pop_complete()
        finally:
            if prefetcher is not None:  # the caller's own iterator is theirs to close
                prefetcher.close()

    def _run(self, chunk: np.ndarray) -> np.ndarray:
        raw = np.ascontiguousarray(chunk, dtype=np.float32)
        result = np.asarray(self._runner(raw), dtype=np.float32)
        if result.shape != (chunk.shape[0], self._n_classes):
            raise RuntimeError(f"engine {self.name} returned shape {result.shape}")
        return result

    def _checked_shape(self, X: np.ndarray) -> np.ndarray:
        windows = np.asarray(X)
        if windows.ndim != 3 or tuple(windows.shape[1:]) != self._shape:
            raise ValueError(
                f"expected windows of shape (N, {self._shape[0]}, {self._shape[1]}), "
                f"got {windows.shape}"
            )
        if not np.issubdtype(windows.dtype, np.number):
            raise ValueError(f"windows must be numeric, got dtype {windows.dtype}")
        return windows

    @staticmethod
    def _check_finite(windows: np.ndarray, offset: int = 0) -> None:
        finite = np.isfinite(windows)
        if not finite.all():
            bad = int(finite.size - np.count_nonzero(finite))
            first = offset + int(np.flatnonzero(~finite.reshape(len(windows), -1).all(1))[0])
            raise ValueError(
                f"windows hold {bad} non-finite values (first in window {first}); "
                "the model would emit NaN"
            )


class _Rechunker:
    """Cuts a stream of variable-size batches into fixed chunks and re-aligns the results."""

    def __init__(self, chunk: int, n_classes: int) -> None:
        self._chunk = chunk
        self._n_classes = n_classes
        self._pending: deque[np.ndarray] = deque()  # windows not yet scored
        self._n_pending = 0
        self._done: deque[np.ndarray] = deque()  # results not yet handed out
        self._n_done = 0
        self._sizes: deque[int] = deque()  # input batch sizes not yet handed out

    def push(self, batch: np.ndarray) -> None:
        self._sizes.append(batch.shape[0])
        if batch.shape[0]:
            self._pending.append(batch)
            self._n_pending += batch.shape[0]

    def run_full(self, run: Runner) -> None:
        while self._n_pending >= self._chunk:
            self._score(run, self._take(self._chunk))

    def run_rest(self, run: Runner) -> None:
        self.run_full(run)
        if self._n_pending:
            self._score(run, self._take(self._n_pending))

    def pop_complete(self) -> Iterator[np.ndarray]:
        while self._sizes and self._sizes[0] <= self._n_done:
            size = self._sizes.popleft()
            yield self._give(size)

    def _score(self, run: Runner, chunk: np.ndarray) -> None:
        result = run(chunk)
        self._done.append(result)
        self._n_done += result.shape[0]

    def _take(self, n: int) -> np.ndarray:
        return _take_rows(self._pending, n, self._shift_pending)

    def _give(self, n: int) -> np.ndarray:
        if n == 0:
            return np.zeros((0, self._n_classes), dtype=np.float32)
        return _take_rows(self._done, n, self._shift_done)

    def _shift_pending(self, n: int) -> None:
        self._n_pending -= n

    def _shift_done(self, n: int) -> None:
        self._n_done -= n


def _take_rows(parts: deque[np.ndarray], n: int, account: Callable[[int], None]) -> np.ndarray:
    """Remove the first ``n`` rows from a deque of arrays, splitting one if needed."""
    taken: list[np.ndarray] = []
    need = n
    while need:
        head = parts[0]
        if head.shape[0] <= need:
            taken.append(parts.popleft())
            need -= head.shape[0]
        else:
            taken.append(head[:need])
            parts[0] = head[need:]
            need = 0
    account(n)
    return taken[0] if len(taken) == 1 else np.concatenate(taken, axis=0)


_END = object()


class _Prefetcher:
    """Iterates ``source`` on a daemon thread, at most ``depth`` items ahead."""

    def __init__(self, source: Iterable[Any], depth: int) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._fill, args=(iter(source),), name="stocktrend-prefetch", daemon=True
        )
        self._thread.start()

    def _fill(self, source: Iterator[Any]) -> None:
        try:
            for item in source:
                if not self._put(("item", item)):
                    return
            self._put(("end", _END))
        except BaseException as exc:  # handed to the consumer, re-raised there
            self._put(("error", exc))

    def _put(self, entry: tuple[str, Any]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        kind, value = self._queue.get()
        if kind == "item":
            return value
        self._stop.set()
        if kind == "error":
            raise value
        raise StopIteration

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# --------------------------------------------------------------------------- runners


def _torch_runner(module: nn.Module, scaler: Scaler, autocast: torch.dtype | None) -> Runner:
    """The checkpoint module as ``predict_proba`` runs it, optionally under autocast."""

    def run(windows: np.ndarray) -> np.ndarray:
        scaled = torch.from_numpy(np.ascontiguousarray(scaler.transform(windows)))
        context = torch.autocast("cpu", dtype=autocast) if autocast else nullcontext()
        with torch.inference_mode(), context:
            logits = module(scaled)
        return torch.softmax(logits.float(), dim=1).numpy()

    return run


def _net_runner(net: nn.Module) -> Runner:
    def run(windows: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(windows)).float().numpy()

    return run


class _OrtRunner:
    """One ONNX Runtime session scored from ``workers`` threads, each on a slice of the chunk.

    Why slices: on a few cores, the LSTM's 180 small per-step products scale
    poorly across intra-op threads (a barrier per step), while independent
    slices on single-threaded workers keep every core busy. ``Session.run`` is
    thread-safe and releases the GIL, and the weights are shared. Slices are
    cut deterministically (``np.array_split``), so results are reproducible.
    """

    def __init__(self, path: Path, threads: int, workers: int) -> None:
        self.workers = max(1, min(workers, threads))
        self.intra_threads = max(1, threads // self.workers)
        self._session = _ort_session(path, self.intra_threads)
        self._pool = (
            ThreadPoolExecutor(self.workers, thread_name_prefix="stocktrend-ort")
            if self.workers > 1
            else None
        )

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        if self._pool is None or windows.shape[0] < 2 * self.workers:
            return self._run(windows)
        parts = np.array_split(windows, self.workers)
        return np.concatenate(list(self._pool.map(self._run, parts)), axis=0)

    def _run(self, windows: np.ndarray) -> np.ndarray:
        return self._session.run([OUTPUT_NAME], {INPUT_NAME: windows})[0]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def _ort_session(path: Path, threads: int) -> Any:
    """A CPU session with its own fixed thread count, independent of torch's."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(
        str(path),
        options,
        providers=["CPUExecutionProvider"],
        # Measured: ORT's fused SkipLayerNormalization kernel is ~8x slower here than the
        # plain Add + LayerNormalization it replaces (10% of the int8 forward).
        disabled_optimizers=["SkipLayerNormFusion"],
    )


def _eval_module(bundle: ModelBundle) -> nn.Module:
    """The bundle's module in eval mode, copied only if its owner left it training."""
    model = bundle.model
    return copy.deepcopy(model).eval() if model.training else model


def _reference_engine(bundle: ModelBundle, options: EngineOptions) -> Engine:
    runner = _torch_runner(_eval_module(bundle), bundle.scaler, None)
    return Engine("reference", bundle, runner, batch_size=options.chunk(DEFAULT_BATCH_SIZE))


def _bf16_engine(bundle: ModelBundle, options: EngineOptions) -> Engine:
    if not _cpu_has_bf16():
        raise RuntimeError("this CPU has no native bfloat16 arithmetic (AVX512-BF16 or AMX)")
    runner = _torch_runner(_eval_module(bundle), bundle.scaler, torch.bfloat16)
    return Engine("bf16", bundle, runner, batch_size=options.chunk(DEFAULT_BATCH_SIZE))


def _ort_engine(name: str, bundle: ModelBundle, options: EngineOptions) -> Engine:
    path = cached_export(bundle, name, options.resolved_cache_dir)
    return engine_from_onnx(path, bundle, name=name, options=options)


def engine_from_onnx(
    path: str | os.PathLike[str],
    bundle: ModelBundle,
    *,
    name: str = "onnx",
    options: EngineOptions | None = None,
) -> Engine:
    """An engine over an exported ONNX file (e.g. ``stocktrend export``'s) for ``bundle``.

    The file must take raw windows, as :func:`export_onnx` writes them; ``bundle``
    supplies the input shape checks and the class count.
    """
    options = options or EngineOptions()
    runner = _OrtRunner(Path(path), options.resolved_threads, options.resolved_workers)
    details = {
        "file": str(path),
        "workers": runner.workers,
        "intra_op_threads": runner.intra_threads,
    }
    return Engine(
        name,
        bundle,
        runner,
        batch_size=options.chunk(ORT_BATCH_SIZE),
        details=details,
        close=runner.close,
    )


def _onnx_engine(bundle: ModelBundle, options: EngineOptions) -> Engine:
    return _ort_engine("onnx", bundle, options)


def _int8_engine(bundle: ModelBundle, options: EngineOptions) -> Engine:
    return _ort_engine("int8", bundle, options)


def _int8_conv_engine(bundle: ModelBundle, options: EngineOptions) -> Engine:
    return _ort_engine("int8-conv", bundle, options)


def _torch_int8_engine(bundle: ModelBundle, options: EngineOptions) -> Engine:
    net = quantize_torch_int8(InferenceNet(bundle.model, bundle.scaler))
    return Engine(
        "torch-int8", bundle, _net_runner(net), batch_size=options.chunk(DEFAULT_BATCH_SIZE)
    )


EngineFactory = Callable[[ModelBundle, EngineOptions], Engine]

ENGINE_FACTORIES: Mapping[str, EngineFactory] = MappingProxyType(
    {
        "reference": _reference_engine,
        "bf16": _bf16_engine,
        "onnx": _onnx_engine,
        "int8": _int8_engine,
        "int8-conv": _int8_conv_engine,
        "torch-int8": _torch_int8_engine,
    }
)
"""Every engine by name (read-only); ``auto`` tries them in this order."""

ENGINE_NAMES: tuple[str, ...] = ("auto", *ENGINE_FACTORIES)


def quantize_torch_int8(net: InferenceNet) -> nn.Module:
    """``torch.ao`` dynamic int8 of the LSTM only (fbgemm, per-tensor weights).

    Only the LSTM: quantising the encoder or dense linears this way (7-bit
    activations on fbgemm) moves several times more predictions across 0.5.
    """
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao is deprecated in favour of torchao
        return quantize_dynamic(net, {nn.LSTM}, dtype=torch.qint8)


# --------------------------------------------------------------------------- exports


def export_onnx(bundle: ModelBundle, path: str | os.PathLike[str]) -> Path:
    """Write :class:`InferenceNet` as ONNX (raw windows in, probabilities out), atomically.

    Uses the ``torch.export``-based exporter with a dynamic batch axis, then folds
    constants with a large size limit so the LSTM weights become plain
    initializers (ONNX Runtime's quantiser only quantises constant weights).
    """
    import onnx
    import onnxscript.optimizer

    net = InferenceNet(bundle.model, bundle.scaler)
    example = torch.zeros(2, bundle.sequence_length, len(bundle.feature_names))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            net,
            (example,),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
            dynamo=True,
            verbose=False,
        )
    assert program is not None
    proto = onnxscript.optimizer.optimize(
        program.model_proto,
        input_size_limit=_ONNX_FOLD_LIMIT,
        output_size_limit=_ONNX_FOLD_LIMIT,
    )
    onnx.helper.set_model_props(proto, _export_props(bundle))
    return atomic_write_bytes(Path(path), proto.SerializeToString())


def quantize_onnx_int8(
    source: str | os.PathLike[str],
    path: str | os.PathLike[str],
    recipe: Int8Recipe | None = None,
) -> Path:
    """ONNX Runtime dynamic int8 of the LSTM/MatMul nodes that ``recipe`` names.

    Nodes are picked by the module path the exporter records on each node, so
    the choice survives node renaming between exporter versions. Two passes
    when the recipe mixes per-tensor and per-channel weight scales (the
    quantiser takes one setting per call).
    """
    import onnx

    recipe = recipe or INT8_RECIPES["int8"]
    model = onnx.load(str(source))
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent) as tmp:
        current = Path(source)
        for per_channel, patterns in ((False, recipe.per_tensor), (True, recipe.per_channel)):
            if patterns:
                staged = Path(tmp) / f"pass_{int(per_channel)}.onnx"
                _quantize_pass(current, staged, _nodes_of(model, patterns), per_channel)
                current = staged
        quantized = onnx.load(str(current))
    props = {p.key: p.value for p in model.metadata_props}
    props["stocktrend.int8_per_tensor"] = ",".join(recipe.per_tensor)
    props["stocktrend.int8_per_channel"] = ",".join(recipe.per_channel)
    onnx.helper.set_model_props(quantized, props)
    return atomic_write_bytes(final, quantized.SerializeToString())


def _nodes_of(model: Any, patterns: Sequence[str]) -> list[str]:
    nodes = [
        node.name
        for node in model.graph.node
        if node.op_type in ("LSTM", "MatMul")
        and any(fnmatch.fnmatchcase(_node_module(node), pattern) for pattern in patterns)
    ]
    if not nodes:
        raise RuntimeError(f"no LSTM/MatMul nodes belong to {list(patterns)}")
    return nodes


def _quantize_pass(source: Path, target: Path, nodes: list[str], per_channel: bool) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        source,
        target,
        op_types_to_quantize=["LSTM", "MatMul"],
        nodes_to_quantize=nodes,
        per_channel=per_channel,
        weight_type=QuantType.QInt8,
    )


def _node_module(node: Any) -> str:
    """The module path (``lstm``, ``encoder.0.qkv``) the exporter recorded for a node.

    The exporter stores one scope per module from the root down, then the op's
    own name: ``['', 'encoder.0', 'encoder.0.qkv', 'linear']`` -> ``encoder.0.qkv``.
    """
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            scopes = ast.literal_eval(prop.value)
            return str(scopes[-2]) if len(scopes) >= 2 else ""
    return ""


def cached_export(bundle: ModelBundle, kind: str, cache_dir: Path) -> Path:
    """The ``onnx`` export (or an :data:`INT8_RECIPES` variant) of this checkpoint, built once.

    Keyed by checkpoint sha256 and :data:`EXPORT_FORMAT`; a half-built file is
    never visible (atomic writes), and a second process racing the first just
    builds the same file again.
    """
    if kind != "onnx" and kind not in INT8_RECIPES:
        raise ValueError(f"unknown export kind {kind!r}")
    folder = cache_dir / _bundle_sha(bundle)[:16]
    fp32 = folder / f"inference_v{EXPORT_FORMAT}.onnx"
    if not fp32.is_file():
        logger.info("exporting %s to ONNX at %s", bundle.model_version, fp32)
        export_onnx(bundle, fp32)
    if kind == "onnx":
        return fp32
    quantized = folder / f"inference_v{EXPORT_FORMAT}_{kind}.onnx"
    if not quantized.is_file():
        logger.info("quantising %s (%s) at %s", bundle.model_version, kind, quantized)
        quantize_onnx_int8(fp32, quantized, INT8_RECIPES[kind])
    return quantized


def _export_props(bundle: ModelBundle) -> dict[str, str]:
    return {
        "stocktrend.version": __version__,
        "stocktrend.export_format": str(EXPORT_FORMAT),
        "stocktrend.model_version": bundle.model_version,
        "stocktrend.checkpoint_sha256": _bundle_sha(bundle),
        "stocktrend.input": f"{INPUT_NAME}: raw float32 (N, {bundle.sequence_length}, "
        f"{len(bundle.feature_names)}); the scaler is inside the graph",
        "stocktrend.output": f"{OUTPUT_NAME}: float32 (N, {bundle.config.n_classes}), "
        "class 0 bearish, 1 bullish",
        "stocktrend.feature_names": ",".join(bundle.feature_names),
        "torch": torch.__version__,
    }


def _bundle_sha(bundle: ModelBundle) -> str:
    """The checkpoint file's sha256, or a digest of the weights for in-memory bundles."""
    if bundle.sha256:
        return bundle.sha256
    digest = hashlib.sha256()
    for name, tensor in bundle.model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(np.asarray(bundle.scaler.mean).tobytes())
    digest.update(np.asarray(bundle.scaler.std).tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------- parity


@dataclass(frozen=True)
class ParityReport:
    """How closely one engine reproduces the float32 reference, and how fast it ran."""

    engine: str
    n_windows: int
    argmax_agreement: float
    max_abs_diff: float
    mean_abs_diff: float
    deterministic: bool
    windows_per_s: float
    error: str | None = None

    @property
    def passed(self) -> bool:
        return (
            self.error is None
            and self.deterministic
            and self.argmax_agreement >= PARITY_MIN_AGREEMENT
            and self.max_abs_diff <= PARITY_MAX_ABS_DIFF
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def summary(self) -> str:
        if self.error:
            return f"{self.engine}: unavailable ({self.error})"
        verdict = "pass" if self.passed else "FAIL"
        return (
            f"{self.engine}: {verdict}, argmax agreement {self.argmax_agreement:.4f}, "
            f"max |dP| {self.max_abs_diff:.5f}, deterministic {self.deterministic}, "
            f"{self.windows_per_s:,.0f} windows/s"
        )


def parity_figures(probs: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Argmax agreement and |P(up)| differences of ``probs`` against ``reference``."""
    diff = np.abs(probs[:, 1].astype(np.float64) - reference[:, 1].astype(np.float64))
    agree = float(np.mean(probs.argmax(axis=1) == reference.argmax(axis=1)))
    return {
        "argmax_agreement": agree,
        "max_abs_diff": float(diff.max(initial=0.0)),
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
    }


def check_parity(engine: Engine, windows: np.ndarray, reference: np.ndarray) -> ParityReport:
    """Run ``engine`` twice on ``windows``: figures from the first, timing from the second.

    Determinism means the two runs are bit-identical.
    """
    first = engine.predict_proba(windows)
    start = time.perf_counter()
    second = engine.predict_proba(windows)
    elapsed = time.perf_counter() - start
    return ParityReport(
        engine=engine.name,
        n_windows=int(windows.shape[0]),
        deterministic=bool(np.array_equal(first, second)),
        windows_per_s=windows.shape[0] / max(elapsed, 1e-9),
        **parity_figures(first, reference),
    )


def bundled_test_windows(seq_len: int = 30, horizon: int = 10) -> np.ndarray:
    """The held-out test windows of the bundled sample (3,198 with the defaults).

    The same windows the model card evaluates on: the default :class:`Periods`
    split of ``load_prices("sample")`` after validation.
    """
    from stocktrend.data import load_prices
    from stocktrend.pipeline import Periods, prepare
    from stocktrend.validation import validate_prices

    prices, _report = validate_prices(load_prices("sample"))
    _train, _val, test, _split = prepare(
        prices, Periods(), benchmark="^GSPC", horizon=horizon, seq_len=seq_len
    )
    return test.X


# --------------------------------------------------------------------------- selection


@dataclass(frozen=True)
class Selection:
    """Which engine ``auto`` chose, and the parity/speed figures it chose from."""

    engine: str
    reports: tuple[ParityReport, ...]
    cached: bool = False
    key: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "key": self.key,
            "reports": [r.to_dict() for r in self.reports],
        }


def select_engine(
    bundle: ModelBundle,
    windows: np.ndarray,
    *,
    options: EngineOptions | None = None,
    factories: Mapping[str, EngineFactory] | None = None,
) -> tuple[Engine, Selection]:
    """Build every candidate, check each against the reference, keep the fastest that passes.

    ``factories`` defaults to :data:`ENGINE_FACTORIES` and must include
    ``reference``, which is always eligible (it *is* the reference) and is
    the fallback when nothing else passes. A candidate that cannot be built or
    raises while running is reported as unavailable, never chosen.
    """
    options = options or EngineOptions()
    factories = dict(factories if factories is not None else ENGINE_FACTORIES)
    reference_engine = factories.pop("reference")(bundle, options)
    reference_probs = reference_engine.predict_proba(windows)
    built: dict[str, Engine] = {"reference": reference_engine}
    reports = [check_parity(reference_engine, windows, reference_probs)]
    for name, factory in factories.items():
        report, engine = _try_candidate(name, factory, bundle, options, windows, reference_probs)
        reports.append(report)
        logger.info("engine candidate %s", report.summary())
        if engine is not None and report.passed:
            built[name] = engine
        elif engine is not None:
            engine.close()
    passing = [r for r in reports if r.engine in built]
    best = max(passing, key=lambda r: r.windows_per_s)
    for name, engine in built.items():
        if name != best.engine:
            engine.close()
    return built[best.engine], Selection(engine=best.engine, reports=tuple(reports))


def _try_candidate(
    name: str,
    factory: EngineFactory,
    bundle: ModelBundle,
    options: EngineOptions,
    windows: np.ndarray,
    reference: np.ndarray,
) -> tuple[ParityReport, Engine | None]:
    try:
        engine = factory(bundle, options)
        return check_parity(engine, windows, reference), engine
    except Exception as exc:  # a back-end that fails here is simply not a candidate
        logger.warning("engine %s unavailable: %s: %s", name, type(exc).__name__, exc)
        report = ParityReport(name, int(windows.shape[0]), 0.0, 1.0, 1.0, False, 0.0, str(exc))
        return report, None


def _selection_key(bundle: ModelBundle, options: EngineOptions, names: Sequence[str]) -> str:
    """What makes a cached choice valid: checkpoint, CPU, library versions, options."""
    import onnxruntime

    fields = {
        "checkpoint": _bundle_sha(bundle),
        "cpu": _cpu_signature(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "onnxruntime": onnxruntime.__version__,
        "stocktrend": __version__,
        "export_format": EXPORT_FORMAT,
        "batch_size": options.batch_size or "engine default",
        "threads": options.resolved_threads,
        "candidates": list(names),
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]


def _read_selection(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    engine = data.get("engine") if isinstance(data, dict) else None
    return engine if isinstance(engine, str) and engine in ENGINE_FACTORIES else None


# --------------------------------------------------------------------------- entry point


def load_engine(
    checkpoint: str | os.PathLike[str] | ModelBundle,
    engine: str = "auto",
    *,
    batch_size: int | None = None,
    threads: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    parity_windows: np.ndarray | None = None,
    refresh: bool = False,
) -> Engine:
    """An engine for ``checkpoint`` (a path or a loaded :class:`ModelBundle`).

    ``engine="auto"`` reuses the choice cached for this checkpoint, CPU and
    library versions, or makes it: every engine is checked against the reference
    on ``parity_windows`` (default: :func:`bundled_test_windows`) and the fastest
    one that passes wins. ``refresh=True`` forces a new measurement. The choice
    is logged and available as ``Engine.name`` (with the figures in
    ``Engine.details["selection"]`` when measured).

    ``batch_size`` is the chunk each forward pass takes (default: the engine's
    measured best, :data:`ORT_BATCH_SIZE` or :data:`DEFAULT_BATCH_SIZE`);
    ``threads`` the CPU budget of the ONNX Runtime engines (default: all usable).
    """
    bundle = checkpoint if isinstance(checkpoint, ModelBundle) else load_checkpoint(checkpoint)
    options = EngineOptions(
        batch_size=batch_size,
        threads=threads,
        cache_dir=Path(cache_dir) if cache_dir is not None else None,
    )
    if engine != "auto":
        if engine not in ENGINE_FACTORIES:
            raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINE_NAMES)}")
        return ENGINE_FACTORIES[engine](bundle, options)
    return _auto_engine(bundle, options, parity_windows, refresh)


def _auto_engine(
    bundle: ModelBundle,
    options: EngineOptions,
    parity_windows: np.ndarray | None,
    refresh: bool,
) -> Engine:
    key = _selection_key(bundle, options, tuple(ENGINE_FACTORIES))
    record = options.resolved_cache_dir / "auto" / f"{key}.json"
    cached = None if refresh else _read_selection(record)
    if cached is not None:
        try:
            chosen = ENGINE_FACTORIES[cached](bundle, options)
        except Exception as exc:
            logger.warning(
                "cached engine choice %s no longer builds (%s); re-measuring", cached, exc
            )
        else:
            logger.info("engine auto -> %s (cached choice %s)", cached, record)
            chosen.details["selection"] = {"engine": cached, "cached": True, "record": str(record)}
            return chosen
    windows = parity_windows if parity_windows is not None else _default_parity_windows(bundle)
    if windows is None:
        logger.warning("engine auto -> reference (no parity windows fit this checkpoint)")
        return ENGINE_FACTORIES["reference"](bundle, options)
    chosen, selection = select_engine(bundle, windows, options=options)
    selection = Selection(chosen.name, selection.reports, cached=False, key=key)
    atomic_write_bytes(record, json.dumps(selection.to_dict(), indent=2).encode())
    logger.info("engine auto -> %s (measured; %s)", chosen.name, _brief(selection))
    chosen.details["selection"] = selection.to_dict()
    return chosen


def engine_summary(engine: Engine) -> dict[str, Any]:
    """What a scoring run records about its engine: name, chunk size and, for ``auto``, why.

    For an ``auto`` choice the chosen engine's parity figures come from the
    selection (measured now, or read back from the cached record), so a run's
    summary says how far its probabilities may sit from the float32 reference.
    """
    selection = engine.details.get("selection")
    summary: dict[str, Any] = {
        "engine": engine.name,
        "batch_size": engine.batch_size,
        "chosen_by": "auto" if selection else "configuration",
        "cached_choice": bool(selection and selection.get("cached")),
    }
    reports = (selection or {}).get("reports")
    if selection and selection.get("cached"):
        reports = _recorded_reports(Path(selection["record"]))
    chosen = next((r for r in reports or () if r.get("engine") == engine.name), None)
    if chosen is not None:
        summary["parity"] = {
            key: chosen[key] for key in ("argmax_agreement", "max_abs_diff", "windows_per_s")
        }
    summary["description"] = _describe(summary)
    return summary


def _recorded_reports(record: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    reports = data.get("reports") if isinstance(data, dict) else None
    return [r for r in reports if isinstance(r, dict)] if isinstance(reports, list) else []


def _describe(summary: Mapping[str, Any]) -> str:
    text = f"{summary['engine']}, chunks of {summary['batch_size']}"
    if summary["chosen_by"] == "auto":
        text += ", chosen by auto" + (" (cached choice)" if summary["cached_choice"] else "")
    parity = summary.get("parity")
    if parity and summary["engine"] != "reference":
        text += (
            f" (parity vs float32: argmax agreement {parity['argmax_agreement']:.2%}, "
            f"max |dP(up)| {parity['max_abs_diff']:.4f})"
        )
    elif summary["engine"] == "reference":
        text += " (float32 reference)"
    return text


def _default_parity_windows(bundle: ModelBundle) -> np.ndarray | None:
    """The bundled test windows, when this checkpoint reads the project's features."""
    from stocktrend.features import FEATURE_NAMES

    if tuple(bundle.feature_names) != tuple(FEATURE_NAMES):
        return None
    return bundled_test_windows(bundle.sequence_length, bundle.horizon or 10)


def _brief(selection: Selection) -> str:
    return "; ".join(r.summary() for r in selection.reports)


# --------------------------------------------------------------------------- machine


def _available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def _cpu_has_bf16() -> bool:
    flags = _cpu_flags()
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def _cpu_signature() -> dict[str, Any]:
    """CPU model and flags: a cached engine choice is only valid on the same kind of CPU."""
    flags = sorted(_cpu_flags())
    return {
        "machine": platform.machine(),
        "processor": platform.processor(),
        "capability": torch.backends.cpu.get_cpu_capability(),
        "flags_sha": hashlib.sha256(" ".join(flags).encode()).hexdigest()[:16],
        "cpus": _available_cpus(),
    }


def cpu_description() -> str:
    """One line naming the CPU and its low-precision features, for logs and metadata."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    wanted = ("avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8")
    present = [flag for flag in wanted if flag in _cpu_flags()]
    return f"{name}, {_available_cpus()} CPUs, {' '.join(present) or 'no AVX-512'}"
