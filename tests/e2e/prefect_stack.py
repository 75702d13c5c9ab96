"""A real Prefect stack for end-to-end tests: server, process workers, CLI and REST calls.

Everything runs as separate processes started with the project's own
``prefect`` executable, exactly as an operator would start them; the test
process talks to the server over HTTP only. It never sets PREFECT_API_URL in
its own environment, so the other test modules' temporary servers
(``prefect_test_harness``) are not affected.

Processes start in their own session so a kill reaches the whole tree; the
process worker starts each flow run in yet another session, which is why
:meth:`ManagedProcess.kill` walks the children with psutil (installed with
dask's ``distributed``) rather than signalling a process group.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil

REPO = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))
PREFECT_YAML = REPO / "deployments" / "prefect.yaml"
AUTOMATIONS_YAML = REPO / "deployments" / "automations.yaml"
OUTPUT = REPO / "test-output" / "e2e"
POOL = "stocktrend-process"
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}

T = TypeVar("T")


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(
    check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5
) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class ManagedProcess:
    """One long-running command with its output in a log file, stoppable or killable."""

    def __init__(self, args: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.args = args
        self.env = dict(env)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.args,
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _tree(self) -> list[psutil.Process]:
        if self.proc is None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL the process and every descendant at once: a lost machine, not a shutdown."""
        tree = self._tree()
        for process in tree:
            with suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(tree, timeout=10)
        if self.proc is not None:
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM (graceful), then SIGKILL whatever is left of the tree."""
        if not self.alive:
            self.kill()
            return
        tree = self._tree()
        assert self.proc is not None
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        _, alive = psutil.wait_procs(tree, timeout=timeout)
        for process in alive:
            with suppress(psutil.NoSuchProcess):
                process.kill()
        self.proc.wait(timeout=10)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""


class PrefectServer(ManagedProcess):
    """``prefect server start`` on 127.0.0.1:``port``; restartable on the same database."""

    def __init__(self, port: int, env: Mapping[str, str], log_path: Path) -> None:
        args = [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
        super().__init__(args, env, log_path)
        self.port = port
        self.ui_url = f"http://127.0.0.1:{port}"
        self.api_url = f"{self.ui_url}/api"

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def start_and_wait(self, timeout: float = 120) -> None:
        self.start()

        def ready() -> bool:
            if not self.alive:
                raise RuntimeError(f"prefect server exited:\n{self.log_tail()}")
            return self.healthy()

        wait_until(ready, timeout, f"the Prefect server on port {self.port}")


class PrefectWorker(ManagedProcess):
    """``prefect worker start`` for one pool, under a fixed name."""

    def __init__(self, name: str, pool: str, env: Mapping[str, str], log_path: Path) -> None:
        args = [PREFECT, "worker", "start", "--pool", pool, "--name", name, "--type", "process"]
        super().__init__(args, env, log_path)
        self.name = name
        self.pool = pool

    def starts_logged(self) -> int:
        """How many times this worker has announced it started (restarts append to one log)."""
        return self.log_tail(chars=10**7).count(f"Worker '{self.name}' started!")


def prefect_cli(*commands: Iterable[str], env: Mapping[str, str], timeout: float = 180) -> str:
    """Run ``prefect --no-prompt ARGS`` for each command, all at once, from the repository root.

    Independent commands run in parallel (each pays Prefect's import time);
    their combined output is returned, or the first failure raised with its output.
    """
    started = [
        (
            [PREFECT, "--no-prompt", *args],
            subprocess.Popen(
                [PREFECT, "--no-prompt", *args],
                cwd=REPO,
                env=dict(env),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ),
        )
        for args in commands
    ]
    outputs = []
    for command, proc in started:
        output, _ = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            raise AssertionError(f"{' '.join(command[1:])} failed ({proc.returncode}):\n{output}")
        outputs.append(output)
    return "\n".join(outputs)


class PrefectApi:
    """The few REST calls the tests need, against one server."""

    def __init__(self, api_url: str) -> None:
        self.http = httpx.Client(base_url=api_url, timeout=30)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def deployment(self, flow_name: str, name: str) -> dict[str, Any]:
        return self._json("GET", f"/deployments/name/{flow_name}/{name}")

    def deployments(self) -> list[dict[str, Any]]:
        return self._json("POST", "/deployments/filter", json={})

    def create_run(self, deployment_id: str, parameters: Mapping[str, Any]) -> str:
        run = self._json(
            "POST",
            f"/deployments/{deployment_id}/create_flow_run",
            json={"parameters": dict(parameters)},
        )
        return run["id"]

    def flow_run(self, run_id: str) -> dict[str, Any]:
        return self._json("GET", f"/flow_runs/{run_id}")

    def state_type(self, run_id: str) -> str | None:
        state = self.flow_run(run_id).get("state") or {}
        return state.get("type")

    def wait_for_state(
        self, run_id: str, wanted: set[str], timeout: float, stop_at_final: bool = True
    ) -> dict[str, Any]:
        """The run once its state type is in ``wanted``; fails early on another final state."""

        def check() -> dict[str, Any] | None:
            run = self.flow_run(run_id)
            kind = (run.get("state") or {}).get("type")
            if kind in wanted:
                return run
            if stop_at_final and kind in FINAL_STATES:
                message = (run.get("state") or {}).get("message")
                raise AssertionError(f"flow run {run_id} ended {kind}: {message}")
            return None

        return wait_until(check, timeout, f"flow run {run_id} to reach {sorted(wanted)}")

    def state_history(self, run_id: str) -> list[dict[str, Any]]:
        return self._json("GET", "/flow_run_states/", params={"flow_run_id": run_id})

    def flow_runs(self, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        return self._json("POST", "/flow_runs/filter", json=dict(body))

    def artifacts(self, run_id: str) -> list[dict[str, Any]]:
        body = {"artifacts": {"flow_run_id": {"any_": [run_id]}}}
        return self._json("POST", "/artifacts/filter", json=body)

    def workers(self, pool: str) -> list[dict[str, Any]]:
        return self._json("POST", f"/work_pools/{pool}/workers/filter", json={})

    def online_workers(self, pool: str) -> set[str]:
        return {w["name"] for w in self.workers(pool) if w.get("status") == "ONLINE"}

    def automations(self) -> list[dict[str, Any]]:
        return self._json("POST", "/automations/filter", json={})

    def close(self) -> None:
        self.http.close()


@dataclass
class Stack:
    """What the tests need to drive and inspect the running stack."""

    server: PrefectServer
    api: PrefectApi
    env: dict[str, str]
    worker_env: dict[str, str]
    predictions_url: str
    stocktrend_home: Path
    output: Path
    deployed: list[str]
    workers: list[PrefectWorker] = field(default_factory=list)

    def new_worker(self, name: str) -> PrefectWorker:
        """A worker on the pool (not started); stopped at the end of the session."""
        worker = PrefectWorker(name, POOL, self.worker_env, self.output / "logs" / f"{name}.log")
        self.workers.append(worker)
        return worker

    def start_workers(self, *workers: PrefectWorker, timeout: float = 60) -> None:
        """Start ``workers`` together; return once each polls (its log says so, and the server)."""
        before = {w.name: w.starts_logged() for w in workers}
        for worker in workers:
            worker.start()

        def all_online() -> bool:
            online = self.api.online_workers(POOL)
            return all(w.starts_logged() > before[w.name] and w.name in online for w in workers)

        wait_until(all_online, timeout, f"workers {[w.name for w in workers]} to come online")

    def run_deployment(self, name: str, parameters: dict[str, Any]) -> str:
        deployment = self.api.deployment(name, name)
        return self.api.create_run(deployment["id"], parameters)
