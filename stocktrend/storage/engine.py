"""SQLAlchemy engines for the prediction database, and the errors users see when it is down.

Only SQLite and PostgreSQL are supported: the stores rely on each one's
native ``INSERT ... ON CONFLICT DO UPDATE``.

SQLite is set up so that concurrent writers queue instead of failing: WAL
journal (readers never block the writer), a busy timeout, and write
transactions opened with ``BEGIN IMMEDIATE``. Without the last one, two
transactions that both read before writing deadlock inside SQLite and one
gets "database is locked" at once, busy timeout or not. pysqlite's own
transaction handling is switched off so the ``BEGIN`` SQLAlchemy emits is the
only one. The SQLite file's directory is created when a connection is opened,
not when the engine is built.

PostgreSQL gets a connect timeout (a dead host fails in seconds, not minutes)
and ``pool_pre_ping``, so a pooled connection that died with the server is
replaced instead of failing the first query after the server comes back.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Connection, Engine

from stocktrend.errors import StorageError

WRITE_OPTION = "stocktrend_write"
"""Execution option marking a connection whose transactions take SQLite's write lock up front."""

SUPPORTED_BACKENDS = ("sqlite", "postgresql")
_REASON_LIMIT = 200


def parse_url(url: str | URL) -> URL:
    """``url`` parsed, or ``StorageError`` (never echoing the URL: it may hold a password)."""
    try:
        parsed = sa.make_url(url)
    except exc.ArgumentError as error:
        raise StorageError(
            "the database URL is not a valid SQLAlchemy URL",
            hint="check STOCKTREND_DATABASE_URL, e.g. postgresql+psycopg://user@host:5432/db",
        ) from error
    if parsed.get_backend_name() not in SUPPORTED_BACKENDS:
        raise StorageError(
            f"unsupported database {parsed.get_backend_name()!r}",
            hint="use a sqlite:/// or postgresql+psycopg:// URL in STOCKTREND_DATABASE_URL",
        )
    return parsed


def make_engine(url: str | URL, *, connect_timeout: float = 5, busy_timeout: float = 30) -> Engine:
    """An engine set up as described in the module docstring; connects lazily.

    ``connect_timeout`` bounds a PostgreSQL connection attempt; ``busy_timeout``
    is how long a SQLite writer waits for another writer's lock.
    """
    parsed = parse_url(url)
    serializer = partial(json.dumps, default=str, sort_keys=True)
    try:
        if parsed.get_backend_name() == "sqlite":
            engine = sa.create_engine(
                parsed, connect_args={"timeout": busy_timeout}, json_serializer=serializer
            )
            _install_sqlite_hooks(engine, busy_timeout)
            return engine
        return sa.create_engine(
            parsed,
            connect_args={"connect_timeout": max(1, round(connect_timeout))},
            pool_pre_ping=True,
            json_serializer=serializer,
        )
    except (exc.ArgumentError, exc.NoSuchModuleError) as error:
        raise StorageError(
            f"cannot use database URL {describe(parsed)}: {error}",
            hint="check STOCKTREND_DATABASE_URL",
        ) from error


def writer(engine: Engine) -> Engine:
    """The same engine (same pool), with transactions that take SQLite's write lock first."""
    return engine.execution_options(**{WRITE_OPTION: True})


def has_sqlite_hooks(engine: Engine) -> bool:
    """Whether ``engine`` came from :func:`make_engine` (only matters on SQLite)."""
    return event.contains(engine, "begin", _sqlite_begin)


def describe(url: URL) -> str:
    """Where the database is, for messages: host, port and name, never the password."""
    if url.get_backend_name() == "sqlite":
        return f"SQLite database {url.database or ':memory:'}"
    host = url.host or "local socket"
    port = url.port or 5432
    return f"PostgreSQL at {host}:{port}/{url.database or ''}"


@contextmanager
def storage_errors(url: URL, action: str) -> Iterator[None]:
    """Turn "cannot reach / open the database" into a one-line ``StorageError``.

    Only operational failures are translated (connection refused, timeout,
    locked file, missing directory); integrity and programming errors are bugs
    and keep their traceback.
    """
    try:
        yield
    except (exc.OperationalError, exc.InterfaceError, OSError) as error:
        raise StorageError(
            f"cannot {action} ({describe(url)}): {_reason(error, url)}", hint=_hint(url)
        ) from error


def _reason(error: BaseException, url: URL) -> str:
    cause = getattr(error, "orig", None) or error
    lines = str(cause).strip().splitlines() or [type(cause).__name__]
    reason = lines[0].strip()
    if url.password:
        reason = reason.replace(str(url.password), "***")
    return reason[:_REASON_LIMIT]


def _hint(url: URL) -> str:
    if url.get_backend_name() == "sqlite":
        return "check STOCKTREND_DATABASE_URL and STOCKTREND_HOME: the directory must be writable"
    return "is PostgreSQL running? check STOCKTREND_DATABASE_URL"


def _install_sqlite_hooks(engine: Engine, busy_timeout: float) -> None:
    database = engine.url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        directory = Path(database).expanduser().parent
        event.listen(engine, "do_connect", partial(_make_directory, directory))
    event.listen(engine, "connect", partial(_sqlite_connect, busy_timeout))
    event.listen(engine, "begin", _sqlite_begin)


def _make_directory(directory: Path, *_args: Any) -> None:
    directory.mkdir(parents=True, exist_ok=True)


def _sqlite_connect(busy_timeout: float, dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy's BEGIN (below) is the only one
    cursor = dbapi_connection.cursor()
    try:
        _enable_wal(cursor, busy_timeout)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _enable_wal(cursor: Any, timeout: float) -> None:
    """Switch the file to WAL, retrying while another connection is switching it too.

    SQLite answers a concurrent journal-mode change with "database is locked" at
    once, without consulting the busy timeout (seen on a fresh file opened by two
    writers together). WAL mode is persistent, so only a new file's first
    connections ever wait here.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _sqlite_begin(conn: Connection) -> None:
    immediate = conn.get_execution_options().get(WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def upsert_insert(conn: Connection, table: sa.Table) -> Any:
    """The dialect's own INSERT for ``table``: the one that has ``on_conflict_do_update``.

    SQLite and PostgreSQL both support ``INSERT ... ON CONFLICT``, but SQLAlchemy
    exposes it only on the dialect-specific constructs.
    """
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)
