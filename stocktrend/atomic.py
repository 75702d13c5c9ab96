"""Atomic file writes: readers see the old file or the new one, never half of either.

One recipe for every small file the project writes (checkpoints, registry
copies, ONNX exports, metadata, caches, evaluation files, backfill markers): a
temp file in the target's directory, written, flushed and fsynced, given the
mode of the file it replaces (0644 when new; ``mkstemp`` would leave it
owner-only), ``os.replace``-d onto the target, then the directory fsynced so
the rename survives a power cut. A failure at any step removes the temp file
and leaves the target untouched.

The Parquet prediction dataset keeps its own variant
(:mod:`stocktrend.storage.parquet_store`): its temp names carry a prefix it
sweeps as debris after a crash.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_copy", "atomic_write", "atomic_write_bytes", "atomic_write_text"]


def atomic_write(target: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write`` with a binary file that becomes ``target`` only once it is complete."""
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = 0o644
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        with suppress(OSError):
            os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_directory(path.parent)
    return path


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    return atomic_write(target, lambda handle: handle.write(data))


def atomic_write_text(target: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(target, text.encode("utf-8"))


def atomic_copy(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Copy ``source`` to ``target`` in 1 MiB blocks, atomically."""
    with open(source, "rb") as src:
        return atomic_write(target, lambda handle: shutil.copyfileobj(src, handle, 1 << 20))


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable; not possible on every platform, hence best effort."""
    with suppress(OSError, AttributeError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
