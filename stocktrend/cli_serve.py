"""``stocktrend serve``: a local Prefect server plus every deployment, served from this process.

The laptop path to the scheduled system: no database to set up, no work pool,
no worker. It starts ``prefect server start`` bound to 127.0.0.1 (SQLite under
PREFECT_HOME, or the PostgreSQL of PREFECT_SERVER_DATABASE_CONNECTION_URL),
points this process and its flow runs at it through PREFECT_API_URL, registers
the deployments of ``deployments/prefect.yaml`` through ``deployments/serve.py``
and serves them until Ctrl-C, then stops the server it started. If a Prefect
server already answers on the port, it is used and left running.

Wired into the main CLI with :func:`register`; also runnable on its own as
``python -m stocktrend.cli_serve`` (what ``make serve`` does).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from stocktrend.config import get_settings
from stocktrend.models import PROJECT_ROOT

HOST = "127.0.0.1"
SERVE_MODULE = PROJECT_ROOT / "deployments" / "serve.py"
console = Console()


def api_healthy(api_url: str, timeout: float = 2.0) -> bool:
    """Whether a Prefect API answers its health check at ``api_url``."""
    import httpx

    try:
        return httpx.get(f"{api_url}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def port_in_use(port: int) -> bool:
    import socket

    with socket.socket() as probe:
        return probe.connect_ex((HOST, port)) == 0


def start_server(port: int, log_path: Path, timeout: float) -> subprocess.Popen[bytes]:
    """``prefect server start`` on HOST:port in its own session; returns once it is healthy."""
    api_url = f"http://{HOST}:{port}/api"
    env = {
        **os.environ,
        "PREFECT_SERVER_API_HOST": HOST,
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_API_URL": api_url,
    }
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    prefect = Path(sys.executable).with_name("prefect")
    command = [str(prefect), "server", "start", "--host", HOST, "--port", str(port)]
    with log_path.open("ab") as log:
        server = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + timeout
    while not api_healthy(api_url):
        if server.poll() is not None:
            raise RuntimeError(f"the Prefect server exited ({server.returncode}); see {log_path}")
        if time.monotonic() > deadline:
            stop_server(server)
            raise RuntimeError(
                f"the Prefect server did not answer in {timeout:.0f}s; see {log_path}"
            )
        time.sleep(0.5)
    return server


def stop_server(server: subprocess.Popen[bytes], timeout: float = 20) -> None:
    """SIGTERM to the server's process group (uvicorn and its services), SIGKILL if it lingers."""
    if server.poll() is not None:
        return
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=10)
    except ProcessLookupError:
        pass


def load_serve_module(path: Path = SERVE_MODULE) -> ModuleType:
    """``deployments/serve.py`` (a script directory, not a package), imported by path."""
    spec = importlib.util.spec_from_file_location("stocktrend_deployments_serve", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _describe(deployments: list) -> Table:
    table = Table(title="served deployments")
    for column in ("deployment", "schedule", "triggers", "concurrency"):
        table.add_column(column)
    for deployment in deployments:
        schedules = (
            ", ".join(
                f"{s.schedule.cron} ({s.schedule.timezone})" for s in deployment.schedules or []
            )
            or "none (run from the UI or `prefect deployment run`)"
        )
        triggers = ", ".join(sorted(e for t in deployment.triggers for e in t.expect)) or "-"
        table.add_row(
            f"{deployment.name}/{deployment.name}",
            escape(schedules),
            escape(triggers),
            str(deployment.concurrency_limit or "-"),
        )
    return table


def serve(
    port: Annotated[int, typer.Option(help="Port of the local Prefect server (UI and API)")] = 4200,
    deployment: Annotated[
        list[str] | None,
        typer.Option("--deployment", "-d", help="Serve only these deployments (repeatable)"),
    ] = None,
    startup_timeout: Annotated[float, typer.Option(help="Seconds to wait for the server")] = 120,
) -> None:
    """Start a local Prefect server on 127.0.0.1, register the deployments and serve them."""
    stop_hint = _stop_hint()
    api_url = f"http://{HOST}:{port}/api"
    ui_url = f"http://{HOST}:{port}"
    log_path = get_settings().home / "logs" / "prefect-server.log"
    server = None
    if api_healthy(api_url):
        console.print(f"using the Prefect server already running at {ui_url}")
    elif port_in_use(port):
        console.print(f"[bold red]error:[/] port {port} is taken by something else; use --port")
        raise typer.Exit(code=2)
    else:
        with console.status(f"starting the Prefect server on {ui_url} (log: {log_path})"):
            try:
                server = start_server(port, log_path, startup_timeout)
            except RuntimeError as exc:
                console.print(f"[bold red]error:[/] {escape(str(exc))}")
                raise typer.Exit(code=2) from None
    os.environ["PREFECT_API_URL"] = api_url  # for this process and every flow run it starts
    try:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        os.chdir(PROJECT_ROOT)  # entrypoints in prefect.yaml are relative to the repository
        served = load_serve_module()
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            deployments, skipped = served.build_deployments(names=deployment or None)
            for name, reason in skipped.items():
                console.print(f"[yellow]not serving {escape(name)}:[/] {escape(reason)}")
            if not deployments:
                console.print("[bold red]error:[/] no deployment to serve")
                raise typer.Exit(code=2)
            console.print(_describe(deployments))
            console.print(f"Prefect UI: [bold]{ui_url}[/]  (API {api_url})")
            console.print(
                f"In another shell: export PREFECT_API_URL={api_url}\n"
                "  prefect deployment run backfill/backfill "
                "--param start=2013-01-02 --param end=2013-03-01\n"
                f"{stop_hint} stops serving (schedules are paused) and the server started here.",
                markup=False,
            )
            served.serve(*deployments, print_starting_message=False)
    finally:
        if server is not None:
            console.print("stopping the Prefect server")
            stop_server(server)


def _stop_hint() -> str:
    """How this process can be stopped, given the SIGINT disposition it inherited.

    A shell without job control (``cmd &`` in a script, ``nohup``, many CI
    runners) starts background commands with SIGINT ignored, and Python then
    leaves it ignored, so Ctrl-C cannot reach us. That is the caller's choice
    and is respected; SIGTERM (``kill PID``, what systemd and docker send)
    always stops serving cleanly.
    """
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        console.print(
            "[yellow]note:[/] this process was started with Ctrl-C (SIGINT) ignored, as "
            f"background jobs are; stop it with `kill {os.getpid()}` (SIGTERM)",
            soft_wrap=True,
        )
        return f"`kill {os.getpid()}`"
    return "Ctrl-C (or SIGTERM)"


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the ``stocktrend`` command line."""
    app.command(name="serve")(serve)


def main() -> None:  # pragma: no cover - `python -m stocktrend.cli_serve`
    standalone = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    standalone.command()(serve)
    standalone()


if __name__ == "__main__":  # pragma: no cover
    main()
