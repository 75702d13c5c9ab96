"""deployments/: what prefect.yaml declares, and that serve.py serves exactly that.

No server here (the stack tests in tests/e2e/ deploy these for real); these
checks pin the operational contract: schedules, triggers, limits, parameters.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from prefect.events.schemas.automations import AutomationCore

ROOT = Path(__file__).resolve().parents[1]
PREFECT_YAML = ROOT / "deployments" / "prefect.yaml"
AUTOMATIONS_YAML = ROOT / "deployments" / "automations.yaml"


def _serve_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "deployments_serve", ROOT / "deployments/serve.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def specs() -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in yaml.safe_load(PREFECT_YAML.read_text())["deployments"]}


def test_four_deployments_on_one_process_pool_never_overlapping(specs) -> None:
    assert list(specs) == ["daily-scoring", "evaluate-drift", "fine-tune", "backfill"]
    for name, spec in specs.items():
        assert spec["work_pool"]["name"] == "stocktrend-process", name
        assert spec["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}, name
        assert "stocktrend" in spec["tags"], name
        flow_file, _, function = spec["entrypoint"].partition(":")
        assert flow_file.startswith("flows/") and function, name


def test_schedules_and_triggers(specs) -> None:
    daily = specs["daily-scoring"]["schedules"]
    assert daily == [{"cron": "30 17 * * 1-5", "timezone": "America/New_York", "active": True}]
    drift = specs["evaluate-drift"]
    assert [s["cron"] for s in drift["schedules"]] == ["0 7 * * 6"]  # weekly, Saturday
    assert drift["parameters"] == {"fine_tune_on_drift": False}  # the trigger starts fine-tune
    fine_tune = specs["fine-tune"]
    assert not fine_tune["schedules"]
    (trigger,) = fine_tune["triggers"]
    assert trigger["expect"] == ["stocktrend.drift.detected"]
    assert trigger["match"] == {"prefect.resource.id": "stocktrend.model.*"}
    assert trigger["parameters"]["as_of"] == "{{ event.payload.as_of }}"
    assert not specs["backfill"]["schedules"] and "parameters" not in specs["backfill"]


def test_crash_automation_is_valid() -> None:
    (spec,) = yaml.safe_load(AUTOMATIONS_YAML.read_text())["automations"]
    automation = AutomationCore.model_validate(spec)
    assert automation.trigger.posture == "Proactive"
    assert automation.actions[0].type == "change-flow-run-state"


def test_serve_builds_the_same_deployments(specs, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    served, skipped = _serve_module().build_deployments()
    assert skipped == {} and [d.name for d in served] == list(specs)
    for deployment in served:
        spec = specs[deployment.name]
        assert deployment.entrypoint == spec["entrypoint"]
        assert sorted(deployment.tags) == sorted(spec["tags"])
        assert deployment.parameters == (spec.get("parameters") or {})
        assert deployment.concurrency_limit == 1
        assert deployment.concurrency_options.collision_strategy == "ENQUEUE"
        assert [(s.schedule.cron, s.schedule.timezone, s.active) for s in deployment.schedules] == [
            (s["cron"], s["timezone"], s["active"]) for s in spec.get("schedules") or []
        ]
        assert [sorted(t.expect) for t in deployment.triggers] == [
            t["expect"] for t in spec.get("triggers", [])
        ]


def test_serve_skips_deployments_whose_flow_file_is_missing(tmp_path: Path) -> None:
    text = PREFECT_YAML.read_text().replace("flows/fine_tune.py", "flows/not_written_yet.py")
    (tmp_path / "prefect.yaml").write_text(text)
    served, skipped = _serve_module().build_deployments(
        tmp_path / "prefect.yaml", ROOT, names=["fine-tune", "backfill"]
    )
    assert [d.name for d in served] == ["backfill"]
    assert skipped == {"fine-tune": "flows/not_written_yet.py does not exist"}
