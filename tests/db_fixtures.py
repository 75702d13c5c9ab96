"""Fixtures for the storage tests: one test body, run on SQLite and on PostgreSQL.

PostgreSQL comes from ``STOCKTREND_TEST_POSTGRES_URL``. Unset or unreachable,
its tests are skipped, unless ``STOCKTREND_REQUIRE_POSTGRES=1`` (CI), where
that is a failure: a CI job that silently skipped the database tests would
report green for code it never ran. Each PostgreSQL test gets a fresh schema
(``st_<hex>``, selected with ``search_path``) that is dropped afterwards, so
tests never see each other's rows and can run against a shared server.

A test module uses them with ``pytest_plugins = ["db_fixtures"]`` (importing the
fixture functions instead would shadow them with the test arguments).
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from stocktrend.storage.sql_store import PredictionStore

POSTGRES_URL_ENV = "STOCKTREND_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_ENV = "STOCKTREND_REQUIRE_POSTGRES"


def _postgres_unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_POSTGRES_ENV) == "1":
        pytest.fail(f"{reason}, and {REQUIRE_POSTGRES_ENV}=1 requires PostgreSQL")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """The configured PostgreSQL URL, checked once per session."""
    url = os.environ.get(POSTGRES_URL_ENV, "")
    if not url:
        _postgres_unavailable(f"{POSTGRES_URL_ENV} is not set")
    engine = sa.create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            pass
    except sa.exc.SQLAlchemyError as exc:
        shown = sa.make_url(url).render_as_string(hide_password=True)
        _postgres_unavailable(f"PostgreSQL at {shown} is unreachable: {exc.__class__.__name__}")
    finally:
        engine.dispose()
    return url


def with_search_path(
    url: str, schema: str, *, host: str | None = None, port: int | None = None
) -> str:
    """``url`` connecting into ``schema`` (optionally through another host/port)."""
    parsed = sa.make_url(url)
    options = " ".join(filter(None, [parsed.query.get("options"), f"-csearch_path={schema}"]))
    parsed = parsed.update_query_dict({"options": options})
    if host is not None:
        parsed = parsed.set(host=host, port=port)
    return parsed.render_as_string(hide_password=False)


@contextmanager
def postgres_schema(admin_url: str) -> Iterator[str]:
    """A fresh schema for one test; yields its name and drops it (and its tables) after."""
    schema = f"st_{uuid.uuid4().hex}"
    engine = sa.create_engine(admin_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        engine.dispose()


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """An empty database: a SQLite file in a directory that does not exist yet, or a schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'not' / 'yet' / 'stocktrend.db'}"
        return
    admin_url = request.getfixturevalue("postgres_admin_url")
    with postgres_schema(admin_url) as schema:
        yield with_search_path(admin_url, schema)


@pytest.fixture
def store(db_url: str) -> Iterator[PredictionStore]:
    """A store on the empty database, closed after the test."""
    with PredictionStore(db_url) as prediction_store:
        yield prediction_store


class TcpProxy:
    """A local port forwarding to a server, switched off and on to play "database down".

    Stopping closes the listening socket and cuts every open connection, as a
    server restart would; while stopped, connecting is refused at once.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port: int = probe.getsockname()[1]
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._acceptor: threading.Thread | None = None

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        listener.settimeout(0.05)
        self._stop = threading.Event()
        self._acceptor = threading.Thread(
            target=self._accept, args=(listener, self._stop), daemon=True
        )
        self._acceptor.start()

    def stop(self) -> None:
        self._stop.set()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
            self._acceptor = None
        with self._lock:
            connections, self._connections = self._connections, []
        for sock in connections:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket, stop: threading.Event) -> None:
        with listener:
            while not stop.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                try:
                    upstream = socket.create_connection(self.target, timeout=5)
                except OSError:
                    client.close()
                    continue
                for sock in (client, upstream):
                    sock.settimeout(None)
                with self._lock:
                    self._connections += [client, upstream]
                for source, sink in ((client, upstream), (upstream, client)):
                    threading.Thread(target=_pump, args=(source, sink), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def postgres_proxy_url(postgres_admin_url: str) -> Iterator[tuple[str, TcpProxy]]:
    """A PostgreSQL URL (fresh schema) through a :class:`TcpProxy`, initially stopped."""
    target = sa.make_url(postgres_admin_url)
    proxy = TcpProxy(target.host or "127.0.0.1", target.port or 5432)
    with postgres_schema(postgres_admin_url) as schema:
        try:
            yield (
                with_search_path(postgres_admin_url, schema, host="127.0.0.1", port=proxy.port),
                proxy,
            )
        finally:
            proxy.stop()
