"""Saving and safely loading model checkpoints, ours and the seed's.

Our format is a Lightning-shaped dict, so the seed's own recipe
(``torch.load(path)`` then
``CNNBiLSTMModel(ModelConfig()).load_state_dict(ckpt["state_dict"])``) still
works on it, with ``weights_only=True`` and nothing allow-listed. A
``stocktrend`` section holds everything scoring needs besides the weights
(feature order, scaler, window length, horizon, training
provenance, reference histograms, metrics)::

    {
        "epoch": int, "global_step": int,
        "pytorch-lightning_version": "2.5.0",   # compatibility marker only; no Lightning here
        "state_dict": OrderedDict[str, Tensor], # the 96 contract keys, unprefixed
        "optimizer_states": [dict] or [], "lr_schedulers": [dict] or [],
        "hparams_name": "config",
        "hyper_parameters": ModelConfig fields as a plain dict,
        "stocktrend": {
            "format_version": 1, "model_version": str, "feature_names": [str, ...],
            "scaler": {"mean": [float], "std": [float]},
            "sequence_length": int, "horizon": int,
            "class_names": ["bearish", "bullish"], "seed_class_names": ["Bajista", "Alcista"],
            "training": {...}, "reference_histograms": {"edges": ..., "counts": ...},
            "metrics": {...}, "code_version": str, "created_at": ISO-8601 UTC str,
        },
    }

It holds only tensors and plain Python values, so it loads with
``torch.load(weights_only=True)`` and nothing allow-listed. Loading here always
uses ``weights_only=True``: a checkpoint is data from elsewhere, and a pickle
that imports or calls anything is refused before it runs. The only globals
allowed are the seed's ``pathlib`` path classes in its ``hyper_parameters``,
rebuilt as *pure* paths, which can represent but never touch the filesystem.

A seed checkpoint (or a bare ``state_dict``) carries no feature order and no
scaler; scoring it needs a feature-spec JSON file (:func:`write_feature_spec`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pathlib
import pickle
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import torch

from stocktrend import CLASS_NAMES, SEED_CLASS_NAMES, __version__
from stocktrend.atomic import atomic_write, atomic_write_text
from stocktrend.errors import CheckpointError
from stocktrend.model import CNNBiLSTMModel, ModelConfig
from stocktrend.scaler import Scaler

__all__ = [
    "FORMAT_VERSION",
    "LIGHTNING_COMPAT_VERSION",
    "METADATA_FILENAME",
    "ModelBundle",
    "file_sha256",
    "load_checkpoint",
    "load_weights",
    "predict_proba",
    "read_feature_spec",
    "save_checkpoint",
    "write_feature_spec",
]

FORMAT_VERSION = 1
"""Version of the ``stocktrend`` section; bump when its meaning changes."""

LIGHTNING_COMPAT_VERSION = "2.5.0"
"""Written as ``pytorch-lightning_version`` so Lightning tools accept the file; not a dependency."""

METADATA_FILENAME = "model_metadata.json"
"""Sidecar whose ``checkpoint.sha256`` pins the checkpoint beside it."""

_SECTION = "stocktrend"
# torch's safe_globals context swaps a process-wide allow-list on exit, so two
# loads in parallel threads could strip each other's entries mid-load.
_LOAD_LOCK = threading.Lock()
_LIGHTNING_PREFIX = "model."
_HASH_CHUNK = 1 << 20
_LIST_LIMIT = 10

PathLike = str | os.PathLike[str]


def _seed_safe_globals() -> list[Callable[..., Any] | tuple[Callable[..., Any], str]]:
    """The seed's hparams hold PosixPath/WindowsPath values; rebuild them as pure paths.

    Pure paths never touch the filesystem, and a ``WindowsPath`` cannot even be
    instantiated on Linux (nor a ``PosixPath`` on Windows). Python 3.13 pickles
    them under ``pathlib._local``, hence both spellings.
    """
    pure = {"PosixPath": pathlib.PurePosixPath, "WindowsPath": pathlib.PureWindowsPath}
    return [
        (substitute, f"{module}.{name}")
        for name, substitute in pure.items()
        for module in ("pathlib", "pathlib._local")
    ]


# --------------------------------------------------------------------------- bundle


@dataclass(frozen=True)
class ModelBundle:
    """A model ready to score, with everything needed to feed it correctly.

    ``metadata`` is the checkpoint's ``stocktrend`` section (empty for a seed
    checkpoint or bare ``state_dict``); ``horizon`` is ``None`` when a feature
    spec for such a checkpoint did not state it.
    """

    model: CNNBiLSTMModel
    config: ModelConfig
    feature_names: tuple[str, ...]
    scaler: Scaler
    sequence_length: int
    horizon: int | None
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    sha256: str | None = None

    @property
    def model_version(self) -> str:
        """The saved ``model_version``; for foreign checkpoints, file stem plus hash prefix.

        The hash prefix keeps two different files with the same name apart in
        stored predictions.
        """
        version = self.metadata.get("model_version")
        if version:
            return str(version)
        stem = self.path.stem if self.path is not None else "model"
        return f"{stem}-{self.sha256[:12]}" if self.sha256 else stem


# --------------------------------------------------------------------------- saving


def save_checkpoint(
    path: PathLike,
    model: CNNBiLSTMModel,
    *,
    config: ModelConfig,
    feature_names: Sequence[str],
    scaler: Scaler,
    horizon: int,
    model_version: str,
    training: Mapping[str, Any],
    reference_histograms: Mapping[str, Any],
    metrics: Mapping[str, Any],
    epoch: int = 0,
    global_step: int = 0,
    optimizer_state: Mapping[str, Any] | None = None,
    scheduler_state: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` and its scoring context atomically; returns the final path.

    Atomic (temp file in the same directory, fsync, ``os.replace``) so a crash
    or a concurrent reader never sees a half-written checkpoint, and no temp
    file is left behind on error. ``training``, ``metrics`` and
    ``reference_histograms`` may hold dates, paths and numpy values: they are
    converted to plain types, because anything else would need allow-listing
    at load time.
    """
    names = _validate_save_inputs(model, config, feature_names, scaler, horizon, model_version)
    section = {
        "format_version": FORMAT_VERSION,
        "model_version": model_version,
        "feature_names": names,
        "scaler": scaler.to_dict(),
        "sequence_length": config.sequence_length,
        "horizon": int(horizon),
        "class_names": list(CLASS_NAMES),
        "seed_class_names": list(SEED_CLASS_NAMES),
        "training": _to_plain(training, "training"),
        "reference_histograms": _checked_histograms(reference_histograms, len(names)),
        "metrics": _to_plain(metrics, "metrics"),
        "code_version": __version__,
        "created_at": datetime.now(UTC).isoformat(),
    }
    checkpoint = {
        "epoch": int(epoch),
        "global_step": int(global_step),
        "pytorch-lightning_version": LIGHTNING_COMPAT_VERSION,
        "state_dict": OrderedDict(
            (key, value.detach().cpu().clone()) for key, value in model.state_dict().items()
        ),
        "optimizer_states": _optional_state(optimizer_state, "optimizer_state"),
        "lr_schedulers": _optional_state(scheduler_state, "scheduler_state"),
        "hparams_name": "config",
        "hyper_parameters": config.model_dump(),
        _SECTION: section,
    }
    return atomic_write(path, lambda fh: torch.save(checkpoint, fh))


def _validate_save_inputs(
    model: CNNBiLSTMModel,
    config: ModelConfig,
    feature_names: Sequence[str],
    scaler: Scaler,
    horizon: int,
    model_version: str,
) -> list[str]:
    # Saving mismatched pieces is a caller bug, so these are ValueErrors, not CheckpointErrors.
    names = [str(name) for name in feature_names]
    if not len(names) == config.n_features == scaler.n_features:
        raise ValueError(
            f"feature count mismatch: {len(names)} feature names, config.n_features="
            f"{config.n_features}, scaler.n_features={scaler.n_features}"
        )
    if len(set(names)) != len(names):
        raise ValueError("feature_names contains duplicates")
    model_config = getattr(model, "config", None)
    if model_config is not None and model_config != config:
        raise ValueError("config differs from the config the model was built with")
    if int(horizon) < 1:
        raise ValueError(f"horizon must be at least 1, got {horizon}")
    if not model_version:
        raise ValueError("model_version must be a non-empty string")
    return names


def _checked_histograms(histograms: Mapping[str, Any], n_features: int) -> dict[str, Any]:
    plain = _to_plain(histograms, "reference_histograms")
    for key in ("edges", "counts"):
        if key in plain and len(plain[key]) != n_features:
            raise ValueError(
                f"reference_histograms[{key!r}] covers {len(plain[key])} features, "
                f"expected {n_features}"
            )
    return plain


def _optional_state(state: Mapping[str, Any] | None, where: str) -> list[Any]:
    if state is None:
        return []
    _ensure_weights_only_safe(state, where)
    return [state]


def _to_plain(value: Any, where: str) -> Any:
    """Recursively convert to types ``weights_only`` loads unaided (and JSON accepts)."""
    if isinstance(value, np.generic):  # before float: np.float64 subclasses float
        return value.item()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, os.PathLike | pathlib.PurePath):
        return os.fspath(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str | int):
                raise ValueError(f"{where}: key {key!r} must be a str or int")
            out[key] = _to_plain(item, f"{where}.{key}")
        return out
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value) if isinstance(value, set | frozenset) else value
        return [_to_plain(item, f"{where}[{i}]") for i, item in enumerate(items)]
    raise ValueError(f"{where}: cannot store a {type(value).__name__} in a checkpoint")


def _ensure_weights_only_safe(value: Any, where: str) -> None:
    """Optimizer/scheduler states keep tensors and int keys, so check rather than convert."""
    if value is None or isinstance(value, bool | int | float | str | torch.Tensor):
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            _ensure_weights_only_safe(key, f"{where} key")
            _ensure_weights_only_safe(item, f"{where}.{key}")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _ensure_weights_only_safe(item, f"{where}[{i}]")
        return
    raise ValueError(f"{where}: a {type(value).__name__} would not load with weights_only=True")


# --------------------------------------------------------------------------- feature spec


def write_feature_spec(
    path: PathLike,
    feature_names: Sequence[str],
    scaler: Scaler,
    sequence_length: int,
    horizon: int | None,
) -> Path:
    """Write the JSON a seed checkpoint or bare ``state_dict`` needs to be scored."""
    names = [str(name) for name in feature_names]
    if len(names) != scaler.n_features:
        raise ValueError(f"{len(names)} feature names but the scaler has {scaler.n_features}")
    spec = {
        "feature_names": names,
        "scaler": scaler.to_dict(),
        "sequence_length": int(sequence_length),
        "horizon": None if horizon is None else int(horizon),
    }
    text = json.dumps(spec, indent=2) + "\n"
    return atomic_write_text(path, text)


def read_feature_spec(path: PathLike) -> dict[str, Any]:
    """Read a feature spec; returns ``feature_names`` (list), ``scaler`` (Scaler) and optionals.

    ``sequence_length`` and ``horizon`` are ``None`` when absent.
    """
    spec_path = Path(path)
    hint = "a feature spec is JSON with feature_names and scaler {mean, std}"
    try:
        raw = json.loads(spec_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"feature spec not found: {spec_path}", hint=hint) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read feature spec {spec_path}: {exc}", hint=hint) from None
    if not isinstance(raw, dict) or "feature_names" not in raw or "scaler" not in raw:
        raise CheckpointError(f"feature spec {spec_path} lacks feature_names or scaler", hint=hint)
    names = raw["feature_names"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CheckpointError(f"feature spec {spec_path}: feature_names must be a list of strings")
    try:
        scaler = Scaler.from_dict(raw["scaler"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"feature spec {spec_path}: invalid scaler: {exc}") from None
    return {
        "feature_names": names,
        "scaler": scaler,
        "sequence_length": _optional_int(raw.get("sequence_length"), "sequence_length", spec_path),
        "horizon": _optional_int(raw.get("horizon"), "horizon", spec_path),
    }


def _optional_int(value: Any, name: str, source: Path) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CheckpointError(f"feature spec {source}: {name} must be a positive integer")
    return value


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class _RawCheckpoint:
    """What any accepted file boils down to, before a model is built."""

    state_dict: dict[str, torch.Tensor]
    hparams: Mapping[str, Any] | None
    section: dict[str, Any] | None
    sha256: str


def file_sha256(path: PathLike) -> str:
    """Hex SHA-256 of a file, read in chunks so large checkpoints need little memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def load_weights(
    path: PathLike, *, map_location: str | torch.device = "cpu", verify_metadata: bool = True
) -> tuple[CNNBiLSTMModel, ModelConfig]:
    """Load just the model (eval mode) and its config; no feature spec needed.

    For inspection, fine-tuning or export, where nothing is scored.
    """
    raw = _read_checkpoint(Path(path), map_location, verify_metadata)
    config = _infer_config(raw.hparams, Path(path))
    return _build_model(config, raw.state_dict, Path(path), map_location), config


def load_checkpoint(
    path: PathLike,
    *,
    feature_spec: PathLike | None = None,
    map_location: str | torch.device = "cpu",
    verify_metadata: bool = True,
) -> ModelBundle:
    """Load a checkpoint for scoring: model in eval mode plus feature order and scaler.

    Accepts our format, a seed Lightning checkpoint and a bare ``state_dict``;
    the latter two need ``feature_spec`` (a JSON file, see
    :func:`write_feature_spec`). Given for our format, the spec must agree with
    what the checkpoint holds, so a stale spec cannot silently win.
    """
    ckpt_path = Path(path)
    raw = _read_checkpoint(ckpt_path, map_location, verify_metadata)
    config = _infer_config(raw.hparams, ckpt_path)
    spec = read_feature_spec(feature_spec) if feature_spec is not None else None
    if raw.section is not None:
        names, scaler, seq_len, horizon = _context_from_section(raw.section, ckpt_path)
        if spec is not None:
            _check_spec_agrees(spec, names, scaler, ckpt_path)
    elif spec is not None:
        names, scaler = spec["feature_names"], spec["scaler"]
        seq_len = spec["sequence_length"] or config.sequence_length
        horizon = spec["horizon"]
    else:
        raise CheckpointError(
            f"{ckpt_path} holds weights but no feature names or scaler (a seed Lightning "
            "checkpoint or a bare state_dict), so it cannot be scored as is",
            hint="pass a feature spec: a JSON file with feature_names and scaler {mean, std} "
            "(write one with stocktrend.checkpoint.write_feature_spec), or use load_weights() "
            "for the weights alone",
        )
    _check_context(config, names, scaler, seq_len, ckpt_path)
    model = _build_model(config, raw.state_dict, ckpt_path, map_location)
    return ModelBundle(
        model=model,
        config=config,
        feature_names=tuple(names),
        scaler=scaler,
        sequence_length=seq_len,
        horizon=horizon,
        metadata=raw.section or {},
        path=ckpt_path,
        sha256=raw.sha256,
    )


def _read_checkpoint(
    path: Path, map_location: str | torch.device, verify_metadata: bool
) -> _RawCheckpoint:
    data = _read_bytes(path)
    sha256 = hashlib.sha256(data).hexdigest()
    if verify_metadata:
        _verify_metadata(path, sha256)
    # Load the very bytes that were hashed, so the check cannot be raced.
    obj = _safe_torch_load(data, path, map_location)
    return _classify(obj, path, sha256)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except IsADirectoryError:
        raise CheckpointError(f"checkpoint path is a directory: {path}") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None


def _verify_metadata(path: Path, sha256: str) -> None:
    meta_path = path.parent / METADATA_FILENAME
    if not meta_path.is_file():
        return
    hint = "fix or remove the metadata file, or pass verify_metadata=False"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {meta_path}: {exc}", hint=hint) from None
    entry = meta.get("checkpoint") if isinstance(meta, dict) else None
    if not isinstance(entry, dict) or entry.get("file") != path.name:
        return  # describes some other file (or is the seed's own free-form metadata)
    expected = str(entry.get("sha256") or "").lower()
    if expected != sha256:
        raise CheckpointError(
            f"checkpoint does not match {METADATA_FILENAME}: expected {expected or '(none)'}, "
            f"got {sha256}",
            hint=hint,
        )


def _safe_torch_load(data: bytes, path: Path, map_location: str | torch.device) -> Any:
    try:
        with _LOAD_LOCK, torch.serialization.safe_globals(_seed_safe_globals()):
            return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise _unpickling_error(str(exc), path) from None
    except EOFError:
        raise CheckpointError(f"checkpoint is empty or truncated: {path}") from None
    except RuntimeError as exc:
        message = str(exc)
        if "PytorchStreamReader" in message or "zip archive" in message:
            raise CheckpointError(
                f"checkpoint is truncated or corrupt (unreadable zip archive): {path}",
                hint="copy or download it again",
            ) from None
        raise CheckpointError(f"not a PyTorch checkpoint: {path} ({_first_line(exc)})") from None
    except Exception as exc:  # torch surfaces foreign bytes as KeyError, ValueError, ...
        raise CheckpointError(
            f"not a PyTorch checkpoint: {path} ({type(exc).__name__}: {_first_line(exc)})"
        ) from None


_GLOBAL_RE = re.compile(r"GLOBAL (\S+)")
_REDUCE_RE = re.compile(r"unrecognized function (.+)")


def _unpickling_error(message: str, path: Path) -> CheckpointError:
    found = _GLOBAL_RE.search(message) or _REDUCE_RE.search(message)
    if found:
        return CheckpointError(
            f"refused {path}: the file tries to load a disallowed global ({found.group(1)}); "
            "nothing in it was executed",
            hint="only load checkpoints from sources you trust; this one is not plain weights",
        )
    return CheckpointError(f"not a PyTorch checkpoint: {path} (unreadable pickle)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _classify(obj: Any, path: Path, sha256: str) -> _RawCheckpoint:
    if isinstance(obj, Mapping) and "state_dict" in obj:
        state_dict = obj["state_dict"]
        hparams = obj.get("hyper_parameters")
        section = obj.get(_SECTION)
        if hparams is not None and not isinstance(hparams, Mapping):
            raise CheckpointError(f"{path}: hyper_parameters is not a dict")
        if section is not None and not isinstance(section, dict):
            raise CheckpointError(f"{path}: the {_SECTION} section is not a dict")
    elif _is_tensor_mapping(obj):
        state_dict, hparams, section = obj, None, None
    else:
        raise CheckpointError(
            f"not a model checkpoint: {path} holds a {type(obj).__name__}, "
            "expected a dict with a state_dict or a bare state_dict"
        )
    if not _is_tensor_mapping(state_dict):
        raise CheckpointError(f"{path}: state_dict is not a mapping of names to tensors")
    return _RawCheckpoint(_strip_prefix(dict(state_dict)), hparams, section, sha256)


def _is_tensor_mapping(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _strip_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop Lightning's ``model.`` prefix when a wrapper module held the network."""
    if all(key.startswith(_LIGHTNING_PREFIX) for key in state_dict):
        return {key[len(_LIGHTNING_PREFIX) :]: value for key, value in state_dict.items()}
    return state_dict


def _infer_config(hparams: Mapping[str, Any] | None, path: Path) -> ModelConfig:
    if hparams is None:
        return ModelConfig()
    try:
        return ModelConfig.from_hparams(hparams)
    except pydantic.ValidationError as exc:
        raise CheckpointError(
            f"{path}: hyper_parameters are not a valid model config: {exc}"
        ) from None


def _build_model(
    config: ModelConfig,
    state_dict: dict[str, torch.Tensor],
    path: Path,
    map_location: str | torch.device,
) -> CNNBiLSTMModel:
    model = CNNBiLSTMModel(config)
    _check_state_dict(model.state_dict(), state_dict, path)
    model.load_state_dict(state_dict, strict=True)
    if isinstance(map_location, str | torch.device):
        model.to(torch.device(map_location))
    return model.eval()


def _check_state_dict(
    expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor], path: Path
) -> None:
    """Explain mismatches in contract order, before torch's long combined message."""
    missing = [key for key in expected if key not in found]
    unexpected = [key for key in found if key not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_short_list(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_short_list(unexpected)}")
        raise CheckpointError(
            f"{path}: state_dict does not fit the model; " + "; ".join(parts),
            hint="the checkpoint was saved from a different architecture or config",
        )
    for key, tensor in expected.items():
        if tuple(found[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{path}: shape mismatch at {key}: checkpoint has {tuple(found[key].shape)}, "
                f"model expects {tuple(tensor.shape)}",
                hint="the checkpoint was saved with different hyper-parameters",
            )


def _short_list(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LIST_LIMIT])
    extra = len(keys) - _LIST_LIMIT
    return f"{shown} (and {extra} more)" if extra > 0 else shown


def _context_from_section(
    section: Mapping[str, Any], path: Path
) -> tuple[list[str], Scaler, int, int | None]:
    version = section.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: stocktrend format_version {version!r} is not supported "
            f"(this code reads {FORMAT_VERSION})",
            hint="upgrade stocktrend or re-export the checkpoint",
        )
    try:
        names = [str(name) for name in section["feature_names"]]
        scaler = Scaler.from_dict(section["scaler"])
        seq_len = int(section["sequence_length"])
        horizon = section.get("horizon")
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: malformed {_SECTION} section: {exc}") from None
    return names, scaler, seq_len, None if horizon is None else int(horizon)


def _check_spec_agrees(
    spec: Mapping[str, Any], names: list[str], scaler: Scaler, path: Path
) -> None:
    other: Scaler = spec["scaler"]
    same_scaler = other.n_features == scaler.n_features and bool(
        np.allclose(other.mean, scaler.mean) and np.allclose(other.std, scaler.std)
    )
    if list(spec["feature_names"]) != names or not same_scaler:
        raise CheckpointError(
            f"the feature spec disagrees with the feature names or scaler stored in {path}",
            hint="drop feature_spec: this checkpoint carries its own",
        )


def _check_context(
    config: ModelConfig, names: Sequence[str], scaler: Scaler, seq_len: int, path: Path
) -> None:
    if not len(names) == config.n_features == scaler.n_features:
        raise CheckpointError(
            f"{path}: {len(names)} feature names and a scaler for {scaler.n_features} features, "
            f"but the model takes {config.n_features}"
        )
    if len(set(names)) != len(names):
        raise CheckpointError(f"{path}: duplicate feature names")
    if seq_len != config.sequence_length:
        raise CheckpointError(
            f"{path}: sequence_length {seq_len} differs from the model's {config.sequence_length}"
        )


# --------------------------------------------------------------------------- scoring


def predict_proba(bundle: ModelBundle, X: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities ``(N, n_classes)`` float32 for raw windows ``(N, T, F)``.

    Raw means unscaled, as ``make_windows`` produces them: the bundle's scaler is
    applied here so scoring can never use statistics other than the training
    ones. Batching bounds memory; results do not depend on ``batch_size``
    because the model runs in eval mode (temporarily, if a caller left it training).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    windows = _validated_windows(bundle, X)
    n_classes = bundle.config.n_classes
    if windows.shape[0] == 0:
        return np.zeros((0, n_classes), dtype=np.float32)
    model = bundle.model
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            parts = [
                _predict_batch(model, bundle.scaler, windows[start : start + batch_size], device)
                for start in range(0, windows.shape[0], batch_size)
            ]
    finally:
        model.train(was_training)
    return np.concatenate(parts, axis=0)


def _validated_windows(bundle: ModelBundle, X: np.ndarray) -> np.ndarray:
    windows = np.asarray(X)
    expected = (bundle.sequence_length, len(bundle.feature_names))
    if windows.ndim != 3 or tuple(windows.shape[1:]) != expected:
        raise ValueError(
            f"expected windows of shape (N, {expected[0]}, {expected[1]}), got {windows.shape}"
        )
    if not np.issubdtype(windows.dtype, np.number):
        raise ValueError(f"windows must be numeric, got dtype {windows.dtype}")
    bad = int(np.size(windows) - np.count_nonzero(np.isfinite(windows)))
    if bad:
        raise ValueError(f"windows hold {bad} non-finite values; the model would emit NaN")
    return windows


def _predict_batch(
    model: CNNBiLSTMModel, scaler: Scaler, batch: np.ndarray, device: torch.device
) -> np.ndarray:
    scaled = torch.from_numpy(np.ascontiguousarray(scaler.transform(batch))).to(device)
    probabilities = torch.softmax(model(scaled).float(), dim=1)
    return probabilities.cpu().numpy().astype(np.float32, copy=False)
