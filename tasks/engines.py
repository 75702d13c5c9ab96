"""Inference engines for scoring tasks: settled once per run, shared within a worker process.

A backfill runs many chunk tasks at once on a thread pool. If each built its
own engine, an ONNX Runtime engine would mean one session (about 100 MB) and
one thread per CPU *per chunk in flight*. Instead, a worker process keeps one
engine per (checkpoint file, engine, batch size, threads, cache directory) and
every chunk task shares it: ``InferenceSession.run`` and torch inference are
thread-safe, and the engine's own thread pool, sized to the CPUs, bounds the
parallelism. This cache is orchestration state, like a connection pool; the
domain library (``stocktrend.inference``) stays free of it.
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

from stocktrend.checkpoint import ModelBundle, load_checkpoint
from stocktrend.config import get_settings
from stocktrend.inference import Engine, load_engine

_BUILD_LOCK = threading.Lock()


def open_engine(bundle: ModelBundle, engine: str, batch_size: int | None) -> Engine:
    """A new engine for ``bundle``, configured from the ``STOCKTREND_ENGINE_*`` settings."""
    settings = get_settings()
    return load_engine(
        bundle,
        engine,
        batch_size=batch_size,
        threads=settings.engine_threads,
        cache_dir=settings.engines_dir,
    )


def shared_engine(
    model_path: str, engine: str, batch_size: int | None
) -> tuple[ModelBundle, Engine]:
    """This process's engine (and its checkpoint) for these settings, built on first use.

    Keyed by the file's identity (path, size, modification time) too, so a
    checkpoint replaced in place is loaded afresh rather than served stale.
    """
    settings = get_settings()
    stat = os.stat(model_path)
    key = (
        str(Path(model_path).resolve()),
        stat.st_size,
        stat.st_mtime_ns,
        engine,
        batch_size,
        settings.engine_threads,
        str(settings.engines_dir),
    )
    with _BUILD_LOCK:  # two chunk tasks starting together must not both build
        return _build(*key)


@lru_cache(maxsize=4)
def _build(path: str, *key_and_options: Any) -> tuple[ModelBundle, Engine]:
    _size, _mtime, engine, batch_size, _threads, _cache = key_and_options
    bundle = load_checkpoint(path)
    return bundle, open_engine(bundle, engine, batch_size)
