"""Predictions and flow runs in a SQL database (SQLite by default, PostgreSQL in production).

The tables below are the *live* definitions the queries use; they must match
what :mod:`stocktrend.storage.migrations` builds (a test compares the two).
The schema is created lazily: the first read or write of a
:class:`PredictionStore` runs :func:`~stocktrend.storage.migrations.migrate`,
so a fresh machine needs no setup step, and a database that is down costs
nothing until it is used.

Each write is one transaction: a half-written day is never visible, and the
run row is committed together with the predictions it produced. Rows are
written in key order so two writers touching the same rows lock them in the
same order and cannot deadlock on PostgreSQL; on SQLite writers queue on the
file lock (see :mod:`stocktrend.storage.engine`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.types import TypeDecorator

from stocktrend.config import get_settings
from stocktrend.data.schema import DateLike, to_day
from stocktrend.storage.engine import (
    make_engine,
    parse_url,
    storage_errors,
    upsert_insert,
    writer,
)
from stocktrend.storage.migrations import migrate, schema_version
from stocktrend.storage.records import (
    MAX_LENGTHS,
    PREDICTION_COLUMNS,
    PREDICTION_KEY,
    empty_predictions,
    validate_predictions,
)

CHUNK_ROWS = 1000
"""Rows per ``executemany``: bounds memory; SQLAlchemy pages each chunk under SQLite's
bound-variable limit itself."""

RUN_STATUSES: tuple[str, ...] = ("running", "completed", "partial", "failed")
"""``partial``: finished, but some tickers failed or were skipped."""


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both backends.

    PostgreSQL stores ``timestamptz``; SQLite has no timezone type, so the
    UTC wall time is stored and UTC is put back on read. Naive datetimes are
    refused on the way in: guessing their zone is how timestamps drift.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware value")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = sa.MetaData()

predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("as_of_date", sa.Date(), nullable=False),
    sa.Column("ticker", sa.String(MAX_LENGTHS["ticker"]), nullable=False),
    sa.Column("prob_up", sa.Float(precision=53), nullable=False),
    sa.Column("predicted_class", sa.SmallInteger(), nullable=False),
    sa.Column("label", sa.String(MAX_LENGTHS["label"]), nullable=False),
    sa.Column("horizon", sa.Integer(), nullable=False),
    sa.Column("model_version", sa.String(MAX_LENGTHS["model_version"]), nullable=False),
    sa.Column("model_sha256", sa.String(MAX_LENGTHS["model_sha256"]), nullable=False),
    sa.Column("flow_run_id", sa.String(MAX_LENGTHS["flow_run_id"]), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint(*PREDICTION_KEY, name="uq_predictions_day_ticker_model"),
    sa.Index("ix_predictions_ticker_date", "ticker", "as_of_date"),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("flow_run_id", sa.String(MAX_LENGTHS["flow_run_id"]), primary_key=True),
    sa.Column("flow_name", sa.String(128), nullable=False),
    sa.Column("parameters", sa.JSON(), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("n_scored", sa.Integer(), nullable=False),
    sa.Column("n_skipped", sa.Integer(), nullable=False),
    sa.Column("n_failed", sa.Integer(), nullable=False),
    sa.Column("model_version", sa.String(MAX_LENGTHS["model_version"]), nullable=True),
    sa.Column("model_sha256", sa.String(MAX_LENGTHS["model_sha256"]), nullable=True),
    sa.Column("message", sa.Text(), nullable=True),
)

_RUN_COLUMNS: tuple[str, ...] = tuple(column.name for column in runs.columns)


@dataclass(frozen=True)
class RunRecord:
    """One flow (or CLI) run: what it was asked and, once finished, how it went.

    ``parameters`` is stored as JSON; values JSON cannot hold (dates, paths)
    are stored as their ``str`` and read back as strings.
    """

    flow_run_id: str
    flow_name: str
    started_at: datetime
    parameters: dict[str, Any] = field(default_factory=dict)
    status: str = "running"
    finished_at: datetime | None = None
    n_scored: int = 0
    n_skipped: int = 0
    n_failed: int = 0
    model_version: str | None = None
    model_sha256: str | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        if not self.flow_run_id:
            raise ValueError("a run needs a flow_run_id")
        if self.status not in RUN_STATUSES:
            raise ValueError(f"run status {self.status!r} is not one of {RUN_STATUSES}")
        for stamp in (self.started_at, self.finished_at):
            if stamp is not None and stamp.tzinfo is None:
                raise ValueError("run timestamps must be timezone-aware")

    def as_row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _RUN_COLUMNS}


class PredictionStore(AbstractContextManager["PredictionStore"]):
    """Predictions and runs in the database at ``url`` (default: settings' database URL).

    Construction does no I/O. Every public method raises
    :class:`~stocktrend.errors.StorageError` when the database cannot be
    reached; the store stays usable, so the same call succeeds once the
    database is back (pooled connections are re-checked before use).
    """

    def __init__(
        self, url: str | None = None, *, connect_timeout: float = 5, busy_timeout: float = 30
    ) -> None:
        self.url = parse_url(url or get_settings().resolved_database_url)
        self.engine: Engine = make_engine(
            self.url, connect_timeout=connect_timeout, busy_timeout=busy_timeout
        )
        self._writer = writer(self.engine)
        self._migrated = False

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close pooled connections (the store can still be used; it reconnects)."""
        self.engine.dispose()

    # -- schema ----------------------------------------------------------------------------------

    def migrate(self) -> list[int]:
        """Bring the schema up to date now (else done on first use); return versions applied."""
        with storage_errors(self.url, "migrate the database"):
            applied = migrate(self.engine)
        self._migrated = True
        return applied

    def schema_version(self) -> int:
        with storage_errors(self.url, "read the schema version"):
            return schema_version(self.engine)

    def _ready(self) -> None:
        if not self._migrated:
            migrate(self.engine)
            self._migrated = True

    @contextmanager
    def _writing(self, action: str) -> Iterator[Connection]:
        """A write transaction (SQLite: write lock first), schema ensured, errors translated."""
        with storage_errors(self.url, action):
            self._ready()
            with self._writer.begin() as conn:
                yield conn

    @contextmanager
    def _reading(self, action: str) -> Iterator[Connection]:
        with storage_errors(self.url, action):
            self._ready()
            with self.engine.connect() as conn:
                yield conn

    # -- writes ----------------------------------------------------------------------------------

    def upsert_predictions(self, df: pd.DataFrame, run: RunRecord | None = None) -> int:
        """Insert or update rows by key, plus ``run``'s row, in one transaction; return rows."""
        frame = _in_key_order(validate_predictions(df))
        with self._writing("write predictions") as conn:
            if run is not None:
                _upsert_run(conn, run)
            _upsert_rows(conn, frame)
        return len(frame)

    def replace_day(
        self, day: DateLike, model_version: str, df: pd.DataFrame, run: RunRecord | None = None
    ) -> int:
        """Make ``df`` the day's whole content for ``model_version``, in one transaction.

        Tickers stored for the day but absent from ``df`` are deleted. Concurrent
        replacements of the same day are serialised (advisory lock on
        PostgreSQL, the write lock on SQLite), so the last one wins whole.
        """
        frame = _in_key_order(validate_predictions(df))
        day = to_day(day)
        outside = (frame["as_of_date"] != day) | (frame["model_version"] != model_version)
        if outside.any():
            raise ValueError(
                f"replace_day({day:%Y-%m-%d}, {model_version!r}) got {int(outside.sum())} rows "
                "for another day or model version"
            )
        with self._writing("replace predictions") as conn:
            _lock_day(conn, day, model_version)
            if run is not None:
                _upsert_run(conn, run)
            conn.execute(
                sa.delete(predictions).where(
                    predictions.c.as_of_date == day.date(),
                    predictions.c.model_version == model_version,
                )
            )
            _upsert_rows(conn, frame)
        return len(frame)

    def record_run(self, run: RunRecord) -> None:
        """Insert or overwrite the run's row (call at start, again at the end if you like)."""
        with self._writing("record the run") as conn:
            _upsert_run(conn, run)

    def finish_run(
        self,
        flow_run_id: str,
        *,
        status: str,
        n_scored: int,
        n_skipped: int = 0,
        n_failed: int = 0,
        message: str | None = None,
        finished_at: datetime | None = None,
    ) -> RunRecord:
        """Mark a recorded run finished; return the updated record (``ValueError`` if unknown)."""
        with self._writing("finish the run") as conn:
            current = _get_run(conn, flow_run_id)
            if current is None:
                raise ValueError(f"no run {flow_run_id!r} recorded")
            done = replace(
                current,
                status=status,
                n_scored=n_scored,
                n_skipped=n_skipped,
                n_failed=n_failed,
                message=message,
                finished_at=finished_at or datetime.now(UTC),
            )
            _upsert_run(conn, done)
        return done

    # -- reads -----------------------------------------------------------------------------------

    def get_run(self, flow_run_id: str) -> RunRecord | None:
        with self._reading("read runs") as conn:
            return _get_run(conn, flow_run_id)

    def read_runs(self, limit: int | None = None) -> list[RunRecord]:
        """Recorded runs, newest first."""
        query = sa.select(runs).order_by(runs.c.started_at.desc(), runs.c.flow_run_id)
        if limit is not None:
            query = query.limit(limit)
        with self._reading("read runs") as conn:
            return [RunRecord(**dict(row)) for row in conn.execute(query).mappings()]

    def read_predictions(
        self,
        ticker: str | Sequence[str] | None = None,
        as_of: DateLike | None = None,
        start: DateLike | None = None,
        end: DateLike | None = None,
        model_version: str | None = None,
        latest: bool = False,
    ) -> pd.DataFrame:
        """Stored predictions in the record contract (``start``/``end`` inclusive).

        ``latest=True`` keeps, per ticker, the row with the newest as_of_date
        among those matching the filters (ties: newest created_at, then the
        highest model_version), sorted by ticker; otherwise rows are sorted by
        as_of_date, model_version, ticker.
        """
        conditions = _conditions(ticker, as_of, start, end, model_version)
        query = _latest_query(conditions) if latest else _plain_query(conditions)
        with self._reading("read predictions") as conn:
            rows = conn.execute(query).all()
        if not rows:
            return empty_predictions()
        frame = validate_predictions(pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS)))
        # Sorted here, not in SQL: PostgreSQL's locale collation orders "^GSPC" unlike SQLite.
        if latest:
            return frame.sort_values("ticker", ignore_index=True)
        return _in_key_order(frame)

    def latest_per_ticker(self, model_version: str | None = None) -> pd.DataFrame:
        """Each ticker's newest prediction (of ``model_version`` when given)."""
        return self.read_predictions(model_version=model_version, latest=True)

    def count(self) -> int:
        """Number of stored prediction rows."""
        with self._reading("count predictions") as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(predictions)).scalar())


# -- internals -----------------------------------------------------------------------------------

_VALUE_COLUMNS = tuple(c for c in PREDICTION_COLUMNS if c not in PREDICTION_KEY)


def _in_key_order(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["as_of_date", "model_version", "ticker"], ignore_index=True)


def _bind_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Plain Python values: drivers do not all accept numpy scalars or pandas NaN."""
    columns = {
        "as_of_date": [ts.date() for ts in frame["as_of_date"]],
        "ticker": frame["ticker"].tolist(),
        "prob_up": frame["prob_up"].tolist(),
        "predicted_class": frame["predicted_class"].tolist(),
        "label": frame["label"].tolist(),
        "horizon": frame["horizon"].tolist(),
        "model_version": frame["model_version"].tolist(),
        "model_sha256": frame["model_sha256"].tolist(),
        "flow_run_id": [None if pd.isna(v) else v for v in frame["flow_run_id"]],
        "created_at": [ts.to_pydatetime() for ts in frame["created_at"]],
    }
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def _chunks(rows: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for begin in range(0, len(rows), size):
        yield rows[begin : begin + size]


def _upsert_rows(conn: Connection, frame: pd.DataFrame) -> None:
    if frame.empty:
        return
    stmt = upsert_insert(conn, predictions)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(PREDICTION_KEY),
        set_={name: stmt.excluded[name] for name in _VALUE_COLUMNS},
    )
    for chunk in _chunks(_bind_rows(frame), CHUNK_ROWS):
        conn.execute(stmt, chunk)


def _upsert_run(conn: Connection, run: RunRecord) -> None:
    stmt = upsert_insert(conn, runs).values(run.as_row())
    stmt = stmt.on_conflict_do_update(
        index_elements=["flow_run_id"],
        set_={name: stmt.excluded[name] for name in _RUN_COLUMNS if name != "flow_run_id"},
    )
    conn.execute(stmt)


def _get_run(conn: Connection, flow_run_id: str) -> RunRecord | None:
    row = conn.execute(sa.select(runs).where(runs.c.flow_run_id == flow_run_id)).mappings().first()
    return None if row is None else RunRecord(**dict(row))


def _lock_day(conn: Connection, day: pd.Timestamp, model_version: str) -> None:
    """Serialise replacements of one (day, model) on PostgreSQL (SQLite's write lock does it)."""
    if conn.dialect.name != "postgresql":
        return
    digest = hashlib.blake2b(f"predictions|{day:%Y-%m-%d}|{model_version}".encode(), digest_size=8)
    key = int.from_bytes(digest.digest(), "big", signed=True)
    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))


def _conditions(
    ticker: str | Sequence[str] | None,
    as_of: DateLike | None,
    start: DateLike | None,
    end: DateLike | None,
    model_version: str | None,
) -> list[sa.ColumnElement[bool]]:
    c = predictions.c
    conditions: list[sa.ColumnElement[bool]] = []
    if ticker is not None:
        wanted = [ticker] if isinstance(ticker, str) else list(ticker)
        conditions.append(c.ticker.in_(wanted))
    if as_of is not None:
        conditions.append(c.as_of_date == to_day(as_of).date())
    if start is not None:
        conditions.append(c.as_of_date >= to_day(start).date())
    if end is not None:
        conditions.append(c.as_of_date <= to_day(end).date())
    if model_version is not None:
        conditions.append(c.model_version == model_version)
    return conditions


def _plain_query(conditions: Sequence[sa.ColumnElement[bool]]) -> sa.Select[Any]:
    c = predictions.c
    return sa.select(*(c[name] for name in PREDICTION_COLUMNS)).where(*conditions)


def _latest_query(conditions: Sequence[sa.ColumnElement[bool]]) -> sa.Select[Any]:
    c = predictions.c
    recency = (
        sa.func.row_number()
        .over(
            partition_by=c.ticker,
            order_by=(c.as_of_date.desc(), c.created_at.desc(), c.model_version.desc()),
        )
        .label("recency")
    )
    ranked = sa.select(*(c[name] for name in PREDICTION_COLUMNS), recency).where(*conditions)
    inner = ranked.subquery("ranked")
    return sa.select(*(inner.c[name] for name in PREDICTION_COLUMNS)).where(inner.c.recency == 1)


# -- model registry and drift evaluations (migrations 2 and 3) -----------------------------------
# Live definitions used by stocktrend.registry and stocktrend.storage.evaluations.

MODEL_STATUSES: tuple[str, ...] = (
    "registered",
    "champion",
    "challenger",
    "rejected",
    "retired",
    "rolled_back",
)
"""``model_versions.status``: what happened to a version last (the aliases say what serves)."""

model_versions = sa.Table(
    "model_versions",
    metadata,
    sa.Column("version", sa.String(MAX_LENGTHS["model_version"]), primary_key=True),
    sa.Column("sha256", sa.String(MAX_LENGTHS["model_sha256"]), nullable=False),
    sa.Column("parent_version", sa.String(MAX_LENGTHS["model_version"]), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("train_start", sa.Date(), nullable=True),
    sa.Column("train_end", sa.Date(), nullable=True),
    sa.Column("metrics", sa.JSON(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("path", sa.Text(), nullable=False),
    sa.Column("decision", sa.JSON(), nullable=True),
)

model_aliases = sa.Table(
    "model_aliases",
    metadata,
    sa.Column("alias", sa.String(32), primary_key=True),
    sa.Column(
        "version",
        sa.String(MAX_LENGTHS["model_version"]),
        sa.ForeignKey("model_versions.version", name="fk_model_aliases_version"),
        nullable=False,
    ),
    sa.Column("previous_version", sa.String(MAX_LENGTHS["model_version"]), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

model_alias_events = sa.Table(
    "model_alias_events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("alias", sa.String(32), nullable=False),
    sa.Column("version", sa.String(MAX_LENGTHS["model_version"]), nullable=False),
    sa.Column("previous_version", sa.String(MAX_LENGTHS["model_version"]), nullable=True),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.Column("changed_at", UTCDateTime(), nullable=False),
)

# One row per evaluate-drift run; n_resolved counts the resolved predictions inside the
# performance window (the ones every metric is computed on), n_pending those not yet resolved.
evaluations = sa.Table(
    "evaluations",
    metadata,
    sa.Column("evaluation_id", sa.String(36), primary_key=True),
    sa.Column("flow_run_id", sa.String(MAX_LENGTHS["flow_run_id"]), nullable=True),
    sa.Column("evaluated_at", UTCDateTime(), nullable=False),
    sa.Column("as_of_date", sa.Date(), nullable=False),
    sa.Column("model_version", sa.String(MAX_LENGTHS["model_version"]), nullable=False),
    sa.Column("model_sha256", sa.String(MAX_LENGTHS["model_sha256"]), nullable=False),
    sa.Column("window_start", sa.Date(), nullable=True),
    sa.Column("window_end", sa.Date(), nullable=True),
    sa.Column("n_sessions", sa.Integer(), nullable=False),
    sa.Column("n_resolved", sa.Integer(), nullable=False),
    sa.Column("n_pending", sa.Integer(), nullable=False),
    sa.Column("accuracy", sa.Float(precision=53), nullable=True),
    sa.Column("roc_auc", sa.Float(precision=53), nullable=True),
    sa.Column("brier", sa.Float(precision=53), nullable=True),
    sa.Column("log_loss", sa.Float(precision=53), nullable=True),
    sa.Column("reference_accuracy", sa.Float(precision=53), nullable=True),
    sa.Column("p_value", sa.Float(precision=53), nullable=True),
    sa.Column("share_drifted", sa.Float(precision=53), nullable=True),
    sa.Column("mean_p_up", sa.Float(precision=53), nullable=True),
    sa.Column("bullish_share", sa.Float(precision=53), nullable=True),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("rule", sa.Text(), nullable=False),
    sa.Column("report", sa.JSON(), nullable=False),
)

EVALUATION_COLUMNS: tuple[str, ...] = tuple(column.name for column in evaluations.columns)

# What happened after each (as_of_date, ticker) for a horizon: a fact about prices, shared by
# every model that predicted it. Joined with `predictions` it gives hit rates (see queries.py).
outcomes = sa.Table(
    "outcomes",
    metadata,
    sa.Column("as_of_date", sa.Date(), primary_key=True),
    sa.Column("ticker", sa.String(MAX_LENGTHS["ticker"]), primary_key=True),
    sa.Column("horizon", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("resolve_date", sa.Date(), nullable=False),
    sa.Column("realised_return", sa.Float(precision=53), nullable=False),
    sa.Column("outcome", sa.SmallInteger(), nullable=False),
    sa.Column("recorded_at", UTCDateTime(), nullable=False),
)

OUTCOME_COLUMNS: tuple[str, ...] = tuple(column.name for column in outcomes.columns)
