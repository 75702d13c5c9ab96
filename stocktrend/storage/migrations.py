"""Versioned schema for the prediction database: an ordered list of migrations.

The database records what it has in ``schema_migrations`` (version, name,
applied_at). :func:`migrate` applies the missing migrations in order, each in
its own transaction together with its ``schema_migrations`` row, so a
migration is either fully there or not at all. It is idempotent and safe to
call from several processes at once: on PostgreSQL each transaction first
takes a transaction-scoped advisory lock; on SQLite it is opened with
``BEGIN IMMEDIATE`` (see :mod:`stocktrend.storage.engine`), which serialises
writers. The loser of the race waits, then finds the version applied and
skips it.

Migrations are frozen history: each one defines the tables it creates with
its own ``MetaData``, never the live definitions in
:mod:`stocktrend.storage.sql_store`, so editing the code later cannot change
what version 1 meant.

Adding a migration (the next issue's ``evaluations`` table, say)::

    def _v2_evaluations(conn: Connection) -> None:
        metadata = sa.MetaData()
        sa.Table("evaluations", metadata, sa.Column("id", _ID, primary_key=True), ...)
        metadata.create_all(conn)

and append ``Migration(2, "evaluations", _v2_evaluations)`` to
:data:`MIGRATIONS` (plain SQL works too: ``Migration(3, "...", ddl("CREATE
INDEX ...", ...))``). Then add the table to ``sql_store`` for queries; the
test suite checks the two agree. Never edit or reorder a released migration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from stocktrend.errors import StorageError
from stocktrend.storage.engine import (
    has_sqlite_hooks,
    make_engine,
    parse_url,
    storage_errors,
    writer,
)

MIGRATION_LOCK_KEY = 0x5354_4D49_4752_4154
"""PostgreSQL advisory lock key ("STMIGRAT"), held only while a migration transaction runs."""

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
"""Surrogate keys: 64-bit on PostgreSQL; SQLite's rowid alias must be spelled INTEGER."""


@dataclass(frozen=True)
class Migration:
    """One schema step; ``apply`` runs inside the transaction that records it."""

    version: int
    name: str
    apply: Callable[[Connection], None]


def ddl(*statements: str) -> Callable[[Connection], None]:
    """A migration body made of plain SQL statements, run in order."""

    def apply(conn: Connection) -> None:
        for statement in statements:
            conn.exec_driver_sql(statement)

    return apply


def _v1_predictions_and_runs(conn: Connection) -> None:
    metadata = sa.MetaData()
    sa.Table(
        "predictions",
        metadata,
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("as_of_date", sa.Date(), nullable=False),
        sa.Column("ticker", sa.String(32), nullable=False),
        sa.Column("prob_up", sa.Float(precision=53), nullable=False),
        sa.Column("predicted_class", sa.SmallInteger(), nullable=False),
        sa.Column("label", sa.String(16), nullable=False),
        sa.Column("horizon", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("model_sha256", sa.String(64), nullable=False),
        sa.Column("flow_run_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint(
            "as_of_date", "ticker", "model_version", name="uq_predictions_day_ticker_model"
        ),
        sa.CheckConstraint("prob_up >= 0 AND prob_up <= 1", name="ck_predictions_prob_up"),
        sa.CheckConstraint("predicted_class IN (0, 1)", name="ck_predictions_class"),
        sa.CheckConstraint("label IN ('bearish', 'bullish')", name="ck_predictions_label"),
        sa.CheckConstraint("horizon >= 1", name="ck_predictions_horizon"),
        sa.Index("ix_predictions_ticker_date", "ticker", "as_of_date"),
    )
    sa.Table(
        "runs",
        metadata,
        sa.Column("flow_run_id", sa.String(64), primary_key=True),
        sa.Column("flow_name", sa.String(128), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("n_scored", sa.Integer(), nullable=False),
        sa.Column("n_skipped", sa.Integer(), nullable=False),
        sa.Column("n_failed", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=True),
        sa.Column("model_sha256", sa.String(64), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Index("ix_runs_started_at", "started_at"),
    )
    metadata.create_all(conn, checkfirst=False)


def _v2_model_registry(conn: Connection) -> None:
    metadata = sa.MetaData()
    sa.Table(
        "model_versions",
        metadata,
        sa.Column("version", sa.String(128), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("parent_version", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("train_start", sa.Date(), nullable=True),
        sa.Column("train_end", sa.Date(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("decision", sa.JSON(), nullable=True),
        sa.CheckConstraint(
            "status IN ('registered', 'champion', 'challenger', 'rejected', 'retired', "
            "'rolled_back')",
            name="ck_model_versions_status",
        ),
    )
    sa.Table(
        "model_aliases",
        metadata,
        sa.Column("alias", sa.String(32), primary_key=True),
        sa.Column(
            "version",
            sa.String(128),
            sa.ForeignKey("model_versions.version", name="fk_model_aliases_version"),
            nullable=False,
        ),
        sa.Column("previous_version", sa.String(128), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    sa.Table(
        "model_alias_events",
        metadata,
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("alias", sa.String(32), nullable=False),
        sa.Column("version", sa.String(128), nullable=False),
        sa.Column("previous_version", sa.String(128), nullable=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Index("ix_model_alias_events_alias", "alias", "id"),
    )
    metadata.create_all(conn, checkfirst=False)


def _v3_evaluations(conn: Connection) -> None:
    metadata = sa.MetaData()
    sa.Table(
        "evaluations",
        metadata,
        sa.Column("evaluation_id", sa.String(36), primary_key=True),
        sa.Column("flow_run_id", sa.String(64), nullable=True),
        sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("as_of_date", sa.Date(), nullable=False),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("model_sha256", sa.String(64), nullable=False),
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
        sa.CheckConstraint("decision IN ('drift', 'no_drift')", name="ck_evaluations_decision"),
        sa.Index("ix_evaluations_model_date", "model_version", "as_of_date"),
    )
    metadata.create_all(conn, checkfirst=False)


def _v4_outcomes(conn: Connection) -> None:
    metadata = sa.MetaData()
    sa.Table(
        "outcomes",
        metadata,
        sa.Column("as_of_date", sa.Date(), primary_key=True),
        sa.Column("ticker", sa.String(32), primary_key=True),
        sa.Column("horizon", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("resolve_date", sa.Date(), nullable=False),
        sa.Column("realised_return", sa.Float(precision=53), nullable=False),
        sa.Column("outcome", sa.SmallInteger(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("outcome IN (0, 1)", name="ck_outcomes_outcome"),
        sa.Index("ix_outcomes_ticker_date", "ticker", "as_of_date"),
    )
    metadata.create_all(conn, checkfirst=False)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "predictions and runs", _v1_predictions_and_runs),
    Migration(2, "model registry", _v2_model_registry),
    Migration(3, "evaluations", _v3_evaluations),
    Migration(4, "outcomes", _v4_outcomes),
)
"""Every migration, oldest first; versions are 1, 2, 3, ... without gaps."""


def _version_table(metadata: sa.MetaData) -> sa.Table:
    return sa.Table(
        "schema_migrations",
        metadata,
        sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
    )


SCHEMA_MIGRATIONS = _version_table(sa.MetaData())


def check_migrations(migrations: Sequence[Migration]) -> None:
    """Raise ``ValueError`` unless versions run 1, 2, 3, ... (catches a bad append in review)."""
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migration versions must be 1..n in order, got {versions}")


def applied_versions(conn: Connection) -> set[int]:
    """Versions recorded in the database (empty when it has never been migrated)."""
    if not sa.inspect(conn).has_table(SCHEMA_MIGRATIONS.name):
        return set()
    return {row[0] for row in conn.execute(sa.select(SCHEMA_MIGRATIONS.c.version))}


def schema_version(engine: Engine) -> int:
    """Highest applied version, 0 for an empty database."""
    with engine.connect() as conn:
        return max(applied_versions(conn), default=0)


def migrate(engine: Engine, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Apply the missing migrations, in order; return the versions this call applied.

    ``engine`` must come from :func:`stocktrend.storage.engine.make_engine`
    (on SQLite that is what makes the migration transactions exclusive).
    Raises ``StorageError`` when the database is newer than this code.
    """
    check_migrations(migrations)
    if engine.dialect.name == "sqlite" and not has_sqlite_hooks(engine):
        raise ValueError("migrate() needs an engine from stocktrend.storage.engine.make_engine")
    with engine.connect() as conn:
        present = applied_versions(conn)
        conn.rollback()
    _refuse_newer(present, migrations)
    applied = []
    for migration in migrations:
        if migration.version not in present and _apply_one(engine, migration):
            applied.append(migration.version)
    return applied


def _refuse_newer(present: set[int], migrations: Sequence[Migration]) -> None:
    newest = max(present, default=0)
    if newest > len(migrations):
        raise StorageError(
            f"the database schema is at version {newest}, newer than this stocktrend "
            f"knows ({len(migrations)})",
            hint="upgrade stocktrend, or point STOCKTREND_DATABASE_URL at another database",
        )


def _apply_one(engine: Engine, migration: Migration) -> bool:
    """Apply ``migration`` unless another process got there first; True if this call did."""
    with writer(engine).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
        SCHEMA_MIGRATIONS.create(conn, checkfirst=True)
        if migration.version in applied_versions(conn):
            return False
        migration.apply(conn)
        conn.execute(
            SCHEMA_MIGRATIONS.insert().values(
                version=migration.version, name=migration.name, applied_at=datetime.now(UTC)
            )
        )
    return True


@contextmanager
def migrated_connection(database_url: str, action: str, *, write: bool) -> Iterator[Connection]:
    """One transaction on an up-to-date schema; failures raise :class:`StorageError`.

    For the small stores (registry, evaluations, outcomes) that open the database
    per call. Writers take SQLite's write lock first (:func:`writer`), so two
    writers queue instead of failing on a lock upgrade.
    """
    url = parse_url(database_url)
    engine = make_engine(url)
    try:
        with storage_errors(url, action):
            migrate(engine)
            with (writer(engine) if write else engine).begin() as conn:
                yield conn
    finally:
        engine.dispose()
