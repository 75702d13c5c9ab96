"""The Parquet prediction dataset: layout, three independent readers, atomic and locked writes."""

from __future__ import annotations

import multiprocessing
import threading
import time
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from pandas.testing import assert_frame_equal
from prediction_samples import TICKERS, prediction_frame

from stocktrend.errors import StorageError
from stocktrend.storage import parquet_store, queries
from stocktrend.storage.parquet_store import (
    existing_partitions,
    partition_dir,
    partitioning,
    read_predictions,
    replace_day,
    tickers_in_partition,
    write_predictions,
)
from stocktrend.storage.records import PREDICTION_COLUMNS, validate_predictions

DAYS = pd.bdate_range("2024-03-04", periods=3)
QUOTED_VERSION = "v2.0+cpu/fp32"  # "+" and "/" must survive the trip through a path


def _expected(frame: pd.DataFrame) -> pd.DataFrame:
    out = validate_predictions(frame)
    return out.sort_values(["as_of_date", "model_version", "ticker"], ignore_index=True)


def _both_models() -> pd.DataFrame:
    return pd.concat(
        [prediction_frame(DAYS), prediction_frame(DAYS[:2], model_version=QUOTED_VERSION, seed=1)],
        ignore_index=True,
    )


def _normalised(frame: pd.DataFrame) -> pd.DataFrame:
    """Any reader's frame in the record contract, for comparing values."""
    out = frame.copy()
    for name in ("as_of_date", "model_version"):
        out[name] = out[name].astype("str")
    return _expected(out[list(PREDICTION_COLUMNS)])


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "predictions"


# -- layout and readers --------------------------------------------------------------------------


def test_layout_is_one_file_per_day_and_model(root: Path) -> None:
    written = write_predictions(root, _both_models())
    expected = {
        root / "as_of_date=2024-03-04" / "model_version=v2.0" / "data.parquet",
        root / "as_of_date=2024-03-04" / "model_version=v2.0%2Bcpu%2Ffp32" / "data.parquet",
    }
    assert expected <= set(written)
    assert len(written) == len(set(written)) == 5
    schema = pq.read_schema(written[0])
    assert "as_of_date" not in schema.names  # partition keys live only in the path
    assert "model_version" not in schema.names
    assert schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert pq.read_table(written[0]).column("ticker").to_pylist() == sorted(TICKERS)
    assert (root / "_locks").is_dir()


def test_round_trip_through_read_predictions(root: Path) -> None:
    frame = _both_models()
    write_predictions(root, frame)
    assert_frame_equal(read_predictions(root), _expected(frame))


def test_pyarrow_dataset_reads_it(root: Path) -> None:
    frame = _both_models()
    write_predictions(root, frame)

    bare = ds.dataset(root, partitioning="hive").to_table()
    assert sorted(bare.column_names) == sorted(PREDICTION_COLUMNS)  # no duplicated column
    assert bare.schema.field("as_of_date").type == pa.string()
    assert_frame_equal(_normalised(bare.to_pandas()), _normalised(frame))

    typed = ds.dataset(root, partitioning=partitioning()).to_table()
    assert typed.schema.field("as_of_date").type == pa.date32()
    assert typed.schema.field("model_version").type == pa.string()
    assert_frame_equal(validate_predictions(typed.to_pandas()).pipe(_expected), _expected(frame))


def test_pandas_reads_it(root: Path) -> None:
    frame = _both_models()
    write_predictions(root, frame)

    bare = pd.read_parquet(root)
    assert sorted(bare.columns) == sorted(PREDICTION_COLUMNS)
    assert isinstance(bare["as_of_date"].dtype, pd.CategoricalDtype)
    assert_frame_equal(_normalised(bare), _normalised(frame))

    typed = pd.read_parquet(root, partitioning=partitioning())
    assert set(typed["as_of_date"]) == {d.date() for d in DAYS}
    assert_frame_equal(validate_predictions(typed).pipe(_expected), _expected(frame))


def test_duckdb_reads_it(root: Path) -> None:
    frame = _both_models()
    write_predictions(root, frame)
    source = f"read_parquet('{root}/**/*.parquet', hive_partitioning = true)"
    with duckdb.connect() as con:
        described = con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
        types = {row[0]: row[1] for row in described}
        result = con.execute(f"SELECT * FROM {source}").df()
    assert sorted(types) == sorted(PREDICTION_COLUMNS)
    assert types["as_of_date"] == "DATE"
    assert types["model_version"] == "VARCHAR"
    assert types["prob_up"] == "DOUBLE"
    assert types["created_at"] == "TIMESTAMP WITH TIME ZONE"
    assert_frame_equal(validate_predictions(result).pipe(_expected), _expected(frame))


def test_missing_root_reads_as_empty(root: Path) -> None:
    empty = read_predictions(root)
    assert empty.empty
    assert list(empty.columns) == list(PREDICTION_COLUMNS)
    assert existing_partitions(root) == set()


def test_default_root_is_settings_predictions_dir(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STOCKTREND_HOME", str(tmp_path / "home"))
    write_predictions(None, prediction_frame(DAYS[:1]))
    assert (tmp_path / "home" / "predictions" / "as_of_date=2024-03-04").is_dir()
    assert len(read_predictions()) == len(TICKERS)


def test_read_filters(root: Path) -> None:
    write_predictions(root, _both_models())
    assert set(read_predictions(root, tickers="MSFT")["ticker"]) == {"MSFT"}
    assert len(read_predictions(root, tickers=["MSFT", "JPM"], model_version="v2.0")) == 6
    window = read_predictions(root, start=DAYS[1], end="2024-03-06", model_version=QUOTED_VERSION)
    assert list(window["as_of_date"].unique()) == [DAYS[1]]
    assert set(window["model_version"]) == {QUOTED_VERSION}


# -- upsert, replace, skip detection -------------------------------------------------------------


def test_backfill_batches_upsert_by_ticker(root: Path) -> None:
    first, second = TICKERS[:5], TICKERS[3:]  # the re-run overlaps on two tickers
    write_predictions(root, prediction_frame(DAYS[:1], first))
    rerun = prediction_frame(DAYS[:1], second, seed=3)
    write_predictions(root, rerun)
    stored = read_predictions(root)
    assert sorted(stored["ticker"]) == sorted(TICKERS)
    overlap = stored[stored["ticker"].isin(second)].reset_index(drop=True)
    assert_frame_equal(overlap, _expected(rerun))


def test_writing_the_same_frame_twice_changes_nothing(root: Path) -> None:
    frame = _both_models()
    paths = write_predictions(root, frame)
    before = {p: p.read_bytes() for p in paths}
    write_predictions(root, frame)
    assert {p: p.read_bytes() for p in paths} == before


def test_replace_day_removes_stale_tickers(root: Path) -> None:
    write_predictions(root, _both_models())
    rescored = prediction_frame(DAYS[:1], ("AAPL", "XOM"), seed=9)
    replace_day(root, DAYS[0], "v2.0", rescored)
    day = read_predictions(root, start=DAYS[0], end=DAYS[0], model_version="v2.0")
    assert_frame_equal(day, _expected(rescored))
    assert len(read_predictions(root, model_version=QUOTED_VERSION)) == 2 * len(TICKERS)
    assert len(read_predictions(root, start=DAYS[1], model_version="v2.0")) == 2 * len(TICKERS)

    path = replace_day(root, DAYS[0], "v2.0", prediction_frame([]))
    assert not path.exists()
    assert (DAYS[0].date(), "v2.0") not in existing_partitions(root)


def test_replace_day_rejects_rows_of_another_partition(root: Path) -> None:
    with pytest.raises(ValueError, match="another day or model"):
        replace_day(root, DAYS[0], "v2.1", prediction_frame(DAYS[:1]))


def test_invalid_frames_are_rejected_before_touching_disk(root: Path) -> None:
    frame = prediction_frame(DAYS[:1])
    frame.loc[2, "prob_up"] = float("nan")
    with pytest.raises(ValueError, match="prob_up"):
        write_predictions(root, frame)
    assert not root.exists()


def test_skip_detection_helpers(root: Path) -> None:
    write_predictions(root, prediction_frame(DAYS[:2], TICKERS[:3]))
    write_predictions(root, prediction_frame(DAYS[:1], TICKERS[:2], model_version=QUOTED_VERSION))
    assert existing_partitions(root) == {
        (date(2024, 3, 4), "v2.0"),
        (date(2024, 3, 5), "v2.0"),
        (date(2024, 3, 4), QUOTED_VERSION),
    }
    assert tickers_in_partition(root, "2024-03-04", QUOTED_VERSION) == set(TICKERS[:2])
    assert tickers_in_partition(root, DAYS[1], "v2.0") == set(TICKERS[:3])
    assert tickers_in_partition(root, DAYS[2], "v2.0") == set()


# -- crashes -------------------------------------------------------------------------------------


def _assert_only_original(root: Path, original: pd.DataFrame) -> None:
    """Every reader still sees exactly the original rows, and no temp file is visible."""
    assert_frame_equal(read_predictions(root), _expected(original))
    assert len(ds.dataset(root, partitioning="hive").to_table()) == len(original)
    assert len(pd.read_parquet(root)) == len(original)
    with duckdb.connect() as con:
        count = con.execute(
            f"SELECT count(*) FROM read_parquet('{root}/**/*.parquet', hive_partitioning = true)"
        ).fetchone()
    assert count == (len(original),)


def test_crash_while_writing_keeps_the_previous_file(root: Path, monkeypatch) -> None:
    original = prediction_frame(DAYS[:1])
    write_predictions(root, original)

    def torn_write(table: pa.Table, path: Path) -> None:
        path.write_bytes(b"PAR1 half a row group")
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(parquet_store, "_write_parquet", torn_write)
    with pytest.raises(RuntimeError, match="mid-write"):
        write_predictions(root, prediction_frame(DAYS[:1], seed=4))
    _assert_only_original(root, original)
    assert [p.name for p in partition_dir(root, DAYS[0], "v2.0").iterdir()] == ["data.parquet"]


def test_crash_after_temp_file_is_written_keeps_the_previous_file(root: Path, monkeypatch) -> None:
    original = prediction_frame(DAYS[:1])
    write_predictions(root, original)

    def power_cut(*_args: object) -> None:
        raise RuntimeError("power cut before rename")

    monkeypatch.setattr(parquet_store.os, "replace", power_cut)
    with pytest.raises(RuntimeError, match="power cut"):
        write_predictions(root, prediction_frame(DAYS[:1], seed=4))
    monkeypatch.undo()
    _assert_only_original(root, original)


def test_debris_of_a_killed_writer_is_invisible_and_swept(root: Path) -> None:
    original = prediction_frame(DAYS[:1])
    write_predictions(root, original)
    directory = partition_dir(root, DAYS[0], "v2.0")
    debris = directory / f"{parquet_store.TEMP_PREFIX}0123456789abcdef{parquet_store.TEMP_SUFFIX}"
    debris.write_bytes(b"PAR1 a writer was SIGKILLed here")

    _assert_only_original(root, original)
    assert existing_partitions(root) == {(DAYS[0].date(), "v2.0")}
    write_predictions(root, prediction_frame(DAYS[:1], ("AAPL",), seed=2))
    assert not debris.exists()


def test_disk_errors_become_storage_errors(root: Path, monkeypatch) -> None:
    def disk_full(table: pa.Table, path: Path) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(parquet_store, "_write_parquet", disk_full)
    with pytest.raises(StorageError, match="No space left"):
        write_predictions(root, prediction_frame(DAYS[:1]))


def test_damaged_partition_file_is_a_storage_error(root: Path) -> None:
    (path,) = write_predictions(root, prediction_frame(DAYS[:1]))
    path.write_bytes(b"not parquet at all")
    with pytest.raises(StorageError, match="damaged"):
        write_predictions(root, prediction_frame(DAYS[:1], seed=1))
    with pytest.raises(StorageError, match="cannot read"):
        read_predictions(root)


# -- concurrent writers --------------------------------------------------------------------------


def test_threads_writing_one_partition_lose_no_rows(root: Path, monkeypatch) -> None:
    read_partition = parquet_store._read_partition

    def slow_read(*args: object) -> pd.DataFrame | None:
        found = read_partition(*args)  # type: ignore[arg-type]
        time.sleep(0.01)  # widen the read-modify-write window the lock has to protect
        return found

    monkeypatch.setattr(parquet_store, "_read_partition", slow_read)
    groups = [tuple(f"{letter}{i}" for i in range(6)) for letter in "ABCD"]
    barrier = threading.Barrier(len(groups))
    errors: list[BaseException] = []

    def writer(group: tuple[str, ...]) -> None:
        try:
            barrier.wait()
            for start in range(0, len(group), 2):
                write_predictions(root, prediction_frame(DAYS[:1], group[start : start + 2]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(g,)) for g in groups]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert tickers_in_partition(root, DAYS[0], "v2.0") == {t for g in groups for t in g}


def write_in_batches(root: str, tickers: list[str], batch: int) -> None:
    """Child-process body for the two-process test (module level so spawn can import it)."""
    for start in range(0, len(tickers), batch):
        write_predictions(root, prediction_frame(DAYS[:1], tickers[start : start + batch]))


def test_two_processes_writing_one_partition_lose_no_rows(root: Path) -> None:
    context = multiprocessing.get_context("spawn")  # no fork of a process with threads
    groups = [[f"P{i}{j}" for j in range(8)] for i in range(2)]
    processes = [
        context.Process(target=write_in_batches, args=(str(root), group, 2)) for group in groups
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    assert [p.exitcode for p in processes] == [0, 0]
    stored = read_predictions(root)
    assert sorted(stored["ticker"]) == sorted(t for g in groups for t in g)


# -- README queries ------------------------------------------------------------------------------


def test_readme_duckdb_queries(root: Path) -> None:
    frame = pd.concat(
        [
            prediction_frame(DAYS),
            prediction_frame(DAYS[1:], tickers=("MSFT",), model_version="v2.1", seed=5),
            prediction_frame(DAYS[:1], tickers=("XOM",), model_version="20240301", seed=6),
        ],
        ignore_index=True,
    )
    frame = frame[~((frame["ticker"] == "XOM") & (frame["model_version"] == "v2.0"))]
    write_predictions(root, frame)
    params = {"glob": queries.duckdb_glob(root)}
    with duckdb.connect() as con:
        latest = con.execute(queries.DUCKDB_LATEST_PER_TICKER, params).df()
        history = con.execute(queries.DUCKDB_TICKER_HISTORY, {**params, "ticker": "MSFT"}).df()

    expected = _expected(frame)
    newest = expected.sort_values(["as_of_date", "created_at", "model_version"])
    newest = newest.groupby("ticker").tail(1).sort_values("ticker", ignore_index=True)
    assert list(latest["ticker"]) == list(newest["ticker"])
    assert list(latest["model_version"]) == list(newest["model_version"])
    assert list(latest["prob_up"]) == list(newest["prob_up"])
    assert list(pd.to_datetime(latest["as_of_date"])) == list(newest["as_of_date"])
    assert latest.loc[latest["ticker"] == "XOM", "model_version"].item() == "20240301"

    msft = expected[expected["ticker"] == "MSFT"]
    assert list(pd.to_datetime(history["as_of_date"])) == list(msft["as_of_date"])
    assert list(history["model_version"]) == list(msft["model_version"])
    assert list(history["prob_up"]) == list(msft["prob_up"])
