"""The deployments of ``prefect.yaml``, served from one process: a laptop setup, no work pool.

    PREFECT_API_URL=http://127.0.0.1:4200/api python deployments/serve.py

(``make serve`` / ``stocktrend serve`` also start that local server first.)

The definitions are read from ``deployments/prefect.yaml`` rather than written
a second time here, so the served and the worker-based deployments cannot
drift apart: same names, entrypoints, parameters, schedules, triggers,
concurrency limits and tags. Only the work pool and the pull step are dropped,
because ``serve`` runs each flow run as a subprocess of this process, from
the repository root. A deployment whose flow file is missing is reported and
skipped, so the rest still serve.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from prefect import serve
from prefect.client.schemas.objects import ConcurrencyLimitConfig
from prefect.deployments.runner import RunnerDeployment
from prefect.events import DeploymentEventTrigger
from prefect.flows import load_flow_from_entrypoint
from prefect.schedules import Cron, Schedule

REPO = Path(__file__).resolve().parents[1]
PREFECT_YAML = REPO / "deployments" / "prefect.yaml"


def load_specs(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    """The ``deployments`` list of a prefect.yaml (YAML anchors already resolved)."""
    return yaml.safe_load(path.read_text())["deployments"]


def schedules_of(spec: dict[str, Any]) -> list[Schedule]:
    """Cron schedules as declared (prefect.yaml here uses cron only)."""
    schedules = []
    for entry in spec.get("schedules") or []:
        if "cron" not in entry:
            raise ValueError(f"{spec['name']}: only cron schedules are supported here: {entry}")
        schedules.append(
            Cron(
                entry["cron"],
                timezone=entry.get("timezone"),
                active=entry.get("active", True),
                parameters=entry.get("parameters") or {},
            )
        )
    return schedules


def concurrency_of(spec: dict[str, Any]) -> ConcurrencyLimitConfig | int | None:
    limit = spec.get("concurrency_limit")
    if isinstance(limit, dict):
        return ConcurrencyLimitConfig(**limit)
    return limit


def triggers_of(spec: dict[str, Any]) -> list[DeploymentEventTrigger]:
    triggers = []
    for trigger in spec.get("triggers") or []:
        fields = {k: v for k, v in trigger.items() if k != "type"}
        if trigger.get("type", "event") != "event":
            raise ValueError(f"{spec['name']}: only event triggers are supported here")
        triggers.append(DeploymentEventTrigger(**fields))
    return triggers


def to_runner_deployment(spec: dict[str, Any], root: Path = REPO) -> RunnerDeployment:
    """One prefect.yaml deployment as a served deployment (its flow imported from root)."""
    path, _, function = spec["entrypoint"].partition(":")
    flow = load_flow_from_entrypoint(f"{root / path}:{function}")
    return flow.to_deployment(
        name=spec["name"],
        description=spec.get("description"),
        tags=spec.get("tags"),
        parameters=spec.get("parameters") or {},
        schedules=schedules_of(spec),
        triggers=triggers_of(spec),
        concurrency_limit=concurrency_of(spec),
    )


def build_deployments(
    path: Path = PREFECT_YAML, root: Path = REPO, names: Sequence[str] | None = None
) -> tuple[list[RunnerDeployment], dict[str, str]]:
    """Served deployments for every spec whose flow file exists, and the skipped ones."""
    deployments, skipped = [], {}
    for spec in load_specs(path):
        if names and spec["name"] not in names:
            continue
        flow_file = root / spec["entrypoint"].partition(":")[0]
        if not flow_file.is_file():
            skipped[spec["name"]] = f"{flow_file.relative_to(root)} does not exist"
            continue
        deployments.append(to_runner_deployment(spec, root))
    return deployments, skipped


def main(argv: Sequence[str] = ()) -> None:
    """Serve the named deployments (all by default) until interrupted."""
    deployments, skipped = build_deployments(names=list(argv) or None)
    for name, reason in skipped.items():
        print(f"not serving {name}: {reason}", file=sys.stderr)
    if not deployments:
        raise SystemExit("nothing to serve")
    serve(*deployments)


if __name__ == "__main__":
    main(sys.argv[1:])
