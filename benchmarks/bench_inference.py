"""Inference engines against the plain float32 eager forward, in one process, alternating.

Run: ``.venv/bin/python benchmarks/bench_inference.py [--model PATH] [--rounds 3]
[--seconds 1.0] [--compile] [--backfill] [--stream N]``.

The reference is the seed's way of running the model: the same weights in a
fresh ``CNNBiLSTMModel``, ``model.eval()``, ``torch.no_grad()``, float32, on
windows that are already scaled (so the reference is not charged for scaling;
every engine is, because engines take raw windows). For each batch size
(1, 16, 128, 512) every engine and the reference run in turn, ``--rounds``
times, each for about ``--seconds``; the median windows/s is reported with its
ratio to the reference's median. Parity figures are on the bundled test
windows (3,198). Prints peak RSS. No assertion on time: a measurement, not a test.

``--backfill`` adds features -> windows -> probabilities on a synthetic
universe (``universe.replicated_universe``), scored with the current path
(``checkpoint.predict_proba``) and with ``auto``'s engine. ``--stream N`` pushes
N windows through ``predict_proba_iter`` and reports the RSS growth.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from stocktrend.checkpoint import ModelBundle, load_checkpoint, predict_proba
from stocktrend.inference import (
    ENGINE_FACTORIES,
    Engine,
    EngineOptions,
    InferenceNet,
    ParityReport,
    bundled_test_windows,
    check_parity,
    cpu_description,
    load_engine,
)
from stocktrend.model import CNNBiLSTMModel

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "pretrained_models" / "best_model_v2.0.ckpt"
BATCH_SIZES = (1, 16, 128, 512)
TARGETS = {128: 5.0, 16: 3.0}

Predict = Callable[[np.ndarray], object]


def main() -> None:
    args = _parse_args()
    bundle = load_checkpoint(args.model)
    windows = bundled_test_windows(bundle.sequence_length, bundle.horizon or 10)
    print(
        f"machine: {cpu_description()}; "
        f"torch {torch.__version__} with {torch.get_num_threads()} threads"
    )
    print(f"model: {args.model} ({bundle.model_version}); parity windows: {windows.shape}")

    seed_model = _seed_model(bundle)
    scaled = torch.from_numpy(bundle.scaler.transform(windows))
    reference = _seed_probabilities(seed_model, scaled)
    engines = _build_engines(bundle, args.compile)

    print("\nparity against the float32 reference (bundled test windows):")
    reports = {name: check_parity(engine, windows, reference) for name, engine in engines.items()}
    for report in reports.values():
        print("  " + report.summary())

    print(f"\nthroughput, windows/s (median of {args.rounds} alternating rounds):")
    table = _throughput(seed_model, scaled, windows, engines, args.rounds, args.seconds)
    _print_table(table, reports)

    chosen = load_engine(bundle, "auto", batch_size=args.batch_size, parity_windows=windows)
    print(f"\nauto chose: {chosen.name} ({_selection_line(chosen)})")
    _print_targets(chosen.name, table, reports)
    if args.backfill:
        _backfill(bundle, chosen, args.backfill_tickers, args.backfill_sessions)
    if args.stream:
        _stream(chosen, windows, args.stream)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS: {peak:,.0f} MB (whole process: all engines loaded at once)")


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=None, help="auto's chunk size")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--backfill", action="store_true", help="end-to-end backfill timing")
    parser.add_argument("--backfill-tickers", type=int, default=50)
    parser.add_argument("--backfill-sessions", type=int, default=1000)
    parser.add_argument("--stream", type=int, default=0, help="windows to stream (0: skip)")
    return parser.parse_args()


def _seed_model(bundle: ModelBundle) -> CNNBiLSTMModel:
    """A fresh model holding the same weights, run the way the seed ran it."""
    model = CNNBiLSTMModel(bundle.config)
    model.load_state_dict(bundle.model.state_dict())
    model.eval()
    return model


def _seed_forward(model: CNNBiLSTMModel, scaled: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(model(scaled), dim=1)


def _seed_probabilities(model: CNNBiLSTMModel, scaled: torch.Tensor) -> np.ndarray:
    parts = [_seed_forward(model, scaled[i : i + 512]) for i in range(0, len(scaled), 512)]
    return torch.cat(parts).numpy()


def _build_engines(bundle: ModelBundle, with_compile: bool) -> dict[str, Engine]:
    """Every registered engine with its default chunking, plus thread and chunk variants.

    ``X/1xN``: one session with N intra-op threads instead of N single-threaded
    workers; ``X@256``: chunks of 256 instead of the default.
    """
    engines: dict[str, Engine] = {}
    variants = [(name, name, EngineOptions()) for name in ENGINE_FACTORIES if name != "reference"]
    one_session = EngineOptions(workers=1)
    variants += [
        (f"{name}/1x{one_session.resolved_threads}", name, one_session)
        for name in ("onnx", "int8-conv")
    ]
    variants += [("int8-conv@256", "int8-conv", EngineOptions(batch_size=256))]
    for label, name, options in variants:
        rss = _rss_mb()
        try:
            engine = ENGINE_FACTORIES[name](bundle, options)
        except Exception as exc:
            print(f"  {label}: unavailable ({type(exc).__name__}: {exc})")
            continue
        engine.name = label
        engines[label] = engine
        workers = engine.details.get("workers")
        layout = f", {workers} worker(s) x {engine.details.get('intra_op_threads')} thread(s)"
        print(
            f"  built {label:<14} chunks of {engine.batch_size}{layout if workers else ''} "
            f"(+{_rss_mb() - rss:,.0f} MB RSS)"
        )
    if with_compile:
        engines["compile"] = _compile_engine(bundle, 256)
    return engines


def _compile_engine(bundle: ModelBundle, batch_size: int) -> Engine:
    """torch.compile (inductor) of InferenceNet: timed here, not offered by ``auto``."""
    net = InferenceNet(bundle.model, bundle.scaler)
    compiled = torch.compile(net, dynamic=True)

    def run(chunk: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return compiled(torch.from_numpy(chunk)).numpy()

    started = time.perf_counter()
    run(np.zeros((batch_size, bundle.sequence_length, len(bundle.feature_names)), np.float32))
    print(f"  built compile      (first call {time.perf_counter() - started:.0f} s)")
    return Engine("compile", bundle, run, batch_size=batch_size)


def _throughput(
    seed_model: CNNBiLSTMModel,
    scaled: torch.Tensor,
    windows: np.ndarray,
    engines: dict[str, Engine],
    rounds: int,
    seconds: float,
) -> dict[int, dict[str, float]]:
    table: dict[int, dict[str, float]] = {}
    for batch in BATCH_SIZES:
        runs: dict[str, Predict] = {
            "reference": lambda _x, b=batch: _seed_forward(seed_model, scaled[:b])
        }
        runs.update({name: engine.predict_proba for name, engine in engines.items()})
        samples: dict[str, list[float]] = {name: [] for name in runs}
        x = np.ascontiguousarray(windows[:batch])
        for fn in runs.values():
            fn(x)  # warm-up: first-call allocations, oneDNN primitive creation
        for _ in range(rounds):
            for name, fn in runs.items():
                samples[name].append(_rate(fn, x, seconds))
        table[batch] = {name: statistics.median(values) for name, values in samples.items()}
        print(f"  batch {batch:>3}: " + ", ".join(f"{k} {v:,.0f}" for k, v in table[batch].items()))
        sys.stdout.flush()
    return table


def _rate(fn: Predict, x: np.ndarray, seconds: float) -> float:
    calls, started = 0, time.perf_counter()
    while True:
        fn(x)
        calls += 1
        elapsed = time.perf_counter() - started
        if elapsed >= seconds and calls >= 2:
            return calls * x.shape[0] / elapsed


def _print_table(table: dict[int, dict[str, float]], reports: dict[str, ParityReport]) -> None:
    names = list(next(iter(table.values())))
    head = f"\n| engine | parity | {' | '.join(f'batch {b}' for b in table)} |"
    print(head)
    print("|---|---|" + "---|" * len(table))
    for name in names:
        if name == "reference":
            verdict = "reference"
        else:
            r = reports[name]
            verdict = (
                f"{'pass' if r.passed else 'FAIL'} {r.argmax_agreement:.2%} / {r.max_abs_diff:.4f}"
            )
        cells = []
        for batch in table:
            rate, base = table[batch][name], table[batch]["reference"]
            cells.append(f"{rate:,.0f} ({rate / base:.2f}x)")
        print(f"| {name} | {verdict} | {' | '.join(cells)} |")


def _selection_line(engine: Engine) -> str:
    selection = engine.details.get("selection", {})
    if selection.get("cached"):
        return f"cached choice {selection.get('record')}"
    return "; ".join(
        f"{r['engine']} {'pass' if r['passed'] else 'fail'} {r['windows_per_s']:,.0f}/s"
        for r in selection.get("reports", [])
    )


def _print_targets(
    chosen: str, table: dict[int, dict[str, float]], reports: dict[str, ParityReport]
) -> None:
    passed = chosen == "reference" or reports[chosen].passed
    for batch, target in TARGETS.items():
        ratio = table[batch][chosen] / table[batch]["reference"]
        verdict = "met" if ratio >= target and passed else "NOT met"
        print(
            f"  target >= {target:.0f}x at batch {batch}: {ratio:.2f}x, "
            f"parity {'held' if passed else 'failed'} -> {verdict}"
        )


def _backfill(bundle: ModelBundle, engine: Engine, n_tickers: int, n_sessions: int) -> None:
    """Features -> windows -> probabilities for the last 250 sessions of a synthetic universe."""
    sys.path.insert(0, str(Path(__file__).parent))
    from universe import replicated_universe

    from stocktrend.scoring import build_scoring_windows
    from stocktrend.validation import validate_prices

    prices, _ = validate_prices(replicated_universe(n_tickers, n_sessions))
    sessions = sorted(prices["date"].unique())[-250:]
    tickers = sorted(t for t in prices["ticker"].unique() if t != "^GSPC")
    started = time.perf_counter()
    X, _index, _skipped = build_scoring_windows(
        prices, sessions, tickers, benchmark="^GSPC", seq_len=bundle.sequence_length
    )
    build = time.perf_counter() - started
    print(f"\nbackfill: {len(tickers)} tickers x 250 sessions -> {len(X):,} windows")
    print(f"  features+windows {build:.2f} s")
    paths = {
        "before (checkpoint.predict_proba, batch 256)": lambda: predict_proba(bundle, X, 256),
        f"after ({engine.name})": lambda: engine.predict_proba(X),
    }
    seconds: dict[str, list[float]] = {label: [] for label in paths}
    for _ in range(2):  # alternate, keep the better of two: the machine is shared
        for label, score in paths.items():
            started = time.perf_counter()
            score()
            seconds[label].append(time.perf_counter() - started)
    for label, values in seconds.items():
        best = min(values)
        total = build + best
        print(
            f"  {label}: scoring {best:.2f} s ({len(X) / best:,.0f} windows/s); "
            f"end to end {total:.2f} s ({len(X) / total:,.0f} windows/s)"
        )


def _stream(engine: Engine, windows: np.ndarray, total: int) -> None:
    """N windows through predict_proba_iter in batches of 4,096; RSS must stay flat."""

    def batches() -> Iterator[np.ndarray]:
        made = 0
        while made < total:
            n = min(4096, total - made)
            yield np.resize(windows, (n, *windows.shape[1:])).copy()
            made += n

    before, started, count = _rss_mb(), time.perf_counter(), 0
    for probs in engine.predict_proba_iter(batches(), prefetch=1):
        count += probs.shape[0]
    seconds = time.perf_counter() - started
    print(
        f"\nstreamed {count:,} windows in {seconds:.1f} s ({count / seconds:,.0f}/s); "
        f"RSS {before:,.0f} -> {_rss_mb():,.0f} MB"
    )


def _rss_mb() -> float:
    """Current resident set size (Linux), for per-engine deltas."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * resource.getpagesize() / 2**20


if __name__ == "__main__":
    main()
