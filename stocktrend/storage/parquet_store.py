"""Predictions as a hive-partitioned Parquet dataset that any reader can open without us.

Layout under ``root`` (default ``settings.predictions_dir``)::

    as_of_date=2024-01-02/model_version=v2.0/data.parquet
    as_of_date=2024-01-02/model_version=v2.0%2Bcpu/data.parquet   # "v2.0+cpu", URL-quoted
    _locks/2024-01-02_v2.0.lock                                   # writer locks, never data

One file per (day, model version), rows sorted by ticker. The two partition
columns live **only in the path**, not inside the files. Keeping them in the
files as well makes ``pyarrow.dataset(root, partitioning="hive")`` and
``pandas.read_parquet(root)`` fail outright: they infer ``string`` /
``dictionary<string>`` for the path value and refuse to merge it with the
file's ``date32``. Path-only gives, with no extra arguments:

* DuckDB ``read_parquet('root/**/*.parquet', hive_partitioning = true)``:
  ``as_of_date DATE``, ``model_version VARCHAR`` (pin them with ``hive_types``
  as :mod:`stocktrend.storage.queries` does, or an all-digit version becomes
  ``BIGINT``);
* pyarrow ``dataset(root, partitioning="hive")``: both columns as strings;
* ``pandas.read_parquet(root)``: both columns as categoricals of strings;

each with the right values and no duplicated column. For typed columns in
pyarrow or pandas pass :func:`partitioning` (``date32`` + ``string``), or use
:func:`open_dataset` / :func:`read_predictions` here. Model versions are
URL-quoted in the path; all three readers unquote them.

Writers hold an exclusive ``fcntl.flock`` per partition (lock files under
``_locks/``, which dataset readers skip because of the leading ``_``; they are
never deleted, since deleting a lock file under contention breaks the lock).
A partition file is replaced atomically: the new rows go to
``.data-<random>.tmp`` in the same directory (ignored by pyarrow for the
leading ``.``, by DuckDB's ``*.parquet`` glob for the suffix), which is
fsynced, ``os.replace``-d onto ``data.parquet`` and followed by an fsync of
the directory. A crash therefore leaves the previous file readable; a temp
file left by a killed writer is swept by the next writer of that partition.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import date
from pathlib import Path
from urllib.parse import quote, unquote

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from stocktrend.config import get_settings
from stocktrend.data.schema import DateLike, to_day
from stocktrend.errors import StorageError
from stocktrend.storage.records import (
    PREDICTION_COLUMNS,
    empty_predictions,
    validate_predictions,
)

DATA_FILE = "data.parquet"
LOCK_DIR = "_locks"
TEMP_PREFIX = ".data-"
TEMP_SUFFIX = ".tmp"
PARTITION_COLUMNS: tuple[str, str] = ("as_of_date", "model_version")
FILE_COLUMNS: tuple[str, ...] = tuple(c for c in PREDICTION_COLUMNS if c not in PARTITION_COLUMNS)
FORMAT_KEY = b"stocktrend.format"
FORMAT_VERSION = b"predictions/1"
_READ_ATTEMPTS = 3

PathLike = str | os.PathLike[str]
Merge = Callable[[pd.DataFrame | None], pd.DataFrame]
"""Given the partition's current rows (None when it has no file), return its new rows."""


def file_schema() -> pa.Schema:
    """Arrow schema of one partition file (the record minus the partition columns)."""
    fields = {
        "ticker": pa.string(),
        "prob_up": pa.float64(),
        "predicted_class": pa.int64(),
        "label": pa.string(),
        "horizon": pa.int64(),
        "model_sha256": pa.string(),
        "flow_run_id": pa.string(),
        "created_at": pa.timestamp("us", tz="UTC"),
    }
    nullable = {"flow_run_id"}
    schema = pa.schema([pa.field(n, fields[n], nullable=n in nullable) for n in FILE_COLUMNS])
    return schema.with_metadata({FORMAT_KEY: FORMAT_VERSION})


def partitioning() -> ds.Partitioning:
    """Hive partitioning with typed keys, for ``pyarrow.dataset`` / ``pandas.read_parquet``."""
    keys = pa.schema([("as_of_date", pa.date32()), ("model_version", pa.string())])
    return ds.partitioning(keys, flavor="hive")


def dataset_schema() -> pa.Schema:
    """Schema of the whole dataset: file columns plus partition keys, in record order."""
    by_name = {f.name: f for f in file_schema()}
    by_name["as_of_date"] = pa.field("as_of_date", pa.date32(), nullable=False)
    by_name["model_version"] = pa.field("model_version", pa.string(), nullable=False)
    return pa.schema([by_name[name] for name in PREDICTION_COLUMNS])


def open_dataset(root: PathLike | None = None) -> ds.Dataset:
    """The dataset with typed partition columns; temp files and ``_locks`` are skipped."""
    return ds.dataset(
        _root(root),
        format="parquet",
        partitioning=partitioning(),
        schema=dataset_schema(),
        ignore_prefixes=[".", "_"],
    )


def partition_dir(root: PathLike | None, day: DateLike, model_version: str) -> Path:
    """Directory holding the (day, model version) partition."""
    return (
        _root(root)
        / f"as_of_date={to_day(day):%Y-%m-%d}"
        / f"model_version={quote(model_version, safe='')}"
    )


def write_predictions(root: PathLike | None, df: pd.DataFrame) -> list[Path]:
    """Upsert ``df`` by ticker into its partitions; return the files written.

    Rows already stored for other tickers of the same (day, model) stay, so a
    backfill can write a day in several ticker batches and re-running a batch
    replaces just its tickers. Writing the same frame twice is a no-op.
    """
    frame = validate_predictions(df)
    base = _root(root)
    written = []
    for (day, model_version), part in frame.groupby(list(PARTITION_COLUMNS), sort=True):
        merge = _upsert_tickers(part.reset_index(drop=True))
        written.append(_rewrite_partition(base, day, str(model_version), merge))
    return written


def replace_day(root: PathLike | None, day: DateLike, model_version: str, df: pd.DataFrame) -> Path:
    """Make ``df`` the whole content of the (day, model) partition; return its file path.

    Tickers stored for that day but absent from ``df`` are removed: this is
    what the daily flow wants when it re-scores a day for the whole universe.
    An empty ``df`` removes the partition's file. Every row of ``df`` must
    belong to (``day``, ``model_version``).
    """
    frame = validate_predictions(df)
    day = to_day(day)
    outside = (frame["as_of_date"] != day) | (frame["model_version"] != model_version)
    if outside.any():
        raise ValueError(
            f"replace_day({day:%Y-%m-%d}, {model_version!r}) got {int(outside.sum())} rows "
            "for another day or model version"
        )
    return _rewrite_partition(_root(root), day, model_version, lambda _existing: frame)


def read_predictions(
    root: PathLike | None = None,
    start: DateLike | None = None,
    end: DateLike | None = None,
    tickers: Sequence[str] | str | None = None,
    model_version: str | None = None,
) -> pd.DataFrame:
    """Stored predictions in the record contract, filtered (``start``/``end`` inclusive).

    Sorted by as_of_date, model_version, ticker. A missing root reads as empty.
    """
    path = _root(root)
    if not path.exists():
        return empty_predictions()
    condition = _filter(start, end, tickers, model_version)
    with _storage_errors("read predictions from", path):
        for attempt in range(_READ_ATTEMPTS):
            try:
                table = open_dataset(path).to_table(filter=condition)
                break
            except FileNotFoundError:  # a partition removed by replace_day after discovery
                if attempt == _READ_ATTEMPTS - 1:
                    raise
    frame = validate_predictions(table.to_pandas())
    return frame.sort_values(["as_of_date", "model_version", "ticker"], ignore_index=True)


def existing_partitions(root: PathLike | None = None) -> set[tuple[date, str]]:
    """``(day, model_version)`` of every partition that has a data file, for skip logic."""
    found = set()
    for path in _root(root).glob(f"as_of_date=*/model_version=*/{DATA_FILE}"):
        parsed = _parse_partition(path.parent)
        if parsed is not None:
            found.add(parsed)
    return found


def tickers_in_partition(root: PathLike | None, day: DateLike, model_version: str) -> set[str]:
    """Tickers already stored for (day, model): a backfill skips the chunks they cover."""
    path = partition_dir(root, day, model_version) / DATA_FILE
    try:
        with _storage_errors("read", path):
            table = pq.ParquetFile(path).read(columns=["ticker"])
    except FileNotFoundError:
        return set()
    return set(table.column("ticker").to_pylist())


# -- internals ----------------------------------------------------------------------------------


def _root(root: PathLike | None) -> Path:
    return Path(root) if root is not None else get_settings().predictions_dir


def _parse_partition(directory: Path) -> tuple[date, str] | None:
    day_key, _, day_text = directory.parent.name.partition("=")
    model_key, _, model_text = directory.name.partition("=")
    if (day_key, model_key) != PARTITION_COLUMNS:
        return None
    try:
        return date.fromisoformat(day_text), unquote(model_text)
    except ValueError:
        return None


def _filter(
    start: DateLike | None,
    end: DateLike | None,
    tickers: Sequence[str] | str | None,
    model_version: str | None,
) -> pc.Expression | None:
    parts = []
    if start is not None:
        parts.append(pc.field("as_of_date") >= pa.scalar(to_day(start).date(), pa.date32()))
    if end is not None:
        parts.append(pc.field("as_of_date") <= pa.scalar(to_day(end).date(), pa.date32()))
    if model_version is not None:
        parts.append(pc.field("model_version") == model_version)
    if tickers is not None:
        wanted = [tickers] if isinstance(tickers, str) else list(tickers)
        parts.append(pc.field("ticker").isin(wanted))
    condition = None
    for part in parts:
        condition = part if condition is None else condition & part
    return condition


def _upsert_tickers(incoming: pd.DataFrame) -> Merge:
    def merge(existing: pd.DataFrame | None) -> pd.DataFrame:
        if existing is None or existing.empty:
            return incoming
        kept = existing[~existing["ticker"].isin(incoming["ticker"])]
        return pd.concat([kept, incoming], ignore_index=True) if len(kept) else incoming

    return merge


def _rewrite_partition(root: Path, day: DateLike, model_version: str, merge: Merge) -> Path:
    """Read-modify-write one partition under its lock; the file is replaced atomically."""
    day = to_day(day)
    directory = partition_dir(root, day, model_version)
    target = directory / DATA_FILE
    with _storage_errors("write", target), _partition_lock(root, day, model_version):
        _sweep_temp_files(directory)
        rows = merge(_read_partition(target, day, model_version))
        if rows.empty:
            _remove_file(target)
        else:
            rows = rows.sort_values("ticker", ignore_index=True)
            _ensure_dir(directory)
            _replace_atomically(_to_file_table(rows), target)
    return target


def _read_partition(path: Path, day: pd.Timestamp, model_version: str) -> pd.DataFrame | None:
    try:
        table = pq.ParquetFile(path).read()
    except FileNotFoundError:
        return None
    except pa.ArrowException as exc:
        raise StorageError(
            f"cannot read {path}: {exc}",
            hint="the partition file is damaged; restore it or delete it and re-score that day",
        ) from exc
    frame = table.to_pandas()
    frame["as_of_date"] = day
    frame["model_version"] = model_version
    return validate_predictions(frame)


def _to_file_table(frame: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(
        frame.loc[:, list(FILE_COLUMNS)], schema=file_schema(), preserve_index=False
    ).replace_schema_metadata({FORMAT_KEY: FORMAT_VERSION})


@contextmanager
def _storage_errors(action: str, path: Path) -> Iterator[None]:
    """Disk full, permissions, a damaged file: say which path, keep bugs as they are."""
    try:
        yield
    except FileNotFoundError:
        raise
    except StorageError:
        raise
    except (OSError, pa.ArrowException) as exc:
        raise StorageError(
            f"cannot {action} {path}: {exc}",
            hint="check STOCKTREND_HOME: the predictions directory must be readable and writable",
        ) from exc


@contextmanager
def _partition_lock(root: Path, day: pd.Timestamp, model_version: str) -> Iterator[None]:
    """Exclusive across threads and processes: each call opens its own file description."""
    lock_dir = root / LOCK_DIR
    lock_dir.mkdir(parents=True, exist_ok=True)
    lock_path = lock_dir / f"{day:%Y-%m-%d}_{quote(model_version, safe='')}.lock"
    with open(lock_path, "ab") as handle:  # append mode: opening never truncates
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _sweep_temp_files(directory: Path) -> None:
    """Remove temp files of writers that died; safe because we hold the partition lock."""
    if directory.is_dir():
        for debris in directory.glob(f"{TEMP_PREFIX}*{TEMP_SUFFIX}"):
            with suppress(FileNotFoundError):
                debris.unlink()


def _write_parquet(table: pa.Table, path: Path) -> None:
    """The single place bytes are written (tests inject crashes here)."""
    pq.write_table(table, path, compression="zstd")


def _replace_atomically(table: pa.Table, target: Path) -> None:
    temp = target.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex}{TEMP_SUFFIX}"
    try:
        _write_parquet(table, temp)
        _fsync_path(temp)
        os.replace(temp, target)
    except BaseException:
        with suppress(FileNotFoundError):
            temp.unlink()
        raise
    _fsync_path(target.parent)


def _remove_file(target: Path) -> None:
    with suppress(FileNotFoundError):
        target.unlink()
        _fsync_path(target.parent)


def _ensure_dir(directory: Path) -> None:
    """Create ``directory`` and make each new entry durable in its parent."""
    created = []
    current = directory
    while not current.exists():
        created.append(current)
        current = current.parent
    for path in reversed(created):
        with suppress(FileExistsError):
            path.mkdir()
        _fsync_path(path.parent)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
