"""``stocktrend export``: ONNX, int8 ONNX and TorchScript files next to the checkpoint.

Each export is measured where it is made (size, parity against the float32
reference on the bundled test windows, windows/s at batch 128 against the
reference forward) and recorded under ``exports`` in the ``model_metadata.json``
beside the checkpoint, so the published figures always describe the file
actually written. The binaries are build outputs, not sources: regenerate them
with this command rather than committing them.

Every export takes *raw* windows ``(N, 30, 50)`` float32 (the scaler is inside)
and returns class probabilities ``(N, 2)``, exactly like ``predict_proba``.
"""

from __future__ import annotations

import hashlib
import io
import json
import statistics
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from stocktrend.errors import StocktrendError

if TYPE_CHECKING:  # torch, onnx and the engines load when a command runs, not with the CLI
    import numpy as np

    from stocktrend.checkpoint import ModelBundle
    from stocktrend.inference import Engine

__all__ = ["FORMATS", "export_checkpoint", "measure_export", "record_export", "register"]

FORMATS = ("onnx", "int8", "torchscript")
SPEED_BATCH = 128
DEFAULT_MODEL = Path("pretrained_models/best_model_v2.0.ckpt")
_SUFFIXES = {"onnx": ".onnx", "int8": "_int8.onnx", "torchscript": "_scripted.pt"}
_METADATA = "model_metadata.json"  # stocktrend.checkpoint.METADATA_FILENAME, without torch

console = Console()
err_console = Console(stderr=True)


def register(app: typer.Typer) -> None:
    """Add the ``export`` command to ``app`` (the main CLI calls this)."""
    app.command("export")(export)


def export(
    format: Annotated[
        str, typer.Option("--format", "-f", help="onnx | int8 | torchscript")
    ] = "onnx",
    model: Annotated[Path, typer.Option(help="Checkpoint to export")] = DEFAULT_MODEL,
    recipe: Annotated[
        str, typer.Option(help="int8 only: int8-conv (also the widest convs) | int8")
    ] = "int8-conv",
    seconds: Annotated[float, typer.Option(help="Timing budget per measurement round")] = 1.0,
    windows: Annotated[
        int, typer.Option(help="Parity on the first N test windows (0: all 3,198)")
    ] = 0,
) -> None:
    """Export the model next to the checkpoint and record size, parity and speed."""
    try:
        _export(format, model, recipe, seconds, windows)
    except (StocktrendError, ValueError) as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
        raise typer.Exit(code=2) from None


def _export(fmt: str, model: Path, recipe: str, seconds: float, n_windows: int) -> None:
    from stocktrend.checkpoint import load_checkpoint
    from stocktrend.inference import INT8_RECIPES

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if recipe not in INT8_RECIPES:
        raise ValueError(f"unknown int8 recipe {recipe!r}; choose one of {', '.join(INT8_RECIPES)}")
    bundle = load_checkpoint(model)
    with console.status(f"exporting {model.name} as {fmt}..."):
        path = export_checkpoint(bundle, fmt, model, recipe=recipe)
    console.print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    with console.status("measuring parity and speed on the bundled test windows..."):
        record = measure_export(bundle, fmt, path, seconds=seconds, n_windows=n_windows)
    record["int8_recipe"] = recipe if fmt == "int8" else None
    meta = record_export(model, fmt, record)
    parity, speed = record["parity"], record["speed"]
    console.print(
        f"parity: argmax agreement {parity['argmax_agreement']:.4f}, "
        f"max |dP| {parity['max_abs_diff']:.5f}, deterministic {parity['deterministic']} "
        f"-> {'pass' if parity['passed'] else 'FAIL'}"
    )
    console.print(
        f"speed at batch {SPEED_BATCH}: {speed['windows_per_s']:,.0f} windows/s, "
        f"reference {speed['reference_windows_per_s']:,.0f} ({speed['speedup']:.2f}x)"
    )
    console.print(f"recorded under exports.{fmt} in {meta}")
    console.print("table row for pretrained_models/README.md:")
    typer.echo(markdown_row(fmt, record))  # unwrapped, whatever the terminal width


def export_checkpoint(
    bundle: ModelBundle, fmt: str, checkpoint: Path, *, recipe: str = "int8-conv"
) -> Path:
    """Write ``<stem>.onnx``, ``<stem>_int8.onnx`` or ``<stem>_scripted.pt`` beside it."""
    from stocktrend.inference import INT8_RECIPES, export_onnx, quantize_onnx_int8

    target = checkpoint.with_name(checkpoint.stem + _SUFFIXES[fmt])
    if fmt == "onnx":
        return export_onnx(bundle, target)
    if fmt == "int8":
        sibling = checkpoint.with_name(checkpoint.stem + _SUFFIXES["onnx"])
        if _is_export_of(sibling, bundle):  # quantise the float export already made
            return quantize_onnx_int8(sibling, target, INT8_RECIPES[recipe])
        float_graph = target.with_name(f".{target.stem}.float.onnx")
        try:
            export_onnx(bundle, float_graph)
            return quantize_onnx_int8(float_graph, target, INT8_RECIPES[recipe])
        finally:
            float_graph.unlink(missing_ok=True)
    return _export_torchscript(bundle, target)


def _is_export_of(path: Path, bundle: ModelBundle) -> bool:
    """Whether ``path`` is this code's float ONNX export of exactly this checkpoint."""
    if not path.is_file() or bundle.sha256 is None:
        return False
    import onnx

    from stocktrend.inference import EXPORT_FORMAT

    try:
        props = {
            p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props
        }
    except Exception:  # unreadable or foreign: export afresh
        return False
    return (
        props.get("stocktrend.checkpoint_sha256") == bundle.sha256
        and props.get("stocktrend.export_format") == str(EXPORT_FORMAT)
        and "stocktrend.int8_per_tensor" not in props
    )


def _export_torchscript(bundle: ModelBundle, target: Path) -> Path:
    """``torch.jit.trace`` of :class:`InferenceNet` (TorchScript is deprecated upstream)."""
    import torch

    from stocktrend.atomic import atomic_write_bytes
    from stocktrend.inference import InferenceNet

    net = InferenceNet(bundle.model, bundle.scaler)
    example = torch.zeros(2, bundle.sequence_length, len(bundle.feature_names))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # jit deprecation and tracer notes
        traced = torch.jit.trace(net, example)
    handle = io.BytesIO()
    torch.jit.save(traced, handle)
    return atomic_write_bytes(target, handle.getvalue())


def _load_engine_for(bundle: ModelBundle, fmt: str, path: Path) -> Engine:
    """An :class:`Engine` over the exported file, with the engines' default chunking."""
    import torch

    from stocktrend.inference import DEFAULT_BATCH_SIZE, Engine, EngineOptions, engine_from_onnx

    if fmt in ("onnx", "int8"):
        return engine_from_onnx(path, bundle, name=f"export-{fmt}", options=EngineOptions())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(path)).eval()

    def run(windows: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(windows)).numpy()

    return Engine(f"export-{fmt}", bundle, run, batch_size=DEFAULT_BATCH_SIZE)


def measure_export(
    bundle: ModelBundle,
    fmt: str,
    path: Path,
    *,
    seconds: float = 1.0,
    rounds: int = 3,
    n_windows: int = 0,
) -> dict[str, Any]:
    """Size, parity on the bundled test windows and windows/s at batch 128 vs the reference.

    ``n_windows`` > 0 limits parity to the first N test windows (quick checks;
    the published figures use all of them).
    """
    from stocktrend import inference
    from stocktrend.checkpoint import predict_proba

    windows = inference.bundled_test_windows(bundle.sequence_length, bundle.horizon or 10)
    if n_windows > 0:
        windows = windows[:n_windows]
    reference = predict_proba(bundle, windows)
    with _load_engine_for(bundle, fmt, path) as engine:
        report = inference.check_parity(engine, windows, reference)
        speed = _speed(bundle, engine, windows[:SPEED_BATCH], seconds, rounds)
    return {
        "file": path.name,
        "format": fmt,
        "size_bytes": path.stat().st_size,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "checkpoint_sha256": bundle.sha256,
        "input": f"raw windows float32 (N, {bundle.sequence_length}, "
        f"{len(bundle.feature_names)}); the scaler is inside",
        "output": f"probabilities float32 (N, {bundle.config.n_classes}); class 1 = bullish",
        "parity": {
            "windows": "bundled test windows (stocktrend.inference.bundled_test_windows)",
            "n_windows": report.n_windows,
            "argmax_agreement": report.argmax_agreement,
            "max_abs_diff": report.max_abs_diff,
            "mean_abs_diff": report.mean_abs_diff,
            "deterministic": report.deterministic,
            "passed": report.passed,
        },
        "speed": speed,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": _versions(),
    }


def _speed(
    bundle: ModelBundle, engine: Engine, batch: np.ndarray, seconds: float, rounds: int
) -> dict[str, Any]:
    """Median windows/s of the export and of the float32 eager forward, in alternation."""
    import torch

    from stocktrend.inference import cpu_description

    model = bundle.model
    scaled = torch.from_numpy(bundle.scaler.transform(batch))

    def reference() -> None:
        with torch.no_grad():
            torch.softmax(model(scaled), dim=1)

    def candidate() -> None:
        engine.predict_proba(batch)

    samples: dict[str, list[float]] = {"reference": [], "export": []}
    reference()
    candidate()
    for _ in range(rounds):
        samples["reference"].append(_rate(reference, len(batch), seconds))
        samples["export"].append(_rate(candidate, len(batch), seconds))
    ref, exp = (statistics.median(samples[k]) for k in ("reference", "export"))
    return {
        "batch_size": len(batch),
        "windows_per_s": round(exp, 1),
        "reference_windows_per_s": round(ref, 1),
        "speedup": round(exp / ref, 3),
        "chunk_size": engine.batch_size,
        "runtime": engine.details or {"torch_threads": torch.get_num_threads()},
        "method": f"median of {rounds} alternating rounds of ~{seconds:g} s; reference is "
        "the float32 eager forward (model.eval(), torch.no_grad())",
        "machine": cpu_description(),
    }


def _rate(fn: Callable[[], None], n: int, seconds: float) -> float:
    calls, started = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds and calls >= 2:
            return calls * n / elapsed


def _versions() -> dict[str, str]:
    import onnxruntime
    import torch

    from stocktrend import __version__

    return {
        "stocktrend": __version__,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def record_export(checkpoint: Path, fmt: str, record: dict[str, Any]) -> Path:
    """Read-modify-write ``exports.<fmt>`` in the metadata beside the checkpoint.

    Everything else in the file (``checkpoint.sha256`` above all) is left as it
    was; the write is atomic so a concurrent reader sees the old or the new file.
    """
    from stocktrend.atomic import atomic_write_text

    meta_path = checkpoint.parent / _METADATA
    data: dict[str, Any] = {}
    if meta_path.is_file():
        data = json.loads(meta_path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"{meta_path} does not hold a JSON object")
    exports = data.setdefault("exports", {})
    exports[fmt] = record
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    return atomic_write_text(meta_path, text)


def markdown_row(fmt: str, record: dict[str, Any]) -> str:
    """One row of the exports table in ``pretrained_models/README.md``."""
    parity, speed = record["parity"], record["speed"]
    return (
        f"| {fmt} | `{record['file']}` | {record['size_bytes'] / 2**20:.1f} MiB | "
        f"{parity['argmax_agreement']:.2%} | {parity['max_abs_diff']:.4f} | "
        f"{speed['windows_per_s']:,.0f} | {speed['speedup']:.2f}x |"
    )
