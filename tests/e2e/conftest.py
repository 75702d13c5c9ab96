"""One Prefect stack per test session, shared by the deployment and browser tests.

``prefect server start`` runs on a free local port, backed by a fresh
PostgreSQL database (``prefect_test_<hex>``) on the server named by
STOCKTREND_TEST_POSTGRES_URL; the deployments come from
``deployments/prefect.yaml`` through ``prefect deploy``; process workers write
predictions into a fresh schema of that PostgreSQL. Without the variable the
tests skip, and with STOCKTREND_REQUIRE_POSTGRES=1 (CI) that is a failure, as
for every PostgreSQL test here. Everything is dropped at the end; logs and
screenshots stay under ``test-output/e2e/`` (gitignored).

Timings are tightened for tests only (worker poll 1 s, slot retry 1 s, flow
heartbeats every 30 s with a 45 s crash window); production values are in
``deployments/automations.yaml`` and the README.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from prefect_stack import (
    AUTOMATIONS_YAML,
    OUTPUT,
    POOL,
    PREFECT_YAML,
    REPO,
    PrefectApi,
    PrefectServer,
    PrefectWorker,
    Stack,
    free_port,
    prefect_cli,
    wait_until,
)
from sqlalchemy.pool import NullPool

TEST_CRASH_WINDOW_S = 45
"""Heartbeats come every 30 s here, so 45 s without one means the process is gone."""


def pytest_configure(config: pytest.Config) -> None:
    """Load db_fixtures (PostgreSQL URL check, fresh schemas) as the plugin it is elsewhere."""
    if not config.pluginmanager.has_plugin("db_fixtures"):
        config.pluginmanager.import_plugin("db_fixtures")


def _deployments_in_yaml() -> list[dict[str, Any]]:
    return yaml.safe_load(PREFECT_YAML.read_text())["deployments"]


def _deployment_names(specs: list[dict[str, Any]]) -> list[str]:
    """Every deployment of prefect.yaml; a missing entrypoint file fails here, not later."""
    missing = {
        spec["name"]: spec["entrypoint"]
        for spec in specs
        if not (REPO / spec["entrypoint"].split(":", 1)[0]).is_file()
    }
    assert not missing, f"prefect.yaml names flow files that do not exist: {missing}"
    return [spec["name"] for spec in specs]


def _create_database(admin_url: str) -> tuple[str, str]:
    """A fresh database for the Prefect server: (its name, its asyncpg URL)."""
    name = f"prefect_test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    engine.dispose()
    url = sa.make_url(admin_url).set(drivername="postgresql+asyncpg", database=name, query={})
    return name, url.render_as_string(hide_password=False)


def _drop_database(admin_url: str, name: str) -> None:
    engine = sa.create_engine(admin_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    engine.dispose()


def _base_env(home: Path, api_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _pool_exists(api: PrefectApi) -> bool:
    return api.http.get(f"/work_pools/{POOL}").status_code == 200


def _crash_automation_for_tests(target: Path) -> Path:
    """deployments/automations.yaml with the crash window scaled to the test heartbeats."""
    spec = yaml.safe_load(AUTOMATIONS_YAML.read_text())
    for automation in spec["automations"]:
        automation["trigger"]["within"] = TEST_CRASH_WINDOW_S
    target.write_text(yaml.safe_dump(spec))
    return target


@pytest.fixture(scope="session")
def prefect_stack(
    postgres_admin_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Server on PostgreSQL, work pool, automations and deployments; torn down at the end."""
    from db_fixtures import postgres_schema, with_search_path

    shutil.rmtree(OUTPUT, ignore_errors=True)
    (OUTPUT / "logs").mkdir(parents=True)
    base = tmp_path_factory.mktemp("prefect-stack")
    db_name, db_url = _create_database(postgres_admin_url)
    port = free_port()
    env = _base_env(base / "prefect-home", f"http://127.0.0.1:{port}/api")
    server_env = {
        **env,
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": db_url,
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "1",
    }
    server = PrefectServer(port, server_env, OUTPUT / "logs" / "server.log")
    api = PrefectApi(server.api_url)
    stack: Stack | None = None
    try:
        with postgres_schema(postgres_admin_url) as schema:
            server.start_and_wait()
            predictions_url = with_search_path(postgres_admin_url, schema)
            home = base / "stocktrend-home"
            worker_env = {
                **env,
                "STOCKTREND_HOME": str(home),
                "STOCKTREND_DATABASE_URL": predictions_url,
                "PREFECT_WORKER_QUERY_SECONDS": "1",
                "PREFECT_WORKER_HEARTBEAT_SECONDS": "5",
                "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30",
            }
            names = _deployment_names(_deployments_in_yaml())
            stack = Stack(
                server=server,
                api=api,
                env=env,
                worker_env=worker_env,
                predictions_url=predictions_url,
                stocktrend_home=home,
                output=OUTPUT,
                deployed=names,
            )
            # The first worker creates the process work pool (as `prefect worker start
            # --type process` does for a missing pool), then comes online while the
            # deployments and the automation are created.
            first_worker = stack.new_worker("worker-1")
            first_worker.start()
            wait_until(lambda: _pool_exists(api), 60, f"work pool {POOL}")
            automations = _crash_automation_for_tests(base / "automations.yaml")
            deploy = ["deploy", "--prefect-file", str(PREFECT_YAML.relative_to(REPO))]
            prefect_cli(
                [*deploy, "--all"],
                ["automation", "create", "--from-file", str(automations)],
                env=env,
            )
            yield stack
    finally:
        for worker in stack.workers if stack else []:
            worker.stop(timeout=10)
        server.stop()
        api.close()
        _drop_database(postgres_admin_url, db_name)


@pytest.fixture(scope="session")
def worker(prefect_stack: Stack) -> PrefectWorker:
    """The pool's first worker, online; the kill test kills it and starts it again."""
    first = prefect_stack.workers[0]
    wait_until(lambda: first.name in prefect_stack.api.online_workers(POOL), 60, "worker-1 online")
    return first


@pytest.fixture(scope="session")
def completed_daily_run(prefect_stack: Stack, worker: PrefectWorker) -> str:
    """A daily-scoring run of the bundled sample's last session, Completed through the worker."""
    run_id = prefect_stack.run_deployment("daily-scoring", {"as_of": "2013-03-01"})
    prefect_stack.api.wait_for_state(run_id, {"COMPLETED"}, timeout=180)
    return run_id
