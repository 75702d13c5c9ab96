"""Inference engines: parity with the float32 reference, determinism, auto, streaming, exports.

Parity runs on all 3,198 bundled test windows with the pretrained model, since
those figures are the contract; everything else uses a few hundred windows.
Exports are built once per module into a shared cache directory.
"""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import typer
from typer.testing import CliRunner

from stocktrend.checkpoint import METADATA_FILENAME, ModelBundle, load_checkpoint, predict_proba
from stocktrend.cli_export import export_checkpoint, record_export, register
from stocktrend.inference import (
    ENGINE_FACTORIES,
    EXPORT_FORMAT,
    PARITY_MAX_ABS_DIFF,
    PARITY_MIN_AGREEMENT,
    Engine,
    EngineOptions,
    InferenceNet,
    bundled_test_windows,
    check_parity,
    load_engine,
    parity_figures,
    select_engine,
)

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED = ROOT / "pretrained_models" / "best_model_v2.0.ckpt"
ENGINES = [name for name in ENGINE_FACTORIES if name != "reference"]


@pytest.fixture(scope="module")
def bundle() -> ModelBundle:
    return load_checkpoint(PRETRAINED)


@pytest.fixture(scope="module")
def windows() -> np.ndarray:
    return bundled_test_windows()


@pytest.fixture(scope="module")
def reference(bundle: ModelBundle, windows: np.ndarray) -> np.ndarray:
    return predict_proba(bundle, windows)


@pytest.fixture(scope="module")
def exported(bundle: ModelBundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``stocktrend export --format onnx``'s file, made once (the export takes ~10 s)."""
    return export_checkpoint(bundle, "onnx", tmp_path_factory.mktemp("export") / PRETRAINED.name)


@pytest.fixture(scope="module")
def options(
    bundle: ModelBundle, exported: Path, tmp_path_factory: pytest.TempPathFactory
) -> EngineOptions:
    """One engine cache for the module, seeded with the export above (same function)."""
    cache = tmp_path_factory.mktemp("engines")
    seeded = cache / bundle.sha256[:16] / f"inference_v{EXPORT_FORMAT}.onnx"
    seeded.parent.mkdir(parents=True)
    shutil.copyfile(exported, seeded)
    return EngineOptions(cache_dir=cache)  # each engine's default chunking


@pytest.fixture(scope="module")
def engines(bundle: ModelBundle, options: EngineOptions) -> Iterator[dict[str, Engine]]:
    built: dict[str, Engine] = {}
    for name, factory in ENGINE_FACTORIES.items():
        try:
            built[name] = factory(bundle, options)
        except RuntimeError as exc:  # e.g. bf16 on a CPU without native bfloat16
            if name != "bf16":
                raise
            print(f"bf16 unavailable: {exc}")
    yield built
    for engine in built.values():
        engine.close()


def test_bundled_test_windows_are_the_model_cards(windows: np.ndarray) -> None:
    assert windows.shape == (3198, 30, 50) and windows.dtype == np.float32


def test_reference_engine_is_predict_proba_bit_for_bit(
    engines: dict[str, Engine], windows: np.ndarray, reference: np.ndarray
) -> None:
    assert np.array_equal(engines["reference"].predict_proba(windows[:300]), reference[:300])


def test_inference_net_computes_the_checkpoint_function(
    bundle: ModelBundle, windows: np.ndarray, reference: np.ndarray
) -> None:
    net = InferenceNet(bundle.model, bundle.scaler)
    with torch.inference_mode():
        probs = net(torch.from_numpy(windows[:200])).numpy()
    np.testing.assert_allclose(probs, reference[:200], atol=1e-5)


@pytest.mark.parametrize("name", ENGINES)
def test_engine_parity_on_the_bundled_test_windows(
    name: str, engines: dict[str, Engine], windows: np.ndarray, reference: np.ndarray
) -> None:
    if name not in engines:
        pytest.skip(f"{name} is not available on this CPU")
    figures = parity_figures(engines[name].predict_proba(windows), reference)
    print(name, figures)
    assert figures["argmax_agreement"] >= PARITY_MIN_AGREEMENT
    assert figures["max_abs_diff"] <= PARITY_MAX_ABS_DIFF


@pytest.mark.parametrize("name", list(ENGINE_FACTORIES))
def test_engine_is_deterministic(
    name: str, engines: dict[str, Engine], windows: np.ndarray
) -> None:
    if name not in engines:
        pytest.skip(f"{name} is not available on this CPU")
    sample = windows[::16]
    first, second = engines[name].predict_proba(sample), engines[name].predict_proba(sample)
    assert first.dtype == np.float32 and first.shape == (len(sample), 2)
    assert np.array_equal(first, second)


def test_engine_checks_its_input(engines: dict[str, Engine], windows: np.ndarray) -> None:
    engine = engines["onnx"]
    with pytest.raises(ValueError, match="shape"):
        engine.predict_proba(windows[:4, :, :10])
    bad = windows[:4].copy()
    bad[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        engine.predict_proba(bad)
    assert engine.predict_proba(windows[:0]).shape == (0, 2)


def test_batch_of_one_works_for_every_engine(
    engines: dict[str, Engine], windows: np.ndarray, reference: np.ndarray
) -> None:
    for engine in engines.values():
        probs = engine.predict_proba(windows[:1])
        assert probs.shape == (1, 2)
        assert abs(float(probs[0, 1]) - float(reference[0, 1])) <= PARITY_MAX_ABS_DIFF


# --------------------------------------------------------------------------- streaming


def _cut(x: np.ndarray, sizes: list[int]) -> Iterator[np.ndarray]:
    start = 0
    for size in sizes:
        yield x[start : start + size]
        start += size


@pytest.mark.parametrize("prefetch", [0, 2])
def test_streaming_over_many_batches_equals_one_shot(
    bundle: ModelBundle, options: EngineOptions, windows: np.ndarray, prefetch: int
) -> None:
    # int8 quantises activations per chunk, so it is the engine where chunk
    # boundaries would show; the stream must re-cut to the same boundaries.
    engine = ENGINE_FACTORIES["int8"](bundle, EngineOptions(64, cache_dir=options.cache_dir))
    x = windows[:400]
    sizes = [1, 7, 0, 100, 50, 64, 3, 175]
    assert sum(sizes) == len(x)
    parts = list(engine.predict_proba_iter(_cut(x, sizes), prefetch=prefetch))
    assert [len(p) for p in parts] == sizes
    assert np.array_equal(np.concatenate(parts), engine.predict_proba(x))
    engine.close()


@pytest.mark.parametrize("prefetch", [0, 2])
def test_streaming_is_lazy_and_bounded(
    engines: dict[str, Engine], windows: np.ndarray, prefetch: int
) -> None:
    """An endless source still yields results, holding at most a chunk plus a few batches."""
    engine = engines["onnx"]
    pulled = {"rows": 0}

    def endless() -> Iterator[np.ndarray]:
        for batch in itertools.cycle([windows[:40], windows[40:50]]):
            pulled["rows"] += len(batch)
            yield batch

    stream = engine.predict_proba_iter(endless(), prefetch=prefetch)
    yielded = 0
    sizes = []
    for result in itertools.islice(stream, 8):
        yielded += len(result)
        sizes.append(len(result))
        # unscored or unclaimed rows: one chunk, the batch in hand, and the prefetched ones
        assert pulled["rows"] - yielded <= engine.batch_size + 40 * (1 + prefetch)
    stream.close()
    assert sizes == [40, 10] * 4


def test_streaming_reraises_source_errors(engines: dict[str, Engine], windows: np.ndarray) -> None:
    def failing() -> Iterator[np.ndarray]:
        yield windows[:10]
        raise OSError("feature store went away")

    with pytest.raises(OSError, match="went away"):
        list(engines["onnx"].predict_proba_iter(failing(), prefetch=1))


# --------------------------------------------------------------------------- auto


def _stub(bundle: ModelBundle, name: str, probs_for: dict[bytes, np.ndarray], noise: float):
    """A very fast engine answering from a table of reference results, plus ``noise``."""

    def runner(chunk: np.ndarray) -> np.ndarray:
        out = np.stack([probs_for[w.tobytes()] for w in chunk]).astype(np.float32)
        if noise:
            out[:, 1] = np.clip(out[:, 1] + noise * np.sign(0.5 - out[:, 1]), 0, 1)
            out[:, 0] = 1 - out[:, 1]
        return out

    return lambda b, o: Engine(name, bundle, runner, batch_size=o.chunk(32))


def test_auto_never_picks_an_engine_that_fails_parity(
    bundle: ModelBundle, windows: np.ndarray, reference: np.ndarray, options: EngineOptions
) -> None:
    sample, expected = windows[:96], reference[:96]
    table = {w.tobytes(): p for w, p in zip(sample, expected, strict=True)}
    flaky_calls = itertools.count()

    def flaky(b: ModelBundle, o: EngineOptions) -> Engine:
        def run(chunk: np.ndarray) -> np.ndarray:
            out = np.stack([table[w.tobytes()] for w in chunk])
            return out + np.float32(1e-6 * next(flaky_calls))  # differs run to run

        return Engine("flaky", b, run, batch_size=o.chunk(32))

    def crashing(b: ModelBundle, o: EngineOptions) -> Engine:
        raise RuntimeError("no such accelerator")

    factories = {
        "reference": ENGINE_FACTORIES["reference"],
        "broken": _stub(bundle, "broken", table, noise=0.2),  # flips every window, fastest
        "flaky": flaky,
        "crashing": crashing,
    }
    chosen, selection = select_engine(bundle, sample, options=options, factories=factories)
    verdicts = {r.engine: r.passed for r in selection.reports}
    assert chosen.name == "reference"
    assert verdicts == {"reference": True, "broken": False, "flaky": False, "crashing": False}
    broken = next(r for r in selection.reports if r.engine == "broken")
    assert broken.windows_per_s > 0 and broken.argmax_agreement == 0.0  # measured, rejected

    factories["exact"] = _stub(bundle, "exact", table, noise=0.0)
    chosen, selection = select_engine(bundle, sample, options=options, factories=factories)
    passing = [r for r in selection.reports if r.passed]
    assert {r.engine for r in passing} == {"reference", "exact"}
    # the rule, whatever the timings were: the fastest engine among those that pass
    assert chosen.name == max(passing, key=lambda r: r.windows_per_s).engine


def test_load_engine_auto_measures_once_then_reuses_the_choice(
    bundle: ModelBundle, windows: np.ndarray, options: EngineOptions
) -> None:
    sample = windows[::20]
    first = load_engine(bundle, "auto", cache_dir=options.cache_dir, parity_windows=sample)
    selection = first.details["selection"]
    assert not selection.get("cached")
    reports = {r["engine"]: r for r in selection["reports"]}
    assert first.name in reports and reports[first.name]["passed"]
    passing = [r for r in reports.values() if r["passed"]]
    assert reports[first.name]["windows_per_s"] == max(r["windows_per_s"] for r in passing)
    second = load_engine(bundle, "auto", cache_dir=options.cache_dir, parity_windows=sample)
    assert second.name == first.name and second.details["selection"]["cached"]
    first.close()
    second.close()


def test_load_engine_by_name_and_unknown_names(bundle: ModelBundle, options: EngineOptions) -> None:
    engine = load_engine(bundle, "onnx", cache_dir=options.cache_dir, batch_size=32, threads=1)
    assert engine.name == "onnx" and engine.batch_size == 32
    assert engine.details["workers"] == 1
    engine.close()
    with pytest.raises(ValueError, match="unknown engine"):
        load_engine(bundle, "tpu")


# --------------------------------------------------------------------------- exports


def test_exports_round_trip(
    bundle: ModelBundle, exported: Path, windows: np.ndarray, reference: np.ndarray
) -> None:
    """Each file loads in its own runtime (no stocktrend code) and matches the reference."""
    assert exported.name == "best_model_v2.0.onnx"
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map["stocktrend.checkpoint_sha256"] == (
        bundle.sha256
    )
    (probs,) = session.run(None, {session.get_inputs()[0].name: windows[:64]})
    np.testing.assert_allclose(probs, reference[:64], atol=1e-5)

    checkpoint = exported.with_name(PRETRAINED.name)  # int8 reuses the float export beside it
    int8 = export_checkpoint(bundle, "int8", checkpoint)
    assert (
        int8.name == "best_model_v2.0_int8.onnx" and int8.stat().st_size < exported.stat().st_size
    )
    assert not list(exported.parent.glob(".*"))  # no temporary files left behind
    session = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    (probs,) = session.run(None, {"windows": windows[:256]})
    assert np.abs(probs[:, 1] - reference[:256, 1]).max() <= PARITY_MAX_ABS_DIFF

    scripted = export_checkpoint(bundle, "torchscript", checkpoint)
    assert scripted.name == "best_model_v2.0_scripted.pt"
    module = torch.jit.load(str(scripted))
    with torch.inference_mode():
        probs = module(torch.from_numpy(windows[:64])).numpy()
    np.testing.assert_allclose(probs, reference[:64], atol=1e-5)


def test_record_export_keeps_the_rest_of_the_metadata(tmp_path: Path) -> None:
    original = json.loads((PRETRAINED.parent / METADATA_FILENAME).read_text())
    original.pop("exports", None)  # the real file may already record exports
    (tmp_path / METADATA_FILENAME).write_text(json.dumps(original, indent=2))
    ckpt = tmp_path / "best_model_v2.0.ckpt"
    record_export(ckpt, "onnx", {"file": "best_model_v2.0.onnx", "size_bytes": 1})
    record_export(ckpt, "int8", {"file": "best_model_v2.0_int8.onnx", "size_bytes": 2})
    updated = json.loads((tmp_path / METADATA_FILENAME).read_text())
    assert set(updated["exports"]) == {"onnx", "int8"}
    del updated["exports"]
    assert updated == original  # checkpoint.sha256 and everything else untouched


def test_export_command_writes_file_and_metadata(
    tmp_path: Path, windows: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same windows, without rebuilding them from prices (3-4 s).
    monkeypatch.setattr("stocktrend.inference.bundled_test_windows", lambda *a: windows)
    ckpt = tmp_path / PRETRAINED.name
    shutil.copyfile(PRETRAINED, ckpt)
    shutil.copyfile(PRETRAINED.parent / METADATA_FILENAME, tmp_path / METADATA_FILENAME)
    app = typer.Typer()
    register(app)

    @app.callback()
    def _root() -> None:  # a group, as in the real CLI
        pass

    args = ["export", "--format", "torchscript", "--model", str(ckpt), "--seconds", "0.05"]
    result = CliRunner().invoke(app, [*args, "--windows", "200"])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / METADATA_FILENAME).read_text())["exports"]["torchscript"]
    assert (tmp_path / record["file"]).stat().st_size == record["size_bytes"]
    assert record["parity"]["passed"] and record["parity"]["n_windows"] == 200
    assert record["speed"]["batch_size"] == 128 and record["speed"]["windows_per_s"] > 0
    bad = CliRunner().invoke(app, ["export", "--format", "tflite", "--model", str(ckpt)])
    assert bad.exit_code == 2 and "unknown format" in bad.output


def test_check_parity_reports_figures(engines: dict[str, Engine], windows: np.ndarray) -> None:
    sample = windows[:64]
    report = check_parity(engines["reference"], sample, engines["reference"].predict_proba(sample))
    assert report.passed and report.argmax_agreement == 1.0 and report.max_abs_diff == 0.0
    assert report.to_dict()["passed"] is True and "pass" in report.summary()
