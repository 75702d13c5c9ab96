"""PredictionStore and migrations: every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
import sqlalchemy as sa
from pandas.testing import assert_frame_equal
from prediction_samples import TICKERS, prediction_frame

from stocktrend.errors import StorageError
from stocktrend.storage import queries, sql_store
from stocktrend.storage.engine import make_engine
from stocktrend.storage.migrations import (
    MIGRATIONS,
    Migration,
    check_migrations,
    ddl,
    migrate,
    schema_version,
)
from stocktrend.storage.records import validate_predictions
from stocktrend.storage.sql_store import PredictionStore, RunRecord

pytest_plugins = ["db_fixtures"]  # the db_url / store fixtures, parametrised over both backends

DAYS = pd.bdate_range("2024-03-04", periods=4)
ALL_VERSIONS = [m.version for m in MIGRATIONS]
LATEST = ALL_VERSIONS[-1]


def _expected(frame: pd.DataFrame) -> pd.DataFrame:
    out = validate_predictions(frame)
    return out.sort_values(["as_of_date", "model_version", "ticker"], ignore_index=True)


def _run(run_id: str = "9f1c2d3e-run", **changes: object) -> RunRecord:
    fields: dict[str, object] = {
        "flow_run_id": run_id,
        "flow_name": "daily-scoring",
        "started_at": datetime(2024, 3, 7, 22, 0, 1, 250000, tzinfo=UTC),
        "parameters": {"as_of": "2024-03-07", "tickers": list(TICKERS), "batch_size": 256},
        "model_version": "v2.0",
        "model_sha256": "ab" * 32,
    }
    fields.update(changes)
    return RunRecord(**fields)  # type: ignore[arg-type]


# -- migrations ----------------------------------------------------------------------------------


def test_migration_creates_tables_and_records_version(store: PredictionStore) -> None:
    assert store.schema_version() == 0
    assert store.migrate() == ALL_VERSIONS
    tables = set(sa.inspect(store.engine).get_table_names())
    assert {"predictions", "runs", "schema_migrations"} <= tables
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT version, name FROM schema_migrations ORDER BY version")
        ).all()
    assert [tuple(r) for r in rows] == [(m.version, m.name) for m in MIGRATIONS]
    assert store.schema_version() == LATEST


def test_migrate_twice_is_a_noop(db_url: str) -> None:
    with PredictionStore(db_url) as first, PredictionStore(db_url) as second:
        assert first.migrate() == ALL_VERSIONS
        assert first.migrate() == []
        assert second.migrate() == []
        assert second.schema_version() == LATEST


def test_first_use_migrates_lazily(store: PredictionStore) -> None:
    assert store.count() == 0
    assert store.schema_version() == LATEST


def test_concurrent_migrate_from_two_threads(db_url: str) -> None:
    applied, errors = _migrate_together(db_url)
    assert errors == []
    # each migration is applied exactly once, by one thread or the other
    assert sorted(v for versions in applied for v in versions) == ALL_VERSIONS
    engine = make_engine(db_url)
    try:
        assert schema_version(engine) == LATEST
    finally:
        engine.dispose()


def _migrate_together(url: str) -> tuple[list[list[int]], list[BaseException]]:
    """Two engines migrate ``url`` at the same instant: the versions each applied, the errors."""
    engines = [make_engine(url) for _ in range(2)]
    barrier = threading.Barrier(2)
    applied: list[list[int]] = []
    errors: list[BaseException] = []

    def worker(engine: sa.Engine) -> None:
        try:
            barrier.wait()
            applied.append(migrate(engine))
        except BaseException as exc:  # reported by the caller, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for engine in engines:
        engine.dispose()
    return applied, errors


def test_fresh_sqlite_file_opened_by_two_writers_at_once(tmp_path: Path) -> None:
    """Both switch the new file to WAL together; SQLite refuses one at once ("database is
    locked", busy timeout or not) unless the switch is retried. It lost ~1 race in 6 here,
    so 25 fresh files make a regression all but certain to show."""
    for attempt in range(25):
        _applied, errors = _migrate_together(
            f"sqlite:///{tmp_path / str(attempt) / 'stocktrend.db'}"
        )
        assert errors == [], f"attempt {attempt}"


def test_appended_migration_applies_alone_and_old_code_refuses_newer_schema(db_url: str) -> None:
    extra = Migration(
        LATEST + 1, "scratch table", ddl("CREATE TABLE scratch (id INTEGER PRIMARY KEY)")
    )
    engine = make_engine(db_url)
    try:
        assert migrate(engine) == ALL_VERSIONS
        assert migrate(engine, (*MIGRATIONS, extra)) == [LATEST + 1]
        assert "scratch" in sa.inspect(engine).get_table_names()
        with pytest.raises(StorageError, match="newer"):
            migrate(engine)
    finally:
        engine.dispose()


def test_migration_versions_must_be_contiguous() -> None:
    check_migrations(MIGRATIONS)
    noop = ddl()
    with pytest.raises(ValueError, match=r"1\.\.n"):
        check_migrations([Migration(1, "a", noop), Migration(3, "b", noop)])


def test_migrate_refuses_a_bare_sqlite_engine(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'bare.db'}")
    with pytest.raises(ValueError, match="make_engine"):
        migrate(engine)


def test_live_tables_match_the_migrated_schema(store: PredictionStore) -> None:
    store.migrate()
    inspector = sa.inspect(store.engine)
    for table in sql_store.metadata.sorted_tables:
        columns = {c["name"]: c for c in inspector.get_columns(table.name)}
        assert set(columns) == {c.name for c in table.columns}, table.name
        for column in table.columns:
            reflected = columns[column.name]
            assert reflected["nullable"] == column.nullable, column.name
            length = getattr(column.type, "length", None)
            assert getattr(reflected["type"], "length", None) == length, column.name
    uniques = inspector.get_unique_constraints("predictions")
    assert ["as_of_date", "ticker", "model_version"] in [u["column_names"] for u in uniques]
    indexes = {i["name"]: i["column_names"] for i in inspector.get_indexes("predictions")}
    assert indexes["ix_predictions_ticker_date"] == ["ticker", "as_of_date"]


# -- writes --------------------------------------------------------------------------------------


def test_upsert_is_idempotent_and_updates_values(store: PredictionStore) -> None:
    frame = prediction_frame(DAYS)
    assert store.upsert_predictions(frame) == len(frame)
    store.upsert_predictions(frame)
    assert store.count() == len(frame)

    changed = frame.copy()
    changed["prob_up"] = 1.0 - changed["prob_up"]
    changed["predicted_class"] = 1 - changed["predicted_class"]
    changed["label"] = changed["predicted_class"].map({0: "bearish", 1: "bullish"})
    store.upsert_predictions(changed)
    assert store.count() == len(frame)
    assert_frame_equal(store.read_predictions(), _expected(changed))


def test_read_back_typed_columns(store: PredictionStore) -> None:
    frame = prediction_frame(DAYS, seed=7)
    store.upsert_predictions(frame)
    back = store.read_predictions()
    assert_frame_equal(back, _expected(frame))  # dtypes included
    assert back["flow_run_id"].isna().sum() == len(DAYS)
    assert back["created_at"].dt.tz is not None
    assert (back["created_at"].dt.microsecond == 7).all()


def test_empty_database_reads_as_typed_empty_frame(store: PredictionStore) -> None:
    empty = store.read_predictions()
    assert empty.empty
    assert_frame_equal(empty, validate_predictions(prediction_frame([])))


def test_read_filters(store: PredictionStore) -> None:
    store.upsert_predictions(prediction_frame(DAYS))
    store.upsert_predictions(prediction_frame(DAYS[:2], model_version="v2.1", seed=1))
    assert set(store.read_predictions(ticker="MSFT")["ticker"]) == {"MSFT"}
    assert len(store.read_predictions(ticker=["MSFT", "JPM"], model_version="v2.0")) == 8
    assert len(store.read_predictions(as_of=DAYS[1])) == 2 * len(TICKERS)
    window = store.read_predictions(start=DAYS[1], end="2024-03-06", model_version="v2.0")
    assert sorted(window["as_of_date"].unique()) == list(DAYS[1:3])


def test_latest_per_ticker(store: PredictionStore) -> None:
    store.upsert_predictions(prediction_frame(DAYS[:3], tickers=("AAPL", "MSFT")))
    store.upsert_predictions(prediction_frame(DAYS[:2], tickers=("XOM",)))
    late = prediction_frame(DAYS[2:3], tickers=("MSFT",), model_version="v2.1", seed=99)
    store.upsert_predictions(late)  # same day as v2.0's MSFT, scored later: it wins

    latest = store.latest_per_ticker()
    assert list(latest["ticker"]) == ["AAPL", "MSFT", "XOM"]
    assert list(latest["as_of_date"]) == [DAYS[2], DAYS[2], DAYS[1]]
    assert list(latest["model_version"]) == ["v2.0", "v2.1", "v2.0"]
    only_v20 = store.latest_per_ticker(model_version="v2.0")
    assert list(only_v20["model_version"].unique()) == ["v2.0"]
    as_of_then = store.read_predictions(end=DAYS[0], latest=True)
    assert set(as_of_then["as_of_date"]) == {DAYS[0]}


def test_replace_day_removes_stale_tickers(store: PredictionStore) -> None:
    store.upsert_predictions(prediction_frame(DAYS[:2]))
    store.upsert_predictions(prediction_frame(DAYS[:1], model_version="v2.1"))
    rescored = prediction_frame(DAYS[:1], tickers=("AAPL", "MSFT"), seed=5)

    assert store.replace_day(DAYS[0], "v2.0", rescored) == 2
    day = store.read_predictions(as_of=DAYS[0], model_version="v2.0")
    assert_frame_equal(day, _expected(rescored))
    assert len(store.read_predictions(as_of=DAYS[1])) == len(TICKERS)  # other day untouched
    assert len(store.read_predictions(model_version="v2.1")) == len(TICKERS)  # other model too

    store.replace_day(DAYS[0], "v2.0", prediction_frame([]))
    assert store.read_predictions(as_of=DAYS[0], model_version="v2.0").empty


def test_replace_day_rejects_rows_of_another_day(store: PredictionStore) -> None:
    with pytest.raises(ValueError, match="another day"):
        store.replace_day(DAYS[0], "v2.0", prediction_frame(DAYS[:2]))


def test_upsert_is_one_transaction(store: PredictionStore, monkeypatch) -> None:
    frame = prediction_frame(pd.bdate_range("2023-01-02", periods=60))
    original = sql_store._chunks

    def fail_after_first(rows, size):
        chunks = original(rows, size)
        yield next(chunks)
        raise RuntimeError("worker killed mid-write")

    monkeypatch.setattr(sql_store, "CHUNK_ROWS", 100)
    monkeypatch.setattr(sql_store, "_chunks", fail_after_first)
    with pytest.raises(RuntimeError, match="mid-write"):
        store.upsert_predictions(frame, run=_run())
    assert store.count() == 0
    assert store.get_run(_run().flow_run_id) is None


def test_large_frames_are_chunked(store: PredictionStore) -> None:
    days = pd.bdate_range("2019-01-01", periods=250)
    frame = prediction_frame(days, tickers=tuple(f"T{i:03d}" for i in range(48)))
    assert len(frame) * len(frame.columns) > 32766  # more values than SQLite binds per statement
    store.upsert_predictions(frame)
    assert store.count() == len(frame)


def test_two_concurrent_writers_on_the_same_day(db_url: str) -> None:
    tickers = tuple(f"S{i:02d}" for i in range(40))
    batches = [tickers[:25], tickers[15:]]  # overlapping: both write S15..S24
    stores = [PredictionStore(db_url) for _ in batches]
    stores[0].migrate()
    barrier = threading.Barrier(len(batches))
    errors: list[BaseException] = []

    def writer(target: PredictionStore, batch: tuple[str, ...], seed: int) -> None:
        try:
            barrier.wait()
            for round_ in range(4):
                target.upsert_predictions(prediction_frame(DAYS[:1], batch, seed=seed + round_))
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=writer, args=(s, b, 10 * i))
        for i, (s, b) in enumerate(zip(stores, batches, strict=True))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        stored = stores[0].read_predictions()
        assert sorted(stored["ticker"]) == sorted(tickers)
        assert not stored.duplicated(["as_of_date", "ticker", "model_version"]).any()
    finally:
        for target in stores:
            target.close()


def test_concurrent_replacements_of_a_day_do_not_mix(db_url: str, monkeypatch) -> None:
    universes = [("AAPL", "MSFT", "XOM"), ("GOOG", "JPM")]
    stores = [PredictionStore(db_url) for _ in universes]
    stores[0].upsert_predictions(prediction_frame(DAYS[:1]))
    insert_rows = sql_store._upsert_rows

    def slow_insert(conn: sa.Connection, frame: pd.DataFrame) -> None:
        time.sleep(0.2)  # between DELETE and INSERT: the window where two replacements interleave
        insert_rows(conn, frame)

    monkeypatch.setattr(sql_store, "_upsert_rows", slow_insert)
    barrier = threading.Barrier(len(universes))
    errors: list[BaseException] = []

    def replacer(target: PredictionStore, universe: tuple[str, ...]) -> None:
        try:
            barrier.wait()
            target.replace_day(DAYS[0], "v2.0", prediction_frame(DAYS[:1], universe))
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=replacer, args=(s, u))
        for s, u in zip(stores, universes, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        stored = tuple(sorted(stores[0].read_predictions()["ticker"]))
        assert stored in [tuple(sorted(u)) for u in universes]  # one whole universe, not a mix
    finally:
        for target in stores:
            target.close()


def test_unique_and_check_constraints_exist(store: PredictionStore) -> None:
    store.migrate()
    row = sql_store._bind_rows(validate_predictions(prediction_frame(DAYS[:1], ("AAPL",))))[0]
    with store.engine.begin() as conn:
        conn.execute(sa.insert(sql_store.predictions), [row])
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(sa.insert(sql_store.predictions), [row])
    with pytest.raises(sa.exc.IntegrityError), store.engine.begin() as conn:
        conn.execute(sa.insert(sql_store.predictions), [{**row, "ticker": "X", "prob_up": 1.5}])
    assert store.count() == 1


# -- runs ----------------------------------------------------------------------------------------


def test_runs_round_trip(store: PredictionStore) -> None:
    run = _run()
    store.record_run(run)
    assert store.get_run(run.flow_run_id) == run

    done = store.finish_run(
        run.flow_run_id, status="partial", n_scored=6, n_skipped=1, n_failed=1, message="NVDA: 404"
    )
    assert done.status == "partial"
    assert done.finished_at is not None
    assert done.finished_at.tzinfo is not None
    assert store.get_run(run.flow_run_id) == done
    assert store.get_run("no-such-run") is None
    with pytest.raises(ValueError, match="no run"):
        store.finish_run("no-such-run", status="failed", n_scored=0)


def test_run_row_is_written_with_the_predictions(store: PredictionStore) -> None:
    run = _run("cli-20240307", flow_name="cli", parameters={"as_of": datetime(2024, 3, 7).date()})
    store.upsert_predictions(prediction_frame(DAYS[:1], flow_run_id=run.flow_run_id), run=run)
    stored = store.get_run(run.flow_run_id)
    assert stored is not None
    assert stored.parameters == {"as_of": "2024-03-07"}  # JSON keeps what JSON can hold
    later = _run("cli-20240307", flow_name="cli", status="completed", n_scored=8)
    store.replace_day(DAYS[0], "v2.0", prediction_frame(DAYS[:1]), run=later)
    assert store.get_run("cli-20240307") == later


def test_run_record_validates() -> None:
    with pytest.raises(ValueError, match="status"):
        _run(status="done")
    with pytest.raises(ValueError, match="timezone"):
        _run(started_at=datetime(2024, 3, 7, 22))


# -- database down -------------------------------------------------------------------------------


def test_closed_port_fails_with_one_bounded_attempt() -> None:
    store = PredictionStore("postgresql+psycopg://postgres:s3cret-pw@127.0.0.1:1/test")
    attempts: list[dict] = []
    sa.event.listen(
        store.engine, "do_connect", lambda _d, _rec, _args, params: attempts.append(dict(params))
    )
    with pytest.raises(StorageError) as raised:
        store.count()
    assert len(attempts) == 1  # no retry loop: a database that is down is reported at once
    assert 0 < attempts[0]["connect_timeout"] <= 10  # bounded even when packets are dropped
    text = str(raised.value)
    assert "127.0.0.1:1" in text
    assert "is PostgreSQL running? check STOCKTREND_DATABASE_URL" in text
    assert "s3cret" not in text
    assert "\n" not in text


def test_postgres_down_then_back(postgres_proxy_url: tuple[str, object]) -> None:
    url, proxy = postgres_proxy_url
    frame = prediction_frame(DAYS[:1])
    with PredictionStore(url) as store:
        with pytest.raises(StorageError, match="cannot write predictions"):
            store.upsert_predictions(frame)
        proxy.start()  # type: ignore[attr-defined]
        assert store.upsert_predictions(frame) == len(frame)  # same object, same call

        proxy.stop()  # type: ignore[attr-defined]  # the server restarts under a pooled connection
        with pytest.raises(StorageError, match="cannot read predictions"):
            store.read_predictions()
        proxy.start()  # type: ignore[attr-defined]
        assert_frame_equal(store.read_predictions(), _expected(frame))


def test_sqlite_directory_unusable_then_fixed(tmp_path: Path) -> None:
    blocker = tmp_path / "home"
    blocker.write_text("a file where the directory should be")
    store = PredictionStore(f"sqlite:///{blocker / 'stocktrend.db'}")
    with pytest.raises(StorageError) as raised:
        store.count()
    assert "SQLite database" in str(raised.value)
    blocker.unlink()
    assert store.count() == 0
    store.close()


def test_bad_urls_are_storage_errors() -> None:
    with pytest.raises(StorageError, match="not a valid") as raised:
        PredictionStore("not a url with secret-pw")
    assert "secret-pw" not in str(raised.value)
    with pytest.raises(StorageError, match="unsupported"):
        PredictionStore("mysql://root:pw@localhost/db")


def test_default_url_is_sqlite_under_home(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STOCKTREND_HOME", str(tmp_path / "st-home"))
    monkeypatch.delenv("STOCKTREND_DATABASE_URL", raising=False)
    with PredictionStore() as store:
        store.upsert_predictions(prediction_frame(DAYS[:1]))
    assert (tmp_path / "st-home" / "stocktrend.db").exists()


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    with PredictionStore(f"sqlite:///{tmp_path / 'wal.db'}") as store:
        store.migrate()
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


# -- README queries ------------------------------------------------------------------------------


def test_readme_sql_queries(store: PredictionStore) -> None:
    store.upsert_predictions(prediction_frame(DAYS))
    store.upsert_predictions(prediction_frame(DAYS[1:], tickers=("MSFT",), model_version="v2.1"))
    with store.engine.connect() as conn:
        latest = pd.DataFrame(conn.execute(sa.text(queries.LATEST_PER_TICKER)).mappings().all())
        history = pd.DataFrame(
            conn.execute(sa.text(queries.TICKER_HISTORY), {"ticker": "MSFT"}).mappings().all()
        )

    expected = store.latest_per_ticker()
    assert sorted(latest["ticker"]) == sorted(expected["ticker"])
    latest = latest.set_index("ticker").loc[expected["ticker"]]
    assert list(latest["model_version"]) == list(expected["model_version"])
    assert list(pd.to_datetime(latest["as_of_date"])) == list(expected["as_of_date"])
    assert list(latest["prob_up"]) == list(expected["prob_up"])

    msft = store.read_predictions(ticker="MSFT")
    assert len(history) == len(DAYS) + len(DAYS) - 1
    assert list(pd.to_datetime(history["as_of_date"])) == list(msft["as_of_date"])
    assert list(history["model_version"]) == list(msft["model_version"])
    assert set(history.columns) >= {"prob_up", "predicted_class", "label", "horizon"}


def test_timestamps_come_back_in_utc(store: PredictionStore) -> None:
    stamp = datetime(2024, 3, 7, 17, 15, tzinfo=UTC) + timedelta(microseconds=3)
    frame = prediction_frame(DAYS[:1], ("AAPL",))
    frame["created_at"] = pd.Timestamp(stamp).tz_convert(ZoneInfo("Asia/Tokyo"))
    store.upsert_predictions(frame)
    assert store.read_predictions()["created_at"].iloc[0] == pd.Timestamp(stamp)
    assert str(store.read_predictions()["created_at"].dt.tz) == "UTC"
